"""A logged quantity over training, as a table: per run, the mean of a TensorBoard scalar (or of the
evaluation return) in windows of env steps. Used for issue 9's over-estimation finding: the actor loss
(about -Q_tot) against the evaluation return during the early dip.

    python experiments/tb_windows.py RUN_DIR [RUN_DIR ...] [--tag losses/actor_loss] [--window 5000]
                                     [--until 100000]

--tag eval reads eval.csv's eval_return instead of TensorBoard. Prints a markdown table, one row per run.
"""

import argparse
import glob
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import plots  # noqa: E402  (read_eval: the eval.csv reader every figure uses)


def scalars(run_dir, tag):
    """[(step, value)] of one tag over every event file of the run (a resumed run writes more than one;
    a later file's points replace an earlier file's from the step it starts at)."""
    if tag == "eval":
        ev = plots.read_eval(os.path.join(run_dir, "eval.csv"))
        return [(int(t), float(v)) for t, v in zip(ev["step"], ev["eval_return"])]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    points = []
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*")), key=os.path.getmtime):
        acc = EventAccumulator(path, size_guidance={"scalars": 0})
        acc.Reload()
        if tag not in acc.Tags()["scalars"]:
            continue
        new = [(e.step, e.value) for e in acc.Scalars(tag)]
        if new:
            points = [p for p in points if p[0] < new[0][0]] + new
    if not points:
        raise SystemExit(f"error: {run_dir} has no TensorBoard scalar {tag!r}")
    return points


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--tag", default="losses/actor_loss", help="a TensorBoard scalar, or eval for eval.csv")
    p.add_argument("--window", type=int, default=5000, help="env steps per window")
    p.add_argument("--until", type=int, default=100000, help="last env step shown")
    a = p.parse_args(argv)
    if a.window < 1 or a.until < a.window:
        p.error("need --window >= 1 and --until >= --window")
    edges = list(range(0, a.until, a.window))
    series = [scalars(d, a.tag) for d in a.runs]  # every run read first: a bad one stops before the table
    print(f"{a.tag}, mean per window of env steps\n")
    print("| run | " + " | ".join(f"{lo // 1000}k-{(lo + a.window) // 1000}k" for lo in edges) + " |")
    print("|---" * (len(edges) + 1) + "|")
    for d, pts in zip(a.runs, series):
        cells = []
        for lo in edges:
            vals = [v for s, v in pts if lo < s <= lo + a.window] or ([v for s, v in pts if s == 0] if lo == 0 else [])
            cells.append(f"{statistics.mean(vals):.1f}" if vals else "-")
        print(f"| {os.path.basename(os.path.normpath(d))} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
