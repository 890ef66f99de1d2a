"""Golden runs (tests/golden.py): a run stopped and resumed is bit for bit the straight one (on any
machine); where this machine kind has committed data, training is bit for bit what it was when they were
written, straight through and across a resume, and the committed checkpoints written by the old code still
load, evaluate and resume to the committed curve."""

import os
import shutil
import subprocess
import sys

import pytest
import torch

import golden
import iac
import baselines
import runlib

META = golden.load_meta()
ENV = golden.environment()
NAME = golden.fingerprint(ENV)
MACHINE = META["machines"].get(NAME)
KNOWN = "; ".join(f"{k}: {v['cpu']}, {v['torch']}, probe {v['probe']}" for k, v in META["machines"].items())
needs_data = pytest.mark.skipif(MACHINE is None, reason=(
    f"no golden data for this machine kind ({NAME}: {ENV['cpu']}, {ENV['torch']}, probe {ENV['probe']}); committed: "
    f"{KNOWN or 'none'}. Other kernels give other last bits; `python tests/golden.py` writes this kind's data"))


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each case trained once straight through and once stopped at step 250 and resumed, on demand (from
    inside a test, so on the one thread of `one_thread`)."""
    done = {}

    def get(case):
        if case not in done:
            root = str(tmp_path_factory.mktemp(case))
            golden.train(case, os.path.join(root, "straight"), save=True)
            half = golden.train(case, os.path.join(root, "resumed"), steps=golden.HALF, save=True)
            golden.resume(case, os.path.join(half, "checkpoint.pt"), os.path.join(root, "resumed"))
            done[case] = {how: os.path.join(root, how) for how in ("straight", "resumed")}
        return done[case]
    return get


def outcome(case, runs_dir):
    """(each member's eval.csv, the final weights' digests) of a finished golden run."""
    ckpt = runlib.load_checkpoint(os.path.join(golden.checkpoint_dir(case, runs_dir), "checkpoint.pt"))
    assert ckpt["step"] == golden.STEPS and ckpt["n_updates"] == golden.STEPS - 32 + 1
    return ([golden.read(os.path.join(d, "eval.csv")) for d in golden.member_dirs(case, runs_dir)],
            golden.weights_digest(ckpt))


def committed(case, suffix=""):
    csvs = [golden.read(os.path.join(golden.DATA, NAME, f"{case}__{k}{suffix}.csv"))
            for k in range(len(golden.CASES[case][1]))]
    return csvs, MACHINE["from_checkpoint_digests" if suffix else "digests"][case]


@pytest.mark.parametrize("case", list(golden.CASES))
def test_golden_run_resumed_at_step_250_is_bit_for_bit_the_straight_one(case, runs):
    straight, resumed = outcome(case, runs(case)["straight"]), outcome(case, runs(case)["resumed"])
    assert resumed[0] == straight[0], f"{case}: eval.csv"
    assert resumed[1] == straight[1], f"{case}: final weights"


@needs_data
@pytest.mark.parametrize("case", list(golden.CASES))
def test_golden_run_straight_and_resumed_is_bit_for_bit_the_committed_one(case, runs):
    want_csvs, want_digest = committed(case)
    for how in ("straight", "resumed"):
        csvs, digest = outcome(case, runs(case)[how])
        for k, (got, want) in enumerate(zip(csvs, want_csvs)):
            assert got == want, f"{case} ({how}) member {k}: eval.csv"
        assert digest == want_digest, f"{case} ({how}): final weights"


@needs_data
@pytest.mark.parametrize("case", golden.KEEP_CHECKPOINT)
def test_a_checkpoint_of_the_golden_commit_evaluates_and_resumes_to_the_golden_curve(case, tmp_path):
    """tests/data/golden/<case>.pt was written at step 250 by commit 6ff7b51 (before iac.py's plumbing
    moved out): it must load, evaluate, and resume to this machine kind's committed curve and weights."""
    ck_dir = golden.checkpoint_dir(case, str(tmp_path))
    os.makedirs(ck_dir)
    ckpt_path = os.path.join(ck_dir, "checkpoint.pt")
    shutil.copy(os.path.join(golden.DATA, f"{case}.pt"), ckpt_path)
    assert runlib.load_checkpoint(ckpt_path)["step"] == golden.HALF
    algo = golden.CASES[case][0]
    argv = ["--eval-only", "--checkpoint", ckpt_path, "--eval-episodes", "2"]
    rets = iac.main(argv) if algo is None else baselines.main(["--algo", algo, *argv])
    assert all(torch.isfinite(torch.tensor(r)) for r in (rets if isinstance(rets, list) else [rets]))
    want_csvs, want_digest = committed(case, ".from_checkpoint")
    # the members' folders hold the first half of the curve, as they would after a real interruption
    for d, want in zip(golden.member_dirs(case, str(tmp_path)), want_csvs):
        os.makedirs(d, exist_ok=True)
        runlib.write_text(os.path.join(d, "eval.csv"), "".join(
            line for line in want.splitlines(keepends=True) if not line[0].isdigit() or int(line.split(",")[0]) <= golden.HALF))
    golden.resume(case, ckpt_path, str(tmp_path))
    csvs, digest = outcome(case, str(tmp_path))
    for k, (got, want) in enumerate(zip(csvs, want_csvs)):
        assert got == want, f"{case} member {k}: eval.csv"
    assert digest == want_digest, f"{case}: final weights"


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch without MKL: MKL_CBWR means nothing")
def test_the_machine_fingerprint_sees_another_kernel_choice():
    """MKL_CBWR=COMPATIBLE makes MKL take its generic kernels: the probe, and so the folder name, must change
    (else a machine kind whose kernels differ could be checked against another kind's bits)."""
    code = "import golden; print(golden.numerics_probe())"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(golden.__file__)))
    probes = [subprocess.run([sys.executable, "-c", code], env=dict(env, **extra), capture_output=True, text=True,
                             check=True).stdout.strip() for extra in ({}, {"MKL_CBWR": "COMPATIBLE"})]
    assert probes[0] == ENV["probe"] and probes[1] != probes[0]
