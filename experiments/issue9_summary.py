"""Issue 9's one-factor table: copy the complete 100k runs' curves into figures/issue9/data, and write
the mean evaluation return over (90k, 100k] per seed and per cell (mean +- std over seeds), and the plot.

    python experiments/issue9_summary.py [RUNS]      (default RUNS: runs/issue9, as experiments/issue9.sh)
"""

import csv
import glob
import os
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import plots  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "figures", "issue9")
STEPS, WINDOW = 100_000, 10_000
RENAME = {"ddpg_mix": "ddpg_mix-alg1"}  # the cell names of the figure (experiments/issue9.sh: ddpg_mix)


def window_mean(path):
    with open(path) as f:
        rows = [(int(r["step"]), float(r["eval_return"])) for r in csv.DictReader(f)]
    if not rows or rows[-1][0] < STEPS:
        return None
    return statistics.mean(v for s, v in rows if STEPS - WINDOW < s <= STEPS)


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else os.path.join("runs", "issue9")
    data = os.path.join(OUT, "data")
    for d in sorted(glob.glob(os.path.join(runs, "predator_prey__*__[0-9]*"))):
        _, cell, seed = os.path.basename(d).split("__")
        if window_mean(os.path.join(d, "eval.csv")) is None:
            continue
        dst = os.path.join(data, f"predator_prey__{RENAME.get(cell, cell)}__{seed}")
        os.makedirs(dst, exist_ok=True)
        for f in ("eval.csv", "covariance.npz"):
            if os.path.isfile(os.path.join(d, f)):
                shutil.copyfile(os.path.join(d, f), os.path.join(dst, f))
    cells = {}
    for d in sorted(glob.glob(os.path.join(data, "predator_prey__*__[0-9]*"))):
        _, cell, seed = os.path.basename(d).split("__")
        m = window_mean(os.path.join(d, "eval.csv"))
        if m is not None:
            cells.setdefault(cell, []).append((int(seed), m))
    rows = []
    for cell, vals in sorted(cells.items()):
        vals.sort()
        per_seed = [v for _, v in vals]
        std = statistics.stdev(per_seed) if len(per_seed) > 1 else float("nan")
        rows.append((cell, " ".join(str(s) for s, _ in vals), ", ".join(f"{v:.1f}" for v in per_seed),
                     f"{statistics.mean(per_seed):.1f}", f"{std:.1f}"))
    with open(os.path.join(OUT, "factors_100k.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "seeds", "per_seed_mean_90k_100k", "mean", "std"])
        w.writerows(rows)
    print("| cell | seeds | (90k, 100k] per seed | mean +- std |\n|---|---|---|---|")
    for cell, seeds, per_seed, mean, std in rows:
        print(f"| {cell} | {seeds} | {per_seed} | {mean} +- {std} |")
    plots.plot_runs(sorted(glob.glob(os.path.join(data, "predator_prey__*"))),
                    os.path.join(OUT, "predator_prey_100k.png"), title="predator-prey, issue 9 runs to 100k")


if __name__ == "__main__":
    main()
