"""The authors' own code beside ours: evaluation curves of two groups of runs on one figure, the mean of
each run's evaluations in a final window, and the exact permutation test between the groups.

    python experiments/authors_peer.py --authors figures/authors_code/data/authors__? \\
        --ours figures/issue9/data/predator_prey__iac-authors__? --window 90000 100000 \\
        --out figures/authors_code/authors_vs_preset

Each folder holds an eval.csv (`step,eval_return,...`): experiments/authors_code.py writes one per seed of
the authors' code (their evaluation: 10 deterministic 100-step episodes every 1000 steps, from step 1000,
fresh start states each time), iac.py one per run (ours: 10 deterministic 100-step episodes every 1000 steps,
from step 0, the same 10 seeded start states each time). Writes OUT.png (mean +- std over seeds, one thin
line per seed) and OUT.csv (every run's window mean).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "experiments"))
import perm_test  # noqa: E402
import final_table  # noqa: E402
from final_table import read_eval, window_mean  # noqa: E402
import runlib  # noqa: E402


def curve(run_dir):
    return np.array(read_eval(run_dir))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--authors", nargs="+", required=True, metavar="RUN_DIR", help="the authors' code's runs")
    p.add_argument("--ours", nargs="+", required=True, metavar="RUN_DIR", help="our runs")
    p.add_argument("--ours-label", default="ours: iac.py --preset authors --predator-action mpe5")
    final_table.add_window_and_out(p)
    a = p.parse_args(argv)
    lo, hi = final_table.check_window_and_out(p, a)
    groups = {"authors' code (YiqinYang/IAC)": a.authors, a.ours_label: a.ours}
    curves = {g: [curve(d) for d in dirs] for g, dirs in groups.items()}
    finals = {g: [window_mean(d, lo, hi) for d in groups[g]] for g in groups}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (g, cs), color in zip(curves.items(), ("tab:purple", "tab:red")):
        steps = sorted(set.intersection(*(set(c[:, 0].astype(int)) for c in cs)))
        ys = np.array([[dict(zip(c[:, 0].astype(int), c[:, 1]))[s] for s in steps] for c in cs])
        for c in cs:
            ax.plot(c[:, 0], c[:, 1], color=color, lw=0.5, alpha=0.4)
        ax.plot(steps, ys.mean(0), color=color, lw=2, label=f"{g}, {len(cs)} seeds")
        ax.fill_between(steps, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=color, alpha=0.15)
    ax.set(xlabel="env steps", ylabel="evaluation return (10 deterministic episodes)",
           title="predator-prey, 5-D predator actions: the authors' code and our preset")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out + ".png", dpi=110)
    rows = [[g, d, f"{v:.2f}"] for g in groups for d, v in zip(groups[g], finals[g])]
    runlib.write_csv(a.out + ".csv", ["group", "run", f"mean_eval_return_{lo}_{hi}"], rows)
    names = list(groups)
    gap, p_one, p_two = perm_test.permutation_p(finals[names[1]], finals[names[0]])  # authors' minus ours
    for g in names:
        v = np.array(finals[g])
        print(f"{g}: {', '.join(f'{x:.1f}' for x in v)} -> {v.mean():.1f} +- {v.std(ddof=1) if len(v) > 1 else 0:.1f}")
    print(f"gap (authors' code - ours): {gap:.1f}; exact permutation test: one-sided p = {p_one:.3f}, "
          f"two-sided p = {p_two:.3f}")
    return finals, gap, p_one, p_two


if __name__ == "__main__":
    main()
