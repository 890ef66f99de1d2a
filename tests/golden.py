"""Golden runs: short fixed-seed trainings whose curves and final weights are committed, so that a change
that should keep the numbers (moving code, renaming modules) is checked bit for bit.

    python tests/golden.py            # write this machine's golden data from the code as it is now

Each case trains 500 env steps of predator-prey with one update per step from step 32, so 469 gradient
updates: the hard target copy (T = 200) happens twice. tests/test_golden.py trains each case twice, once
straight through and once stopped at step 250 and resumed: the two must be equal bit for bit on any machine,
and equal to the committed eval.csv files and weight digests where data for this machine's arithmetic are
committed. The checkpoints at step 250 of the cases in KEEP_CHECKPOINT are committed too
(tests/data/golden/<case>.pt, written by the code of commit 6ff7b51, before iac.py's plumbing moved out):
they must still load, evaluate and resume to the committed curve after any later change.

Bit-for-bit equality holds on one kind of CPU and one torch version: two Xeons that torch both reports as
AVX512 gave different last bits from the same code (2026-12-08, the CI machines changed), because MKL and
oneDNN pick kernels by the exact instruction set. So the data live in one folder per machine kind,
tests/data/golden/<fingerprint>/, named by `fingerprint()`: the torch version, the CPU's identity, and a
hash of a small fixed float32 training workload (matrix products, batched products, softmax, Adam). On a
machine with no folder of its own the comparison with committed numbers skips and says so;
`python tests/golden.py` adds the folder (the straight/resumed equality still runs everywhere).
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


def cpu_identity():
    """Vendor, family, model and stepping of the first CPU (Linux), else platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            info = dict(line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line)
        info = {k.strip(): v.strip() for k, v in info.items()}
        return " ".join(f"{k}={info.get(k, '?')}" for k in ("vendor_id", "cpu family", "model", "stepping"))
    except OSError:
        return platform.processor() or "unknown"


def numerics_probe():
    """Hash of 20 Adam steps of a small attention-like float32 network on one thread: it changes when MKL
    picks another kernel (MKL_CBWR=AVX2 or COMPATIBLE on an AVX-512 machine changes it)."""
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        g = torch.Generator().manual_seed(0)
        layers = [torch.nn.Linear(a, b) for a, b in ((24, 32), (32, 32), (32, 5))]
        params = [p for layer in layers for p in layer.parameters()]
        with torch.no_grad():
            for p in params:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        opt = torch.optim.Adam(params, lr=1e-2)
        x = torch.randn(32, 3, 24, generator=g)
        for _ in range(20):
            h = torch.tanh(layers[1](torch.relu(layers[0](x))))
            y = layers[2](torch.softmax(h @ h.transpose(1, 2) / 32 ** 0.5, dim=-1) @ h)
            loss = (y.exp().mean() - torch.log_softmax(y, -1).sum(-1).mean()) ** 2
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in params)).hexdigest()[:16]
    finally:
        torch.set_num_threads(n_threads)


def environment():
    return dict(torch=torch.__version__, machine=platform.machine(), cpu_capability=torch.backends.cpu.get_cpu_capability(),
                cpu=cpu_identity(), probe=numerics_probe())


def fingerprint(env=None):
    """The name of this machine kind's golden folder."""
    env = env or environment()
    return hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest()[:12]


def load_meta():
    with open(os.path.join(DATA, "meta.json")) as f:
        return json.load(f)


def write_all():
    """Write tests/data/golden/<fingerprint>/ for this machine and its entry in meta.json; the step-250
    checkpoints are written only where none is committed (the committed ones stay the old code's)."""
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "iac.py", "runlib.py", "envs.py", "baselines.py"],
                           cwd=HERE, capture_output=True, text=True).stdout.strip()
    meta = load_meta() if os.path.exists(os.path.join(DATA, "meta.json")) else {}
    meta.update(steps=STEPS, half=HALF, common=COMMON,
                cases={k: dict(algo=v[0], seeds=v[1], extra=v[2]) for k, v in CASES.items()})
    env = environment()
    name = fingerprint(env)
    out = os.path.join(DATA, name)
    os.makedirs(out, exist_ok=True)
    entry = dict(env, commit=commit + ("+changes" if dirty else ""), digests={}, from_checkpoint_digests={})
    torch.set_num_threads(1)
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            ck_dir = train(case, os.path.join(tmp, "straight"), save=True)  # checkpoints at 250 and 500
            entry["digests"][case] = weights_digest(runlib.load_checkpoint(os.path.join(ck_dir, "checkpoint.pt")))
            for k, d in enumerate(member_dirs(case, os.path.join(tmp, "straight"))):
                shutil.copy(os.path.join(d, "eval.csv"), os.path.join(out, f"{case}__{k}.csv"))
            if case not in KEEP_CHECKPOINT:
                continue
            pt = os.path.join(DATA, f"{case}.pt")
            if not os.path.exists(pt):
                shutil.copy(os.path.join(train(case, os.path.join(tmp, "half"), steps=HALF, save=True), "checkpoint.pt"), pt)
            ck_dir = checkpoint_dir(case, os.path.join(tmp, "from_pt"))
            os.makedirs(ck_dir)
            shutil.copy(pt, os.path.join(ck_dir, "checkpoint.pt"))
            resume(case, os.path.join(ck_dir, "checkpoint.pt"), os.path.join(tmp, "from_pt"))
            entry["from_checkpoint_digests"][case] = weights_digest(runlib.load_checkpoint(os.path.join(ck_dir, "checkpoint.pt")))
            for k, d in enumerate(member_dirs(case, os.path.join(tmp, "from_pt"))):
                shutil.copy(os.path.join(d, "eval.csv"), os.path.join(out, f"{case}__{k}.from_checkpoint.csv"))
        print(f"{case}: {entry['digests'][case]['actor'][:12]}")
    meta.setdefault("machines", {})[name] = entry
    runlib.write_text(os.path.join(DATA, "meta.json"), json.dumps(meta, indent=1) + "\n")
    print(f"wrote {out} and its entry in meta.json")


if __name__ == "__main__":
    write_all()
