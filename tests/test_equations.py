"""The numbers of every equation and update rule of iac.py, each against a hand computation on a tiny
batch: stand-in policies and critics with known outputs, or networks whose weights make the answer
obvious. None of these tests calls the helper it checks to compute its own expectation."""

import argparse
import math

import pytest
import torch
from torch.distributions import LowRankMultivariateNormal, MultivariateNormal

import envs
import iac

B, N, D = 4, 3, 2
G = torch.Generator().manual_seed(0)


def rand(*shape):
    return torch.randn(*shape, generator=G, dtype=torch.float64)


def batch(term=None):
    return dict(obs=rand(B, N, 5), state=rand(B, 7), act=rand(B, N, D).tanh(), rew=rand(B),
                next_obs=rand(B, N, 5), next_state=rand(B, 7),
                term=torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64) if term is None else term)


def settings(**kw):
    """The flags the losses read, at their defaults unless given."""
    return argparse.Namespace(**{**dict(gamma=0.95, next_action="target", td_entropy="soft", others_actions="policy",
                                        actor_objective="qtot"), **kw})


class FixedPolicy:
    """A stand-in policy: sample() returns a fixed action and log-prob (B, k), mean() a fixed action; a
    deterministic one (act None) samples its mean with log pi 0, as iac.Actor does."""

    def __init__(self, act, log_prob, mean=None):
        self.act, self.log_prob, self.mean_act = act, log_prob, mean

    def sample(self, obs, state):
        if self.act is None:
            return self.mean_act, torch.zeros(self.mean_act.shape[0], 1, dtype=self.mean_act.dtype)
        return self.act, self.log_prob

    def mean(self, obs):
        return self.mean_act


class LinearCritic:
    """A stand-in critic: Q_i(o, s, u) = sum_j W[i, j] sum_k u_jk + c_i s_0 (per agent), or with a
    mixer Q_tot = sum_i Q_i (B, 1). Easy to evaluate by hand."""

    def __init__(self, mixer=True):
        self.W = rand(N, N)
        self.c = rand(N)
        self.mixer = object() if mixer else None
        self.q = lambda obs, act: act.sum(-1) @ self.W.T  # (B, n), without the state term

    def per_agent(self, state, act):
        return act.sum(-1) @ self.W.T + state[:, :1] * self.c

    def __call__(self, obs, state, act):
        q = self.per_agent(state, act)
        return q.sum(-1, keepdim=True) if self.mixer is not None else q


# ---------------------------------------------------------------- Eq. (24): the TD target
@pytest.mark.parametrize("next_action", ["target", "current"])
@pytest.mark.parametrize("td_entropy", ["soft", "none"])
def test_td_target_eq24_every_variant(next_action, td_entropy):
    b = batch()
    tgt = FixedPolicy(rand(B, N, D), rand(B, 1))
    cur = FixedPolicy(rand(B, N, D), rand(B, 1))
    critic_t = LinearCritic()
    alpha, gamma = 0.3, 0.9
    nets = dict(actor=cur, actor_target=tgt, critic_target=critic_t)
    y = iac.td_target(nets, b, alpha, settings(gamma=gamma, next_action=next_action, td_entropy=td_entropy))
    pi = tgt if next_action == "target" else cur  # Algorithm 1 line 15: u' ~ pi^- (target policy)
    q_next = critic_t.per_agent(b["next_state"], pi.act).sum(-1)  # Q_tot'(o', u', s')
    ent = alpha * pi.log_prob[:, 0] if td_entropy == "soft" else 0.0
    by_hand = b["rew"] + gamma * (1 - b["term"]) * (q_next - ent)
    assert y.shape == (B, 1) and torch.allclose(y[:, 0], by_hand)
    assert torch.allclose(y[[1, 3], 0], b["rew"][[1, 3]])  # terminated: no bootstrap


def test_td_target_per_agent_critics_and_deterministic_policy():
    b = batch()
    critic_t = LinearCritic(mixer=False)
    # independent policy without a mixer (MAAC): each Q_i regresses the team reward with its own log pi_i
    tgt = FixedPolicy(rand(B, N, D), rand(B, N))
    y = iac.td_target(dict(actor=None, actor_target=tgt, critic_target=critic_t), b, 0.2, settings())
    q = critic_t.per_agent(b["next_state"], tgt.act)
    assert torch.allclose(y, b["rew"][:, None] + 0.95 * (1 - b["term"])[:, None] * (q - 0.2 * tgt.log_prob))
    # a joint policy without a mixer: every Q_i takes the joint log pi
    tgt = FixedPolicy(rand(B, N, D), rand(B, 1))
    y = iac.td_target(dict(actor=None, actor_target=tgt, critic_target=critic_t), b, 0.2, settings())
    q = critic_t.per_agent(b["next_state"], tgt.act)
    assert torch.allclose(y, b["rew"][:, None] + 0.95 * (1 - b["term"])[:, None] * (q - 0.2 * tgt.log_prob))
    # deterministic policy (DDPG-MIX, MADDPG): u' = the target policy's mean, no entropy (alpha is 0)
    det = FixedPolicy(None, None, mean=rand(B, N, D))
    critic_t = LinearCritic()
    y = iac.td_target(dict(actor=FixedPolicy(None, None, mean=rand(B, N, D)), actor_target=det, critic_target=critic_t),
                      b, 0.0, settings())
    assert torch.allclose(y, b["rew"][:, None] + 0.95 * (1 - b["term"][:, None]) * critic_t(None, b["next_state"], det.mean_act))


def _constant_critic(args, value):
    """A Critic whose Q_tot is `value` everywhere: every mixer weight zero but the last bias of V(s)."""
    critic = iac.Critic(args, N, 16, 20, D)
    with torch.no_grad():
        for p in critic.mixer.parameters():
            p.zero_()
        critic.mixer.hyper_b2[-1].bias.fill_(value)
    return critic


def test_update_regresses_the_online_critic_on_the_target_critic():
    """Algorithm 1 lines 14-17 inside update(): y uses the *target* critic (here a constant 2.5), the
    reported critic loss is the MSE of the online Q_tot against it."""
    args = iac.parse_args(["--env", "predator_prey", "--preset", "paper", "--td-entropy", "none", "--actor-lr", "1e-12"])
    env = iac.make_env(args, 1, "cpu")
    nets, opts = iac.build(args, env, "cpu")
    nets["critic_target"] = _constant_critic(args, 2.5)
    g = torch.Generator().manual_seed(3)
    b = dict(obs=torch.randn(8, N, 16, generator=g), state=torch.randn(8, 20, generator=g),
             act=torch.rand(8, N, D, generator=g) * 2 - 1, rew=torch.randn(8, generator=g),
             next_obs=torch.randn(8, N, 16, generator=g), next_state=torch.randn(8, 20, generator=g),
             term=torch.tensor([0.0, 1.0] * 4))
    with torch.no_grad():
        q_online = nets["critic"](b["obs"], b["state"], b["act"])
    out = iac.update(args, nets, opts, b, 1, -6.0)
    y = (b["rew"] + 0.95 * (1 - b["term"]) * 2.5)[:, None]
    assert torch.allclose(out["critic_loss"], ((q_online - y) ** 2).mean(), atol=1e-5)


# ---------------------------------------------------------------- Eq. (15): the policy loss
class GradPolicy:
    """sample() returns a leaf action with requires_grad and a fixed log-prob."""

    def __init__(self, per_agent_log_prob=False):
        self.act = rand(B, N, D).requires_grad_()
        self.lp = rand(B, N) if per_agent_log_prob else rand(B, 1)

    def sample(self, obs, state):
        return self.act, self.lp

    def mean(self, obs):
        return self.act


def test_policy_loss_eq15_with_the_mixer_and_mean_q():
    b = batch()
    critic, pi, alpha = LinearCritic(), GradPolicy(), 0.7
    loss, lp = iac.policy_loss(dict(actor=pi, critic=critic), b, alpha, settings())
    q_tot = critic.per_agent(b["state"], pi.act.detach()).sum(-1)
    assert torch.allclose(loss, (alpha * pi.lp[:, 0] - q_tot).mean()) and torch.equal(lp, pi.lp)
    loss.backward()  # dL/du_jk = -(1/B) sum_i W[i, j]: Q_tot pulls every agent's action
    assert torch.allclose(pi.act.grad, (-critic.W.sum(0) / B)[None, :, None].expand(B, N, D))
    # --actor-objective mean_q (authors' agent.py:107): the mean of the Q_i, not Q_tot, and no state term
    pi.act.grad = None
    loss, _ = iac.policy_loss(dict(actor=pi, critic=critic), b, alpha, settings(actor_objective="mean_q"))
    mean_q = (pi.act.detach().sum(-1) @ critic.W.T).mean(-1)
    assert torch.allclose(loss, (alpha * pi.lp[:, 0] - mean_q).mean())
    loss.backward()
    assert torch.allclose(pi.act.grad, (-critic.W.sum(0) / (B * N))[None, :, None].expand(B, N, D))
    # independent policy with a mixer (SIAQ): the joint log pi is the sum of the agents'
    pi = GradPolicy(per_agent_log_prob=True)
    loss, lp = iac.policy_loss(dict(actor=pi, critic=critic), b, alpha, settings())
    assert torch.equal(lp, pi.lp)  # the agents' factors, for the temperature's step
    assert torch.allclose(loss, (alpha * pi.lp.sum(-1) - critic(None, b["state"], pi.act.detach())[:, 0]).mean())


@pytest.mark.parametrize("others", ["buffer", "policy"])
def test_policy_loss_without_mixer_takes_agent_i_fresh_action_and_the_others_actions(others):
    """MADDPG (others from the buffer) and MAAC (others from the current policies): agent i's term is
    Q_i(o, s, u_i fresh, u_-i), the diagonal of the n variants."""
    b = batch()
    critic, pi = LinearCritic(mixer=False), GradPolicy(per_agent_log_prob=True)
    alpha = 0.4
    loss, _ = iac.policy_loss(dict(actor=pi, critic=critic), b, alpha, settings(others_actions=others))
    fresh = pi.act.detach().sum(-1)  # (B, n)
    other = (b["act"] if others == "buffer" else pi.act.detach()).sum(-1)
    q = torch.empty(B, N, dtype=torch.float64)
    for i in range(N):
        for k in range(B):
            q[k, i] = sum(critic.W[i, j] * (fresh[k, j] if j == i else other[k, j]) for j in range(N)) \
                + b["state"][k, 0] * critic.c[i]
    assert torch.allclose(loss, (alpha * pi.lp - q).mean())
    loss.backward()  # agent j's action reaches the loss only through Q_j: dL/du_jk = -W[j, j] / (B n)
    assert torch.allclose(pi.act.grad, (-critic.W.diagonal() / (B * N))[None, :, None].expand(B, N, D))


# ---------------------------------------------------------------- the temperature
def test_alpha_loss_value_sign_and_direction():
    log_alpha = torch.tensor([math.log(0.5)], requires_grad=True)
    lp = torch.tensor([[1.0], [3.0]])  # (B, 1): a joint policy's log pi
    loss = iac.alpha_loss(log_alpha, lp, -6.0)
    assert torch.allclose(loss, -(math.log(0.5) * (lp[:, 0] - 6.0)).mean())
    # independent agents (B, n): the joint log pi is the sum of the agents'
    assert torch.allclose(iac.alpha_loss(log_alpha, torch.tensor([[1.0, 2.0], [3.0, 0.5]]), -6.0),
                          -(math.log(0.5) * (torch.tensor([3.0, 3.5]) - 6.0)).mean())
    for log_prob, grows in ((torch.full((8, 1), 10.0), True), (torch.full((8, 1), -10.0), False)):
        # entropy -log pi below the target -nd = -6 (log pi = 10): alpha must grow, and shrink above it
        la = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([la], lr=0.1)
        iac.alpha_loss(la, log_prob, -6.0).backward()
        opt.step()
        assert (la.item() > 0) == grows


def test_alpha_schedule_of_the_authors_preset():
    args = iac.parse_args(["--preset", "authors"])
    values = [iac.alpha_value(args, None, k) for k in (0, 1_000, 100_000)]
    assert values == pytest.approx([0.1, 0.099, 0.01])  # 0.1 - 1e-6 per update, floor 0.01 (agent.py:125)
    assert iac.alpha_value(iac.parse_args(["--alpha", "0.3", "--alpha-decay", "0"]), None, 10**6) == 0.3
    assert iac.alpha_value(iac.parse_args(["--alpha", "0.3"]), None, 10**5) == pytest.approx(0.2)  # the default decay
    learned = iac.alpha_value(iac.parse_args(["--preset", "paper"]), torch.tensor([math.log(0.2)]), 5)
    assert torch.allclose(learned, torch.tensor([0.2]))
    assert iac.alpha_value(iac.parse_args(["--policy", "deterministic"]), None, 0) == 0.0


# ---------------------------------------------------------------- target networks, Algorithm 1 lines 19-20
def test_polyak_moves_the_target_towards_the_online_weights():
    src, tgt = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.detach().clone() for p in tgt.parameters()]
    iac.hard_or_soft_update(tgt, src, 0.1)
    for t, s, b0 in zip(tgt.parameters(), src.parameters(), before):
        assert torch.allclose(t, 0.9 * b0 + 0.1 * s)


def test_hard_copy_happens_exactly_every_T_updates():
    args = iac.parse_args(["--env", "simple_world", "--hidden", "8", "--heads", "2", "--batch-size", "8", "--preset", "paper"])
    assert (args.tau, args.target_update_interval) == (1.0, 200)  # Algorithm 1's defaults
    env = iac.make_env(args, 1, "cpu")
    nets, opts = iac.build(args, env, "cpu")
    g = torch.Generator().manual_seed(0)
    b = dict(obs=torch.ones(8, 2, 1), state=torch.ones(8, 1), act=torch.rand(8, 2, 1, generator=g) * 2 - 1,
             rew=torch.randn(8, generator=g), next_obs=torch.ones(8, 2, 1), next_state=torch.ones(8, 1),
             term=torch.ones(8))
    same = lambda a, b: all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    copies = []
    for k in range(1, 402):
        iac.update(args, nets, opts, b, k, -2.0)
        if same(nets["critic"], nets["critic_target"]) and same(nets["actor"], nets["actor_target"]):
            copies.append(k)
    assert copies == [200, 400]


# ---------------------------------------------------------------- the low-rank Gaussian, Eq. (12)-(14)
def test_low_rank_gaussian_equals_torch_distributions():
    loc, L, Dg = rand(5, 6), rand(5, 6, 2), rand(5, 6).exp()
    ours, ref = iac.LowRankGaussian(loc, L, Dg), LowRankMultivariateNormal(loc, L, Dg)
    x = rand(5, 6)
    assert torch.allclose(ours.log_prob(x), ref.log_prob(x), atol=1e-12)
    assert torch.allclose(ours.entropy(), ref.entropy(), atol=1e-12)
    assert torch.allclose(ours.covariance_matrix, ref.covariance_matrix, atol=1e-12)
    torch.manual_seed(5)
    a = ours.rsample()
    torch.manual_seed(5)
    assert torch.allclose(a, ref.rsample(), atol=1e-12)  # the same noise, drawn in the same order
    # a capacitance matrix that cannot be factored gives NaN (for the guard), not an exception
    bad = iac.LowRankGaussian(loc, L * float("nan"), Dg)
    assert torch.isnan(bad.log_prob(x)).all()


def _actor(**kw):
    torch.manual_seed(0)
    return iac.Actor(N, 5, 7, D, 16, "joint", 2, **kw).double()


def test_fixed_diagonal_gives_sigma_LLT_plus_1e6():
    actor = _actor(cov_diag="fixed")
    obs, state = rand(B, N, 5), rand(B, 7)
    L = actor.f_psi(state).view(B, N * D, 2)
    assert torch.allclose(actor.covariance(obs, state), L @ L.mT + 1e-6 * torch.eye(N * D, dtype=torch.float64))


def test_tanh_bounded_L():
    actor = _actor(l_bound="tanh")
    obs, state = rand(B, N, 5), rand(B, 7) * 50
    L = torch.tanh(actor.f_psi(state).view(B, N * D, 2))
    sigma = actor.covariance(obs, state)
    assert torch.allclose(sigma - torch.diag_embed(sigma.diagonal(dim1=1, dim2=2)),
                          (L @ L.mT) - torch.diag_embed((L @ L.mT).diagonal(dim1=1, dim2=2)))


def test_mean_noise_is_c_times_uniform_0_1():
    actor = _actor(mean_noise=0.05, squash="none")
    obs, state = rand(1, N, 5).expand(20000, -1, -1), rand(1, 7).expand(20000, -1)
    loc = actor.distribution(obs, state).loc  # (20000, nd)
    mu = torch.tanh(actor.net(obs[:1])[..., :D]).flatten(1)
    jitter = loc - mu
    assert jitter.min() >= 0 and jitter.max() < 0.05
    assert jitter.mean().item() == pytest.approx(0.025, abs=5 * 0.05 / math.sqrt(12 * jitter.numel()))


def test_squash_none_returns_the_raw_gaussian_sample_and_its_density():
    actor = _actor(squash="none")
    obs, state = rand(B, N, 5), rand(B, 7)
    torch.manual_seed(1)
    u, lp = actor.sample(obs, state)
    mu, _ = actor.net(obs).split(D, -1)
    L = actor.f_psi(state).view(B, N * D, 2)
    dist = actor.distribution(obs, state)
    dense = MultivariateNormal(torch.tanh(mu).flatten(1), covariance_matrix=L @ L.mT + torch.diag_embed(dist.D))
    assert torch.allclose(lp[:, 0], dense.log_prob(u.flatten(1)))  # no tanh correction
    assert torch.allclose(dist.loc, torch.tanh(mu).flatten(1))  # centred on tanh(mu)


def test_preset_authors_sets_every_item_and_explicit_flags_win():
    args = iac.parse_args(["--preset", "authors"])
    expect = dict(critic="attention_shared", cov_diag="fixed", l_bound="tanh", rank=1, mean_noise=0.05, squash="none", alpha=0.1,
                  alpha_decay=1e-6, alpha_min=0.01, mixer_state="obs", actor_objective="mean_q", grad_clip=0.0)
    assert {k: getattr(args, k) for k in expect} == expect
    assert (args.next_action, args.tau, args.target_update_interval, args.learning_starts) == ("target", 1.0, 200, 0)
    args = iac.parse_args(["--preset", "authors", "--rank", "2", "--grad-clip", "10"])
    assert (args.rank, args.grad_clip) == (2, 10.0)  # given by hand, even where it equals the default
    assert args.predator_action == "mpe2"  # the env's action format is not part of the algorithm
    args = iac.parse_args(["--preset", "authors", "--predator-action", "mpe5"])
    assert args.predator_action == "mpe5" and args.critic == "attention_shared"
    # the baselines take the settings every method shares, not IAC's own policy and critic items
    import baselines
    args = baselines.continuous_args("sq", ["--preset", "authors"])
    assert (args.mixer_state, args.predator_action, args.grad_clip, args.alpha) == ("obs", "mpe2", 0.0, 0.1)
    assert (args.critic, args.cov_diag, args.squash, args.actor_objective, args.rank) == (
        "individual", "learned", "tanh", "qtot", 2)


def test_preset_paper_is_algorithm_1_item_by_item_and_undoes_nothing_given_by_hand():
    plain, paper = vars(iac.parse_args([])), vars(iac.parse_args(["--preset", "paper"]))
    assert set(iac.PRESETS["paper"]) == set(iac.PRESETS["authors"])  # every item the authors' reading changes
    assert all(iac.PRESETS["paper"][k] != v for k, v in iac.PRESETS["authors"].items())
    expect = dict(critic="attention", cov_diag="learned", l_bound="none", rank=2, mean_noise=0.0, squash="tanh",
                  alpha=None, alpha_decay=0.0, alpha_min=0.0, mixer_state="env", actor_objective="qtot", grad_clip=10.0)
    assert {k: paper[k] for k in expect} == expect  # Eq. (12)-(15), (19)-(22) and a learned alpha, literally
    # the defaults are the authors' reading (README, "Which settings should I use?"): --preset authors changes
    # nothing but the preset's name, --preset paper every item and nothing else
    assert {k for k in plain if plain[k] != vars(iac.parse_args(["--preset", "authors"]))[k]} == {"preset", "explicit"}
    assert {k for k in plain if plain[k] != paper[k]} == {"preset", "explicit", *expect}
    args = iac.parse_args(["--preset", "paper", "--critic", "attention_shared", "--mixer-state", "obs"])
    assert (args.critic, args.mixer_state, args.actor_objective) == ("attention_shared", "obs", "qtot")
    # the baselines keep the paper's reading whatever iac.py's defaults are
    import baselines
    args = baselines.continuous_args("siaq", [])
    assert {k: getattr(args, k) for k in expect if k != "critic"} == {k: v for k, v in expect.items() if k != "critic"}


def test_a_baseline_keeps_a_flag_given_by_hand_over_the_papers_reading():
    import baselines
    args = baselines.continuous_args("ddpg_mix", ["--grad-clip", "5", "--mixer-state", "obs"])
    assert (args.grad_clip, args.mixer_state, args.alpha) == (5.0, "obs", None)


def test_a_learned_alpha_drops_the_default_schedule_and_an_independent_policy_refuses_a_fixed_d(capsys):
    # the default schedule (0.1, -1e-6, floor 0.01) is a fixed alpha's
    args = iac.parse_args(["--alpha", "learned", "--cov-diag", "learned"])
    assert (args.alpha, args.alpha_decay, args.alpha_min) == (None, 0.0, 0.0)
    with pytest.raises(SystemExit):  # a schedule given by hand with a learned alpha is still refused
        iac.parse_args(["--alpha", "learned", "--cov-diag", "learned", "--alpha-decay", "1e-6"])
    assert "give --alpha too" in capsys.readouterr().err
    # with the default fixed D a learned alpha cannot reach its target: refused; a default floor above a
    # given alpha is named as the default's
    for argv, message in ((["--alpha", "learned"], "grows without end"),
                          (["--alpha", "0.005"], "--alpha-min 0.01 (the default: give --alpha-min too)")):
        with pytest.raises(SystemExit):
            iac.parse_args(argv)
        assert message in capsys.readouterr().err
    assert iac.parse_args(["--alpha", "0.005", "--alpha-min", "0.001"]).alpha_min == 0.001
    # independent Gaussians with D = 1e-6 I and no L would not explore: refused, not silently run
    for argv in (["--policy", "independent"], ["--preset", "authors", "--policy", "independent"]):
        with pytest.raises(SystemExit):
            iac.parse_args(argv)
        assert "would not explore" in capsys.readouterr().err
    assert iac.parse_args(["--policy", "independent", "--cov-diag", "learned"]).cov_diag == "learned"


def test_mixer_state_obs_feeds_the_concatenated_observations():
    args = iac.parse_args(["--env", "predator_prey", "--mixer-state", "obs"])
    env = iac.make_env(args, 2, "cpu")
    nets, _ = iac.build(args, env, "cpu")
    assert nets["critic"].mixer.hyper_w1.in_features == 3 * 16 and nets["actor"].f_psi[0].in_features == 48
    obs, state = env.reset(seed=0)
    assert torch.equal(iac.mixer_state(args, obs, state), obs.flatten(1))


def test_mpe5_predator_action_gives_5d_actions():
    args = iac.parse_args(["--env", "po_predator_prey", "--predator-action", "mpe5", "--rank", "15"])
    env = iac.make_env(args, 1, "cpu")
    assert env.act_dim == 5 and envs.sizes(args) == (3, 5, 16, 20)


def test_grad_clip_zero_means_no_clipping():
    lin = torch.nn.Linear(3, 1).double()
    opt = torch.optim.SGD(lin.parameters(), lr=1.0)
    before = lin.weight.detach().clone()
    loss = (lin(torch.full((1, 3), 1000.0, dtype=torch.float64)) ** 2).sum()
    grad = torch.autograd.grad(loss, lin.weight, retain_graph=True)[0]
    iac.optimise(iac.Networks(None), opt, lin.parameters(), loss, 0.0, None, "x", 1)
    assert torch.allclose(lin.weight, before - grad)
    loss = (lin(torch.full((1, 3), 1000.0, dtype=torch.float64)) ** 2).sum()
    grad = torch.autograd.grad(loss, lin.weight, retain_graph=True)[0]
    before = lin.weight.detach().clone()
    iac.optimise(iac.Networks(None), opt, lin.parameters(), loss, 1.0, None, "x", 1)  # clipped to norm 1 (over weight and bias)
    assert (before - lin.weight).norm() <= 1.0 + 1e-9 and grad.norm() > 10


# ---------------------------------------------------------------- evaluation, actions, replay, bootstrapping
class StubEnv:
    """Copy k's episodes last k + 1 steps; every step pays 1. Auto-resets like envs.py."""
    n_agents, obs_dim, act_dim, act_low, act_high, episode_len = 1, 1, 1, -1.0, 1.0, 6

    def __init__(self, num_envs):
        self.num_envs = num_envs
        self.t = torch.zeros(num_envs, dtype=torch.long)

    def reset(self, seed=None):
        self.t.zero_()
        return torch.zeros(self.num_envs, 1, 1), torch.zeros(self.num_envs, 1)

    def step(self, actions, check=True):
        self.t += 1
        term = self.t >= torch.arange(1, self.num_envs + 1)
        self.t[term] = 0
        z = torch.zeros(self.num_envs, 1, 1)
        return z, z[:, 0], torch.ones(self.num_envs), term, torch.zeros_like(term), {}


def test_evaluation_counts_only_each_copys_first_episode():
    actor = iac.Actor(1, 1, 1, 1, 4, "deterministic", 1)
    # copy k's first episode lasts k + 1 steps: returns 1, 2, 3, 4 -> mean 2.5 (later episodes excluded)
    assert iac.evaluate(actor, StubEnv(4), seed=0) == pytest.approx(2.5)


@pytest.mark.parametrize("name, low, high", [("simple_world", -10, 10), ("multi_pendulum", -2, 2),
                                             ("predator_prey", -1, 1)])
def test_to_env_maps_minus_one_one_onto_the_env_bounds(name, low, high):
    env = envs.make_env(name)
    u = torch.tensor([-1.0, -0.5, 0.0, 1.0])
    assert torch.allclose(iac.to_env(u, env), torch.tensor([low, low + 0.25 * (high - low), (low + high) / 2, high]))


def test_replay_buffer_wraps_around_and_samples_only_stored_slots():
    rb = iac.ReplayBuffer(5, 1, 1, 1, 1, "cpu", seed=0)
    for start in (0, 2, 4):  # 6 transitions into 5 slots, 2 at a time
        r = torch.tensor([start, start + 1.0])
        rb.add(obs=r.view(2, 1, 1), state=r.view(2, 1), act=r.view(2, 1, 1), rew=r, next_obs=r.view(2, 1, 1),
               next_state=r.view(2, 1), term=torch.zeros(2))
        assert len(rb) == min(start + 2, 5)
    assert rb.data["rew"].tolist() == [5.0, 1.0, 2.0, 3.0, 4.0] and rb.pos == 1 and rb.full
    small = iac.ReplayBuffer(10, 1, 1, 1, 1, "cpu", seed=0)
    small.add(obs=torch.ones(3, 1, 1), state=torch.ones(3, 1), act=torch.ones(3, 1, 1), rew=torch.tensor([7.0, 8, 9]),
              next_obs=torch.ones(3, 1, 1), next_state=torch.ones(3, 1), term=torch.zeros(3))
    assert set(small.sample(200)["rew"].tolist()) == {7.0, 8.0, 9.0}  # never an empty slot


def test_training_bootstraps_from_the_ended_episodes_last_observation(tmp_path):
    """Transition t stores next_obs = obs of t + 1, except where an episode ended: there it holds the
    episode's own last observation (info["final_obs"]), not the new episode's first one."""
    run = iac.main(["--env", "predator_prey", "--total-steps", "205", "--batch-size", "16", "--hidden", "8",
                    "--heads", "2", "--eval-every", "1000", "--eval-episodes", "1", "--no-progress",
                    "--save-model", "--runs-dir", str(tmp_path)])
    data = __import__("runlib").load_checkpoint(f"{run}/checkpoint.pt")["buffer"]["data"]
    obs, nxt = data["obs"], data["next_obs"]
    cont = torch.ones(204, dtype=torch.bool)
    cont[[99, 199]] = False  # 100-step episodes
    assert torch.equal(nxt[:-1][cont], obs[1:][cont])
    for t in (99, 199):
        assert not torch.equal(nxt[t], obs[t + 1])  # the reset observation is not bootstrapped from
        # the last observation follows from the one before it: same landmarks relative to the moved agent
        assert (nxt[t] - obs[t]).abs().max() < 0.5
    assert data["term"].sum() == 0  # truncation at 100 steps is not termination


def test_shared_attention_critic_by_hand():
    """The authors' critic, one head, two agents: Q_i = f(e_i, x_i), e_i = g(o_i, u_i), x_i the value of
    the other agent (one other: softmax weight 1), so the query side has no effect with n = 2; with
    n = 3 the weights are softmax(s_i W_q . W_k e_j / sqrt(h)) over j != i."""
    torch.manual_seed(0)
    crit = iac.SharedAttentionCritic(3, 4, 2, 8, 1).double()
    obs, act = rand(5, 3, 4), rand(5, 3, 2)
    lin = lambda m, x: x @ m.weight.T + (m.bias if m.bias is not None else 0)
    leaky = torch.nn.functional.leaky_relu
    e = leaky(lin(crit.g[0], torch.cat([obs, act], -1)))  # (5, 3, 8): one g for every agent
    s = leaky(lin(crit.s[0], obs))
    q_expect = torch.empty(5, 3, dtype=torch.float64)
    for i in range(3):
        others = [j for j in range(3) if j != i]
        logits = torch.stack([(lin(crit.W_q, s[:, i]) * lin(crit.W_k, e[:, j])).sum(-1) for j in others], -1)
        w = (logits / math.sqrt(8)).softmax(-1)  # (5, 2)
        x = sum(w[:, k:k + 1] * leaky(lin(crit.V, e[:, j])) for k, j in enumerate(others))
        h = torch.relu(lin(crit.f[0], torch.cat([e[:, i], x], -1)))
        q_expect[:, i] = lin(crit.f[2], h).squeeze(-1)
    assert torch.allclose(crit(obs, act), q_expect, atol=1e-10)
    # shared weights: permuting the agents permutes the Q_i
    perm = [2, 0, 1]
    assert torch.allclose(crit(obs[:, perm], act[:, perm]), q_expect[:, perm], atol=1e-10)
