"""Misuse a new user can stumble into, each found by trying it (a resume of an older copy of a checkpoint,
a budget that never updates, a hand-edited checkpoint, a damaged eval.csv for the analysis scripts): a
one-line error or an honest warning, never a traceback and never a silently wrong folder."""

import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import runlib
from test_runs import TINY, ckpt_of, run

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(HERE, "experiments"))
import c4_sigma  # noqa: E402
import final_table  # noqa: E402
import issue9_summary  # noqa: E402
import perm_test  # noqa: E402

SW = ["--env", "simple_world", *TINY]


def _exit_message(fn, *a):
    with pytest.raises(SystemExit) as e:
        fn(*a)
    assert e.value.code not in (0, None)
    return str(e.value.code)


# ---------------------------------------------------------------- resume
def test_resuming_an_older_copy_of_a_checkpoint_never_overwrites_the_newer_one(tmp_path):
    runs = str(tmp_path / "runs")
    run([*SW, "--total-steps", "200", "--save-model", "--runs-dir", runs])
    folder = os.path.join(runs, os.listdir(runs)[0])
    old = str(tmp_path / "elsewhere.pt")
    shutil.copyfile(os.path.join(folder, "checkpoint.pt"), old)
    run(["--resume", os.path.join(folder, "checkpoint.pt"), "--total-steps", "300"])
    assert ckpt_of(folder)["step"] == 300
    msg = _exit_message(run, ["--resume", old, "--total-steps", "250"])
    assert "newer checkpoint (step 300)" in msg and "--runs-dir" in msg
    assert ckpt_of(folder)["step"] == 300  # untouched
    # branching off in a new folder is the way, and it starts with the curve up to the old step
    run(["--resume", old, "--total-steps", "200", "--runs-dir", str(tmp_path / "branch")])
    branch = tmp_path / "branch" / os.path.basename(folder)
    rows = (branch / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("step,eval_return") and [r.split(",")[0] for r in rows[1:]] == ["0", "100", "200"]


def test_an_edited_checkpoint_is_refused_in_one_line(tmp_path):
    runs = str(tmp_path / "runs")
    run([*SW, "--total-steps", "100", "--save-model", "--runs-dir", runs])
    good = ckpt_of(os.path.join(runs, os.listdir(runs)[0]))
    for change, words in [(dict(format=99), "format 99"), (dict(step=-5), "step is -5"),
                          (dict(step="100"), "step is '100'")]:
        path = str(tmp_path / "edited.pt")
        torch.save({**good, "args": vars(good["args"]), **change}, path)
        assert words in _exit_message(runlib.load_checkpoint, path)
    args = dict(vars(good["args"]), hidden=32)  # settings that no longer build its networks
    path = str(tmp_path / "resized.pt")
    torch.save({**good, "args": args}, path)
    for argv in (["--resume", path, "--total-steps", "200", "--runs-dir", str(tmp_path / "r")],
                 ["--eval-only", "--checkpoint", path]):
        assert "do not fit the networks its own settings build" in _exit_message(run, argv)


def test_a_plain_pickle_given_as_checkpoint_says_so_without_torchs_warning(tmp_path):
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    r = subprocess.run([sys.executable, "iac.py", "--resume", str(path)], cwd=HERE, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "not a checkpoint written by iac.py" in r.stderr, r.stderr
    assert not any(w in r.stderr for w in ("weights_only", "torch.load", "UserWarning")), r.stderr


# ---------------------------------------------------------------- budgets and outputs
def test_a_budget_that_never_updates_or_never_evaluates_warns(tmp_path, capsys):
    run([*SW, "--total-steps", "100", "--learning-starts", "500", "--eval-every", "1000",
         "--runs-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert "no gradient update will happen" in err and "only the initial policy (step 0) is evaluated" in err
    run([*SW, "--total-steps", "100", "--runs-dir", str(tmp_path / "ok")])
    err = capsys.readouterr().err
    assert "no gradient update" not in err and "only the initial policy" not in err


@pytest.mark.parametrize("flags, idle", [
    (["--total-steps", "50", "--updates-per-step", "0.01"], True),     # owes half an update by the end
    (["--total-steps", "130", "--updates-per-step", "0.01"], False),    # steps 16..130 owe 1.15
    (["--total-steps", "25", "--updates-per-step", "0.1"], True),       # steps 16..25: ten tenths sum to 0.999...
    (["--total-steps", "26", "--updates-per-step", "0.1"], False),      # and the eleventh reaches 1
    (["--total-steps", "15", "--batch-size", "16"], True),
    (["--total-steps", "16", "--batch-size", "16"], False),
    (["--total-steps", "40", "--num-envs", "8", "--learning-starts", "33"], False),  # the loop's last step is 40
    (["--total-steps", "32", "--num-envs", "8", "--learning-starts", "33"], True),
])
def test_the_idle_budget_warning_counts_as_the_loop_does(flags, idle, monkeypatch, capsys, tmp_path):
    import iac

    args = iac.parse_args([*SW, "--runs-dir", str(tmp_path), *flags])
    runlib.warn_idle_budget(args)
    warned = "no gradient update will happen" in capsys.readouterr().err
    assert warned == idle
    calls = []  # and the loop agrees: count its updates in a real run
    real = iac.update
    monkeypatch.setattr(iac, "update", lambda *a, **k: calls.append(1) or real(*a, **k))
    iac.train(args)
    assert bool(calls) != idle


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc, a folder no one can write in")
@pytest.mark.parametrize("argv", [
    ["iac.py", "--env", "simple_world", "--total-steps", "0", "--runs-dir", "/proc/nope"],
    ["baselines.py", "--algo", "ddpg_mix", "--env", "simple_world", "--total-steps", "0", "--runs-dir", "/proc/nope"],
    ["baselines.py", "--algo", "qmix", "--out", "/proc/nope/x.md"],
    ["plots.py", "tests", "--out", "/proc/nope/x.png"],
])
def test_an_output_folder_that_cannot_be_made_is_one_line(argv):
    r = subprocess.run([sys.executable, *argv], cwd=HERE, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cannot create a folder" in r.stderr, r.stderr


def test_running_out_of_memory_is_one_line_and_nothing_else_is_taken_for_it():
    with pytest.raises(SystemExit) as e, runlib.one_line_errors():
        torch.zeros(10**17, dtype=torch.long)  # no machine has this: the allocator refuses at once
    assert "out of memory" in str(e.value.code)
    with pytest.raises(RuntimeError, match="shape"), runlib.one_line_errors():
        torch.zeros(2, 3) @ torch.zeros(2, 3)
    with pytest.raises(RuntimeError, match="can't allocate"), runlib.fits_its_settings("x.pt"):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")


def test_an_evaluation_too_large_for_memory_is_one_line():
    # 10^17 episodes: the env's first tensor (8e17 bytes) is refused before anything is touched, on any machine
    r = subprocess.run([sys.executable, "iac.py", "--eval-only", "--checkpoint",
                        os.path.join("tests", "data", "checkpoint_v1.pt"), "--eval-episodes", str(10**17)],
                       cwd=HERE, capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "out of memory" in r.stderr, r.stderr
    assert "--eval-episodes" in r.stderr


def test_an_empty_out_and_a_repeated_env_kwarg_are_refused(capsys):
    import baselines
    import iac

    assert "--out" in _exit_message(baselines.main, ["--algo", "qmix", "--out", ""]) + capsys.readouterr().err
    msg = _exit_message(iac.main, ["--env", "pz:mpe2.simple_spread_v3", "--env-kwargs", "N=2", "N=3"])
    assert "N twice" in msg + capsys.readouterr().err


# ---------------------------------------------------------------- the analysis scripts
@pytest.mark.parametrize("text, words", [
    ("foo,bar\n1,2\n", "no step and eval_return"),
    ("step,eval_return\nabc,xyz\n", "line 2"),
    ("step,eval_return\n0,1.0\n100\n", "line 3"),
    ("step,eval_return\n0,1.0\n100,nan\n", "the return is nan"),
])
def test_a_damaged_eval_csv_is_one_line_in_every_analysis_script(tmp_path, text, words):
    runs = []
    for seed in (1, 2, 3, 4):
        d = tmp_path / f"predator_prey__x__{seed}"
        d.mkdir()
        (d / "eval.csv").write_text(text)
        runs.append(str(d))
    assert words in _exit_message(final_table.main, [*runs, "--last", "1"])
    assert words in _exit_message(perm_test.main, [*runs[:2], "--vs", *runs[2:], "--last", "1"])
    assert words in _exit_message(final_table.window_mean, runs[0], 0, 100)


def _npy(array):  # one array in .npy form, as np.save writes it
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("write, words", [
    (lambda p: p.write_bytes(b""), "cannot read"),
    (lambda p: p.write_text("not numpy"), "cannot read"),
    (lambda p: np.savez(p, other=np.zeros(3)), "cannot read"),
    (lambda p: p.write_bytes(_npy(np.zeros((2, 4, 4)))), "not an .npz archive"),
    (lambda p: np.savez(p, step=np.arange(2), sigma=np.zeros((2, 3, 4))), "one square Sigma"),
])
def test_a_damaged_covariance_npz_is_one_line(tmp_path, write, words):
    d = tmp_path / "run"
    d.mkdir()
    write(d / "covariance.npz")
    assert words in _exit_message(c4_sigma.main, [str(d), "--agents", "2", "--out", str(tmp_path / "c4")])


def test_issue9_summary_writes_where_it_is_told_and_says_what_it_copied(tmp_path, capsys):
    runs, out = tmp_path / "runs", tmp_path / "out"
    runs.mkdir()
    assert "no complete" in _exit_message(issue9_summary.main, [str(runs), "--out", str(out)])
    d = runs / "predator_prey__iac-alg1__1"
    d.mkdir()
    (d / "eval.csv").write_text("step,eval_return\n" + "".join(f"{s},{s / 1000}\n" for s in range(0, 100_001, 1000)))
    issue9_summary.main([str(runs), "--out", str(out)])
    assert "1 complete" in capsys.readouterr().err
    assert (out / "data" / "predator_prey__iac-alg1__1" / "eval.csv").is_file()
    assert (out / "factors_100k.csv").read_text().splitlines()[1].startswith("iac-alg1,1,95.5")


def test_resuming_in_a_folder_that_cannot_be_written_is_one_line_before_anything_runs(tmp_path, monkeypatch):
    """A read-only mount (or an immutable folder) is found before "resumed", not by TensorBoard's thread or
    the first eval.csv write; root's permission bits say nothing, so the probe is a real write (faked here)."""
    import errno
    import tempfile

    runs = str(tmp_path / "runs")
    run([*SW, "--total-steps", "200", "--save-model", "--runs-dir", runs])
    folder = os.path.join(runs, os.listdir(runs)[0])
    before = sorted(os.listdir(folder)), (tmp_path / "runs" / os.path.basename(folder) / "eval.csv").read_text()
    real = tempfile.mkstemp

    def read_only(*a, dir=None, **k):
        if dir is not None and os.path.abspath(dir).startswith(runs):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(*a, dir=dir, **k)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    msg = _exit_message(run, ["--resume", os.path.join(folder, "checkpoint.pt"), "--total-steps", "300"])
    assert msg.startswith("error: cannot write into the run folder") and "Read-only" in msg and "--runs-dir" in msg
    assert (sorted(os.listdir(folder)), (tmp_path / "runs" / os.path.basename(folder) / "eval.csv").read_text()) == before
    monkeypatch.setattr(tempfile, "mkstemp", real)
    run(["--resume", os.path.join(folder, "checkpoint.pt"), "--total-steps", "300"])  # writable again: it resumes
    assert ckpt_of(folder)["step"] == 300


def test_a_population_members_folder_points_to_the_populations_checkpoint_and_baselines_eval_reads_its_algo(
        tmp_path, capsys):
    import baselines

    runs = str(tmp_path / "runs")
    baselines.main(["--algo", "ddpg_mix", *SW, "--seeds", "1,2", "--total-steps", "200", "--save-model",
                    "--runs-dir", runs])
    pop = os.path.join(runs, "simple_world__ddpg_mix__seeds-1-2", "checkpoint.pt")
    msg = _exit_message(baselines.main, ["--resume", os.path.join(runs, "simple_world__ddpg_mix__2", "checkpoint.pt")])
    assert "is a member of a population, whose checkpoint is " + pop in capsys.readouterr().err or pop in msg
    capsys.readouterr()
    baselines.main(["--eval-only", "--checkpoint", pop])  # no --algo: the checkpoint names it
    out = capsys.readouterr().out
    assert "simple_world__ddpg_mix__1 step 200" in out and "simple_world__ddpg_mix__2 step 200" in out
