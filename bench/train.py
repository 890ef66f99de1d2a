"""Training cost of a population (--seeds) of K runs against K single runs, on one CPU thread.

    OMP_NUM_THREADS=1 python bench/train.py [--algos iac,ddpg_mix] [--members 1,2,5,10] [--steps 400] [--cuda]

Each point trains predator-prey in-process twice, for 300 and for 300 + --steps env steps (one update
per step, minibatch 256, updates from step 256), and takes the difference, so set-up and the first
evaluation cancel out. A population's cost per run is its cost per env step divided by K. K separate
processes sharing the same core cost K times a single run at best, so "per run vs K = 1" is also the
saving over them. Keep the machine otherwise idle: the numbers are wall-clock. With --cuda the runs
train on the GPU (the env copies too), where K members cost about what one does (docs/benchmarks.md).
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import baselines  # noqa: E402
import iac  # noqa: E402
import runlib  # noqa: E402


def seconds(algo, K, steps, runs_dir, cuda=False):
    argv = ["--cuda"] * cuda + ["--env", "predator_prey", "--total-steps", str(steps), "--eval-every", "1000000",
            "--eval-episodes", "1", "--batch-size", "256", "--runs-dir", runs_dir, "--no-progress",
            "--exp-name", f"{algo}{K}-{steps}"]
    argv += ["--seeds", ",".join(str(s) for s in range(1, K + 1))] if K > 1 else ["--seed", "1"]
    t = time.perf_counter()
    if algo == "iac":
        iac.main(argv)
    else:
        baselines.main(["--algo", algo, *argv])
    return time.perf_counter() - t


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", default="iac,ddpg_mix")
    p.add_argument("--members", default="1,2,5,10")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--cuda", action="store_true", help="train on the GPU")
    a = p.parse_args()
    runlib.check_number(p, a, "steps", lo=1)
    try:
        members = [int(k) for k in a.members.split(",")]
    except ValueError:
        members = []
    if not members or min(members) < 1:
        p.error(f"--members {a.members!r}: give population sizes >= 1 separated by commas, e.g. 1,2,5")
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as runs_dir:
        algos = a.algos.split(",")
        if a.cuda:  # CUDA's and cuBLAS's start-up would otherwise land in the first difference
            seconds(algos[0], 1, 300, runs_dir, cuda=True)
        for algo in algos:
            base = None
            for K in members:
                dt = seconds(algo, K, 300 + a.steps, runs_dir, a.cuda) - seconds(algo, K, 300, runs_dir, a.cuda)
                per_run = dt / a.steps / K * 1e3  # ms per env step (and update) per run
                base = base or per_run
                rows.append((algo, K, per_run, 1e3 / per_run, per_run / base))
                print(f"{algo} K={K}: {per_run:.1f} ms per step per run", file=sys.stderr, flush=True)
    print("| method | K | ms per env step + update, per run | updates/s per run | per run vs K = 1 |")
    print("|---|---|---|---|---|")
    for algo, K, ms, ups, ratio in rows:
        print(f"| {algo} | {K} | {ms:.1f} | {ups:.0f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()
