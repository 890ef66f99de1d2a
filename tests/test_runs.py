"""Runs as a user meets them: seeds and random streams, exact resume in every setting that has state,
checkpoints (size, safe loading, a SIGKILL mid-write), crossing devices, the non-finite guard, and no
host sync on the training path."""

import os
import pickle
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import baselines
import iac
import runlib

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--batch-size", "16", "--hidden", "16", "--heads", "2", "--mixer-embed", "8", "--eval-every", "100",
        "--eval-episodes", "2", "--buffer-size", "1000", "--no-progress", "--target-update-interval", "20"]


def run(argv, algo=None):
    """Train through the real command-line entry points, in process."""
    if algo is None:
        return iac.main(argv)
    return baselines.main(["--algo", algo, *argv])


def ckpt_of(run_dir):
    return runlib.load_checkpoint(os.path.join(run_dir, "checkpoint.pt"))


def assert_same(a, b, path="checkpoint"):
    """Two checkpoints hold the same state, tensor for tensor (bit for bit)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for k in a:
            assert_same(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


# ---------------------------------------------------------------- seeds and random streams
def _record_minibatches(monkeypatch):
    """Record the replay indices every minibatch draws (without disturbing the draws)."""
    drawn = []
    real = iac.ReplayBuffer.sample

    def spy(self, batch_size):
        state = self.gen.get_state()
        drawn.append(torch.randint(len(self), (batch_size,), generator=self.gen, device=self.gen.device))
        self.gen.set_state(state)
        return real(self, batch_size)

    monkeypatch.setattr(iac.ReplayBuffer, "sample", spy)
    return drawn


def test_two_seeds_draw_different_minibatches_and_one_seed_the_same(tmp_path, monkeypatch):
    drawn = _record_minibatches(monkeypatch)
    runs = {}
    for key, seed in (("a", 1), ("b", 1), ("c", 2)):
        drawn.clear()
        run(["--env", "simple_world", "--seed", str(seed), "--total-steps", "60", "--runs-dir",
             str(tmp_path / key), *TINY])
        runs[key] = torch.stack(drawn)
    assert runs["a"].shape[0] == 60 - 16 + 1  # one update per step once D holds a minibatch (Algorithm 1 line 9)
    assert torch.equal(runs["a"], runs["b"])
    # the replay sampler is seeded from --seed: the first minibatch (drawn from the same 16 slots) differs
    assert not torch.equal(runs["a"][0], runs["c"][0])
    assert (runs["a"] != runs["c"]).float().mean() > 0.5


def test_every_generator_a_run_creates_is_seeded_and_no_two_share_a_seed(tmp_path, monkeypatch):
    made = []
    real = torch.Generator

    def spy(*a, **k):
        g = real(*a, **k)
        made.append(g)
        return g

    monkeypatch.setattr(torch, "Generator", spy)
    unseeded = real().initial_seed()
    run(["--env", "predator_prey", "--seed", "7", "--total-steps", "40", "--runs-dir", str(tmp_path), *TINY])
    assert len(made) >= 3  # the training env, the evaluation env, the replay sampler
    seeds = [g.initial_seed() for g in made] + [torch.initial_seed()]
    assert unseeded not in seeds
    assert len(set(seeds)) == len(seeds)
    assert sorted(seeds) == sorted(set(runlib.seed_streams(7)[k] for k in ("env", "eval_env", "replay", "torch")))


def test_seed_streams_are_distinct_reproducible_and_in_range():
    for seed in (0, 1, 2, runlib.SEED_MAX):
        s = runlib.seed_streams(seed)
        assert s == runlib.seed_streams(seed) and len(set(s.values())) == len(s)
        assert all(0 <= v < 2**63 for v in s.values()) and s["numpy"] < 2**32
    assert runlib.seed_streams(1) != runlib.seed_streams(2)
    assert runlib.seed_streams(1, 500) != runlib.seed_streams(1)


# ---------------------------------------------------------------- exact resume, every setting with state
RESUME_CASES = {
    "iac": (None, []),
    "iac-fractional-utd": (None, ["--updates-per-step", "0.5"]),
    "iac-utd-1.5-num-envs-3": (None, ["--updates-per-step", "1.5", "--num-envs", "3"]),
    "iac-buffer-wraps": (None, ["--buffer-size", "70"]),
    "iac-warmup-polyak-current": (None, ["--learning-starts", "50", "--tau", "0.05", "--target-update-interval",
                                          "1", "--next-action", "current"]),
    "iac-preset-authors": (None, ["--preset", "authors"]),
    **{algo: (algo, []) for algo in baselines.PRESETS},
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_equals_the_uninterrupted_run(case, tmp_path):
    algo, flags = RESUME_CASES[case]
    common = ["--env", "predator_prey", "--save-model", "--checkpoint-every", "1000", *TINY, *flags]
    full = run([*common, "--total-steps", "150", "--runs-dir", str(tmp_path / "full")], algo)
    part = run([*common, "--total-steps", "90", "--runs-dir", str(tmp_path / "part")], algo)
    resumed = run(["--resume", os.path.join(part, "checkpoint.pt"), "--total-steps", "150", "--no-progress"],
                  algo if algo else None)
    assert resumed == part
    a, b = ckpt_of(full), ckpt_of(resumed)
    assert a["step"] == 150 and a["n_updates"] > 50
    a["args"], b["args"] = vars(a["args"]), vars(b["args"])
    a["args"].pop("runs_dir"), b["args"].pop("runs_dir")
    b["args"]["resume"] = None
    assert_same(a, b)
    assert open(os.path.join(full, "eval.csv")).read() == open(os.path.join(resumed, "eval.csv")).read()


def test_resume_keeps_the_runs_settings_and_refuses_changes(tmp_path, capsys):
    part = run(["--env", "simple_world", "--save-model", "--total-steps", "30", "--runs-dir", str(tmp_path), *TINY])
    ckpt = os.path.join(part, "checkpoint.pt")
    with pytest.raises(SystemExit):
        run(["--resume", ckpt, "--actor-lr", "0.5"])
    assert "--actor-lr cannot be changed" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a checkpoint of one method does not resume as another
        run(["--resume", ckpt], "ddpg_mix")
    assert "names no --algo" in capsys.readouterr().err
    sq = run(["--env", "simple_world", "--save-model", "--total-steps", "30", "--runs-dir", str(tmp_path), *TINY], "sq")
    with pytest.raises(SystemExit):
        run(["--resume", os.path.join(sq, "checkpoint.pt")], "ddpg_mix")
    assert "is a sq run, not --algo ddpg_mix" in capsys.readouterr().err


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_holds_only_the_stored_transitions(tmp_path):
    r = run(["--env", "predator_prey", "--save-model", "--total-steps", "1500", "--batch-size", "32",
             "--eval-every", "1500", "--eval-episodes", "2", "--no-progress", "--runs-dir", str(tmp_path)])
    path = os.path.join(r, "checkpoint.pt")
    assert os.path.getsize(path) < 5 * 2**20  # the default 500k-transition buffer is ~290 MB in full
    assert ckpt_of(r)["buffer"]["data"]["obs"].shape[0] == 1500


def test_a_crafted_pickle_is_refused_and_nothing_runs(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "checkpoint.pt"
    torch.save({"args": {}, "actor": Evil()}, bad)
    with pytest.raises(SystemExit, match="refusing to load"):
        run(["--resume", str(bad)])
    with pytest.raises(SystemExit, match="refusing to load"):
        run(["--eval-only", "--checkpoint", str(bad)])
    assert not marker.exists()
    bad.write_bytes(pickle.dumps({"args": 1}))  # plain pickle, not a torch file
    with pytest.raises(SystemExit, match="cannot read checkpoint"):
        run(["--resume", str(bad)])


def test_a_checkpoint_of_the_first_release_still_loads_resumes_and_evaluates(tmp_path, capsys):
    """tests/data/checkpoint_v1.pt: written by main at 738c758 (args as a Namespace, numpy arrays inside),
    `iac.py --env predator_prey --total-steps 300 --buffer-size 300 --batch-size 32 --hidden 16 --heads 2
    --mixer-embed 8 --learning-starts 100 --eval-every 150 --eval-episodes 2 --save-model --exp-name old`."""
    old = os.path.join(HERE, "tests", "data", "checkpoint_v1.pt")
    ck = runlib.load_checkpoint(old)
    assert ck["format"] == 1 and ck["step"] == 300
    ret = run(["--eval-only", "--checkpoint", old, "--eval-episodes", "2"])
    assert ret >= 0
    r = run(["--resume", old, "--total-steps", "450", "--runs-dir", str(tmp_path)])
    new = ckpt_of(r)
    assert new["format"] == runlib.FORMAT and new["step"] == 450 and new["n_updates"] == 351
    assert vars(new["args"])["next_action"] == "current"  # resumed as it ran: the release's u' convention
    assert vars(new["args"])["tau"] == 0.01


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable(tmp_path):
    """A writer process saves checkpoint 0, then starts checkpoint 1 and is SIGKILLed part-way through
    writing it (after its k-th write call, k = 1, 2, 5, 20): checkpoint 0 must still load, whole."""
    path = tmp_path / "checkpoint.pt"
    writer = textwrap.dedent(f"""
        import builtins, sys, time, torch
        sys.path.insert(0, {HERE!r})
        import runlib
        stop_after = int(sys.argv[1])

        class Stalling:  # a file whose k-th write of checkpoint 1 never returns
            def __init__(self, f):
                self.f, self.calls = f, 0
            def write(self, b):
                self.calls += 1
                n = self.f.write(b)
                if self.calls == stop_after:
                    self.f.flush()
                    print("mid-write", flush=True)
                    time.sleep(60)
                return n
            def __getattr__(self, name):
                return getattr(self.f, name)
            def __enter__(self):
                return self
            def __exit__(self, *a):
                self.f.close()

        runlib.save_checkpoint({str(path)!r}, args={{"env": "simple_world"}}, actor={{}}, step=0, big=torch.zeros(1_000_000))
        print("saved 0", flush=True)
        runlib.open = lambda *a, **k: Stalling(builtins.open(*a, **k))
        runlib.save_checkpoint({str(path)!r}, args={{"env": "simple_world"}}, actor={{}}, step=1, big=torch.ones(1_000_000))
        print("saved 1", flush=True)
    """)
    for stop_after in (1, 2, 5, 20):
        proc = subprocess.Popen([sys.executable, "-c", writer, str(stop_after)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "saved 0\n"
        assert proc.stdout.readline() == "mid-write\n", stop_after  # checkpoint 1 is half written
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ck = runlib.load_checkpoint(str(path))
        assert ck["step"] == 0 and torch.equal(ck["big"], torch.zeros(1_000_000)), stop_after


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the GPU checkpoint would resume")
def test_a_gpu_checkpoint_on_a_cpu_machine_says_how_to_resume_and_no_cuda_continues(tmp_path, capsys):
    r = run(["--env", "simple_world", "--save-model", "--total-steps", "40", "--runs-dir", str(tmp_path), *TINY])
    path = os.path.join(r, "checkpoint.pt")
    ck = torch.load(path, weights_only=True)
    ck["args"]["cuda"] = True  # as if written on a GPU
    ck["rng"]["torch_cuda"] = torch.zeros(16, dtype=torch.uint8)
    runlib.save_checkpoint(path, **{k: v for k, v in ck.items() if k != "format"})
    with pytest.raises(SystemExit, match="--no-cuda"):
        run(["--resume", path])
    run(["--resume", path, "--no-cuda", "--total-steps", "80"])
    assert "random streams restart" in capsys.readouterr().err
    after = ckpt_of(r)
    assert after["step"] == 80 and vars(after["args"])["cuda"] is False


# ---------------------------------------------------------------- the non-finite guard
@pytest.mark.parametrize("algo", [None, *baselines.PRESETS])
def test_extreme_learning_rates_stop_with_the_step_the_quantity_and_a_finite_checkpoint(algo, tmp_path):
    with pytest.raises(SystemExit) as e:
        run(["--env", "predator_prey", "--total-steps", "400", "--actor-lr", "1e30", "--critic-lr", "1e30",
             "--runs-dir", str(tmp_path), *TINY], algo)
    msg = str(e.value.code)
    assert "non-finite" in msg and "at env step" in msg and "_loss" in msg and "last finite state" in msg
    run_dir = next(p for p in tmp_path.iterdir() if p.is_dir())
    ck = ckpt_of(str(run_dir))
    for k in ("actor", "critic", "actor_target", "critic_target"):
        for name, t in ck[k].items():
            assert torch.isfinite(t).all(), (k, name)


def test_a_population_stops_naming_the_member_that_went_non_finite(tmp_path, monkeypatch):
    """Seed 7's critic loss (the second member) turns NaN at update 50: the message names seed 7 only,
    and the checkpoint holds every member's last finite weights."""
    real = iac.optimise
    calls = []

    def poisoned(nets, opt, params, loss, *a):
        if a[2] == "critic_loss":
            calls.append(1)
            if len(calls) >= 50:
                loss = loss * torch.tensor([1.0, float("nan")])
        return real(nets, opt, params, loss, *a)

    monkeypatch.setattr(iac, "optimise", poisoned)
    with pytest.raises(SystemExit) as e:
        run(["--env", "predator_prey", "--total-steps", "400", "--seeds", "3,7", "--runs-dir", str(tmp_path), *TINY])
    msg = str(e.value.code)
    assert "non-finite critic_loss" in msg and "member(s) with seed 7 of the population (seeds 3,7" in msg
    ck = ckpt_of(str(tmp_path / "predator_prey__iac__seeds-3-7"))
    assert all(torch.isfinite(t).all() for t in ck["critic"].values())


def test_guard_reports_which_members_are_non_finite():
    guard = runlib.Guard(["loss"], torch.device("cpu"))
    guard.check("loss", 1, torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 1.0]), per_member=True)
    with pytest.raises(runlib.NonFinite) as e:
        guard.check("loss", 2, torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([1.0, 1.0, float("inf")]),
                    per_member=True)
    assert e.value.members == [1, 2] and e.value.n_update == 2


def test_on_a_gpu_the_guard_is_read_at_logging_time_and_keeps_the_checkpoint_before(tmp_path, monkeypatch):
    """The deferred guard (what a GPU run uses), exercised on the CPU: a NaN injected at update 130 stops
    the run at the next logging point (update 200), naming update 130; the checkpoint on disk is the one
    written at step 100, before the failure."""
    real_init = runlib.Guard.__init__
    monkeypatch.setattr(runlib.Guard, "__init__", lambda self, names, device, eager=None: real_init(
        self, names, device, eager=False))
    real = iac.critic_loss
    calls = []

    def poisoned(*a):
        calls.append(1)
        return real(*a) * (float("nan") if len(calls) >= 130 else 1.0)

    monkeypatch.setattr(iac, "critic_loss", poisoned)
    with pytest.raises(SystemExit) as e:
        run(["--env", "simple_world", "--total-steps", "400", "--save-model", "--checkpoint-every", "100",
             "--runs-dir", str(tmp_path), *TINY, "--batch-size", "1"])
    assert "non-finite critic_loss at gradient update 130" in str(e.value.code)
    ck = ckpt_of(str(next(p for p in tmp_path.iterdir() if p.is_dir())))
    assert ck["step"] == 100 and all(torch.isfinite(t).all() for t in ck["critic"].values())


# ---------------------------------------------------------------- no host sync on the training path
# the functions that may read the device: evaluation, logging, checkpoints, resume
LOGGING_POINTS = {"evaluation", "evaluate", "_train_return", "losses", "save", "raise_if_bad", "resumed_args",
                  "load_state_dict", "_restore"}
PROJECT = tuple(os.path.join(HERE, f) for f in ("iac.py", "baselines.py", "envs.py", "runlib.py", "population.py"))


def _forbid_syncs(monkeypatch):
    """Make every Python-level read of a tensor's value raise outside the logging points. (Adam keeps
    its step count on the CPU even on a GPU, so torch.optim's own reads are no device sync.)"""
    hits = []

    def allowed():
        f, depth, ours = sys._getframe(2), 0, False
        while f is not None:
            name = f.f_code.co_filename
            if depth < 3 and "torch/optim" in name:
                return True
            if name in PROJECT:
                ours = True
                if f.f_code.co_name in LOGGING_POINTS:
                    return True
            f, depth = f.f_back, depth + 1
        return not ours

    def wrap(owner, name):
        orig = getattr(owner, name)

        def guarded(*a, **k):
            if not allowed():
                f = sys._getframe(1)
                while f.f_code.co_filename not in PROJECT:
                    f = f.f_back
                hits.append(f"{name} in {os.path.basename(f.f_code.co_filename)}:{f.f_lineno} {f.f_code.co_name}")
                raise AssertionError(hits[-1])
            return orig(*a, **k)

        monkeypatch.setattr(owner, name, guarded)

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "nonzero"):
        wrap(torch.Tensor, name)
    wrap(torch, "nonzero")
    wrap(torch.linalg, "cholesky")
    real_getitem = torch.Tensor.__getitem__

    def getitem(self, idx):
        idxs = idx if isinstance(idx, tuple) else (idx,)
        if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in idxs) and not allowed():
            hits.append("boolean-mask index")
            raise AssertionError(hits[-1])
        return real_getitem(self, idx)

    monkeypatch.setattr(torch.Tensor, "__getitem__", getitem)
    real_init = runlib.Guard.__init__
    monkeypatch.setattr(runlib.Guard, "__init__", lambda self, names, device, eager=None: real_init(
        self, names, device, eager=False))  # the GPU's guard, which must not sync either
    return hits


@pytest.mark.parametrize("algo, flags", [(None, []), (None, ["--preset", "authors", "--num-envs", "2"]),
                                         ("maac", []), ("ddpg_mix", ["--learning-starts", "20"]),
                                         (None, ["--seeds", "1,2"]), ("maac", ["--seeds", "1,2"])])
def test_no_host_sync_per_update_or_env_step(algo, flags, tmp_path, monkeypatch):
    hits = _forbid_syncs(monkeypatch)
    run(["--env", "predator_prey", "--total-steps", "320", "--save-model", "--checkpoint-every", "150",
         "--runs-dir", str(tmp_path), *TINY, "--eval-every", "150", *flags], algo)
    assert hits == []


# ---------------------------------------------------------------- the GPU path (skipped without a GPU)
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@needs_gpu
def test_cuda_main_command_runs_5k_steps(tmp_path):
    r = run(["--env", "po_predator_prey", "--cuda", "--total-steps", "5000", "--runs-dir", str(tmp_path),
             "--no-progress", "--save-model"])
    ck = ckpt_of(r)
    assert ck["step"] == 5000 and "torch_cuda" in ck["rng"] and ck["buffer"]["gen"].numel() == 16


@needs_gpu
@pytest.mark.parametrize("case", ["iac", "iac-fractional-utd", "maac", "iac-preset-authors"])
def test_cuda_resume_equals_the_uninterrupted_run(case, tmp_path):
    algo, flags = RESUME_CASES[case]
    common = ["--env", "predator_prey", "--cuda", "--save-model", "--checkpoint-every", "1000", *TINY, *flags]
    full = run([*common, "--total-steps", "150", "--runs-dir", str(tmp_path / "full")], algo)
    part = run([*common, "--total-steps", "90", "--runs-dir", str(tmp_path / "part")], algo)
    resumed = run(["--resume", os.path.join(part, "checkpoint.pt"), "--total-steps", "150"], algo)
    a, b = ckpt_of(full), ckpt_of(resumed)
    assert vars(b["args"])["cuda"] is True  # resumed on the checkpoint's device without --cuda
    for k in ("actor", "critic"):
        assert_same(a[k], b[k], k)
    assert open(os.path.join(full, "eval.csv")).read() == open(os.path.join(resumed, "eval.csv")).read()


@needs_gpu
def test_cuda_no_host_sync_per_update_or_env_step(tmp_path, monkeypatch):
    hits = _forbid_syncs(monkeypatch)
    run(["--env", "predator_prey", "--cuda", "--total-steps", "320", "--save-model", "--checkpoint-every", "150",
         "--runs-dir", str(tmp_path), *TINY, "--eval-every", "150"])
    assert hits == []


@needs_gpu
def test_cuda_population_resumes_exactly_without_host_syncs(tmp_path, monkeypatch):
    common = ["--env", "predator_prey", "--cuda", "--seeds", "1,2", "--save-model", "--checkpoint-every", "1000", *TINY]
    full = run([*common, "--total-steps", "150", "--runs-dir", str(tmp_path / "full")])
    run([*common, "--total-steps", "90", "--runs-dir", str(tmp_path / "part")])
    hits = _forbid_syncs(monkeypatch)
    resumed = run(["--resume", str(tmp_path / "part" / "predator_prey__iac__seeds-1-2" / "checkpoint.pt"),
                   "--total-steps", "150"])
    assert hits == []
    for a, b in zip(full, resumed):
        assert open(os.path.join(a, "eval.csv")).read() == open(os.path.join(b, "eval.csv")).read()


@needs_gpu
def test_cpu_checkpoint_resumes_on_the_gpu_with_a_warning(tmp_path, capsys):
    r = run(["--env", "simple_world", "--save-model", "--total-steps", "40", "--runs-dir", str(tmp_path), *TINY])
    run(["--resume", os.path.join(r, "checkpoint.pt"), "--cuda", "--total-steps", "80"])
    assert "random streams restart" in capsys.readouterr().err
    assert ckpt_of(r)["step"] == 80 and vars(ckpt_of(r)["args"])["cuda"] is True


def test_ctrl_c_saves_a_checkpoint_that_resumes_exactly(tmp_path, monkeypatch):
    common = ["--env", "predator_prey", "--save-model", *TINY]
    full = run([*common, "--total-steps", "120", "--runs-dir", str(tmp_path / "full")])
    calls = []
    real_due = runlib.Progress.due

    def interrupt_at_step_70(self, force=False):  # called once per env step
        calls.append(1)
        if len(calls) == 70:
            raise KeyboardInterrupt
        return real_due(self, force)

    monkeypatch.setattr(runlib.Progress, "due", interrupt_at_step_70)
    with pytest.raises(SystemExit) as e:
        run([*common, "--total-steps", "120", "--runs-dir", str(tmp_path / "cut")])
    assert e.value.code == 130
    monkeypatch.setattr(runlib.Progress, "due", real_due)
    cut = os.path.join(str(tmp_path / "cut"), "predator_prey__iac__1")
    assert ckpt_of(cut)["step"] == 70
    run(["--resume", os.path.join(cut, "checkpoint.pt")])
    a, b = ckpt_of(full), ckpt_of(cut)
    for k in ("actor", "critic", "actor_target", "critic_target", "opt_actor", "opt_critic", "buffer", "rng"):
        assert_same(a[k], b[k], k)


@pytest.fixture
def live_signals():
    """SIGINT and SIGTERM with Python's default handlers for the test. A test process started in the
    background without job control (`pytest &` in a script) inherits an ignored SIGINT, which the
    training loop leaves ignored (nohup's convention; tested below), so the tests that send it need it live."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _signal_inside_update(monkeypatch, at, signals):
    """Send the signals to this process from inside gradient update `at`, before its optimiser steps:
    where a real Ctrl-C or a scheduler's SIGTERM most often lands."""
    real, calls = iac.update, []

    def update(*a, **k):
        calls.append(1)
        if len(calls) == at:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return real(*a, **k)

    monkeypatch.setattr(iac, "update", update)


@pytest.mark.usefixtures("live_signals")
@pytest.mark.parametrize("sig,code,seeds", [(signal.SIGINT, 130, None), (signal.SIGTERM, 143, None),
                                           (signal.SIGINT, 130, "1,2")], ids=["sigint", "sigterm", "sigint-population"])
def test_a_signal_mid_update_finishes_the_step_and_resumes_exactly(sig, code, seeds, tmp_path, monkeypatch):
    """The step in progress completes before the checkpoint is written, so the resumed run equals the
    uninterrupted one (a checkpoint taken mid-update loses or half-applies that update)."""
    common = ["--env", "predator_prey", "--save-model", "--checkpoint-every", "1000", "--total-steps", "120", *TINY,
              *(["--seeds", seeds] if seeds else [])]
    run([*common, "--runs-dir", str(tmp_path / "full")])
    _signal_inside_update(monkeypatch, 40, [sig])
    with pytest.raises(SystemExit) as e:
        run([*common, "--runs-dir", str(tmp_path / "cut")])
    assert e.value.code == code
    monkeypatch.undo()
    assert signal.getsignal(sig) in (signal.default_int_handler, signal.SIG_DFL)  # the handlers are given back
    name = "predator_prey__iac__seeds-1-2" if seeds else "predator_prey__iac__1"
    cut = ckpt_of(str(tmp_path / "cut" / name))
    assert 0 < cut["step"] < 120 and cut["n_updates"] == 40
    assert cut["opt_critic"]["state"][0]["step"].item() == 40  # the 40th update was applied, whole
    run(["--resume", str(tmp_path / "cut" / name / "checkpoint.pt")])
    full_dir = str(tmp_path / "full" / name)
    a, b = ckpt_of(full_dir), ckpt_of(str(tmp_path / "cut" / name))
    for k in ("actor", "critic", "actor_target", "critic_target", "opt_actor", "opt_critic", "buffer", "rng",
              "evals", "step", "n_updates"):
        assert_same(a[k], b[k], k)


@pytest.mark.usefixtures("live_signals")
def test_a_second_signal_stops_at_once_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    common = ["--env", "predator_prey", "--save-model", "--checkpoint-every", "50", "--total-steps", "120", *TINY,
              "--runs-dir", str(tmp_path)]
    _signal_inside_update(monkeypatch, 80, [signal.SIGINT, signal.SIGINT])
    with pytest.raises(SystemExit) as e:
        run(common)
    assert e.value.code == 130 and "second SIGINT, mid-step, so nothing was saved" in capsys.readouterr().err
    monkeypatch.undo()
    ckpt = ckpt_of(str(tmp_path / "predator_prey__iac__1"))
    assert ckpt["step"] == 50 and ckpt["n_updates"] < 80  # the periodic checkpoint, not the mid-step state


def test_baselines_eval_only_evaluates_the_checkpoint(tmp_path, capsys):
    r = run(["--env", "simple_world", "--save-model", "--total-steps", "40", "--runs-dir", str(tmp_path), *TINY,
             "--eval-every", "20"], "sq")
    ret = run(["--eval-only", "--checkpoint", os.path.join(r, "checkpoint.pt"), "--eval-episodes", "3"], "sq")
    last = float(open(os.path.join(r, "eval.csv")).read().split()[-1].split(",")[1])
    assert ret == pytest.approx(last, rel=1e-5)  # one-step env, deterministic policy: the same return


def test_a_moved_run_resumes_in_its_new_folder(tmp_path):
    r = run(["--env", "simple_world", "--save-model", "--total-steps", "40", "--runs-dir", str(tmp_path / "a"), *TINY])
    moved = tmp_path / "b" / os.path.basename(r)
    os.makedirs(moved.parent)
    os.rename(r, moved)
    assert run(["--resume", str(moved / "checkpoint.pt"), "--total-steps", "60"]) == str(moved)
    assert ckpt_of(str(moved))["step"] == 60 and not os.path.exists(r)


def test_a_checkpoint_that_cannot_be_written_stops_with_a_message(tmp_path, monkeypatch):
    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(SystemExit, match="cannot write checkpoint .*No space left"):
        run(["--env", "simple_world", "--save-model", "--total-steps", "20", "--runs-dir", str(tmp_path), *TINY])
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_a_full_disk_while_writing_eval_csv_stops_with_a_message(tmp_path, monkeypatch):
    real = runlib.csv.writer

    def writer(f):
        if f.name.endswith("eval.csv.tmp"):
            raise OSError(28, "No space left on device")
        return real(f)

    monkeypatch.setattr(runlib.csv, "writer", writer)
    with pytest.raises(SystemExit, match="cannot write .*eval.csv: .*No space left"):
        run(["--env", "simple_world", "--total-steps", "20", "--runs-dir", str(tmp_path), *TINY])
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_a_fresh_run_in_an_earlier_runs_folder_sets_the_earlier_files_aside(tmp_path, capsys):
    common = ["--env", "simple_world", "--save-model", "--runs-dir", str(tmp_path), *TINY]
    first = run([*common, "--total-steps", "200"])
    before = {f: open(os.path.join(first, f), "rb").read() for f in os.listdir(first)}
    assert {"eval.csv", "checkpoint.pt"} <= set(before) and any(f.startswith("events.out") for f in before)
    capsys.readouterr()
    again = run([*common, "--total-steps", "100"])  # the same name, no --resume: a new run
    assert again == first
    err = capsys.readouterr().err
    assert "held an earlier run" in err and "--resume" in err
    aside = [f for f in os.listdir(first) if f.startswith("earlier-")]
    assert len(aside) == 1
    kept = os.path.join(first, aside[0])
    assert {f: open(os.path.join(kept, f), "rb").read() for f in os.listdir(kept)} == before  # nothing lost
    steps = [line.split(",")[0] for line in open(os.path.join(first, "eval.csv")).read().split()[1:]]
    assert steps == ["0", "100"]  # the new run's curve only
    assert len([f for f in os.listdir(first) if f.startswith("events.out")]) == 1  # TensorBoard sees one run
    assert ckpt_of(first)["step"] == 100
    run(["--resume", os.path.join(first, "checkpoint.pt"), "--total-steps", "150"])  # a resume moves nothing
    assert len([f for f in os.listdir(first) if f.startswith("earlier-")]) == 1


def test_resuming_a_set_aside_checkpoint_never_overwrites_the_newer_run(tmp_path, capsys):
    common = ["--env", "simple_world", "--save-model", "--runs-dir", str(tmp_path), *TINY]
    first = run([*common, "--total-steps", "200"])
    run([*common, "--total-steps", "100"])  # a fresh run: the first one moves to earlier-<time>/
    aside = os.path.join(first, next(f for f in os.listdir(first) if f.startswith("earlier-")))
    newer = {f: open(os.path.join(first, f), "rb").read() for f in os.listdir(first) if runlib.is_run_file(f)}
    with pytest.raises(SystemExit, match="holds the files of another run.*--runs-dir"):
        run(["--resume", os.path.join(aside, "checkpoint.pt"), "--total-steps", "300"])
    assert {f: open(os.path.join(first, f), "rb").read() for f in newer} == newer
    elsewhere = run(["--resume", os.path.join(aside, "checkpoint.pt"), "--total-steps", "300",
                     "--runs-dir", str(tmp_path / "continued")])
    assert ckpt_of(elsewhere)["step"] == 300 and ckpt_of(first)["step"] == 100


def test_a_population_resume_never_overwrites_single_runs_in_its_member_folders(tmp_path):
    common = ["--env", "simple_world", "--save-model", "--runs-dir", str(tmp_path), *TINY]
    run([*common, "--seeds", "1,2", "--total-steps", "100"])
    run([*common, "--seed", "2", "--total-steps", "100"])  # a single run of seed 2 now owns member 2's folder
    single = ckpt_of(str(tmp_path / "simple_world__iac__2"))
    with pytest.raises(SystemExit, match="simple_world__iac__2, which holds the files of another run"):
        run(["--resume", str(tmp_path / "simple_world__iac__seeds-1-2" / "checkpoint.pt"), "--total-steps", "150"])
    assert_same(ckpt_of(str(tmp_path / "simple_world__iac__2")), single)


def test_a_copied_checkpoint_of_the_same_run_resumes_in_its_folder(tmp_path):
    import shutil

    r = run(["--env", "simple_world", "--save-model", "--runs-dir", str(tmp_path / "runs"), *TINY, "--total-steps", "100"])
    backup = tmp_path / "backup.pt"
    shutil.copyfile(os.path.join(r, "checkpoint.pt"), backup)
    assert run(["--resume", str(backup), "--total-steps", "150"]) == r  # its eval.csv is this checkpoint's curve
    assert ckpt_of(r)["step"] == 150


def test_an_ignored_sigint_stays_ignored_like_under_nohup(tmp_path, monkeypatch):
    """A run started with SIGINT ignored (nohup, `cmd &` in a script) is not stopped by one, and gives
    the ignored handler back when it ends."""
    saved = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _signal_inside_update(monkeypatch, 40, [signal.SIGINT])
        r = run(["--env", "predator_prey", "--save-model", "--total-steps", "120", *TINY, "--runs-dir", str(tmp_path)])
        assert ckpt_of(r)["step"] == 120 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, saved)
