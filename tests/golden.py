"""Golden runs: short fixed-seed trainings whose curves and final weights are committed, so that a change
that should keep the numbers (moving code, renaming modules) is checked bit for bit.

    python tests/golden.py            # rewrite tests/data/golden/ from the code as it is now

Each case trains 500 env steps of predator-prey with one update per step from step 32, so 469 gradient
updates: the hard target copy (T = 200) happens twice. tests/test_golden.py trains each case twice, once
straight through and once stopped at step 250 and resumed, and compares both with the committed
eval.csv files and weight digests. The checkpoints at step 250 of the cases in KEEP_CHECKPOINT are
committed too (tests/data/golden/<case>.pt): written by the code of the commit named in meta.json, they
must still resume to the same curve after any later change.

Bit-for-bit equality holds on one machine and torch version; meta.json records both, and the test skips
with that reason elsewhere (another CPU instruction set picks other kernels).
"""

import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(HERE, "tests", "data", "golden")
sys.path.insert(0, HERE)

import baselines  # noqa: E402
import iac  # noqa: E402
import runlib  # noqa: E402

COMMON = ["--env", "predator_prey", "--batch-size", "32", "--hidden", "32", "--heads", "2", "--mixer-embed", "16",
          "--eval-every", "100", "--eval-episodes", "2", "--buffer-size", "1000", "--no-progress"]
STEPS, HALF = 500, 250
CASES = {  # name -> (algo or None for iac.py, seeds, extra flags)
    "iac": (None, [3], ["--preset", "paper"]),  # Algorithm 1 as written (the defaults until 2026-12-06)
    "iac-preset-authors": (None, [3], ["--preset", "authors", "--predator-action", "mpe5"]),
    "iac-population": (None, [1, 2], ["--preset", "paper"]),
    "ddpg_mix": ("ddpg_mix", [3], []),
    "maac-population": ("maac", [1, 2], []),
}
KEEP_CHECKPOINT = ("iac", "iac-population", "maac-population")
NETS = ("actor", "critic", "actor_target", "critic_target", "log_alpha")


def main_of(algo):
    return iac.main if algo is None else (lambda argv: baselines.main(["--algo", algo, *argv]))


def seed_flags(seeds):
    return ["--seed", str(seeds[0])] if len(seeds) == 1 else ["--seeds", ",".join(map(str, seeds))]


def train(case, runs_dir, steps=STEPS, save=False):
    """Train a case from scratch; returns its checkpoint folder."""
    algo, seeds, extra = CASES[case]
    argv = [*COMMON, *seed_flags(seeds), *extra, "--total-steps", str(steps), "--runs-dir", runs_dir,
            "--exp-name", case]
    if save:
        argv += ["--save-model", "--checkpoint-every", str(HALF)]
    main_of(algo)(argv)
    return checkpoint_dir(case, runs_dir)


def resume(case, ckpt, runs_dir, steps=STEPS):
    algo, _, _ = CASES[case]
    main_of(algo)(["--resume", ckpt, "--total-steps", str(steps), "--runs-dir", runs_dir, "--no-progress"])
    return checkpoint_dir(case, runs_dir)


def checkpoint_dir(case, runs_dir):
    _, seeds, _ = CASES[case]
    tail = str(seeds[0]) if len(seeds) == 1 else "seeds-" + "-".join(map(str, seeds))
    return os.path.join(runs_dir, f"predator_prey__{case}__{tail}")


def member_dirs(case, runs_dir):
    _, seeds, _ = CASES[case]
    return [os.path.join(runs_dir, f"predator_prey__{case}__{s}") for s in seeds]


def tensor_hash(t):
    t = t.detach().cpu().contiguous()
    return hashlib.sha256(str((t.dtype, tuple(t.shape))).encode() + t.numpy().tobytes()).hexdigest()


def weights_digest(ckpt):
    """One hash per network over its tensors' values, independent of the tensors' names and order (so
    that renaming a module keeps the digest; a changed number changes it)."""
    out = {}
    for net in NETS:
        part = ckpt[net]
        tensors = [part] if torch.is_tensor(part) else list(part.values())
        out[net] = hashlib.sha256("".join(sorted(map(tensor_hash, tensors))).encode()).hexdigest()
    return out


def read(path):
    with open(path) as f:
        return f.read()


def environment():
    return dict(torch=torch.__version__, machine=platform.machine(), cpu_capability=torch.backends.cpu.get_cpu_capability())


def write_all():
    os.makedirs(DATA, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "iac.py", "runlib.py", "envs.py", "baselines.py"],
                           cwd=HERE, capture_output=True, text=True).stdout.strip()
    meta = dict(environment(), commit=commit + ("+changes" if dirty else ""), steps=STEPS, half=HALF,
                common=COMMON, cases={k: dict(algo=v[0], seeds=v[1], extra=v[2]) for k, v in CASES.items()})
    torch.set_num_threads(1)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            ck_dir = train(case, os.path.join(tmp, "straight"), save=True)  # checkpoints at 250 and 500
            ckpt = runlib.load_checkpoint(os.path.join(ck_dir, "checkpoint.pt"))
            meta.setdefault("digests", {})[case] = weights_digest(ckpt)
            for k, d in enumerate(member_dirs(case, os.path.join(tmp, "straight"))):
                shutil.copy(os.path.join(d, "eval.csv"), os.path.join(DATA, f"{case}__{k}.csv"))
            if case in KEEP_CHECKPOINT:
                half = train(case, os.path.join(tmp, "half"), steps=HALF, save=True)
                shutil.copy(os.path.join(half, "checkpoint.pt"), os.path.join(DATA, f"{case}.pt"))
        print(f"{case}: {meta['digests'][case]['actor'][:12]}")
    runlib.write_text(os.path.join(DATA, "meta.json"), json.dumps(meta, indent=1) + "\n")


if __name__ == "__main__":
    write_all()
