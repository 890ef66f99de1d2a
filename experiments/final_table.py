"""Final returns of finished runs as a table: per group of runs that differ only in the seed
(<env>__<exp>__<seed>), the mean of each run's last K evaluations, then mean +- std over the seeds.

    python experiments/final_table.py RUN_DIR [RUN_DIR ...] [--last 10] [--csv OUT.csv]

Prints a markdown table; --csv also writes it. Every run must hold an eval.csv (iac.py / baselines.py).
"""

import argparse
import csv
import math
import os
import statistics
import sys


def read_eval(run_dir):
    """[(step, eval_return)] of a run folder's eval.csv; a missing or unreadable one is an error."""
    return read_eval_csv(os.path.join(run_dir, "eval.csv"))


def read_eval_csv(path):
    """[(step, eval_return)] of an eval.csv: every row a step and a finite return, else an error naming the line."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not {"step", "eval_return"} <= set(reader.fieldnames or ()):
                raise SystemExit(f"error: {path} is not an eval.csv of iac.py / baselines.py (its header has no "
                                 "step and eval_return columns)")
            rows = []
            for r in reader:
                try:
                    row = int(r["step"]), float(r["eval_return"])
                except (TypeError, ValueError):  # a short row gives None, a damaged one text
                    raise SystemExit(f"error: {path} line {reader.line_num}: expected a step and a return, got "
                                     f"{r['step']!r}, {r['eval_return']!r}") from None
                if not math.isfinite(row[1]):
                    raise SystemExit(f"error: {path} line {reader.line_num}: the return is {row[1]} (the run diverged?)")
                rows.append(row)
    except OSError as e:
        raise SystemExit(f"error: cannot read {path}: {e.strerror or e}")
    if not rows:
        raise SystemExit(f"error: {path} holds no evaluation")
    return rows


def window_mean(run_dir, lo, hi):
    """The mean evaluation return with step in (lo, hi]; a run with none there is an error."""
    rows = read_eval(run_dir)
    vals = [v for s, v in rows if lo < s <= hi]
    if not vals:
        raise SystemExit(f"error: {run_dir} has no evaluation in ({lo:,}, {hi:,}] (its last step: {rows[-1][0]:,})")
    return statistics.mean(vals)


def add_window_and_out(p):
    """The --window LO HI and --out OUT flags of the figure scripts (OUT.png and OUT.csv)."""
    p.add_argument("--window", nargs=2, type=int, default=[90_000, 100_000], metavar=("LO", "HI"),
                   help="the evaluations with step in (LO, HI] give each run's number (default: 90000 100000)")
    p.add_argument("--out", required=True, help="OUT.png and OUT.csv")


def check_window_and_out(p, a):
    """(lo, hi) of a parsed --window, after refusing a bad window or an unwritable --out."""
    lo, hi = a.window
    if not 0 <= lo < hi:
        p.error(f"--window {lo} {hi}: give 0 <= LO < HI")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import runlib  # torch with it: only the figure scripts need it

    runlib.check_out_file(p, "out", a.out + ".png", ".png")
    return lo, hi


def last_mean(path, k):
    """(last step, mean of the last k evaluations, first step of those) of an eval.csv."""
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} not found")
    rows = read_eval_csv(path)
    if len(rows) < k:
        raise SystemExit(f"error: {path} has {len(rows)} evaluations, fewer than --last {k}")
    return rows[-1][0], statistics.mean(v for _, v in rows[-k:]), rows[-k][0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--last", type=int, default=10, help="evaluations averaged at the end of each run")
    p.add_argument("--csv", default=None, help="also write the table to this CSV")
    a = p.parse_args(argv)
    if a.last < 1:
        p.error("--last must be >= 1")
    groups = {}
    for d in a.runs:
        path = os.path.join(d, "eval.csv")
        group, _, seed = os.path.basename(os.path.normpath(d)).rpartition("__")
        groups.setdefault(group, []).append((seed, *last_mean(path, a.last)))
    rows = []
    for group, vals in groups.items():
        vals.sort(key=lambda v: int(v[0]) if v[0].isdigit() else v[0])
        means = [m for _, _, m, _ in vals]
        std = statistics.stdev(means) if len(means) > 1 else float("nan")
        steps = sorted({(first, last) for _, last, _, first in vals})
        window = ", ".join(f"[{f:,}, {l:,}]" for f, l in steps)
        rows.append((group, " ".join(s for s, *_ in vals), window, ", ".join(f"{m:.1f}" for m in means),
                     f"{statistics.mean(means):.1f}", f"{std:.1f}"))
    print("| runs | seeds | evaluations averaged (steps) | per seed | mean +- std |\n|---|---|---|---|---|")
    for group, seeds, window, per_seed, mean, std in rows:
        print(f"| {group} | {seeds} | {window} | {per_seed} | {mean} +- {std} |")
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["runs", "seeds", "window", "per_seed", "mean", "std"])
            w.writerows(rows)


if __name__ == "__main__":
    main()
