"""The leave-one-out table and figure: groups of runs that differ only in the seed, each against one
reference group (the whole preset), by the mean of each run's evaluations in a final window.

    python experiments/leave_one_out_summary.py \\
        figures/issue9/data/predator_prey__iac-authors-mpe2__? \\
        figures/issue9/data/predator_prey__iac-authors-mpe2-attention__? \\
        figures/leave_one_out/data/predator_prey__loo-*__? figures/issue9/data/predator_prey__iac-alg1__? \\
        --ref predator_prey__iac-authors-mpe2 --window 90000 100000 --out figures/leave_one_out/leave_one_out

A run folder's group is its name without the trailing `__<seed>` (`<env>__<exp-name>`). For each group:
every seed's window mean, their mean +- std, the gap to the reference group (group minus reference) and
the exact permutation test's one-sided p that the group is below the reference (experiments/perm_test.py).
Writes OUT.csv (one row per group) and OUT.png (left: each group's mean evaluation curve, smoothed over 5
evaluations; right: each seed's window mean, a bar at the group's mean).
"""

import argparse
import os
import statistics
import sys

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "experiments"))
import perm_test  # noqa: E402
import final_table  # noqa: E402
from final_table import read_eval, window_mean  # noqa: E402
import runlib  # noqa: E402


def group_of(run_dir):
    group, sep, seed = os.path.basename(os.path.normpath(run_dir)).rpartition("__")
    if not sep or not seed.isdigit():
        raise SystemExit(f"error: {run_dir}: a run folder is named <env>__<exp-name>__<seed>")
    return group


def summarise(groups, ref, lo, hi):
    """{group: dict(values, mean, std, gap, p)}; gap and p against the reference group (p: one-sided, the
    share of splits whose gap group - ref is at most this one's; None for the reference itself)."""
    finals = {g: [window_mean(d, lo, hi) for d in dirs] for g, dirs in groups.items()}
    out = {}
    for g, v in finals.items():
        row = dict(values=v, mean=statistics.mean(v), std=statistics.stdev(v) if len(v) > 1 else 0.0,
                   gap=None, p=None)
        if g != ref:
            gap, p_one, _ = perm_test.permutation_p(v, finals[ref])  # mean(ref) - mean(group), one-sided
            row["gap"], row["p"] = -gap, p_one
        out[g] = row
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders, <env>__<exp-name>__<seed>")
    p.add_argument("--ref", required=True, help="the reference group (<env>__<exp-name>), e.g. the whole preset")
    final_table.add_window_and_out(p)
    a = p.parse_args(argv)
    lo, hi = final_table.check_window_and_out(p, a)
    groups = {}
    for d in a.runs:
        groups.setdefault(group_of(d), []).append(d)
    if a.ref not in groups:
        p.error(f"--ref {a.ref}: no run folder of that group among the {len(a.runs)} given "
                f"(groups: {', '.join(groups)})")
    if len(groups[a.ref]) < 2:
        p.error(f"--ref {a.ref}: the reference needs at least 2 seeds for the permutation test")
    table = summarise(groups, a.ref, lo, hi)

    rows = []
    for g, r in table.items():
        rows.append([g, len(r["values"]), " ".join(f"{v:.1f}" for v in r["values"]), f"{r['mean']:.1f}",
                     f"{r['std']:.1f}", "" if r["gap"] is None else f"{r['gap']:.1f}",
                     "" if r["p"] is None else f"{r['p']:.3f}"])
        print(f"{g}: {rows[-1][2]} -> {rows[-1][3]} +- {rows[-1][4]}"
              + ("" if r["p"] is None else f"; against {a.ref}: {r['gap']:+.1f}, one-sided p = {r['p']:.3f}"))
    runlib.write_csv(a.out + ".csv", ["group", "seeds", f"per_seed_{lo}_{hi}", "mean", "std",
                                      "gap_to_ref", "p_below_ref"], rows)

    import plots  # sets matplotlib's Agg backend; plots.save writes the figure atomically
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw=dict(width_ratios=[3, 2]),
                                 constrained_layout=True)
    order = sorted(table, key=lambda g: -table[g]["mean"])
    colors = {g: plt.cm.tab10(i % 10) for i, g in enumerate(order)}
    for g in order:
        cs = [np.array(read_eval(d)) for d in groups[g]]
        steps = sorted(set.intersection(*(set(c[:, 0].astype(int)) for c in cs)))
        ys = np.array([[dict(zip(c[:, 0].astype(int), c[:, 1]))[s] for s in steps] for c in cs]).mean(0)
        k = min(5, len(ys))
        smooth = np.convolve(ys, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color=colors[g], lw=2 if g == a.ref else 1.3,
                label=f"{g.split('__', 1)[-1]} ({len(cs)} seeds)")
    ax.set(xlabel="env steps", ylabel="evaluation return, mean over seeds", title="evaluation curves")
    ax.legend(fontsize=7)
    for i, g in enumerate(order):
        v = table[g]["values"]
        bx.bar(i, table[g]["mean"], color=colors[g], alpha=0.35)
        bx.scatter([i] * len(v), v, color=colors[g], s=18, zorder=3)
        if table[g]["p"] is not None:
            bx.annotate(f"p={table[g]['p']:.2f}", (i, max(v)), ha="center", va="bottom", fontsize=7)
    bx.set_xticks(range(len(order)), [g.split("__", 1)[-1] for g in order], rotation=35, ha="right", fontsize=7)
    bx.set(ylabel=f"mean evaluation return in ({lo:,}, {hi:,}]",
           title=f"per seed; p: one-sided, below {a.ref.split('__', 1)[-1]}")
    plots.save(fig, os.path.dirname(os.path.abspath(a.out)), os.path.basename(a.out))
    return table


if __name__ == "__main__":
    main()
