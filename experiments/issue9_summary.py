"""Issue 9's one-factor table: copy the complete 100k runs' curves into figures/issue9/data, and write
the mean evaluation return over (90k, 100k] per seed and per cell (mean +- std over seeds), and the plot.

    python experiments/issue9_summary.py [RUNS] [--out figures/issue9]   (default RUNS: runs/issue9, as issue9.sh)

The table and plots cover every run in OUT/data: the committed ones and those copied from RUNS.
"""

import argparse
import glob
import os
import shutil
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import plots  # noqa: E402
import runlib  # noqa: E402
from final_table import read_eval_csv  # noqa: E402

OUT = os.path.join(os.path.dirname(HERE), "figures", "issue9")
STEPS, WINDOW = 100_000, 10_000
RENAME = {"ddpg_mix": "ddpg_mix-alg1"}  # the cell names of the figure (experiments/issue9.sh: ddpg_mix)


def window_mean(path):
    with open(path) as f:
        if sum(1 for line in f if line.strip()) < 2:  # a header only: a run that has not evaluated yet
            return None
    rows = read_eval_csv(path)
    if not rows or rows[-1][0] < STEPS:
        return None
    return statistics.mean(v for s, v in rows if STEPS - WINDOW < s <= STEPS)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="?", default=os.path.join("runs", "issue9"),
                   help="the folder of run folders that experiments/issue9.sh writes (default: runs/issue9)")
    p.add_argument("--out", default=OUT, help="where the data/, the table and the plots go (default: figures/issue9, "
                   "the committed ones)")
    a = p.parse_args(argv)
    runs, out = a.runs, a.out
    if not os.path.isdir(runs):
        sys.exit(f"error: {runs} is not a folder of runs (experiments/issue9.sh writes runs/issue9)")
    runlib.check_out_dir(p, "out", out)
    data = os.path.join(out, "data")
    copied = 0
    for d in sorted(glob.glob(os.path.join(runs, "predator_prey__*__[0-9]*"))):
        _, cell, seed = os.path.basename(d).split("__")
        if not os.path.isfile(os.path.join(d, "eval.csv")) or window_mean(os.path.join(d, "eval.csv")) is None:
            continue
        copied += 1
        dst = os.path.join(data, f"predator_prey__{RENAME.get(cell, cell)}__{seed}")
        os.makedirs(dst, exist_ok=True)
        for f in ("eval.csv", "covariance.npz"):
            if os.path.isfile(os.path.join(d, f)):
                shutil.copyfile(os.path.join(d, f), os.path.join(dst, f))
    print(f"{copied} complete {STEPS:,}-step predator-prey runs copied from {runs} into {data}; the table covers "
          "every run there", file=sys.stderr)
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
    if not rows:
        sys.exit(f"error: no complete {STEPS:,}-step predator-prey run in {runs} or {data}")
    runlib.write_csv(os.path.join(out, "factors_100k.csv"), ["cell", "seeds", "per_seed_mean_90k_100k", "mean", "std"],
                     rows)
    print("| cell | seeds | (90k, 100k] per seed | mean +- std |\n|---|---|---|---|")
    for cell, seeds, per_seed, mean, std in rows:
        print(f"| {cell} | {seeds} | {per_seed} | {mean} +- {std} |")
    for method, label in METHODS:
        runs = sorted(glob.glob(os.path.join(data, f"predator_prey__{method}-*")))
        if runs:
            plots.plot_runs(runs, os.path.join(out, f"predator_prey_100k_{method}.png"),
                            title=f"predator-prey, {label}: one factor at a time, to 100k")
    effect_plot(cells, out)


# IAC and DDPG-MIX, and the two methods between them that swap one half each (the critic attribution):
# SQ = IAC's joint policy with DDPG-MIX's individual critics, Attn-QMIX = DDPG-MIX's deterministic policy
# with IAC's attention critic
METHODS = tuple((m, plots.LABELS[m]) for m in ("iac", "sq", "attn_qmix", "ddpg_mix"))


# both run the earlier defaults' schedule; "old" is the older code, whose seeds shared one minibatch sequence
TICKS = {"earlier": "earlier schedule\n(this code)", "old": "earlier schedule\n(older code)",
         "authors-mpe2": "authors\n(mpe2 actions)", "authors-mpe2-attention": "authors, mpe2,\nEq. 19-21 critic",
         "critic_shared": "authors' critic\nalone", "alpha_sched": "authors' alpha\nalone",
         "mean_q": "mean of Q_i\nalone", "current": "u' current\npolicy"}


def effect_plot(cells, out):
    """The table as a picture: each reading's (90k, 100k] return, one column per method that has cells (IAC,
    SQ, Attn-QMIX, DDPG-MIX), one dot per seed."""
    import matplotlib.pyplot as plt

    readings = sorted({c.split("-", 1)[1] for c in cells}, key=lambda r: (r != "alg1", r == "old", r))
    methods = [(m, label) for m, label in METHODS if any(c.startswith(m + "-") for c in cells)]
    fig, ax = plt.subplots(figsize=(max(8, 1.4 * len(readings)), 3.8))
    width, labelled = 0.8 / len(methods), set()
    for k, (method, label) in enumerate(methods):
        for x, reading in enumerate(readings):
            vals = [v for _, v in cells.get(f"{method}-{reading}", [])]
            if not vals:
                continue
            xs = x + (k - (len(methods) - 1) / 2) * width
            ax.scatter([xs] * len(vals), vals, color=plots.COLORS[method], s=12, alpha=0.6)
            ax.errorbar(xs, statistics.mean(vals), yerr=statistics.stdev(vals) if len(vals) > 1 else 0,
                        color=plots.COLORS[method], marker="_", ms=14, capsize=3, label=label if label not in labelled else None)
            labelled.add(label)
    ax.set_xticks(range(len(readings)), [TICKS.get(r, r) + ("\n(5-D actions)" if r.startswith("authors") and "mpe2" not in r
                                                            else "") for r in readings], fontsize=8)
    ax.set(ylabel="mean eval return, (90k, 100k]", title="predator-prey: which reading moves the 100k return")
    ax.legend(fontsize=8)
    plots.save(fig, out, "factors_100k")


if __name__ == "__main__":
    main()
