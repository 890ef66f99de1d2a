"""Is one group of runs ahead of another by more than seed luck? An exact permutation test on each run's
mean of its last K evaluations (experiments/final_table.py's number).

    python experiments/perm_test.py RUN_DIR ... --vs RUN_DIR ... [--last 10]

Prints each group's mean +- std, the gap (second group minus first), and the share of all ways of
splitting the pooled values into groups of the same sizes whose gap is at least as large (one-sided p)
or at least as large in size (two-sided p). Exact: every split is enumerated, so keep groups small
(at most 20 runs in all).
"""

import argparse
import itertools
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from final_table import last_mean  # noqa: E402


def permutation_p(a, b):
    """(gap, one-sided p, two-sided p) of mean(b) - mean(a) over every split of a + b into |a| and |b|."""
    pooled, k = list(a) + list(b), len(a)
    total = sum(pooled)
    gap = statistics.mean(b) - statistics.mean(a)
    eps = 1e-9 * (1 + abs(gap))
    one = two = 0
    for idx in itertools.combinations(range(len(pooled)), k):
        sa = sum(pooled[i] for i in idx)
        g = (total - sa) / (len(pooled) - k) - sa / k
        one += g >= gap - eps
        two += abs(g) >= abs(gap) - eps
    n = math.comb(len(pooled), k)
    return gap, one / n, two / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="the first group's run folders")
    p.add_argument("--vs", nargs="+", required=True, help="the second group's run folders")
    p.add_argument("--last", type=int, default=10, help="evaluations averaged at the end of each run")
    a = p.parse_args(argv)
    if a.last < 1:
        p.error("--last must be >= 1")
    if len(a.runs) < 2 or len(a.vs) < 2 or len(a.runs) + len(a.vs) > 20:
        p.error("give at least 2 runs per group and at most 20 in all")
    groups = [[last_mean(os.path.join(d, "eval.csv"), a.last)[1] for d in dirs] for dirs in (a.runs, a.vs)]
    for name, vals in zip(("first", "second"), groups):
        print(f"{name} group ({len(vals)} runs): {statistics.mean(vals):.1f} +- {statistics.stdev(vals):.1f}")
    gap, one, two = permutation_p(*groups)
    print(f"gap (second - first): {gap:.1f}; one-sided p = {one:.3f}, two-sided p = {two:.3f}")


if __name__ == "__main__":
    main()
