"""iac.py: the tricky math checked against independent computations, then smoke, resume and guards."""

import copy
import itertools
import math
import os

import numpy as np
import pytest
import torch
from torch.distributions import MultivariateNormal

import envs
import iac
import runlib


def _actor(policy="joint", n=3, obs_dim=5, state_dim=7, d=2, rank=2):
    torch.manual_seed(0)
    return iac.Actor(n, obs_dim, state_dim, d, 32, policy, rank).double()


def _inputs(B=4, n=3, obs_dim=5, state_dim=7):
    g = torch.Generator().manual_seed(1)
    return (torch.randn(B, n, obs_dim, generator=g, dtype=torch.float64),
            torch.randn(B, state_dim, generator=g, dtype=torch.float64))


# ---------------------------------------------------------------- the joint policy, Section 4.1
def test_joint_log_prob_and_entropy_match_dense_gaussian_with_tanh_jacobian():
    actor = _actor()
    obs, state = _inputs()
    dist = actor.distribution(obs, state)
    # an independent computation: the dense Sigma = L L^T + D of Eq. (12), built by hand
    mu, log_std = actor.net(obs).split(2, -1)
    log_std = iac.LOG_STD_MIN + 0.5 * (iac.LOG_STD_MAX - iac.LOG_STD_MIN) * (torch.tanh(log_std) + 1)
    L = actor.f_psi(state).view(4, 6, 2)
    sigma = L @ L.transpose(-1, -2) + torch.diag_embed((2 * log_std).exp().flatten(1))
    dense = MultivariateNormal(mu.flatten(1), covariance_matrix=sigma)
    assert torch.allclose(dist.entropy(), dense.entropy(), atol=1e-10)
    assert torch.allclose(actor.covariance(obs, state), sigma, atol=1e-12)

    torch.manual_seed(3)
    u, log_prob = actor.sample(obs, state)
    assert u.shape == (4, 3, 2) and log_prob.shape == (4, 1) and u.abs().max() < 1  # one joint factor
    x = torch.atanh(u.flatten(1))  # the pre-squash sample
    expect = dense.log_prob(x) - torch.log(1 - torch.tanh(x) ** 2).sum(-1)  # change of variables
    assert torch.allclose(log_prob[:, 0], expect, atol=1e-7)


def test_independent_log_prob_is_per_agent_and_tanh_corrected():
    actor = _actor("independent")
    obs, state = _inputs()
    torch.manual_seed(3)
    u, log_prob = actor.sample(obs, state)
    assert log_prob.shape == (4, 3)
    dist = actor.distribution(obs, state)
    x = torch.atanh(u)
    expect = (dist.log_prob(x) - torch.log(1 - torch.tanh(x) ** 2)).sum(-1)
    assert torch.allclose(log_prob, expect, atol=1e-7)


def test_rsample_has_the_low_rank_covariance():
    actor = _actor()
    obs, state = _inputs(B=1)
    N = 200_000
    dist = actor.distribution(obs.expand(N, -1, -1), state.expand(N, -1))
    torch.manual_seed(0)
    x = dist.rsample()  # (N, nd)
    emp = torch.cov(x.T)
    # Sigma = L L^T + diag(sigma^2), Eq. (12), from the networks' outputs by hand (not the code's covariance)
    _, log_std = actor.net(obs).split(2, -1)
    log_std = iac.LOG_STD_MIN + 0.5 * (iac.LOG_STD_MAX - iac.LOG_STD_MIN) * (torch.tanh(log_std) + 1)
    L = actor.f_psi(state).view(6, 2)
    sigma = (L @ L.T + torch.diag((2 * log_std).exp().flatten())).detach()
    # standard error of a covariance entry ~ sqrt((s_ii s_jj + s_ij^2) / N)
    se = torch.sqrt((sigma.diag()[:, None] * sigma.diag()[None, :] + sigma**2) / N)
    assert ((emp - sigma).abs() < 5 * se).all()
    assert sigma.sub(torch.diag_embed(sigma.diag())).abs().max() > 10 * se.max()  # L is not ~0


def test_decentralised_execution_ignores_others_and_state():
    actor = _actor()
    obs, _ = _inputs()
    a = actor.mean(obs)
    obs2 = obs.clone()
    obs2[:, 1:] = torch.randn_like(obs2[:, 1:])  # other agents see something else
    assert torch.equal(actor.mean(obs2)[:, 0], a[:, 0])
    assert not torch.equal(actor.mean(obs2)[:, 1], a[:, 1])
    # mean() takes no state at all: the collaborative term exists only in training


def random_batch(g, B=32):
    """A predator-prey minibatch (3 agents, 16-D observations, 20-D state, 2-D actions) drawn from g."""
    return dict(obs=torch.randn(B, 3, 16, generator=g), state=torch.randn(B, 20, generator=g),
                act=torch.rand(B, 3, 2, generator=g) * 2 - 1, rew=torch.randn(B, generator=g),
                next_obs=torch.randn(B, 3, 16, generator=g), next_state=torch.randn(B, 20, generator=g),
                term=torch.zeros(B))


def test_smoke_eq15_gradient_reaches_psi_and_critic_loss_reaches_every_critic_parameter():
    """Smoke: every parameter gets a gradient (the values are checked in test_equations.py)."""
    args = iac.parse_args(["--env", "predator_prey", "--preset", "paper"])
    env = iac.make_env(args, 1, "cpu")
    nets, _ = iac.build(args, env, "cpu")
    batch = random_batch(torch.Generator().manual_seed(0))
    loss, _ = iac.policy_loss(nets, batch, 0.1, args)
    loss.backward()
    for name, p in nets["actor"].named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(n.startswith("f_psi") for n, _ in nets["actor"].named_parameters())
    nets["critic"].zero_grad()
    iac.critic_loss(nets, batch, 0.1, args).backward()
    for name, p in nets["critic"].named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


# ---------------------------------------------------------------- the value side, Section 4.2
def test_mixer_is_monotone_in_every_q_i():
    torch.manual_seed(0)
    mixer = iac.QMixer(4, 6, 8).double()
    for _ in range(5):
        for p in mixer.parameters():  # random weights of either sign
            p.data.normal_(0, 2)
        q = torch.randn(64, 4, dtype=torch.float64, requires_grad=True) * 5
        s = torch.randn(64, 6, dtype=torch.float64)
        (grad,) = torch.autograd.grad(mixer(q, s).sum(), q)
        assert (grad >= 0).all()
        assert (grad > 0).any()


def test_attention_critic_permuting_agents_permutes_q():
    torch.manual_seed(0)
    n = 4
    critic = iac.AttentionCritic(n, 5, 2, 16, 4).double()
    obs = torch.randn(8, n, 5, dtype=torch.float64)
    act = torch.rand(8, n, 2, dtype=torch.float64)
    perm = torch.tensor([2, 0, 3, 1])
    # permute the agents together with their own networks g_i, f_i; W_q, W_k, V are shared
    permuted = copy.deepcopy(critic)
    for m in permuted.modules():
        if isinstance(m, iac.AgentLinear):
            m.weight.data, m.bias.data = m.weight.data[perm], m.bias.data[perm]
    q = critic(obs, act)
    assert torch.allclose(permuted(obs[:, perm], act[:, perm]), q[:, perm], atol=1e-12)
    # and the other agents enter through attention only: swapping two *others* of agent 0 (with
    # their networks) leaves Q_0 unchanged
    swap = torch.tensor([0, 2, 1, 3])
    swapped = copy.deepcopy(critic)
    for m in swapped.modules():
        if isinstance(m, iac.AgentLinear):
            m.weight.data, m.bias.data = m.weight.data[swap], m.bias.data[swap]
    assert torch.allclose(swapped(obs[:, swap], act[:, swap])[:, 0], q[:, 0], atol=1e-12)


def test_attention_critic_depends_on_the_other_agents_and_individual_does_not():
    torch.manual_seed(0)
    obs = torch.randn(8, 3, 5)
    act = torch.rand(8, 3, 2)
    act2 = act.clone()
    act2[:, 2] = -act2[:, 2]
    att, ind = iac.AttentionCritic(3, 5, 2, 16, 4), iac.IndividualCritic(3, 5, 2, 16)
    cen = iac.CentralizedCritic(3, 5, 2, 16)
    assert not torch.allclose(att(obs, act)[:, 0], att(obs, act2)[:, 0])
    assert torch.equal(ind(obs, act)[:, 0], ind(obs, act2)[:, 0])
    assert not torch.allclose(cen(obs, act)[:, 0], cen(obs, act2)[:, 0])


def test_agent_linear_equals_separate_linears():
    torch.manual_seed(0)
    layer = iac.AgentLinear(3, 5, 4)
    x = torch.randn(7, 3, 5)
    for i in range(3):
        assert torch.allclose(layer(x)[:, i], x[:, i] @ layer.weight[i] + layer.bias[i], atol=1e-6)


# ---------------------------------------------------------------- the training script
SMOKE = ["--total-steps", "120", "--learning-starts", "60", "--batch-size", "16", "--buffer-size",
         "500", "--eval-every", "60", "--eval-episodes", "2", "--hidden", "16", "--no-progress"]


@pytest.mark.parametrize("env", ["simple_world", "multi_pendulum", "predator_prey", "po_predator_prey"])
def test_smoke_every_grid_point_trains(env, tmp_path):
    """Smoke test: every --policy x --critic x --mixer combination (under the paper's reading, where the
    grid of ablations lives) and the defaults (the authors' reading) run and log their curve."""
    grid = itertools.product(["joint", "independent", "deterministic"], ["attention", "individual", "centralized"],
                             ["qmix", "none"])
    defaults = [[], ["--mixer", "none"], ["--policy", "deterministic", "--critic", "centralized"]]
    for flags in [["--policy", p, "--critic", c, "--mixer", m, "--preset", "paper"] for p, c, m in grid] + defaults:
        args = iac.parse_args(["--env", env, *flags, "--runs-dir", str(tmp_path),
                               "--exp-name", "-".join(["run", *flags[1::2]]), "--num-envs", "2", *SMOKE])
        policy, critic, mixer = args.policy, args.critic, args.mixer
        run = iac.train(args)
        rows = open(os.path.join(run, "eval.csv")).read().split()
        assert rows[0].startswith("step,eval_return,u0_0,") and len(rows) == 4, (policy, critic, mixer, rows)


def test_resume_matches_uninterrupted_run(tmp_path):
    common = ["--env", "predator_prey", "--save-model", "--checkpoint-every", "100", *SMOKE]
    common[common.index("--total-steps") + 1] = "200"
    full = iac.train(iac.parse_args([*common, "--runs-dir", str(tmp_path / "a")]))
    # the same run stopped at 100 steps, then resumed from its checkpoint up to 200
    part = iac.train(iac.parse_args([*common, "--runs-dir", str(tmp_path / "b"), "--total-steps", "100"]))
    resumed = iac.train(iac.parse_args(["--resume", os.path.join(part, "checkpoint.pt"),
                                        "--total-steps", "200", "--no-progress"]))
    assert resumed == part
    a = torch.load(os.path.join(full, "checkpoint.pt"), weights_only=False)
    b = torch.load(os.path.join(resumed, "checkpoint.pt"), weights_only=False)
    assert a["step"] == b["step"] == 200 and a["n_updates"] == b["n_updates"] > 0
    for k in ("actor", "critic"):
        for name in a[k]:
            assert torch.equal(a[k][name], b[k][name]), (k, name)
    assert open(os.path.join(full, "eval.csv")).read() == open(os.path.join(resumed, "eval.csv")).read()


def test_same_seed_same_curve_and_eval_only(tmp_path, capsys):
    args = ["--env", "simple_world", "--save-model", *SMOKE]
    r1 = iac.train(iac.parse_args([*args, "--runs-dir", str(tmp_path / "1")]))
    r2 = iac.train(iac.parse_args([*args, "--runs-dir", str(tmp_path / "2")]))
    assert open(os.path.join(r1, "eval.csv")).read() == open(os.path.join(r2, "eval.csv")).read()
    ckpt = os.path.join(r1, "checkpoint.pt")
    ret = iac.eval_only(iac.parse_args(["--eval-only", "--checkpoint", ckpt, "--eval-episodes", "3"]))
    last = float(open(os.path.join(r1, "eval.csv")).read().split()[-1].split(",")[1])
    assert ret == pytest.approx(last, rel=1e-5)  # one-step env: every episode is the same
    cov = np.load(os.path.join(r1, "covariance.npz"))
    assert cov["sigma"].shape == (3, 2, 2) and (cov["sigma"][:, 0, 1] != 0).all()


def test_capture_video_writes_a_gif(tmp_path):
    run = iac.train(iac.parse_args(["--env", "predator_prey", "--save-model", "--runs-dir", str(tmp_path), *SMOKE]))
    ckpt = os.path.join(run, "checkpoint.pt")
    iac.eval_only(iac.parse_args(["--eval-only", "--checkpoint", ckpt, "--capture-video", "--eval-episodes", "1"]))
    gif = os.path.join(run, "eval.gif")
    assert open(gif, "rb").read(6) == b"GIF89a" and os.listdir(run).count("eval.gif.tmp") == 0
    from PIL import Image, ImageSequence

    im = Image.open(gif)
    frames = [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]
    total_ms = sum(f.info["duration"] for f in ImageSequence.Iterator(Image.open(gif)))
    assert total_ms == envs.make_env("predator_prey", 1).episode_len * 100  # every step, at 10 fps
    assert len(frames) > 1 and im.size == (320, 320) and not np.array_equal(frames[0], frames[-1])


def test_an_interrupted_gif_write_keeps_the_previous_gif(tmp_path, monkeypatch):
    import plots
    from PIL import Image

    path = str(tmp_path / "eval.gif")
    frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 255)]
    plots.save_gif(frames, path, fps=10)
    before = open(path, "rb").read()

    def interrupted(self, fp, *a, **k):  # half a file, then Ctrl-C
        open(fp, "wb").write(before[:20])
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        plots.save_gif(frames[::-1], path, fps=10)
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["eval.gif"]


def test_non_finite_loss_stops_with_a_message_and_a_checkpoint(tmp_path, monkeypatch):
    real = iac.critic_loss
    monkeypatch.setattr(iac, "critic_loss", lambda *a: real(*a) * float("nan"))
    args = iac.parse_args(["--env", "simple_world", "--runs-dir", str(tmp_path), *SMOKE,
                           "--learning-starts", "16"])
    with pytest.raises(SystemExit, match=r"non-finite critic_loss at env step 16 \(gradient update 1\)"):
        iac.train(args)
    assert os.path.isfile(os.path.join(tmp_path, runlib.run_name(args), "checkpoint.pt"))


@pytest.mark.parametrize("flags, message", [
    (["--rank", "0"], r"--rank m must be in 1..n\*d = 6"),
    (["--rank", "7"], r"--rank m must be in 1..n\*d = 6"),
    (["--total-steps", "-5"], "--total-steps must be >= 0"),
    (["--batch-size", "600", "--buffer-size", "500"], "larger than --buffer-size"),
    (["--env", "pong"], "--env 'pong': expected one of"),
    (["--n-agents", "5"], "--env multi_pendulum only"),
    (["--env", "multi_pendulum", "--n-agents", "2", "--graded-reward"], "needs --n-agents >= 3"),
    (["--gamma", "1.0"], r"--gamma must be a finite number in \[0, 1\)"),
    (["--resume", "/no/such/file.pt"], "no such file"),
    (["--eval-only"], "needs --checkpoint"),
])
def test_bad_flags_exit_with_a_clear_message(flags, message, capsys):
    with pytest.raises(SystemExit):
        iac.parse_args(["--env", "predator_prey", *flags] if "--env" not in flags else flags)
    assert __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_gpu_is_refused(capsys):
    with pytest.raises(SystemExit):
        iac.parse_args(["--cuda"])
    assert "no CUDA GPU" in capsys.readouterr().err


def test_unreadable_checkpoint_is_refused_clearly(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="cannot read checkpoint"):
        iac.train(iac.parse_args(["--resume", str(bad)]))
    torch.save({"something": 1}, bad)
    with pytest.raises(SystemExit, match="not a checkpoint written by iac.py"):
        iac.eval_only(iac.parse_args(["--eval-only", "--checkpoint", str(bad)]))

