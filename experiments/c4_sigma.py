"""Claim C4 (Fig. 5): does IAC's Sigma = L L^T + D develop correlations between agents?

    python experiments/c4_sigma.py RUN_DIR [RUN_DIR ...] [--agents 3] [--out figures/issue9/c4_sigma]

Reads each run's covariance.npz (the state-averaged Sigma at every evaluation, written by iac.py) and
reports, over the entries that couple two different agents: the largest |correlation| over training,
the largest at the last evaluation, and the share of those entries that are positive at the last
evaluation. Writes OUT.csv and OUT.png (the largest between-agent |correlation| against env steps).

Read the numbers with the parametrisation in mind: with a fixed D = 1e-6 I (--cov-diag fixed, the
authors' preset) and rank 1, Sigma is L L^T plus almost nothing, so every correlation is close to +-1
as soon as L is not tiny; there, the signs (positive relations, as Fig. 5 claims) carry the information.
"""

import argparse
import csv
import os
import zipfile

import numpy as np


def between_agent_corr(sigma, n):
    """(T, nd, nd) covariances -> (T, k) correlations of the entries (i, j), i < j, of different agents."""
    std = np.sqrt(np.clip(np.diagonal(sigma, axis1=1, axis2=2), 1e-30, None))
    corr = sigma / (std[:, :, None] * std[:, None, :])
    nd = sigma.shape[-1]
    agent = np.arange(nd) // (nd // n)
    i, j = np.triu_indices(nd, 1)
    keep = agent[i] != agent[j]
    return corr[:, i[keep], j[keep]]


def read_sigma(path):
    """{step, sigma} of a covariance.npz: a step per evaluation and a square Sigma for each; else an error."""
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):  # one .npy array under the .npz name
            raise ValueError("one array, not an .npz archive")
        with z:
            out = {k: z[k] for k in ("step", "sigma")}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise SystemExit(f"error: cannot read {path} as iac.py's covariance.npz (arrays step and sigma): "
                         f"{type(e).__name__}: {e}")
    s, sig = out["step"], out["sigma"]
    if sig.ndim != 3 or sig.shape[1] != sig.shape[2] or s.shape != sig.shape[:1] or not len(s):
        raise SystemExit(f"error: {path}: expected one square Sigma per evaluation step, got step {s.shape} "
                         f"and sigma {sig.shape}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders holding covariance.npz")
    p.add_argument("--agents", type=int, default=3, help="number of agents n (Sigma is nd x nd)")
    p.add_argument("--out", default=os.path.join("figures", "issue9", "c4_sigma"), help="OUT.csv and OUT.png")
    a = p.parse_args(argv)
    if a.agents < 2:
        p.error(f"--agents must be >= 2 (C4 is about correlations between agents), got {a.agents}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for d in a.runs:
        path = os.path.join(d, "covariance.npz")
        if not os.path.isfile(path):
            raise SystemExit(f"error: {path} not found")
        z = read_sigma(path)
        if z["sigma"].shape[-1] % a.agents:
            raise SystemExit(f"error: {path}: Sigma is {z['sigma'].shape[-1]} wide, not a multiple of --agents {a.agents}")
        c = between_agent_corr(z["sigma"], a.agents)
        peak = np.abs(c).max(1)
        name = os.path.basename(os.path.normpath(d))
        rows.append((name, int(z["step"][-1]), f"{peak.max():.3f}", int(z["step"][peak.argmax()]),
                     f"{peak[-1]:.3f}", f"{(c[-1] > 0).mean():.2f}"))
        ax.plot(z["step"], peak, lw=1, label=name)
        print(f"{name}: largest between-agent |corr| {peak.max():.3f} (step {int(z['step'][peak.argmax()]):,}), "
              f"at the last evaluation {peak[-1]:.3f}, positive share {(c[-1] > 0).mean():.2f}")
    ax.set(xlabel="env steps", ylabel="largest |corr| between two agents' action entries", ylim=(0, 1.02),
           title="C4: IAC's Sigma, between-agent correlation")
    ax.legend(fontsize=6)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    fig.savefig(a.out + ".png", dpi=110, bbox_inches="tight")
    with open(a.out + ".csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "last_step", "max_abs_corr", "at_step", "max_abs_corr_last", "positive_share_last"])
        w.writerows(rows)


if __name__ == "__main__":
    main()
