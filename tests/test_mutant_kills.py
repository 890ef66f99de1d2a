"""Tests for holes that bench/mutants.py found: each one checks a rule no other test pinned down, against a
hand computation (per-agent loops, explicit formulas) rather than the code under test."""

import math
import os

import pytest
import torch
import torch.nn.functional as F

import baselines
import iac
import runlib

TINY = ["--batch-size", "16", "--hidden", "8", "--heads", "2", "--mixer-embed", "8", "--eval-every", "1000",
        "--eval-episodes", "1", "--no-progress", "--save-model"]


def _agent_linear(layer, x, i):
    """Agent i's slice of an iac.AgentLinear, as a plain affine map."""
    return x @ layer.weight[i] + layer.bias[i]


# ---------------------------------------------------------------- the training loop
def test_buffer_next_state_is_the_state_of_the_same_step_as_next_obs(tmp_path):
    """Each stored next_state is the global state at the instant of its next_obs, also where an episode
    ended (the ended episode's last state, not the reset one). Predator-prey's state is rebuilt by hand
    from predator 0's observation: own vel (0:2), own pos (2:4), landmarks rel. (4:8), predators 1, 2 and
    the prey rel. (8:14), prey vel (14:16); the state is agent positions (8), velocities (8), landmarks (4)."""
    run = iac.main(["--env", "predator_prey", "--total-steps", "110", "--runs-dir", str(tmp_path), "--mixer-state",
                    "env", *TINY])  # the buffer holds the env's state (the paper's reading; the authors' holds o)
    data = runlib.load_checkpoint(os.path.join(run, "checkpoint.pt"))["buffer"]["data"]
    obs, nxt = data["next_obs"], data["next_state"]  # (110, 3, 16), (110, 20)
    me = obs[:, :, 2:4]  # (T, 3, 2) predator positions
    prey_pos = me[:, 0] + obs[:, 0, 12:14]
    pos = torch.cat([me, prey_pos[:, None]], 1).flatten(1)  # (T, 8)
    vel = torch.cat([obs[:, :, 0:2], obs[:, 0, None, 14:16]], 1).flatten(1)  # (T, 8)
    landmarks = (me[:, 0, None] + obs[:, 0, 4:8].view(-1, 2, 2)).flatten(1)  # (T, 4)
    assert torch.allclose(nxt, torch.cat([pos, vel, landmarks], -1), atol=1e-5)
    assert not torch.allclose(nxt[99], data["state"][100], atol=0.1)  # step 100 ended an episode


def test_updates_per_env_step_count_every_copy(tmp_path):
    """--num-envs 4 adds 4 transitions per loop iteration; updates start once D holds a minibatch of 16
    (after iterations at env steps 16, 20, ..., 40: 7 of them) and are one per env step of each copy:
    7 x 4 = 28 updates, and 14 with --updates-per-step 0.5."""
    for utd, expected in (("1", 28), ("0.5", 14)):
        run = iac.main(["--env", "simple_world", "--num-envs", "4", "--total-steps", "40", "--updates-per-step", utd,
                        "--runs-dir", str(tmp_path / utd), *TINY])
        ck = runlib.load_checkpoint(os.path.join(run, "checkpoint.pt"))
        assert (ck["step"], ck["n_updates"]) == (40, expected), utd


# ---------------------------------------------------------------- the attention critic, Eq. (19)-(21)
def test_attention_critic_by_hand_each_agent_attends_to_the_others_only():
    """Q_i = f_i(e_i, x_i), x_i = sum over j != i of softmax_j(q_i . k_j / sqrt(h/H)) h(V e_j), per head,
    computed with loops over agents and heads."""
    torch.manual_seed(0)
    n, o, d, h, H, B = 3, 4, 2, 8, 2, 5
    critic = iac.AttentionCritic(n, o, d, h, H).double()
    obs, act = torch.randn(B, n, o, dtype=torch.float64), torch.rand(B, n, d, dtype=torch.float64)
    dk = h // H
    e = [F.leaky_relu(_agent_linear(critic.g[0], torch.cat([obs[:, i], act[:, i]], -1), i)) for i in range(n)]
    Wq, Wk, Wv = critic.W_q.weight, critic.W_k.weight, critic.V.weight
    f1, f2 = critic.f[0], critic.f[2]
    for i in range(n):
        others = [j for j in range(n) if j != i]
        x = torch.zeros(B, h, dtype=torch.float64)
        for head in range(H):
            sl = slice(head * dk, (head + 1) * dk)
            q = e[i] @ Wq[sl].T  # (B, dk)
            scores = torch.stack([(q * (e[j] @ Wk[sl].T)).sum(-1) / math.sqrt(dk) for j in others], -1)
            w = torch.softmax(scores, -1)  # (B, n - 1)
            x[:, sl] = sum(w[:, k, None] * F.leaky_relu(e[j] @ Wv.T)[:, sl] for k, j in enumerate(others))
        q_i = _agent_linear(f2, torch.relu(_agent_linear(f1, torch.cat([e[i], x], -1), i)), i)[:, 0]
        assert torch.allclose(critic(obs, act)[:, i], q_i, atol=1e-12), i


# ---------------------------------------------------------------- MAAC's critic loss
def test_maac_critic_loss_adds_the_logit_penalty_over_the_other_agents():
    """critic loss = MSE + 1e-3 mean over (batch, head, i, j != i) of the unscaled attention logit
    (W_q s_i) . (W_k e_j), s_i = s_enc_i(o_i), e_j = g_j(o_j, u_j) (MAAC's critics.py regularises
    attend_logits, which hold the other agents only)."""
    args = baselines.continuous_args("maac", ["--env", "predator_prey", "--hidden", "8", "--heads", "2"])
    torch.manual_seed(0)
    n, o, d, S, B = 3, 16, 2, 20, 6
    critic = iac.Critic(args, n, o, S, d, make_q=baselines.MAACCritic).double()
    g = torch.Generator().manual_seed(1)
    batch = dict(obs=torch.randn(B, n, o, generator=g, dtype=torch.float64),
                 state=torch.randn(B, S, generator=g, dtype=torch.float64),
                 act=torch.rand(B, n, d, generator=g, dtype=torch.float64) * 2 - 1,
                 rew=torch.randn(B, generator=g, dtype=torch.float64), term=torch.ones(B, dtype=torch.float64))
    batch.update(next_obs=batch["obs"], next_state=batch["state"])
    # every transition terminal and no entropy term: the TD target is the reward, for each Q_i
    y = batch["rew"][:, None].expand(B, n)
    target_policy = lambda o, s: (batch["act"], torch.zeros(B, n, dtype=torch.float64))
    nets = dict(critic=critic, actor_target=type("Pi", (), dict(sample=staticmethod(target_policy)))(),
                critic_target=critic)
    args.td_entropy = "none"
    loss = iac.critic_loss(nets, batch, 0.1, args)
    q = critic.q
    mse = ((critic(batch["obs"], batch["state"], batch["act"]) - y) ** 2).mean()
    s = [F.leaky_relu(_agent_linear(q.s_enc[0], batch["obs"][:, i], i)) for i in range(n)]
    e = [F.leaky_relu(_agent_linear(q.g[0], torch.cat([batch["obs"][:, j], batch["act"][:, j]], -1), j))
         for j in range(n)]
    dk = 8 // 2
    squares = []
    for head in range(2):
        sl = slice(head * dk, (head + 1) * dk)
        for i in range(n):
            for j in range(n):
                if j != i:
                    logit = ((s[i] @ q.W_q.weight[sl].T) * (e[j] @ q.W_k.weight[sl].T)).sum(-1)  # (B,)
                    squares.append(logit**2)
    penalty = 1e-3 * torch.stack(squares).mean()
    assert penalty > 1e-6  # the penalty is not negligible next to the tolerance below
    assert loss.item() == pytest.approx((mse + penalty).item(), rel=1e-9)


# ---------------------------------------------------------------- MADDPG vs MAAC: where the other agents' actions come from
def test_maac_policy_loss_ignores_the_buffers_actions_and_maddpg_uses_them():
    """MAAC samples the other agents' actions from their current policies, so agent i's policy loss does
    not depend on the minibatch's actions; MADDPG (openai/maddpg p_train) takes them from the minibatch."""
    g = torch.Generator().manual_seed(0)
    batch = dict(obs=torch.randn(8, 3, 16, generator=g), state=torch.randn(8, 20, generator=g))
    acts = [torch.rand(8, 3, 2, generator=g) * 2 - 1 for _ in range(2)]
    for algo, depends in (("maac", False), ("maddpg", True)):
        args = baselines.continuous_args(algo, ["--env", "predator_prey", "--hidden", "8", "--heads", "2"])
        torch.manual_seed(0)
        nets, _ = iac.build(args, iac.make_env(args, 1, "cpu"), "cpu", baselines.MAACCritic if algo == "maac" else None)
        losses = []
        for act in acts:
            torch.manual_seed(1)  # the same policy samples for both minibatches
            loss, _ = iac.policy_loss(nets, dict(batch, act=act), 0.1, args)
            losses.append(loss.item())
        assert (losses[0] != losses[1]) == depends, (algo, losses)


# ---------------------------------------------------------------- the logged training return
def test_logged_training_return_is_the_mean_return_of_the_episodes_since_the_last_log(tmp_path, monkeypatch):
    """simple_world's episodes last one step, so charts/episodic_return at steps 20 and 40 (--eval-every 20,
    2 copies) is the mean of the 20 rewards the training env paid since the previous log."""
    from torch.utils.tensorboard import SummaryWriter

    import envs

    rewards, logged = [], {}
    real_step, real_add = envs.SimpleWorld.step, SummaryWriter.add_scalar

    def step(self, actions, check=True):
        out = real_step(self, actions, check)
        if self.num_envs == 2:  # the training env (the evaluation env has 1 copy)
            rewards.append(out[2].clone())
        return out

    def add_scalar(self, tag, value, step=None, *a, **k):
        if tag == "charts/episodic_return":
            logged[step] = value
        return real_add(self, tag, value, step, *a, **k)

    monkeypatch.setattr(envs.SimpleWorld, "step", step)
    monkeypatch.setattr(SummaryWriter, "add_scalar", add_scalar)
    iac.main(["--env", "simple_world", "--num-envs", "2", "--total-steps", "40", "--runs-dir", str(tmp_path), *TINY,
              "--eval-every", "20"])
    assert len(rewards) == 20 and set(logged) == {20, 40}
    for k, at in enumerate((20, 40)):
        by_hand = sum(float(r.sum()) for r in rewards[10 * k: 10 * (k + 1)]) / 20
        assert logged[at] == pytest.approx(by_hand, rel=1e-6), at
