"""The figures of reproduce.py: one plotting path for every learning curve, each figure with its CSV.

Every figure is drawn from the complete runs found in figures/<tier>/data/ and says how many seeds
each curve holds. Learning curves are unsmoothed: the line is the mean over seeds of the deterministic
evaluation return, the band one standard deviation either side.
"""

import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import envs  # noqa: E402
import runlib  # noqa: E402
# each figure's methods and tasks: the lists reproduce.py trains (one list per figure)
from reproduce import FIG2_ALGOS, FIG4_ALGOS, FIG4_ENVS, FIG7_ALGOS, SCALE_ALGOS, SCALE_N  # noqa: E402
from runlib import write_csv as write_rows  # noqa: E402  (atomic CSV write)

plt.rcParams["figure.constrained_layout.use"] = True  # titles, colorbars and labels never overlap

# Fig. 7: the paper's "average reward threshold 1000, where three predators succeed to capture prey
# cooperatively" (Section 5.3), on the same 100-step, +10-per-touching-predator return as ours
THRESHOLD = 1000.0
# Fig. 7b: the "final return" of a run is the mean of its last FINAL_EVALS evaluations (less noise)
FINAL_EVALS = 3
LABELS = dict(iac="IAC (Alg. 1)", iac_authors="IAC (authors' reading)", siaq="SIAQ", ddpg_mix="DDPG-MIX",
              maddpg="MADDPG", maac="MAAC", sq="SQ", siq="SIQ", attn_qmix="Attn-QMIX")
COLORS = dict(iac="tab:red", iac_authors="tab:pink", siaq="tab:blue", ddpg_mix="tab:green", maddpg="tab:purple",
              maac="tab:brown", sq="tab:orange", siq="tab:cyan", attn_qmix="tab:olive")


def read_eval(path):
    """An eval.csv as {column: array}; a file that is not one stops with a message naming it."""
    try:
        with open(path) as f:
            rows = list(csv.reader(f))
        header, data = rows[0], np.array(rows[1:], dtype=float)
        if data.ndim != 2 or data.shape[0] == 0 or data.shape[1] != len(header) or header[:2] != ["step", "eval_return"]:
            raise ValueError("no step,eval_return rows")
    except (OSError, ValueError, IndexError) as e:
        raise SystemExit(f"error: {path} is not an eval.csv written by iac.py / baselines.py ({e})")
    return {h: data[:, i] for i, h in enumerate(header)}


def available(runs, data_dir, **match):
    """Complete runs matching the given fields, each with its eval curve loaded."""
    out = []
    for r in runs:
        path = os.path.join(data_dir, r["name"], "eval.csv")
        if all(r[k] == v for k, v in match.items()) and os.path.isfile(path):
            ev = read_eval(path)
            if ev["step"][-1] >= r["steps"]:
                out.append({**r, "eval": ev})
    return out


def save(fig, out_dir, name):
    """Write a figure atomically. A figure that cannot be written (a full disk, a folder that went away)
    stops with one line naming it; the figures written before it, and the runs, stay as they are."""
    path, tmp = os.path.join(out_dir, name + ".png"), os.path.join(out_dir, name + ".png.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        sys.exit(f"error: cannot write the figure {path}: {e}")
    finally:
        plt.close(fig)


def curves(ax, runs, algos, title):
    """Mean and +-1 std over seeds of each algo's eval curve; returns the CSV rows."""
    rows = []
    for algo in algos:
        mine = [r for r in runs if r["algo"] == algo]
        if not mine:
            continue
        steps = mine[0]["eval"]["step"]
        ret = np.stack([r["eval"]["eval_return"] for r in mine])
        m, s = ret.mean(0), ret.std(0)
        ax.plot(steps, m, color=COLORS[algo], label=f"{LABELS[algo]} ({len(mine)} seeds)")
        ax.fill_between(steps, m - s, m + s, color=COLORS[algo], alpha=0.2)
        rows += [(r["env"], r["exp"], r["seed"], int(t), v) for r in mine
                 for t, v in zip(r["eval"]["step"], r["eval"]["eval_return"])]
    ax.set(title=title, xlabel="env steps", ylabel="evaluation return")
    if rows:
        ax.legend(fontsize=7)
    else:  # a partial reproduction: say so rather than draw an empty frame
        ax.text(0.5, 0.5, "no complete run yet", ha="center", va="center", transform=ax.transAxes, color="grey")
    return rows


def draw_all(runs, data_dir, out_dir, tier):
    os.makedirs(out_dir, exist_ok=True)
    note = f"tier '{tier}'; unsmoothed mean over seeds, band = 1 std"
    fig2(runs, data_dir, out_dir)
    fig3(out_dir)
    # Fig. 4: learning curves on the three tasks
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    rows = []
    for ax, env in zip(axes, FIG4_ENVS):
        rs = [r for r in available(runs, data_dir, env=env) if r["exp"] == r["algo"]]
        rows += curves(ax, rs, FIG4_ALGOS,
                       {"multi_pendulum": "(a) 3-pendulum", "predator_prey": "(b) predator-prey",
                        "po_predator_prey": "(c) PO-predator-prey"}[env])
    fig.suptitle(f"Fig. 4: evaluation return ({note})")
    save(fig, out_dir, "fig4_learning_curves")
    write_rows(os.path.join(out_dir, "fig4_learning_curves.csv"), ["env", "algo", "seed", "step", "eval_return"], rows)
    fig5(runs, data_dir, out_dir)
    # Fig. 6: scalability on the graded multi-pendulum
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    rows = []
    for ax, n in zip(axes, SCALE_N):
        rs = [r for r in available(runs, data_dir, env="multi_pendulum") if r["exp"].endswith(f"-n{n}-graded")]
        rows += curves(ax, rs, SCALE_ALGOS, f"{n} pendulums, graded reward")
    fig.suptitle(f"Fig. 6: scalability ({note})")
    save(fig, out_dir, "fig6_scalability")
    write_rows(os.path.join(out_dir, "fig6_scalability.csv"), ["env", "algo", "seed", "step", "eval_return"], rows)
    fig7(runs, data_dir, out_dir)


def fig2(runs, data_dir, out_dir):
    """Simple World: learned Q_tot and the trajectory of the deterministic joint action (first seed)."""
    algos = FIG2_ALGOS
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    grid = torch.linspace(-10, 10, 121, dtype=torch.float64)
    u = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
    reward = envs.SimpleWorld.reward_fn(u).numpy()
    traj_rows, land_rows, corr_rows = [], [], []
    for ax, algo in zip(axes, algos):
        rs = available(runs, data_dir, env="simple_world", algo=algo)
        ax.contour(grid, grid, reward.T, levels=8, colors="k", linewidths=0.6, linestyles="dashed")
        ax.set(title=f"({'abc'[algos.index(algo)]}) {LABELS[algo]}", xlabel="u_1", ylabel="u_2", aspect="equal")
        if not rs:
            ax.text(0, 0, "no complete run", ha="center")
            continue
        r = rs[0]
        land = np.load(os.path.join(data_dir, r["name"], "landscape.npz"))
        # how well Q_tot represents the reward: correlation over the grid, per seed, then averaged
        corr = [landscape_correlation(np.load(os.path.join(data_dir, x["name"], "landscape.npz")))
                for x in rs]
        cs = ax.contourf(land["u"], land["u"], land["q_tot"].T, levels=20, cmap="viridis")
        fig.colorbar(cs, ax=ax, label="learned Q_tot")
        ev = r["eval"]
        ax.plot(ev["u0_0"], ev["u1_0"], "w:", lw=1.5)
        ax.plot(ev["u0_0"][0], ev["u1_0"][0], "o", color="red", ms=8)
        ax.plot(ev["u0_0"][-1], ev["u1_0"][-1], "*", color="red", ms=14)
        ax.set_title(f"{ax.get_title()}, seed {r['seed']}: final return {ev['eval_return'][-1]:.2f}\n"
                     f"over {len(rs)} seed(s): mean final return "
                     f"{np.mean([x['eval']['eval_return'][-1] for x in rs]):.2f}, "
                     f"corr(Q_tot, reward) {np.mean(corr):.2f}", fontsize=10)
        for x, c in zip(rs, corr):
            corr_rows.append((algo, x["seed"], c))
        for x in rs:
            traj_rows += [(algo, x["seed"], int(t), a, b, v) for t, a, b, v in
                          zip(x["eval"]["step"], x["eval"]["u0_0"], x["eval"]["u1_0"], x["eval"]["eval_return"])]
        land_rows += [(algo, r["seed"], a, b, land["q_tot"][i, j]) for i, a in enumerate(land["u"])
                      for j, b in enumerate(land["u"])]
    fig.suptitle("Fig. 2: Simple World, learned Q_tot (colour) over the true reward (dashed);\n"
                 "deterministic joint action during training (dotted, o start, * end)")
    save(fig, out_dir, "fig2_simple_world")
    write_rows(os.path.join(out_dir, "fig2_trajectories.csv"), ["algo", "seed", "step", "u1", "u2", "eval_return"],
               traj_rows)
    write_rows(os.path.join(out_dir, "fig2_landscape.csv"), ["algo", "seed", "u1", "u2", "q_tot"], land_rows)
    write_rows(os.path.join(out_dir, "fig2_correlation.csv"), ["algo", "seed", "corr_qtot_reward"], corr_rows)


def landscape_correlation(land):
    """Pearson correlation of a learned Q_tot with the true Simple World reward on the same grid."""
    u = torch.as_tensor(land["u"], dtype=torch.float64)
    reward = envs.SimpleWorld.reward_fn(torch.stack(torch.meshgrid(u, u, indexing="ij"), -1)).numpy()
    return float(np.corrcoef(land["q_tot"].ravel(), reward.ravel())[0, 1])


def fig3(out_dir):
    """Independent N([-1,-1], diag(4, 20)) vs collaborative N([-1,-1], [[15,10],[10,15]]) over the reward,
    with each policy's expected reward (Monte Carlo, actions clipped to the bounds as the env does)."""
    grid = torch.linspace(-10, 10, 201, dtype=torch.float64)
    u = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)
    reward = envs.SimpleWorld.reward_fn(u).numpy()
    mean = torch.tensor([-1.0, -1.0], dtype=torch.float64)
    policies = {"independent": [[4.0, 0.0], [0.0, 20.0]], "collaborative": [[15.0, 10.0], [10.0, 15.0]]}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    rows = []
    g = torch.Generator().manual_seed(0)
    for ax, (name, cov) in zip(axes, policies.items()):
        cov = torch.tensor(cov, dtype=torch.float64)
        x = mean + torch.randn(400_000, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
        expected = envs.SimpleWorld.reward_fn(x.clamp(-10, 10)).mean().item()
        rows.append((name, cov.tolist(), expected))
        ax.contourf(grid, grid, reward.T, levels=20, cmap="viridis")
        vals, vecs = torch.linalg.eigh(cov)
        t = torch.linspace(0, 2 * np.pi, 200, dtype=torch.float64)
        for k in (1, 2):  # 1- and 2-sigma ellipses
            e = mean[:, None] + k * vecs @ (vals.sqrt()[:, None] * torch.stack([t.cos(), t.sin()]))
            ax.plot(e[0], e[1], "w-", lw=1.5)
        ax.set(title=f"({'ab'[len(rows) - 1]}) {name}: E[reward] = {expected:.3f}", xlabel="u_1", ylabel="u_2",
               aspect="equal", xlim=(-10, 10), ylim=(-10, 10))
    fig.suptitle("Fig. 3: exploration policies over the Simple World reward (1 and 2 sigma)")
    save(fig, out_dir, "fig3_exploration")
    write_rows(os.path.join(out_dir, "fig3_exploration.csv"), ["policy", "covariance", "expected_reward"], rows)


def fig5(runs, data_dir, out_dir):
    """IAC's Sigma = L L^T + D on 3-pendulum at four points of training (first complete seed)."""
    rs = [r for r in available(runs, data_dir, env="multi_pendulum", algo="iac") if r["exp"] == "iac"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    rows = []
    if rs:
        r = rs[0]
        cov = np.load(os.path.join(data_dir, r["name"], "covariance.npz"))
        picks = np.unique(np.linspace(0, len(cov["step"]) - 1, 4).round().astype(int))
        lim = max(np.abs(cov["sigma"][picks]).max(), 1e-9)
        for ax, k in zip(axes, picks):
            s = cov["sigma"][k]
            im = ax.imshow(s, cmap="coolwarm", vmin=-lim, vmax=lim)
            for (i, j), v in np.ndenumerate(s):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8)
                rows.append((r["seed"], int(cov["step"][k]), i, j, v))
            ax.set(title=f"step {int(cov['step'][k]):,}", xticks=range(len(s)), yticks=range(len(s)))
        fig.colorbar(im, ax=axes.tolist())
        fig.suptitle(f"Fig. 5: IAC's covariance Sigma = L L^T + D on 3-pendulum, seed {r['seed']} "
                     "(pre-squash, averaged over the evaluation start states)")
    save(fig, out_dir, "fig5_covariance")
    write_rows(os.path.join(out_dir, "fig5_covariance.csv"), ["seed", "step", "i", "j", "sigma"], rows)


def first_reach(ev, threshold):
    hit = np.nonzero(ev["eval_return"] >= threshold)[0]
    return ev["step"][hit[0]] if len(hit) else np.nan


def return_difference_bars(ax, runs, algos, env, rows):
    """Each method's final return minus DDPG-MIX's (mean of its seeds' finals): bars of mean and 1 std
    over seeds, "no runs" where a method has none."""
    final = lambda r: r["eval"]["eval_return"][-FINAL_EVALS:].mean()
    base = np.mean([final(r) for r in runs if r["algo"] == "ddpg_mix"] or [np.nan])
    for i, algo in enumerate(algos):
        d = np.array([final(r) - base for r in runs if r["algo"] == algo])
        rows += [(env, "diff_return", algo, v) for v in d]
        if len(d):
            ax.bar(i, d.mean(), yerr=d.std(), color=COLORS[algo])
            ax.text(i, 0, f"n={len(d)}", ha="center", va="top", fontsize=7)
        else:
            ax.text(i, 0, "no runs", ha="center", va="bottom", fontsize=8)
    ax.set(xticks=range(len(algos)), xticklabels=[LABELS[a] for a in algos], ylabel="final return - DDPG-MIX's")
    ax.axhline(0, color="k", lw=0.5)


def fig7(runs, data_dir, out_dir):
    algos = FIG7_ALGOS
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    rows = []
    finals = f"final = mean of last {FINAL_EVALS} evaluations; bars: mean, 1 std over seeds"
    # (a) predator-prey: steps saved vs DDPG-MIX in reaching the threshold
    pp = [r for r in available(runs, data_dir, env="predator_prey") if r["exp"] == r["algo"]]
    reach = [first_reach(r["eval"], THRESHOLD) for r in pp if r["algo"] == "ddpg_mix"]
    base = np.nanmean(reach) if np.isfinite(reach).any() else np.nan
    if np.isfinite(base):
        for i, algo in enumerate(algos):
            t = np.array([first_reach(r["eval"], THRESHOLD) for r in pp if r["algo"] == algo])
            saved = (base - t) / 1000
            rows += [("predator_prey", "saved_ksteps", algo, v) for v in saved]
            if len(t) and np.isfinite(saved).any():
                axes[0].bar(i, np.nanmean(saved), yerr=np.nanstd(saved), color=COLORS[algo])
            else:
                axes[0].text(i, 0, "not\nreached" if len(t) else "no runs", ha="center", va="bottom", fontsize=8)
        axes[0].set(xticks=range(len(algos)), xticklabels=[LABELS[a] for a in algos],
                    ylabel="saved steps (thousands)",
                    title=f"(a) predator-prey: steps saved vs DDPG-MIX\nto first reach return {THRESHOLD:.0f}")
        axes[0].axhline(0, color="k", lw=0.5)
    else:  # no saved steps without DDPG-MIX's own: the final returns are what the runs can show
        return_difference_bars(axes[0], pp, algos, "predator_prey", rows)
        axes[0].set_title(f"(a) predator-prey: DDPG-MIX never reached return {THRESHOLD:.0f} (the paper's measure),\n"
                          f"so: return difference vs DDPG-MIX ({finals})", fontsize=10)
    # (b) PO-predator-prey: final return minus DDPG-MIX's
    po = [r for r in available(runs, data_dir, env="po_predator_prey") if r["exp"] == r["algo"]]
    return_difference_bars(axes[1], po, algos, "po_predator_prey", rows)
    axes[1].set_title(f"(b) PO-predator-prey: return difference vs DDPG-MIX\n({finals})")
    fig.suptitle("Fig. 7: IAC and SIAQ against their ablations")
    save(fig, out_dir, "fig7_ablations")
    write_rows(os.path.join(out_dir, "fig7_ablations.csv"), ["env", "measure", "algo", "value"], rows)


def render_gif(actor, env, seed, path, to_env):
    """One deterministic predator-prey episode as a GIF (matplotlib frames, written by save_gif)."""
    obs, _ = env.reset(seed=seed)
    positions = []
    with torch.no_grad():
        for _ in range(env.episode_len):
            positions.append(env.pos[0].cpu().numpy().copy())
            obs, *_ = env.step(to_env(actor.mean(obs), env), check=False)
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)  # 320 x 320 pixels
    colors = ["tab:red"] * 3 + ["tab:green"] + ["0.3"] * 2
    sizes = env.size.cpu().numpy()
    frames = []
    for t, pos in enumerate(positions):
        ax.clear()
        ax.set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xticks=[], yticks=[], title=f"step {t}")
        for p, c, s in zip(pos, colors, sizes):
            ax.add_patch(plt.Circle(p, s, color=c))
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    plt.close(fig)
    save_gif(frames, path, fps=10)


def episode_gif(actor, make_env, targs, seed, path, device, to_env):
    """--eval-only --capture-video: one deterministic episode of the checkpoint's env as a GIF. Predator-prey
    is drawn here; a pz: / mamujoco: env draws itself (own_env_gif)."""
    if envs.own_env(targs):
        own_env_gif(actor, lambda: make_env(targs, 1, device, render_mode="rgb_array"), targs.env, seed, path, to_env)
    else:
        render_gif(actor, make_env(targs, 1, device), seed, path, to_env)


def own_env_gif(actor, make_env, name, seed, path, to_env, max_frames=250):
    """One deterministic episode of a pz: / mamujoco: env as a GIF, drawn by the env's own rgb_array
    renderer (at most max_frames frames: a long episode keeps every k-th)."""
    try:
        env = make_env()
        obs, _ = env.reset(seed=seed)
        frames = [env.frame()]
        with torch.no_grad():
            for _ in range(env.episode_len):
                obs, _, _, term, trunc, _ = env.step(to_env(actor.mean(obs), env))
                if term[0] or trunc[0]:  # the copy has already reset: its next picture is a new episode
                    break
                frames.append(env.frame())
        env.close()
    except Exception as e:  # noqa: BLE001 -- the env's renderer (OpenGL, pygame): report, no traceback
        detail = str(e) if isinstance(e, envs.EnvSpecError) else f"{type(e).__name__}: {e}"
        sys.exit(f"error: --capture-video: --env {name} could not draw its episode off-screen ({detail}). "
                 "The env must take render_mode='rgb_array'; MuJoCo draws with MUJOCO_GL=egl (the default here) "
                 "or MUJOCO_GL=osmesa, each needing its system library (libEGL, libOSMesa)")
    save_gif(frames[:: -(-len(frames) // max_frames)], path, fps=20)


def save_gif(frames, path, fps):
    """(H, W, 3) uint8 frames -> an animated GIF (Pillow), halved while wider than 320 px; written to a
    temporary file and renamed, so an interrupted write leaves no half GIF."""
    from PIL import Image

    imgs = [Image.fromarray(f) for f in frames]
    while imgs[0].width > 320:
        imgs = [im.reduce(2) for im in imgs]
    tmp = path + ".tmp"
    try:
        imgs[0].save(tmp, format="GIF", save_all=True, append_images=imgs[1:], duration=round(1000 / fps), loop=0)
        os.replace(tmp, path)
    except OSError as e:  # Pillow or the disk: one line, the previous GIF (if any) intact
        sys.exit(f"error: cannot write the GIF {path}: {e}")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def plot_runs(run_dirs, out, title=None):
    """Evaluation curves of any runs (their eval.csv): runs named <env>__<exp>__<seed> that differ only
    in the seed share a colour, one thin line per seed and a thick mean at the steps all of them
    evaluated. The CSV of the points goes next to the PNG.
    `python plots.py runs/<run> [runs/<run> ...] --out curves.png`"""
    if not out.endswith(".png"):
        raise SystemExit(f"error: --out {out}: give a .png path")
    groups, seen = {}, {}
    for d in dict.fromkeys(os.path.realpath(d) for d in run_dirs):  # a run named twice (RUN, RUN/) counts once
        if os.path.basename(d) == "eval.csv" and os.path.isfile(d):  # the run's eval.csv itself: its folder
            d = os.path.dirname(d)
        path = os.path.join(d, "eval.csv")
        if not os.path.isfile(path):
            raise SystemExit(f"error: {path} not found: give run folders written by iac.py / baselines.py")
        name = os.path.basename(os.path.normpath(d))
        if name in seen:  # same method and seed: averaging them would count one seed twice
            raise SystemExit(f"error: {seen[name]} and {d} are both the run {name} (same env, name and seed), "
                             "from different folders; plot them in separate calls")
        seen[name] = d
        groups.setdefault(name.rsplit("__", 1)[0], []).append((name, read_eval(path)))
    fig, ax = plt.subplots(figsize=(7, 4))
    rows = []
    for k, (group, evs) in enumerate(groups.items()):
        color = f"C{k % 10}"
        for name, ev in evs:
            ax.plot(ev["step"], ev["eval_return"], color=color, lw=0.6, alpha=0.45)
            rows += [(name, int(t), v) for t, v in zip(ev["step"], ev["eval_return"])]
        common = evs[0][1]["step"]  # the mean is taken at the steps every run of the group evaluated
        for _, ev in evs[1:]:
            common = np.intersect1d(common, ev["step"])
        mean = np.mean([ev["eval_return"][np.isin(ev["step"], common)] for _, ev in evs], 0)
        ax.plot(common, mean, color=color, lw=2, label=f"{group} (mean of {len(evs)})")
    ax.set(title=title or "deterministic evaluation return", xlabel="env steps", ylabel="evaluation return")
    ax.legend(fontsize=7)
    stem = os.path.splitext(os.path.abspath(out))[0]
    os.makedirs(os.path.dirname(stem), exist_ok=True)
    save(fig, *os.path.split(stem))
    write_rows(stem + ".csv", ["run", "step", "eval_return"], rows)


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="Plot the evaluation curves of training runs.", allow_abbrev=False)
    p.add_argument("runs", nargs="+", help="run folders, each holding an eval.csv")
    p.add_argument("--out", default="curves.png", help="PNG to write (its CSV goes beside it)")
    p.add_argument("--title", default=None, help="figure title (default: 'deterministic evaluation return')")
    a = p.parse_args(argv)
    runlib.check_out_file(p, "out", a.out, suffix=".png")
    plot_runs(a.runs, a.out, a.title)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
