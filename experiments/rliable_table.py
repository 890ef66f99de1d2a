"""Cells of runs as the field reports them (Agarwal et al., NeurIPS 2021, `rliable`): the interquartile
mean (IQM) of the runs' final returns with stratified-bootstrap 95% intervals, and the probability of
improvement of each cell over each of one or more reference cells. `pip install -r requirements-analysis.txt`.

    python experiments/rliable_table.py --window 190000 200000 \\
        --cell IAC runs/issue27/predator_prey__iac-alg1__? \\
        --cell DDPG-MIX runs/issue27/predator_prey__ddpg_mix-alg1__? [--vs IAC [DDPG-MIX ...]] [--csv out.csv]

With --vs R1 R2 ..., the table and the CSV have one probability column per reference (CSV: p_vs_R, p_vs_R_lo,
p_vs_R_hi); a cell against itself is left empty. Each probability's bootstrap starts from the same seed, so a
number does not depend on which other references are asked for.

A run's score is the mean of its evaluations with step in (LO, HI] (one number per run, one task); a run
without an evaluation in the window is an error, never a silently shorter cell. The 3-seed cells keep the
exact permutation test (experiments/perm_test.py).
"""

import argparse
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import runlib  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "experiments"))
from final_table import window_mean  # noqa: E402


def analyse(cells, vs=(), reps=50_000, seed=0):
    """cells: {name: [scores]}, vs: reference names -> rows: name, runs, IQM and its CI, and for each
    reference R other than the cell itself P(cell > R) and its CI (keys p_vs_R, p_vs_R_lo, p_vs_R_hi)."""
    from rliable import library as rly
    from rliable import metrics

    scores = {k: np.asarray(v, dtype=float)[:, None] for k, v in cells.items()}  # (runs, 1 task)
    np.random.seed(seed)  # rliable's bootstrap draws from NumPy's global generator
    iqm, iqm_ci = rly.get_interval_estimates(scores, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps)
    rows = []
    for k in cells:
        row = dict(cell=k, runs=len(cells[k]), iqm=float(iqm[k][0]), iqm_lo=float(iqm_ci[k][0, 0]),
                   iqm_hi=float(iqm_ci[k][1, 0]))
        for ref in vs:
            if ref == k:
                continue
            np.random.seed(seed)
            p, p_ci = rly.get_interval_estimates({"pair": (scores[k], scores[ref])},
                                                 metrics.probability_of_improvement, reps=reps // 10)
            row.update({f"p_vs_{ref}": float(np.asarray(p["pair"]).ravel()[0]),
                        f"p_vs_{ref}_lo": float(p_ci["pair"][0].ravel()[0]),
                        f"p_vs_{ref}_hi": float(p_ci["pair"][1].ravel()[0])})
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cell", nargs="+", action="append", required=True, metavar=("NAME", "RUN_DIR"),
                   help="a cell's name, then its run folders (each holding eval.csv)")
    p.add_argument("--window", nargs=2, type=int, required=True, metavar=("LO", "HI"),
                   help="a run's score: the mean evaluation return with step in (LO, HI]")
    p.add_argument("--vs", nargs="+", action="extend", default=[], metavar="CELL",
                   help="the cells the probability of improvement is against (one column each)")
    p.add_argument("--reps", type=int, default=50_000, help="bootstrap resamples")
    p.add_argument("--csv", default=None, help="also write the table here")
    a = p.parse_args(argv)
    lo, hi = a.window
    if not 0 <= lo < hi:
        p.error(f"--window {lo} {hi}: give 0 <= LO < HI")
    if a.reps < 100:
        p.error(f"--reps must be >= 100, got {a.reps}")
    cells = {}
    for cell in a.cell:
        if len(cell) < 2:
            p.error(f"--cell {cell[0]}: give its run folders after the name")
        if cell[0] in cells:
            p.error(f"--cell {cell[0]} is given twice")
        cells[cell[0]] = [window_mean(d, lo, hi) for d in cell[1:]]
    for ref in a.vs:
        if ref not in cells:
            p.error(f"--vs {ref}: not one of the cells ({', '.join(cells)})")
    if len(set(a.vs)) < len(a.vs):
        p.error(f"--vs {' '.join(a.vs)}: a cell is given twice")
    if a.csv:
        runlib.check_out_file(p, "csv", a.csv, ".csv")
    try:
        rows = analyse(cells, a.vs, a.reps)
    except ImportError as e:
        sys.exit(f"error: this analysis needs rliable ({e.name} is missing): pip install -r requirements-analysis.txt")
    head = "| cell | runs | IQM (95% CI) |" + "".join(f" P(cell > {ref}) (95% CI) |" for ref in a.vs)
    print(f"scores: mean evaluation return in ({lo:,}, {hi:,}]; IQM with stratified-bootstrap 95% intervals")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        line = f"| {r['cell']} | {r['runs']} | {r['iqm']:.1f} ({r['iqm_lo']:.1f}, {r['iqm_hi']:.1f}) |"
        for ref in a.vs:
            q = f"p_vs_{ref}"
            line += f" {r[q]:.2f} ({r[q + '_lo']:.2f}, {r[q + '_hi']:.2f}) |" if q in r else " - |"
        print(line)
    if a.csv:
        keys = ["cell", "runs", "iqm", "iqm_lo", "iqm_hi"] + [f"p_vs_{ref}{e}" for ref in a.vs for e in ("", "_lo", "_hi")]
        runlib.write_csv(a.csv, keys, [[r.get(k, "") for k in keys] for r in rows])
    return rows


if __name__ == "__main__":
    main()
