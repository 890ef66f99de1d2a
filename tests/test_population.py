"""Populations (--seeds): K runs in one process must train as K single runs would."""

import csv
import os

import pytest
import torch

import baselines
import iac
import population
import runlib

ALGOS = ["iac", "ddpg_mix", "maddpg", "maac", "siaq"]
NETS = ("actor", "critic", "actor_target", "critic_target")


def _args(algo, *extra):
    argv = ["--env", "predator_prey", "--batch-size", "16", "--target-update-interval", "2", "--tau", "0.5", *extra]
    if algo == "iac":
        return iac.parse_args([*argv, "--preset", "paper"]), None
    return baselines.continuous_args(algo, argv), baselines.MAACCritic if algo == "maac" else None


def _pattern(*shape, dtype=None, device=None, offset=0.3):
    """Fixed 'noise' that depends on the shape only: a population member and a single run draw the same."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, torch.Size)):
        shape = tuple(shape[0])
    n = 1
    for s in shape:
        n *= s
    return torch.sin(torch.arange(n, dtype=torch.float32) * 0.7 + offset).view(shape).to(dtype or torch.float32)


@pytest.fixture
def fixed_noise(monkeypatch):
    """Every random draw of an update (the Gaussians' eps, the authors' mean jitter) replaced by
    a fixed pattern, so that one population update and K single updates can be compared number by number."""
    monkeypatch.setattr(torch, "randn", lambda *s, **k: _pattern(*s, dtype=k.get("dtype")))
    monkeypatch.setattr(torch, "randn_like", lambda t, **k: _pattern(*t.shape, dtype=t.dtype, offset=1.1))
    monkeypatch.setattr(torch, "rand_like", lambda t, **k: _pattern(*t.shape, dtype=t.dtype, offset=2.0).abs())


def _batches(env, K, B, gen):
    n, o, d, S = env.n_agents, env.obs_dim, env.act_dim, env.state_dim
    r = lambda *s: torch.empty(K, *s).normal_(generator=gen)  # (torch.randn is patched by fixed_noise)
    return dict(obs=r(B, n, o), state=r(B, S), act=r(B, n, d).tanh(), rew=r(B), next_obs=r(B, n, o),
                next_state=r(B, S), term=(torch.empty(K, B).uniform_(generator=gen) < 0.2).float())


def _sgd(opts):
    """The same parameters under plain SGD: unlike Adam, its step is proportional to the gradient, so a
    loss averaged over members instead of summed (gradients 1/K as large) shows."""
    return {k: torch.optim.SGD(o.param_groups[0]["params"], lr=0.05) for k, o in opts.items()}


@pytest.mark.parametrize("algo, opt", [(a, "adam") for a in ALGOS] + [("iac", "sgd"), ("maac", "sgd")])
def test_one_population_update_equals_K_single_run_updates(algo, opt, fixed_noise):
    """From the same initial weights, on the same minibatches, three gradient updates of a population
    of K = 3 equal three updates of each of 3 single runs (actor, critic, targets, alpha) to 1e-5."""
    K, seeds = 3, [4, 7, 9]
    args, make_q = _args(algo)
    env = iac.make_env(args, 1, torch.device("cpu"))
    pop, pop_opts = population.build(lambda: iac.build(args, env, torch.device("cpu"), make_q),
                                     [runlib.seed_streams(s)["torch"] for s in seeds], lambda p: iac.optimisers(args, p))
    singles = []
    for seed in seeds:  # member k starts from the weights of the single run of seeds[k]
        torch.manual_seed(runlib.seed_streams(seed)["torch"])
        singles.append(iac.build(args, env, torch.device("cpu"), make_q))
    if opt == "sgd":
        pop_opts = _sgd(pop_opts)
        singles = [(nets, _sgd(opts)) for nets, opts in singles]
    gen = torch.Generator().manual_seed(0)
    target_entropy = -float(env.n_agents * env.act_dim)
    for u in range(1, 4):
        batch = _batches(env, K, 16, gen)
        pop_out = iac.update(args, pop, pop_opts, batch, u, target_entropy)
        for k, (nets, opts) in enumerate(singles):
            out = iac.update(args, nets, opts, {key: v[k] for key, v in batch.items()}, u, target_entropy)
            for name, v in out.items():
                torch.testing.assert_close(pop_out[name][k], v, rtol=1e-5, atol=1e-5)
    sd = pop.weights()
    for k, (nets, _) in enumerate(singles):
        for net in NETS:
            for name, v in nets[net].state_dict().items():
                torch.testing.assert_close(sd[net][name][k], v, rtol=1e-5, atol=1e-5, msg=f"{net}.{name}")
        torch.testing.assert_close(pop.log_alpha[k], nets.log_alpha, rtol=1e-5, atol=1e-5)
    # and the members really differ (a population of copies would pass the above trivially)
    assert not torch.allclose(sd["actor"]["net.0.weight"][0], sd["actor"]["net.0.weight"][1])


def test_gradient_clipping_is_per_member(fixed_noise):
    """A member with a huge gradient is clipped to --grad-clip; the others are not scaled with it."""
    params = [torch.zeros(3, 4, requires_grad=True), torch.zeros(3, 2, requires_grad=True)]
    params[0].grad = torch.tensor([[3.0, 4, 0, 0], [300, 400, 0, 0], [0.3, 0.4, 0, 0]])
    params[1].grad = torch.zeros(3, 2)
    norm = population.Population.clip_grad_norm_(None, params, 10.0)
    torch.testing.assert_close(norm, torch.tensor([5.0, 500.0, 0.5]))
    torch.testing.assert_close(params[0].grad[:, :2], torch.tensor([[3.0, 4], [6, 8], [0.3, 0.4]]), rtol=1e-5, atol=1e-6)


def _run(tmp_path, *argv, script=iac):
    return script.main(["--env", "predator_prey", "--total-steps", "300", "--batch-size", "32", "--eval-every", "100",
                        "--eval-episodes", "2", "--runs-dir", str(tmp_path), "--no-progress", *argv])


def _csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_members_write_single_run_folders_and_differ(tmp_path):
    dirs = _run(tmp_path, "--seeds", "1,2,3")
    assert [os.path.basename(d) for d in dirs] == [f"predator_prey__iac__{s}" for s in (1, 2, 3)]
    rows = [_csv(os.path.join(d, "eval.csv")) for d in dirs]
    assert all(len(r) == 5 for r in rows)  # header + steps 0, 100, 200, 300
    assert rows[0][1:] != rows[1][1:] != rows[2][1:]  # different seeds, different curves
    for d in dirs:
        assert os.path.isfile(os.path.join(d, "covariance.npz"))


@pytest.mark.parametrize("algo", ["iac", *baselines.PRESETS])
def test_every_method_trains_as_a_population(tmp_path, algo):
    """Real random draws under vmap (no patched noise): each method's population trains and its members differ."""
    script, extra = (iac, []) if algo == "iac" else (baselines, ["--algo", algo])
    dirs = _run(tmp_path, *extra, "--seeds", "1,2", "--total-steps", "100", "--batch-size", "16", "--eval-every", "50",
                script=script)
    rows = [_csv(os.path.join(d, "eval.csv")) for d in dirs]
    assert [len(r) for r in rows] == [4, 4] and rows[0][1:] != rows[1][1:]


def test_one_seed_in_seeds_is_the_single_run(tmp_path):
    a = _run(tmp_path / "a", "--seeds", "5")
    b = _run(tmp_path / "b", "--seed", "5")
    assert _csv(os.path.join(a, "eval.csv")) == _csv(os.path.join(b, "eval.csv"))


def test_member_starts_from_its_single_runs_weights(tmp_path):
    """Member k's initial networks are those of the single run of seeds[k] (its own torch stream)."""
    _run(tmp_path, "--seeds", "3,2", "--total-steps", "0", "--save-model")
    _run(tmp_path, "--seed", "2", "--total-steps", "0", "--save-model")
    pop = runlib.load_checkpoint(str(tmp_path / "predator_prey__iac__seeds-3-2" / "checkpoint.pt"))
    single = runlib.load_checkpoint(str(tmp_path / "predator_prey__iac__2" / "checkpoint.pt"))
    for net in NETS:
        for name, v in single[net].items():
            assert torch.equal(pop[net][name][1], v), f"{net}.{name}"
        assert not torch.equal(pop["actor"]["net.0.weight"][0], single["actor"]["net.0.weight"])


@pytest.mark.parametrize("algo", ["iac", "ddpg_mix"])
def test_population_resume_equals_uninterrupted(tmp_path, algo):
    script, extra = (iac, []) if algo == "iac" else (baselines, ["--algo", algo])
    full = _run(tmp_path / "full", *extra, "--seeds", "1,2", "--save-model", "--checkpoint-every", "150", script=script)
    _run(tmp_path / "cut", *extra, "--seeds", "1,2", "--save-model", "--checkpoint-every", "150", "--total-steps", "150",
         script=script)
    name = f"predator_prey__{algo}__seeds-1-2"
    ckpt = tmp_path / "cut" / name / "checkpoint.pt"
    assert ckpt.is_file()
    resumed = script.main(["--resume", str(ckpt), "--total-steps", "300", "--no-progress"])
    for a, b in zip(full, resumed):
        assert _csv(os.path.join(a, "eval.csv")) == _csv(os.path.join(b, "eval.csv"))
    one = runlib.load_checkpoint(str(tmp_path / "full" / name / "checkpoint.pt"))
    two = runlib.load_checkpoint(str(ckpt))
    for k, v in one["actor"].items():
        assert torch.equal(v, two["actor"][k])


def test_eval_only_evaluates_every_member(tmp_path, capsys):
    _run(tmp_path, "--seeds", "1,2", "--save-model", "--total-steps", "100")
    ckpt = tmp_path / "predator_prey__iac__seeds-1-2" / "checkpoint.pt"
    rets = iac.main(["--eval-only", "--checkpoint", str(ckpt), "--eval-episodes", "2"])
    assert len(rets) == 2
    out = capsys.readouterr().out
    assert "predator_prey__iac__1 step 100" in out and "predator_prey__iac__2 step 100" in out


@pytest.mark.parametrize("seeds, message", [("1,1", "repeats"), ("1,x", "whole numbers"), ("-1,2", "must be in"),
                                            ("", "whole numbers")])
def test_bad_seeds(seeds, message, capsys):
    with pytest.raises(SystemExit) as e:
        iac.parse_args([f"--seeds={seeds}"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_seed_and_seeds_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        iac.parse_args(["--seed", "3", "--seeds", "1,2"])
    assert "exclude each other" in capsys.readouterr().err


def test_population_replay_gives_each_member_its_own_transitions_and_indices():
    """Member k's buffer holds the transitions of its own env copies (k B .. (k + 1) B - 1, as split()
    cuts them), and the members draw different minibatch indices."""
    K, B = 3, 4
    rb = iac.ReplayBuffer(50, 1, 1, 1, 1, torch.device("cpu"), seed=0, members=K)
    for t in range(10):
        rew = torch.arange(K * B, dtype=torch.float32) + 100 * t  # copy c at step t: 100 t + c
        flat = dict(obs=rew.view(-1, 1, 1), state=rew.view(-1, 1), act=rew.view(-1, 1, 1), rew=rew,
                    next_obs=rew.view(-1, 1, 1), next_state=rew.view(-1, 1), term=torch.zeros(K * B))
        rb.add(**{k: v.view(K, B, *v.shape[1:]) for k, v in flat.items()})
    batch = rb.sample(64)
    assert batch["rew"].shape == (K, 64) and batch["obs"].shape == (K, 64, 1, 1)
    copy = batch["rew"] % 100
    for k in range(K):
        assert ((copy[k] >= k * B) & (copy[k] < (k + 1) * B)).all()
        assert torch.equal(batch["obs"][k].flatten(), batch["rew"][k])  # one transition's fields together
    step = batch["rew"] // 100 * B + copy % B  # the slot each member sampled
    assert not torch.equal(step[0], step[1]) and not torch.equal(step[1], step[2])
