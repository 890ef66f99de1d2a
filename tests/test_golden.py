"""Golden runs (tests/golden.py): training is bit for bit what it was when tests/data/golden was written,
straight through and across a resume, and the committed checkpoints written by that code still load,
evaluate and resume to the same curve."""

import json
import os
import shutil

import pytest
import torch

import golden
import iac
import baselines
import runlib

META_PATH = os.path.join(golden.DATA, "meta.json")
with open(META_PATH) as f:
    META = json.load(f)
SAME_MACHINE = {k: META[k] for k in ("torch", "machine", "cpu_capability")} == golden.environment()
pytestmark = pytest.mark.skipif(not SAME_MACHINE, reason=f"golden data were written with {META['torch']} on "
                                f"{META['machine']} ({META['cpu_capability']}); this is {golden.environment()}: "
                                "other kernels, other last bits")


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def assert_golden(case, runs_dir):
    ck_dir = golden.checkpoint_dir(case, runs_dir)
    ckpt = runlib.load_checkpoint(os.path.join(ck_dir, "checkpoint.pt"))
    assert ckpt["step"] == golden.STEPS and ckpt["n_updates"] == golden.STEPS - 32 + 1
    for k, d in enumerate(golden.member_dirs(case, runs_dir)):
        got = golden.read(os.path.join(d, "eval.csv"))
        assert got == golden.read(os.path.join(golden.DATA, f"{case}__{k}.csv")), f"{case} member {k}: eval.csv"
    assert golden.weights_digest(ckpt) == META["digests"][case], f"{case}: final weights"


@pytest.mark.parametrize("case", list(golden.CASES))
def test_golden_run_straight_and_resumed_is_bit_for_bit_the_committed_one(case, tmp_path):
    golden.train(case, str(tmp_path / "straight"), save=True)
    assert_golden(case, str(tmp_path / "straight"))
    half = golden.train(case, str(tmp_path / "resumed"), steps=golden.HALF, save=True)
    golden.resume(case, os.path.join(half, "checkpoint.pt"), str(tmp_path / "resumed"))
    assert_golden(case, str(tmp_path / "resumed"))


@pytest.mark.parametrize("case", golden.KEEP_CHECKPOINT)
def test_a_checkpoint_of_the_golden_commit_evaluates_and_resumes_to_the_golden_curve(case, tmp_path, capsys):
    """tests/data/golden/<case>.pt was written at step 250 by the commit in meta.json (before iac.py's
    plumbing moved out): it must load, evaluate, and resume to the committed curve and weights."""
    src = os.path.join(golden.DATA, f"{case}.pt")
    ck_dir = golden.checkpoint_dir(case, str(tmp_path))
    os.makedirs(ck_dir)
    ckpt_path = os.path.join(ck_dir, "checkpoint.pt")
    shutil.copy(src, ckpt_path)
    ck = runlib.load_checkpoint(ckpt_path)
    assert ck["step"] == golden.HALF
    algo = golden.CASES[case][0]
    argv = ["--eval-only", "--checkpoint", ckpt_path, "--eval-episodes", "2"]
    rets = iac.main(argv) if algo is None else baselines.main(["--algo", algo, *argv])
    assert all(torch.isfinite(torch.tensor(r)) for r in (rets if isinstance(rets, list) else [rets]))
    # the members' folders hold the first half of the curve, as they would after a real interruption
    for k, d in enumerate(golden.member_dirs(case, str(tmp_path))):
        os.makedirs(d, exist_ok=True)
        lines = golden.read(os.path.join(golden.DATA, f"{case}__{k}.csv")).splitlines(keepends=True)
        runlib.write_text(os.path.join(d, "eval.csv"),
                          "".join(line for line in lines if not line[0].isdigit() or int(line.split(",")[0]) <= golden.HALF))
    golden.resume(case, ckpt_path, str(tmp_path))
    assert_golden(case, str(tmp_path))
