"""Interactive Actor-Critic (IAC), the reference implementation.

Ma et al., "Modeling the Interaction between Agents in Cooperative Multi-Agent Reinforcement Learning",
arXiv 2102.06042. This one file holds the whole method:
  * the joint stochastic policy with collaborative exploration, Section 4.1, Eq. (12)-(15): per-agent
    Gaussian heads mu_i(o_i), sigma_i(o_i) plus a low-rank covariance factor L = f_psi(s);
  * the shared-attention per-agent critics Q_i(o, u), Section 4.2, Eq. (19)-(21);
  * the QMIX mixer, Eq. (22), trained on the TD target of Eq. (23)-(24) with the entropy term of the
    paper's maximum-entropy derivation (Eq. 24 is printed without it: --td-entropy none);
  * Algorithm 1's loop: updates from the first minibatch, u' from the target policy, hard target copies
    every T = 200 updates;
  * three switches (--policy, --critic, --mixer) that turn IAC into the paper's ablations (SQ, SIQ,
    SIAQ, Attn-QMIX, DDPG-MIX) and into the per-agent-critic setting of MADDPG / MAAC; `baselines.py`
    names those presets. Where the authors' released code (github YiqinYang/IAC) reads the paper
    differently, a flag gives its reading and --preset authors sets them all (README table).
Run plumbing (seeds, checkpoints, flag checks, the non-finite guard) lives in runlib.py.

    python iac.py --env predator_prey            # train; logs under runs/, see README.md
    python iac.py --eval-only --checkpoint runs/<run>/checkpoint.pt --capture-video

Shapes: B batch, n agents, o observation dim, S state dim, d action dim per agent, m rank of L.
Actions inside the algorithm are in [-1, 1]^d (tanh space; with --squash none clipped to it before the
env and the buffer); they are scaled to the env's bounds only when the env is stepped.
"""

import argparse
import copy
import csv
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

import envs
import runlib

BUILTIN_ENVS = tuple(e for e in envs.ENV_NAMES if e != "matrix_game")
OWN_ENV_STEPS = 100_000  # default budget of a pz: / mamujoco: env
# default training budget (env steps) per env, when --total-steps is not given; see README "Budgets"
DEFAULT_STEPS = {"simple_world": 3_000, "multi_pendulum": 200_000, "predator_prey": 200_000,
                 "po_predator_prey": 200_000}
AUTHORS = "github YiqinYang/IAC@925dc26"  # the authors' released code, cited by file:line below
# --preset authors: every setting where the authors' code departs from the paper's reading (README table)
PRESETS = {"authors": dict(critic="attention_shared", cov_diag="fixed", l_bound="tanh", rank=1, mean_noise=0.05, squash="none", alpha=0.1,
                           alpha_decay=1e-6, alpha_min=0.01, mixer_state="obs", actor_objective="mean_q",
                           grad_clip=0.0, predator_action="mpe5")}
# what --preset authors sets for the baselines (baselines.py): the settings every method shares; the
# policy- and critic-side items are IAC's own (the authors released IAC only)
SHARED_PRESET_KEYS = ("mixer_state", "predator_action", "grad_clip", "alpha", "alpha_decay", "alpha_min")
# flags added after the first release, with the values that release used: a format-1 checkpoint resumes as it ran
LEGACY = dict(next_action="current", cov_diag="learned", l_bound="none", mean_noise=0.0, squash="tanh",
              alpha_decay=0.0, alpha_min=0.0, mixer_state="env", actor_objective="qtot", td_entropy="soft",
              predator_action="mpe2", preset=None, seeds=None, env_kwargs=[], team_reward="mean")
# what --resume may change; every other flag is the run's own
RESUME_MAY_SET = ("resume", "total_steps", "cuda", "no_progress", "runs_dir")
# what --eval-only takes; everything else comes from the checkpoint
EVAL_ONLY_FLAGS = ("eval_only", "checkpoint", "eval_episodes", "seed", "cuda", "capture_video", "no_progress")


def parser():
    p = argparse.ArgumentParser(
        description="Train IAC (arXiv 2102.06042) or one of its ablations on a batched env. With no "
        "flags beyond --env, predator_prey trains for 200k env steps, about an hour on one CPU core. "
        "README 'Results' has the measured curves and how they compare with the paper.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    a = p.add_argument
    a("--env", default="predator_prey", metavar="ENV",
      help=f"environment: one of Section 5.1's ({', '.join(BUILTIN_ENVS)}; the matrix game of Section 3 is in "
      "baselines.py), or your own: pz:<module>[:<callable>] builds any PettingZoo ParallelEnv with continuous "
      "actions (e.g. pz:mpe2.simple_spread_v3), mamujoco:<Scenario>-<conf> Multi-Agent MuJoCo (e.g. "
      "mamujoco:HalfCheetah-2x3; pip install -r requirements-mamujoco.txt)")
    a("--env-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
      help="pz: / mamujoco: envs only: keyword arguments of the env's callable (values are read as Python "
      "literals where they parse, e.g. N=4 max_cycles=50; not in the paper, README 'Your own task')")
    a("--team-reward", default="mean", choices=["mean", "sum"],
      help="pz: / mamujoco: envs only: the team reward r of the Dec-POMDP, Section 2, as the mean or the sum "
      "of the agents' rewards")
    a("--n-agents", type=int, default=None, help="multi_pendulum only: number of pendulums n (default 3)")
    a("--graded-reward", action="store_true",
      help="multi_pendulum only: the graded reward of the scalability experiment, Fig. 6")
    a("--predator-action", default="mpe2", choices=["mpe2", "mpe5"],
      help="predator-prey only: mpe2: 2-D force in [-1, 1]^2; mpe5: the authors' 5-D action of the old MPE, "
      "force (a1 - a2, a3 - a4), up to twice as strong (common/utils.py:34-51)")
    a("--exp-name", default="iac", help="name of the run; logs go to runs/<env>__<exp-name>__<seed>")
    a("--seed", type=int, default=1,
      help="seed of the run; each random stream (torch, envs, replay sampling) gets its own seed from it")
    a("--seeds", default=None,
      help="train one run per seed in one process, as a population (comma-separated, e.g. 1,2,3): each "
      "writes runs/<env>__<exp-name>__<seed> as a single run does, and one checkpoint holds them all (run "
      "plumbing, not in the paper; README 'Populations')")
    a("--cuda", action=argparse.BooleanOptionalAction, default=None,
      help="put envs, replay buffer and networks on the GPU (default: CPU; with --resume: the checkpoint's device)")
    a("--total-steps", type=int, default=None,
      help=f"env steps to train, counted over all copies (default per env: {DEFAULT_STEPS})")
    a("--num-envs", type=int, default=1, help="B parallel env copies; one step of each counts as one")
    a("--preset", default=None, choices=sorted(PRESETS),
      help="authors: every setting of the authors' code that differs from the paper (README table); "
      "flags given explicitly win")
    # --- the method grid, ../shared/DESIGN.md section 1 ---
    a("--policy", default="joint", choices=["joint", "independent", "deterministic"],
      help="joint: Gaussian with collaborative exploration, Eq. (14); independent: per-agent "
      "Gaussians, Eq. (25); deterministic: mu_i(o_i) plus Gaussian exploration noise (DDPG)")
    a("--critic", default="attention", choices=["attention", "attention_shared", "individual", "centralized"],
      help="per-agent critic Q_i: attention over the other agents, Eq. (19)-(21), per-agent g_i and f_i; "
      "attention_shared: the authors' one g, f and observation-only query encoder for all agents "
      "(IAC/critics.py:57-93); individual Q_i(o_i, u_i); centralized Q_i(o, u) as MADDPG")
    a("--mixer", default="qmix", choices=["qmix", "none"],
      help="qmix: Q_tot = MIX(Q_1..Q_n, s), Eq. (22); none: each Q_i regresses the team reward")
    a("--others-actions", default="policy", choices=["policy", "buffer"],
      help="--mixer none: the other agents' actions in agent i's policy gradient: the current "
      "policies' (MAAC) or the replay buffer's (MADDPG)")
    # --- the joint policy, Section 4.1 ---
    a("--rank", type=int, default=2,
      help="rank m of the collaborative exploration matrix L (nd x m), Eq. (12) (authors: 1, common/utils.py:54)")
    a("--cov-diag", default="learned", choices=["learned", "fixed"],
      help="D of Sigma = L L^T + D, Eq. (12): learned: diag sigma_i(o_i)^2, Eq. (14); fixed: 1e-6 I, so "
      "all exploration goes through L (authors: IAC/actor.py:16,61)")
    a("--l-bound", default="none", choices=["none", "tanh"],
      help="L = f_psi(s), Eq. (13), unbounded, or tanh(f_psi(s)) (authors: IAC/actor.py:30-37)")
    a("--mean-noise", type=float, default=0.0,
      help="add c * U[0, 1) to the Gaussian's mean when sampling (authors: c = 0.05, IAC/actor.py:44-47)")
    a("--squash", default="tanh", choices=["tanh", "none"],
      help="tanh: u = tanh(x) with the log-prob correction; none: the Gaussian's mean is tanh(mu), u = x, "
      "clipped to [-1, 1] only at the env and in the buffer (authors: IAC/actor.py:63-65, agent.py:56)")
    a("--mixer-state", default="env", choices=["env", "obs"],
      help="s given to the mixer, Eq. (22), and to f_psi(s), Eq. (13): the env's global state, or the "
      "concatenated agents' observations (authors: common/utils.py:47)")
    # --- networks ---
    a("--hidden", type=int, default=64, help="width of every per-agent MLP layer (2 layers)")
    a("--heads", type=int, default=4, help="attention heads of the critic, Section 4.2")
    a("--mixer-embed", type=int, default=32, help="embedding size of the QMIX mixer, Eq. (22)")
    # --- optimisation ---
    a("--gamma", type=float, default=0.95, help="discount gamma, Eq. (24)")
    a("--actor-lr", type=float, default=1e-4, help="learning rate of theta and psi, Eq. (15)")
    a("--critic-lr", type=float, default=1e-3, help="learning rate of critics and mixer, Eq. (23)")
    a("--batch-size", type=int, default=256, help="minibatch size |b| of Eq. (23)")
    a("--buffer-size", type=int, default=500_000, help="replay buffer D capacity (transitions)")
    a("--learning-starts", type=int, default=0,
      help="env steps of uniform random actions first (Algorithm 1 line 9: none; updates begin once D "
      "holds one minibatch)")
    a("--updates-per-step", type=float, default=1.0, help="gradient updates per env step (UTD ratio)")
    a("--next-action", default="target", choices=["target", "current"],
      help="u' of the TD target, Eq. (24): from the target policy pi^- (Algorithm 1 line 15) or the "
      "current one (SAC's convention)")
    a("--td-entropy", default="soft", choices=["soft", "none"],
      help="soft: y = r + gamma (Q_tot' - alpha log pi'), the maximum-entropy target (authors: agent.py:102); "
      "none: Eq. (24) as printed, no entropy term")
    a("--actor-objective", default="qtot", choices=["qtot", "mean_q"],
      help="what Eq. (15) maximises with the mixer: Q_tot (paper) or the mean of the Q_i (authors: agent.py:107)")
    a("--tau", type=float, default=1.0,
      help="target update theta^- <- tau theta + (1 - tau) theta^-; 1 is Algorithm 1's hard copy")
    a("--target-update-interval", type=int, default=200,
      help="updates between target updates, T of Algorithm 1 lines 19-20")
    a("--alpha", type=float, default=None,
      help="fix the entropy temperature alpha of Eq. (8); by default it is learned (SAC v2)")
    a("--alpha-decay", type=float, default=0.0,
      help="with --alpha: subtract this from alpha after every update (authors: 1e-6, agent.py:125)")
    a("--alpha-min", type=float, default=0.0, help="with --alpha-decay: alpha's floor (authors: 0.01)")
    a("--alpha-lr", type=float, default=3e-4, help="learning rate of log alpha")
    a("--exploration-noise", type=float, default=0.1,
      help="--policy deterministic: std of the Gaussian noise added to tanh(mu) in [-1, 1] units")
    a("--grad-clip", type=float, default=10.0,
      help="max gradient norm of each optimiser step; 0: no clipping (authors: none)")
    # --- evaluation, logging, checkpoints ---
    a("--eval-every", type=int, default=1_000, help="env steps between deterministic evaluations")
    a("--eval-episodes", type=int, default=10, help="episodes per evaluation (run as one batch)")
    a("--save-model", action="store_true", help="write runs/<run>/checkpoint.pt (also periodically)")
    a("--checkpoint-every", type=int, default=25_000, help="env steps between checkpoints")
    a("--resume", default=None, metavar="PATH", help="continue the run saved in this checkpoint")
    a("--eval-only", action="store_true", help="only evaluate the policy in --checkpoint")
    a("--checkpoint", default=None, metavar="PATH", help="checkpoint for --eval-only")
    a("--capture-video", action="store_true",
      help="with --eval-only: write a GIF of one deterministic episode (predator-prey, and pz: / "
           "mamujoco: envs that draw with render_mode='rgb_array')")
    a("--runs-dir", default="runs", help="folder of the run folders")
    a("--no-progress", action="store_true", help="no progress line on the terminal")
    return p


def parse_args(argv=None, preset_keys=None):
    """Flags -> checked settings. `preset_keys` limits what --preset sets (baselines.py: the shared ones)."""
    p = parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    args.explicit = explicit_flags(argv)
    if args.preset:  # the preset's values, except where a flag was given by hand
        for k, v in PRESETS[args.preset].items():
            if preset_keys is not None and k not in preset_keys:
                continue
            if k not in args.explicit and not (k == "predator_action" and "predator_prey" not in args.env):
                setattr(args, k, v)
    check_args(p, args)
    return args


def explicit_flags(argv):
    """The flags given on the command line (argparse fills in the rest with defaults)."""
    q = parser()
    for action in q._actions:
        action.default = argparse.SUPPRESS
    return sorted(vars(q.parse_args(argv)))


def check_args(p, args):
    """Reject bad flag values at once, with a message that names the flag and the value. Every mode
    (training, --resume, --eval-only) checks every flag: a bad value is never silently ignored."""
    num = lambda name, *a, **k: runlib.check_number(p, args, name, *a, **k)
    for name in ("resume", "checkpoint"):  # an empty path (an unset shell variable) must not mean "none"
        if getattr(args, name) is not None and not getattr(args, name).strip():
            p.error(f"{runlib.flag(name)} {getattr(args, name)!r}: give the path of a checkpoint.pt")
    check_env(p, args)
    if not (args.resume or args.eval_only):  # a flag the other settings make meaningless is refused
        for name in args.explicit:
            if name in ONLY_WITH and not ONLY_WITH[name][0](args):
                p.error(f"{runlib.flag(name)} has no effect {ONLY_WITH[name][1](args)}; drop it")
    if args.cuda and not torch.cuda.is_available():
        p.error("--cuda was given but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if not 0 <= args.seed <= runlib.SEED_MAX:
        p.error(f"--seed must be in [0, {runlib.SEED_MAX}], got {args.seed}")
    if args.seeds is not None:
        check_seeds(p, args)
    for name in ("num_envs", "batch_size", "buffer_size", "eval_every", "eval_episodes", "hidden", "heads",
                 "mixer_embed", "checkpoint_every", "target_update_interval"):
        if getattr(args, name) < 1:
            p.error(f"{runlib.flag(name)} must be >= 1, got {getattr(args, name)}")
    for name in ("total_steps", "learning_starts"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"{runlib.flag(name)} must be >= 0, got {getattr(args, name)}")
    for name in ("actor_lr", "critic_lr", "alpha_lr", "updates_per_step"):
        num(name, 0, None, lo_open=True)
    num("gamma", 0, 1, hi_open=True)
    num("tau", 0, 1, lo_open=True)
    num("alpha", 0, None, optional=True)
    num("alpha_decay", 0)
    num("alpha_min", 0)
    num("mean_noise", 0)
    num("exploration_noise", 0)
    num("grad_clip", 0)
    if (args.alpha_decay or args.alpha_min) and args.alpha is None:
        p.error(f"--alpha-decay {args.alpha_decay} / --alpha-min {args.alpha_min} schedule a fixed alpha: "
                "give --alpha too")
    if args.alpha is not None and args.alpha_min > args.alpha:
        p.error(f"--alpha-min {args.alpha_min} is above --alpha {args.alpha}")
    if args.batch_size > args.buffer_size:
        p.error(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")
    if args.num_envs > args.buffer_size:
        p.error(f"--num-envs {args.num_envs} copies add {args.num_envs} transitions per step, more than "
                f"--buffer-size {args.buffer_size} holds")
    if args.hidden % args.heads:
        p.error(f"--hidden {args.hidden} must be a multiple of --heads {args.heads}")
    if args.env != "multi_pendulum" and (args.n_agents is not None or args.graded_reward):
        p.error("--n-agents and --graded-reward apply to --env multi_pendulum only")
    if args.n_agents is not None and args.n_agents < 1:
        p.error(f"--n-agents must be >= 1, got {args.n_agents}")
    if args.graded_reward and (args.n_agents or 3) < 3:
        p.error("--graded-reward (Fig. 6) needs --n-agents >= 3")
    if args.predator_action != "mpe2" and "predator_prey" not in args.env:
        p.error(f"--predator-action {args.predator_action} applies to predator-prey only, not --env {args.env}")
    n, d = env_sizes(args)
    if args.policy == "joint" and not 1 <= args.rank <= n * d:
        p.error(f"--rank m must be in 1..n*d = {n * d} for {args.env} (Eq. 12: L is nd x m), "
                f"got {args.rank}")
    if not args.exp_name or os.sep in args.exp_name or args.exp_name in (".", ".."):
        p.error(f"--exp-name {args.exp_name!r}: give a plain name (it becomes part of a folder name)")
    runlib.check_out_dir(p, "runs_dir", args.runs_dir)
    if not args.eval_only:
        check_memory(p, args)
    if args.eval_only:
        if not args.checkpoint:
            p.error("--eval-only needs --checkpoint PATH")
        runlib.check_in_file(p, "checkpoint", args.checkpoint)
        if args.resume:
            p.error("--eval-only and --resume exclude each other")
        ignored = [k for k in args.explicit if k not in EVAL_ONLY_FLAGS]
        if ignored:
            p.error(f"--eval-only evaluates the checkpoint's own run; {', '.join(map(runlib.flag, ignored))} "
                    f"would be ignored (it takes {', '.join(map(runlib.flag, EVAL_ONLY_FLAGS))})")
        return
    if args.capture_video:
        p.error("--capture-video works with --eval-only --checkpoint PATH")
    if args.checkpoint:
        p.error("--checkpoint is for --eval-only; to continue training give --resume PATH")
    if args.resume:
        runlib.check_in_file(p, "resume", args.resume)
        changed = [k for k in args.explicit if k not in RESUME_MAY_SET]
        if changed:
            p.error(f"--resume continues a run with its own settings; {', '.join(map(runlib.flag, changed))} "
                    f"cannot be changed (only {', '.join(map(runlib.flag, RESUME_MAY_SET[1:]))} can)")


_stochastic = (lambda a: a.policy != "deterministic", lambda a: "with --policy deterministic (no Gaussian)")
# flag -> (when it has an effect, why not here). Network sizes (--hidden, --heads, --mixer-embed) are
# left out: a sweep passes one set of sizes to every method.
ONLY_WITH = {
    "rank": (lambda a: a.policy == "joint", lambda a: f"with --policy {a.policy} (L exists with joint only)"),
    "l_bound": (lambda a: a.policy == "joint", lambda a: f"with --policy {a.policy} (L exists with joint only)"),
    **{k: _stochastic for k in ("cov_diag", "mean_noise", "squash", "next_action", "td_entropy", "alpha",
                                "alpha_decay", "alpha_min", "alpha_lr")},
    "exploration_noise": (lambda a: a.policy == "deterministic",
                          lambda a: f"with --policy {a.policy} (it explores by sampling its Gaussian)"),
    "others_actions": (lambda a: a.mixer == "none", lambda a: "with --mixer qmix (Q_tot takes every fresh action)"),
    "actor_objective": (lambda a: a.mixer == "qmix", lambda a: "with --mixer none (each agent maximises its Q_i)"),
    "alpha_lr": (lambda a: a.policy != "deterministic" and a.alpha is None, lambda a: _stochastic[1](a) if
                 a.policy == "deterministic" else f"with a fixed --alpha {a.alpha} (only a learned alpha has a rate)"),
    "checkpoint_every": (lambda a: a.save_model, lambda a: "without --save-model (no checkpoints are written)"),
}


MAX_MEMBERS = 256


def check_seeds(p, args):
    """--seeds "1,2,3" -> args.seeds = [1, 2, 3] (args.seed becomes the first)."""
    if isinstance(args.seeds, str):
        try:
            args.seeds = [int(x) for x in args.seeds.split(",")]
        except ValueError:
            p.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. --seeds 1,2,3")
    if "seed" in args.explicit:
        p.error("--seed and --seeds exclude each other: --seeds names every run's seed")
    bad = [s for s in args.seeds if not 0 <= s <= runlib.SEED_MAX]
    if bad:
        p.error(f"--seeds: every seed must be in [0, {runlib.SEED_MAX}], got {bad[0]}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds {','.join(map(str, args.seeds))} repeats a seed: the runs would write the same folder")
    if not 1 <= len(args.seeds) <= MAX_MEMBERS:
        p.error(f"--seeds: give 1 to {MAX_MEMBERS} seeds, got {len(args.seeds)}")
    args.seed = args.seeds[0]


def check_memory(p, args):
    """The replay buffer is preallocated: refuse a --buffer-size the machine cannot hold, before training."""
    n, d = env_sizes(args)
    o, S = {"simple_world": (1, 1), "multi_pendulum": (3, 3 * n)}.get(args.env, (16, 20))
    if own_env(args):
        o, S = args.own_env_sizes[2:]
    S = n * o if args.mixer_state == "obs" else S
    need = args.buffer_size * (2 * n * o + 2 * S + n * d + 2) * 4  # float32 obs, state, act, rew, next_*, term
    need *= len(args.seeds or [0])  # one buffer per member of a population
    if args.cuda:
        have, what = torch.cuda.mem_get_info()[0], "free GPU memory"
    else:
        have, what = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "memory"
    if need > 0.8 * have:
        p.error(f"--buffer-size {args.buffer_size:,} needs {need / 2**30:.1f} GiB for the replay buffers; this "
                f"machine has {have / 2**30:.1f} GiB of {what}")


def own_env(args):
    return args.env.startswith(("pz:", "mamujoco:"))


def env_kwargs(args):
    """--env-kwargs KEY=VALUE ... -> dict, values as Python literals where they parse."""
    import ast

    out = {}
    for item in args.env_kwargs:
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"--env-kwargs {item!r}: give KEY=VALUE, e.g. max_cycles=50")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def check_env(p, args):
    """A built-in env name, or a pz: / mamujoco: env that builds and can be trained on (its sizes are
    kept for the checks below)."""
    if not own_env(args):
        if args.env not in BUILTIN_ENVS:
            hint = " (the matrix game trains with baselines.py --algo qmix or qmixs)" if args.env == "matrix_game" else ""
            p.error(f"--env {args.env!r}: expected one of {', '.join(BUILTIN_ENVS)}, pz:<module>[:<callable>] or "
                    f"mamujoco:<Scenario>-<conf>{hint}")
        for name in ("env_kwargs", "team_reward"):
            if name in args.explicit:
                p.error(f"{runlib.flag(name)} applies to pz: and mamujoco: envs only, not --env {args.env}")
        return
    try:
        env = envs.PettingZooBatch(args.env, 1, env_kwargs=env_kwargs(args), team_reward=args.team_reward)
    except ValueError as e:
        p.error(str(e))
    args.own_env_sizes = (env.n_agents, env.act_dim, env.obs_dim, env.state_dim)
    env.close()


def env_sizes(args):
    """(n agents, d action dims) of the env the flags name, without building it."""
    if own_env(args):
        return args.own_env_sizes[:2]
    d_pp = 5 if getattr(args, "predator_action", "mpe2") == "mpe5" else 2
    return {"simple_world": (2, 1), "predator_prey": (3, d_pp), "po_predator_prey": (3, d_pp)}.get(
        args.env, (args.n_agents or 3, 1))


def make_env(args, num_envs, device, render_mode=None):
    if own_env(args):
        return envs.PettingZooBatch(args.env, num_envs, device, env_kwargs=env_kwargs(args),
                                    team_reward=args.team_reward, render_mode=render_mode)
    kw = dict(n_agents=args.n_agents, graded=args.graded_reward) if args.env == "multi_pendulum" else {}
    if getattr(args, "predator_action", "mpe2") != "mpe2":
        kw["predator_action"] = args.predator_action
    return envs.make_env(args.env, num_envs=num_envs, device=device, **kw)


# ----------------------------------------------------------------------------------------------------
# Per-agent networks run for all agents at once: one weight tensor (n, in, out) instead of n Linears.
class AgentLinear(nn.Module):
    def __init__(self, n, fan_in, fan_out):
        super().__init__()
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init, agent by agent
        self.weight = nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, fan_out).uniform_(-bound, bound))

    def forward(self, x):  # (..., n, in) -> (..., n, out)
        lead = x.shape[:-2]
        x = x.reshape(-1, *x.shape[-2:]).transpose(0, 1)  # (n, B, in): one matmul per agent, batched
        y = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)  # (n, B, out)
        return y.transpose(0, 1).reshape(*lead, y.shape[0], y.shape[2])


class Linear(nn.Linear):
    """nn.Linear on the inputs' rows as one 2-D matrix product: the same numbers, but under torch.func.vmap
    (populations, --seeds) a 3-D input would otherwise turn into a batch of per-row products."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], self.out_features)


def agent_mlp(n, sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [AgentLinear(n, sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


def mlp(sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [Linear(sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's SAC bounds on the state-dependent log-std


def squash_log_prob(x):
    """log |det d tanh(x)/dx| per element, in the stable form 2 (log 2 - x - softplus(-2x))."""
    return 2 * (math.log(2) - x - F.softplus(-2 * x))


class LowRankGaussian:
    """N(loc, L L^T + diag(D)) over k = nd dims with L of rank m, as torch's LowRankMultivariateNormal
    (the tests check every method against it) but with the m x m capacitance matrix C = I + L^T D^-1 L
    factored by cholesky_ex: torch's class calls linalg.cholesky, which waits for the GPU to report
    success. A factorisation that fails gives NaN, which the training loop's guard then reports."""

    def __init__(self, loc, cov_factor, cov_diag):  # (B, k), (B, k, m), (B, k)
        self.loc, self.L, self.D = loc, cov_factor, cov_diag
        m = cov_factor.shape[-1]
        C = torch.eye(m, dtype=loc.dtype, device=loc.device) + cov_factor.mT @ (cov_factor / cov_diag[..., None])
        self.C_tril, info = torch.linalg.cholesky_ex(C)  # (B, m, m)
        self.C_tril = self.C_tril + torch.where(info > 0, math.nan, 0.0)[..., None, None]

    def rsample(self):
        eps_m = torch.randn(self.L.shape[:-2] + self.L.shape[-1:], dtype=self.loc.dtype, device=self.loc.device)
        eps_k = torch.randn_like(self.loc)
        return self.loc + (self.L @ eps_m[..., None]).squeeze(-1) + self.D.sqrt() * eps_k  # Eq. (14)

    def log_det(self):  # log det Sigma = log det C + sum log D (matrix determinant lemma)
        return 2 * self.C_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1) + self.D.log().sum(-1)

    def log_prob(self, x):
        z = x - self.loc
        # Woodbury: z^T Sigma^-1 z = z^T D^-1 z - |C_tril^-1 L^T D^-1 z|^2
        w = torch.linalg.solve_triangular(self.C_tril, (self.L.mT @ (z / self.D)[..., None]), upper=False)
        maha = (z * z / self.D).sum(-1) - w.squeeze(-1).pow(2).sum(-1)
        k = self.loc.shape[-1]
        return -0.5 * (k * math.log(2 * math.pi) + self.log_det() + maha)

    def entropy(self):
        k = self.loc.shape[-1]
        return 0.5 * k * (1 + math.log(2 * math.pi)) + 0.5 * self.log_det()

    @property
    def covariance_matrix(self):
        return self.L @ self.L.mT + torch.diag_embed(self.D)


class DiagonalGaussian(Normal):
    """torch's Normal with eps drawn by randn_like: Normal.rsample fills a new tensor in place, which
    torch.func.vmap (populations) cannot give a different draw per member."""

    def rsample(self):
        return self.loc + self.scale * torch.randn_like(self.loc)


FIXED_D = 1e-6  # --cov-diag fixed: D = 1e-6 I (authors: epsilon_D, IAC/actor.py:16)


# ----------------------------------------------------------------------------------------------------
# Section 4.1: the joint stochastic policy with collaborative exploration.
class Actor(nn.Module):
    """pi(u | o, s). joint: x = mu(o) + sigma(o) eps_N + L(s) eps_M, Eq. (14), u = tanh(x);
    independent: L = 0, Eq. (25); deterministic: u = tanh(mu(o)) (+ noise, added by the caller).
    Execution uses tanh(mu_i(o_i)) only, so agent i needs nothing but its own observation.
    The keyword switches are the authors' variants (--cov-diag, --l-bound, --mean-noise, --squash)."""

    def __init__(self, n, obs_dim, state_dim, d, hidden, policy, rank, cov_diag="learned", l_bound="none",
                 mean_noise=0.0, squash="tanh"):
        super().__init__()
        self.n, self.d, self.policy, self.rank = n, d, policy, rank
        self.cov_diag, self.l_bound, self.mean_noise, self.squash = cov_diag, l_bound, mean_noise, squash
        out = d if policy == "deterministic" else 2 * d  # mu_i and log sigma_i
        self.net = agent_mlp(n, [obs_dim, hidden, hidden, out])  # theta_i, one per agent
        if policy == "joint":
            # f_psi(s) of Eq. (13): the collaborative exploration matrix from the global state
            self.f_psi = mlp([state_dim, hidden, hidden, n * d * rank])

    def mean(self, obs):  # (B, n, o) -> (B, n, d), in tanh space
        return torch.tanh(self.net(obs)[..., : self.d])

    def distribution(self, obs, state):
        """Pre-squash distribution of x: LowRankGaussian over (B, nd) (joint) or Normal (B, n, d)."""
        mu, log_std = self.net(obs).split(self.d, -1)  # (B, n, d) each
        if self.squash == "none":  # the authors' Gaussian is centred on tanh(mu) and never squashed
            mu = torch.tanh(mu)
        if self.mean_noise:  # a one-sided jitter of the mean, c U[0, 1) (authors: IAC/actor.py:44-47)
            mu = mu + self.mean_noise * torch.rand_like(mu)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        var = (2 * log_std).exp() if self.cov_diag == "learned" else torch.full_like(log_std, FIXED_D)
        if self.policy == "independent":
            return DiagonalGaussian(mu, var.sqrt(), validate_args=False)
        B = obs.shape[0]
        L = self.f_psi(state).view(B, self.n * self.d, self.rank)  # (B, nd, m), Eq. (13)
        if self.l_bound == "tanh":
            L = torch.tanh(L)
        # Sigma = L L^T + D, Eq. (12); D = diag(sigma^2) from the agents' own heads
        return LowRankGaussian(mu.flatten(1), L, var.flatten(1))

    def sample(self, obs, state):
        """Reparameterised u (B, n, d) and log pi(u | o, s): (B,) joint, (B, n) independent.
        u is in [-1, 1] with --squash tanh; with none it is the raw Gaussian sample."""
        dist = self.distribution(obs, state)
        x = dist.rsample()  # joint: (B, nd); independent: (B, n, d)
        log_prob = dist.log_prob(x)  # joint: (B,); independent: (B, n, d)
        if self.squash == "tanh":  # log pi(u) = log N(x) - sum over the dims of log(1 - tanh(x)^2)
            log_prob = log_prob - (squash_log_prob(x).sum(-1) if self.policy == "joint" else squash_log_prob(x))
            x = torch.tanh(x)
        if self.policy == "joint":
            return x.view(*obs.shape[:2], self.d), log_prob
        return x, log_prob.sum(-1)  # (B, n), per agent

    def covariance(self, obs, state):
        """Sigma = L L^T + D of the pre-squash joint Gaussian, (B, nd, nd); Fig. 5."""
        dist = self.distribution(obs, state)
        if self.policy == "independent":
            return torch.diag_embed(dist.variance.flatten(1))
        return dist.covariance_matrix


# ----------------------------------------------------------------------------------------------------
# Section 4.2: per-agent critics Q_i. Every critic maps (o (B, n, o), u (B, n, d)) -> Q (B, n).
class AttentionCritic(nn.Module):
    """Q_i(o, u) = f_i(e_i, x_i), e_i = g_i(o_i, u_i), x_i = sum_{j != i} alpha_j h(V e_j), Eq. (19)-(21).
    g_i and f_i are per agent; W_q, W_k and V are shared across agents, as in MAAC."""

    def __init__(self, n, obs_dim, d, hidden, heads):
        super().__init__()
        self.heads = heads
        self.g = nn.Sequential(AgentLinear(n, obs_dim + d, hidden), nn.LeakyReLU())  # e_i
        self.W_q = Linear(hidden, hidden, bias=False)
        self.W_k = Linear(hidden, hidden, bias=False)
        self.V = nn.Sequential(Linear(hidden, hidden, bias=False), nn.LeakyReLU())  # h(V e_j)
        self.f = agent_mlp(n, [2 * hidden, hidden, 1])
        self.register_buffer("others", ~torch.eye(n, dtype=torch.bool))  # j != i

    def attention(self, e, e_kv=None):
        """x_i (B, n, hidden) and the attention logits (B, heads, n, n) over the other agents.
        Queries come from e, keys and values from e_kv (IAC: both are e_i = g_i(o_i, u_i))."""
        e_kv = e if e_kv is None else e_kv
        B, n, h = e.shape
        split = lambda t: t.view(B, n, self.heads, h // self.heads)  # (B, n, H, h/H), head by head
        q, k, v = split(self.W_q(e)), split(self.W_k(e_kv)), split(self.V(e_kv))
        # n x n products of tiny (h/H)-vectors: broadcast and sum, 2x faster on a CPU than a batched matmul
        logits = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(h // self.heads)  # (B, i, j, H), Eq. (21)
        logits = logits.masked_fill(~self.others.unsqueeze(-1), float("-inf"))
        # with one agent there is nobody to attend to: the weights of an all-masked row become 0
        weights = torch.nan_to_num(logits.softmax(2)) if n == 1 else logits.softmax(2)  # alpha_j of Eq. (20)
        x = (weights.unsqueeze(-1) * v.unsqueeze(1)).sum(2).reshape(B, n, h)  # Eq. (20)
        return x, logits.permute(0, 3, 1, 2)  # logits as (B, H, i, j)

    def forward(self, obs, act):
        e = self.g(torch.cat([obs, act], -1))  # (B, n, hidden), e_i = g_i(o_i, u_i)
        x, _ = self.attention(e)
        return self.f(torch.cat([e, x], -1)).squeeze(-1)  # (B, n), Eq. (19)


class SharedAttentionCritic(AttentionCritic):
    """The authors' variant (IAC/critics.py:57-93): one set of weights for all agents (their `# share`),
    queries from an observation-only encoder s(o_i), keys and values from e_j = g(o_j, u_j), and the head
    Q_i = f(e_i, x_i)."""

    def __init__(self, n, obs_dim, d, hidden, heads):
        super().__init__(n, obs_dim, d, hidden, heads)  # W_q, W_k, V and the mask; g and f replaced below
        self.g = nn.Sequential(Linear(obs_dim + d, hidden), nn.LeakyReLU())  # shared e_j
        self.s = nn.Sequential(Linear(obs_dim, hidden), nn.LeakyReLU())  # shared query input s_i
        self.f = mlp([2 * hidden, hidden, 1])  # shared head

    def forward(self, obs, act):
        e = self.g(torch.cat([obs, act], -1))  # (B, n, hidden)
        x, _ = self.attention(self.s(obs), e)
        return self.f(torch.cat([e, x], -1)).squeeze(-1)  # (B, n)


class IndividualCritic(nn.Module):
    """Q_i(o_i, u_i): agent i sees only its own observation and action (QMIX's per-agent utility)."""

    def __init__(self, n, obs_dim, d, hidden):
        super().__init__()
        self.q = agent_mlp(n, [obs_dim + d, hidden, hidden, 1])

    def forward(self, obs, act):
        return self.q(torch.cat([obs, act], -1)).squeeze(-1)


class CentralizedCritic(nn.Module):
    """Q_i(o, u): one MLP per agent over every observation and action (MADDPG's critic)."""

    def __init__(self, n, obs_dim, d, hidden):
        super().__init__()
        self.n = n
        self.q = agent_mlp(n, [n * (obs_dim + d), hidden, hidden, 1])

    def forward(self, obs, act):
        joint = torch.cat([obs, act], -1).flatten(-2)  # (B, n (o + d))
        return self.q(joint.unsqueeze(-2).expand(*joint.shape[:-1], self.n, -1)).squeeze(-1)


class QMixer(nn.Module):
    """Q_tot = MIX(Q_1..Q_n, s), Eq. (22): QMIX's hypernetworks, |weights| keep dQ_tot/dQ_i >= 0, Eq. (3)."""

    def __init__(self, n, state_dim, embed):
        super().__init__()
        self.n, self.embed = n, embed
        self.hyper_w1 = Linear(state_dim, n * embed)
        self.hyper_b1 = Linear(state_dim, embed)
        self.hyper_w2 = Linear(state_dim, embed)
        self.V = mlp([state_dim, embed, 1])  # state-dependent bias V(s)

    def forward(self, q, state):  # (B, n), (B, S) -> (B,)
        w1 = self.hyper_w1(state).abs().view(-1, self.n, self.embed)  # (B, n, E)
        hidden = F.elu(torch.einsum("bn,bne->be", q, w1) + self.hyper_b1(state))  # (B, E)
        return (hidden * self.hyper_w2(state).abs()).sum(-1) + self.V(state).squeeze(-1)


class Critic(nn.Module):
    """The value side: per-agent critics and, with --mixer qmix, the mixer on top."""

    def __init__(self, args, n, obs_dim, state_dim, d, make_q=None):
        super().__init__()
        if make_q is not None:  # a per-agent critic from elsewhere (baselines.py: MAAC's)
            self.q = make_q(args, n, obs_dim, d)
        elif args.critic == "attention":
            self.q = AttentionCritic(n, obs_dim, d, args.hidden, args.heads)
        elif args.critic == "attention_shared":
            self.q = SharedAttentionCritic(n, obs_dim, d, args.hidden, args.heads)
        elif args.critic == "individual":
            self.q = IndividualCritic(n, obs_dim, d, args.hidden)
        else:
            self.q = CentralizedCritic(n, obs_dim, d, args.hidden)
        self.mixer = QMixer(n, state_dim, args.mixer_embed) if args.mixer == "qmix" else None

    def forward(self, obs, state, act):
        """Q_tot (B,) with the mixer, else the per-agent Q_i (B, n)."""
        q = self.q(obs, act)
        return q if self.mixer is None else self.mixer(q, state)


# ----------------------------------------------------------------------------------------------------
# The losses. `batch` holds obs (B, n, o), state (B, S), act (B, n, d), rew (B,), next_obs,
# next_state, term (B,); with --mixer none the values are per agent (B, n) and the reward broadcasts.
def value_log_prob(log_prob, mixer):
    """log pi in the shape of the value it is subtracted from: the joint log pi (B,) next to Q_tot, agent
    i's own log pi_i (B, n) next to Q_i without a mixer. An independent policy's joint log pi is the sum
    of the agents' (Eq. 25), so SIQ / SIAQ subtract alpha sum_i log pi_i after the mixer, not inside each
    Q_i as Eq. (26) writes it."""
    if mixer is None:
        return log_prob if log_prob.dim() == 2 else log_prob.unsqueeze(-1)
    return log_prob if log_prob.dim() == 1 else log_prob.sum(-1)


def td_target(batch, actor, actor_target, critic_target, alpha, gamma, policy, next_action="target",
              td_entropy="soft"):
    # Eq. (24) in soft form: y = r + gamma (1 - terminated) (Q_tot'(o', u', s') - alpha log pi(u' | o', s')),
    # u' ~ pi^-(o', s'), the target policy (Algorithm 1 line 15, whose "s_B" we read as s'_B, as Eq. (24)
    # has it); --next-action current takes u' from the current policy (SAC). --td-entropy none drops
    # the entropy term, as Eq. (24) is printed. Time-limit truncation is not termination.
    with torch.no_grad():
        pi = actor_target if next_action == "target" or policy == "deterministic" else actor
        if policy == "deterministic":
            next_act, entropy_term = pi.mean(batch["next_obs"]), 0.0
        else:
            next_act, log_prob = pi.sample(batch["next_obs"], batch["next_state"])
            entropy_term = alpha * value_log_prob(log_prob, critic_target.mixer) if td_entropy == "soft" else 0.0
        next_q = critic_target(batch["next_obs"], batch["next_state"], next_act) - entropy_term
        not_done = 1.0 - batch["term"]
        if next_q.dim() == 2:  # per-agent critics: every Q_i regresses the team reward
            return batch["rew"][:, None] + gamma * not_done[:, None] * next_q
        return batch["rew"] + gamma * not_done * next_q


def critic_loss(batch, critic, y):
    # Eq. (23): squared TD error of Q_tot (or of each Q_i with --mixer none)
    loss = F.mse_loss(critic(batch["obs"], batch["state"], batch["act"]), y)
    if hasattr(critic.q, "aux_loss"):  # a regulariser of the critic's own (MAAC's attention logits)
        loss = loss + critic.q.aux_loss()
    return loss


def policy_loss(batch, actor, critic, alpha, policy, others_actions="policy", objective="qtot"):
    # Eq. (15), scaled by alpha as SAC does: E[alpha log pi(u | o, s) - Q_tot(o, u, s)], u reparameterised
    # through mu, sigma and L. The paper writes E[log pi - Q_tot / alpha]: the same optimum, but a
    # gradient 1/alpha larger, which grows as a learned alpha shrinks.
    # --actor-objective mean_q maximises the mean of the Q_i instead (authors: agent.py:107).
    obs, state = batch["obs"], batch["state"]
    if policy == "deterministic":
        act, log_prob = actor.mean(obs), None
    else:
        act, log_prob = actor.sample(obs, state)
    if critic.mixer is None:
        q = own_action_q(batch, critic, act, others_actions)  # (B, n)
    elif objective == "mean_q":
        q = critic.q(obs, act).mean(-1)  # (B,)
    else:
        q = critic(obs, state, act)  # (B,) Q_tot
    if log_prob is None:
        return -q.mean(), None
    log_prob = value_log_prob(log_prob, critic.mixer)
    return (alpha * log_prob - q).mean(), log_prob.detach()


def own_action_q(batch, critic, act, others_actions):
    """No Q_tot (MADDPG, MAAC): agent i follows its own Q_i with its fresh action u_i and the other
    agents' actions held fixed, from the current policies (MAAC) or the buffer (MADDPG). All n variants
    of the joint action go through the critic as one batch of n B. Returns Q_i (B, n)."""
    obs, state = batch["obs"], batch["state"]
    n = act.shape[1]
    others = batch["act"] if others_actions == "buffer" else act.detach()
    eye = torch.eye(n, dtype=torch.bool, device=act.device)[:, None, :, None]  # (n, 1, n, 1)
    mixed = torch.where(eye, act.unsqueeze(0), others.unsqueeze(0))  # (n, B, n, d): row i has agent i's fresh u_i
    q = critic(obs.repeat(n, 1, 1), state.repeat(n, 1), mixed.flatten(0, 1))  # (n B, n)
    return q.view(n, -1, n).diagonal(dim1=0, dim2=2)  # (B, n): Q_i of variant i


def alpha_loss(log_alpha, log_prob, target_entropy):
    # SAC v2 temperature: drive the policy entropy towards target_entropy (-nd)
    return -(log_alpha * (log_prob + target_entropy)).mean()


def alpha_value(args, log_alpha, n_updates):
    """The temperature for update n_updates + 1: learned (SAC v2) or --alpha with its linear decay."""
    if args.policy == "deterministic":
        return 0.0
    if args.alpha is None:
        return log_alpha.exp().detach()
    return max(args.alpha_min, args.alpha - args.alpha_decay * n_updates)  # authors: agent.py:125


# ----------------------------------------------------------------------------------------------------
class ReplayBuffer:
    """Preallocated tensors on the training device; B transitions go in per env step. A population's
    buffer (members=K) holds one buffer per member: every tensor and every minibatch has K in front."""

    def __init__(self, size, n, obs_dim, state_dim, d, device, seed=None, members=None):
        self.lead = () if members is None else (members,)
        self.rows = () if members is None else (torch.arange(members, device=device)[:, None],)
        z = lambda *shape: torch.zeros(*self.lead, size, *shape, device=device)
        self.data = dict(obs=z(n, obs_dim), state=z(state_dim), act=z(n, d), rew=z(), next_obs=z(n, obs_dim),
                         next_state=z(state_dim), term=z())
        self.size, self.pos, self.full = size, 0, False
        self.gen = torch.Generator(device=device)  # the minibatch indices: its own stream
        if seed is not None:
            self.gen.manual_seed(seed)

    def __len__(self):
        return self.size if self.full else self.pos

    def add(self, **tr):  # each (B, ...), or (K, B, ...) for a population
        B = tr["rew"].shape[-1]
        idx = (self.pos + torch.arange(B, device=self.data["rew"].device)) % self.size
        for k, v in tr.items():
            self.data[k][(*self.rows, idx)] = v.to(self.data[k].dtype)
        self.full = self.full or self.pos + B >= self.size
        self.pos = (self.pos + B) % self.size

    def sample(self, batch_size):
        idx = torch.randint(len(self), (*self.lead, batch_size), generator=self.gen, device=self.gen.device)
        return {k: v[(*self.rows, idx)] for k, v in self.data.items()}

    def state_dict(self, with_gen=True):
        n = len(self)  # only the stored transitions, copied: a slice would drag the whole storage along
        sd = dict(data={k: v.narrow(len(self.lead), 0, n).cpu().clone() for k, v in self.data.items()},
                  pos=self.pos, full=self.full)
        if with_gen:
            sd["gen"] = self.gen.get_state()
        return sd

    def load_state_dict(self, sd, restore_gen=True):
        n = next(iter(sd["data"].values())).shape[len(self.lead)]
        if n > self.size:
            raise ValueError(f"the checkpoint's buffer holds {n} transitions, more than this one's {self.size}")
        for k, v in sd["data"].items():
            self.data[k].narrow(len(self.lead), 0, n).copy_(v)
        self.pos, self.full = sd["pos"], sd["full"]
        if restore_gen:
            self.gen.set_state(sd["gen"])


def hard_or_soft_update(target, source, tau):
    # Algorithm 1 lines 19-20: theta^- <- theta every T updates (tau = 1); Polyak averaging with tau < 1
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


def to_env(act, env):
    """[-1, 1] actions of the networks -> the env's bounds."""
    return env.act_low + (act + 1) * 0.5 * (env.act_high - env.act_low)


def mixer_state(args, obs, state):
    """s of the mixer and of f_psi: the env's state, or the agents' observations side by side."""
    return obs.flatten(1) if args.mixer_state == "obs" else state


@torch.no_grad()
def evaluate(actor, env, seed, members=None):
    """Deterministic decentralised execution, u_i = tanh(mu_i(o_i)): mean return over env.num_envs
    episodes, run side by side, each copy counted until its first episode ends. For a population
    (members=K, env copies member by member) the list of the K members' mean returns."""
    obs, _ = env.reset(seed=seed)
    ret = torch.zeros(env.num_envs, device=obs.device)
    live = torch.ones(env.num_envs, dtype=torch.bool, device=obs.device)
    for _ in range(env.episode_len):
        obs, _, r, term, trunc, _ = env.step(to_env(actor.mean(obs), env), check=False)
        ret += r * live
        live &= ~(term | trunc)
    return ret.mean().item() if members is None else ret.view(members, -1).mean(1).tolist()


# ----------------------------------------------------------------------------------------------------
def make_actor(args, env):
    S = env.n_agents * env.obs_dim if args.mixer_state == "obs" else env.state_dim
    return Actor(env.n_agents, env.obs_dim, S, env.act_dim, args.hidden, args.policy, args.rank,
                 cov_diag=args.cov_diag, l_bound=args.l_bound, mean_noise=args.mean_noise, squash=args.squash)


def build(args, env, device, make_q=None):
    """Networks, their target copies and optimisers for the grid point the flags name."""
    n, o, d = env.n_agents, env.obs_dim, env.act_dim
    S = n * o if args.mixer_state == "obs" else env.state_dim
    actor = make_actor(args, env).to(device)
    critic = Critic(args, n, o, S, d, make_q).to(device)
    nets = dict(actor=actor, critic=critic, actor_target=make_actor(args, env).to(device),
                critic_target=Critic(args, n, o, S, d, make_q).to(device))
    nets["actor_target"].load_state_dict(actor.state_dict())
    nets["critic_target"].load_state_dict(critic.state_dict())
    nets["log_alpha"] = torch.zeros(1, device=device, requires_grad=args.policy != "deterministic" and args.alpha is None)
    return nets, optimisers(args, actor, critic, nets["log_alpha"])


def optimisers(args, actor, critic, log_alpha):
    """One Adam per network, and one for the temperature where it is learned. fused=True: one kernel over
    all of a network's tensors, the same update 2.5x faster on a CPU than the per-tensor loop."""
    adam = lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True)
    opts = dict(actor=adam(actor.parameters(), args.actor_lr), critic=adam(critic.parameters(), args.critic_lr))
    if log_alpha.requires_grad:
        opts["alpha"] = adam([log_alpha], args.alpha_lr)
    return opts


LOSSES = ("actor_loss", "alpha_loss", "critic_loss")
NETS = ("actor", "critic", "actor_target", "critic_target")


# ----------------------------------------------------------------------------------------------------
# Populations (--seeds): K runs in one process. The networks and losses above are written for one run.
# A population stacks each parameter of its K members along a new leading dimension, and runs a
# function of one run's networks for all members at once with torch.func.vmap. Everything else that
# belongs to a member (replay buffer, env copies, returns, losses) carries the member dimension first.
class Learner(nn.ModuleDict):
    """One run's networks; calling it runs fn(networks, *args), so vmap can map a whole loss."""

    def forward(self, fn, *args):
        return fn(self, *args)


class Stacked:
    """The stacked parameters of one of a population's networks, in that network's order."""

    def __init__(self, tensors):
        self.tensors = tensors

    def parameters(self):
        return iter(self.tensors)


class Population:
    """K members, each built as a single run is (build()), trained in lockstep: member k's parameters
    are slice k of every stacked tensor. pop["actor"].parameters() and pop["log_alpha"] feed the
    optimisers; pop.each(fn, *args) returns fn(member networks, *member args) for every member, with the
    member dimension first in the args (tensors) and in the results."""

    def __init__(self, members):
        self.K = len(members)
        learners = [Learner({k: m[k] for k in NETS}) for m in members]
        params, buffers = torch.func.stack_module_state(learners)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.buffers = buffers
        self.template = copy.deepcopy(learners[0]).to("meta")  # the shapes, no storage
        grad = members[0]["log_alpha"].requires_grad
        self.log_alpha = torch.stack([m["log_alpha"].detach() for m in members]).requires_grad_(grad)  # (K, 1)
        for name, scale in self.grad_scales(learners[0]).items():  # MAAC's 1/n on its shared modules
            self.params[name].register_hook(lambda g, scale=scale: g * scale)

    @staticmethod
    def grad_scales(learner):
        q = learner["critic"].q
        shared = getattr(q, "SHARED", ())
        return {f"critic.q.{k}": q.shared_grad_scale for k, _ in q.named_parameters() if k.split(".")[0] in shared}

    def __getitem__(self, name):
        if name == "log_alpha":
            return self.log_alpha
        return Stacked([v for k, v in self.params.items() if k.startswith(name + ".")])

    def each(self, fn, *args):
        def one(p, *a):
            return torch.func.functional_call(self.template, p, (fn, *a))

        in_dims = (0,) + tuple(0 if torch.is_tensor(a) or isinstance(a, dict) else None for a in args)
        return torch.func.vmap(one, in_dims, randomness="different")({**self.params, **self.buffers}, *args)

    def state_dict(self):  # each network's state_dict with stacked tensors (K, ...)
        out = {k: {} for k in NETS}
        for k, v in {**self.params, **self.buffers}.items():
            net, name = k.split(".", 1)
            out[net][name] = v.detach()
        return out

    def load_state_dict(self, sd):
        with torch.no_grad():
            for k, v in {**self.params, **self.buffers}.items():
                net, name = k.split(".", 1)
                v.copy_(sd[net][name])


class MemberActors:
    """A population's actors as one actor over flat env tensors (K B, ...): member k acts on copies
    k B .. (k + 1) B - 1, which are its own."""

    def __init__(self, pop):
        self.pop = pop

    def _call(self, method, *xs):
        split = (x.view(self.pop.K, -1, *x.shape[1:]) for x in xs)
        out = self.pop.each(lambda m, *a: getattr(m["actor"], method)(*a), *split)
        return tuple(t.flatten(0, 1) for t in out) if isinstance(out, tuple) else out.flatten(0, 1)

    def mean(self, obs):
        return self._call("mean", obs)

    def sample(self, obs, state):
        return self._call("sample", obs, state)

    def covariance(self, obs, state):
        return self._call("covariance", obs, state)


def build_population(args, env, device, make_q, seeds):
    """Member k is initialised as the single run of seeds[k] is (its own torch stream), then stacked."""
    members = []
    for seed in seeds:
        torch.manual_seed(runlib.seed_streams(seed)["torch"])
        members.append(build(args, env, device, make_q)[0])
    pop = Population(members)
    return pop, optimisers(args, pop["actor"], pop["critic"], pop.log_alpha)


def clip_per_member(params, clip):
    """clip_grad_norm_ for each member of a population: norms (K,) over each member's slice."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (K,)
    if clip > 0:
        coef = (clip / (norm + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
    return norm


def optimise(opt, params, loss, clip, guard, name, n_update, members=False):
    """backward, clip, then the optimiser step, unless the guard finds the loss or gradient non-finite.
    A population's loss is one per member (K,): their sum leaves each member its own gradient, clipped
    by its own norm, so one Adam over the stacked parameters steps as K separate Adams would."""
    opt.zero_grad(set_to_none=True)
    loss.sum().backward()
    if members:
        norm = clip_per_member(params, clip)
    else:
        norm = nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)
    if guard is not None:
        guard.check(name, n_update, loss.detach(), norm, per_member=bool(members))
    opt.step()


def update(args, nets, opts, batch, n_updates, target_entropy, guard=None):
    """Gradient update number n_updates of Algorithm 1, lines 10-20. Returns the losses (tensors, not
    synced). `guard` (runlib.Guard) sees every loss and gradient norm before its optimiser step.
    `nets` is one run's networks, or a Population: then each(...) runs the loss once per member."""
    pop = isinstance(nets, Population)
    each = nets.each if pop else lambda fn, *a: fn(nets, *a)
    alpha = alpha_value(args, nets["log_alpha"], n_updates - 1)

    def actor_step(m, batch, alpha):  # lines 11-13: the joint policy through Q_tot, Eq. (15)
        loss, log_prob = policy_loss(batch, m["actor"], m["critic"], alpha, args.policy, args.others_actions,
                                     args.actor_objective)
        return (loss,) if log_prob is None else (loss, log_prob)  # (vmap returns tensors only)

    def alpha_step(m, log_alpha, log_prob):  # the target entropy -nd is the joint policy's
        return alpha_loss(log_alpha, log_prob if log_prob.dim() == 1 else log_prob.sum(-1), target_entropy)

    def critic_step(m, batch, alpha):  # lines 14-17: Eq. (23)-(24)
        y = td_target(batch, m["actor"], m["actor_target"], m["critic_target"], alpha, args.gamma, args.policy,
                      args.next_action, args.td_entropy)
        return critic_loss(batch, m["critic"], y)

    # the actor's step leaves gradients on the critic too; the critic's optimiser zeroes them below
    loss_pi, *log_prob = each(actor_step, batch, alpha)  # log_prob: [log pi], or [] if deterministic
    optimise(opts["actor"], nets["actor"].parameters(), loss_pi, args.grad_clip, guard, "actor_loss", n_updates, pop)
    out = {"actor_loss": loss_pi.detach()}
    if "alpha" in opts:
        loss_a = each(alpha_step, nets["log_alpha"], *log_prob)
        optimise(opts["alpha"], [nets["log_alpha"]], loss_a, 0.0, guard, "alpha_loss", n_updates, pop)
        out["alpha_loss"] = loss_a.detach()
    loss_q = each(critic_step, batch, alpha)
    optimise(opts["critic"], nets["critic"].parameters(), loss_q, args.grad_clip, guard, "critic_loss", n_updates, pop)
    out["critic_loss"] = loss_q.detach()
    # lines 19-20: target networks, every T updates
    if n_updates % args.target_update_interval == 0:
        for name in ("critic", "actor"):
            hard_or_soft_update(nets[name + "_target"], nets[name], args.tau)
    return out


def env_tag(args):
    return args.env.replace(":", "-").replace(os.sep, "-")  # pz:mpe2.simple_spread_v3 -> pz-mpe2.simple_spread_v3


def run_name(args, seed=None):
    return f"{env_tag(args)}__{args.exp_name}__{args.seed if seed is None else seed}"


def is_population(args):
    return len(getattr(args, "seeds", None) or ()) > 1


def checkpoint_dir_name(args):
    """A single run's checkpoint lies in its run folder; a population's in a folder of its own."""
    if is_population(args):
        return f"{env_tag(args)}__{args.exp_name}__seeds-{'-'.join(map(str, args.seeds))}"
    return run_name(args)


LOG_EVERY = 100  # updates between loss logs; on a GPU also how often the non-finite guard is read


def checkpoint_args(ckpt):
    """A checkpoint's settings, completed for flags added after it was written: a first-release
    checkpoint with the values that release used, a later one with today's defaults."""
    saved = vars(ckpt["args"]).copy()
    for k, v in (LEGACY if ckpt["format"] == 1 else vars(parser().parse_args([]))).items():
        saved.setdefault(k, v)
    return saved


def resumed_args(args, resume, make_q):
    """The checkpoint's own settings, plus what --resume may set; and whether the run moves between CPU
    and GPU (their generators are not interchangeable, so its random streams then restart)."""
    saved = checkpoint_args(resume)
    new = argparse.Namespace(**saved)
    for k in RESUME_MAY_SET:
        if k in getattr(args, "explicit", RESUME_MAY_SET) or k in ("resume", "no_progress"):
            setattr(new, k, getattr(args, k))
    run_dir = os.path.dirname(os.path.abspath(args.resume))
    if "runs_dir" not in getattr(args, "explicit", ()) and os.path.basename(run_dir) == checkpoint_dir_name(new):
        new.runs_dir = os.path.dirname(run_dir)  # continue where the checkpoint lies, even if it was moved
    if new.total_steps is not None and new.total_steps < resume["step"]:
        sys.exit(f"error: --resume {args.resume}: the run is at step {resume['step']:,}, past --total-steps "
                 f"{new.total_steps:,}; give a --total-steps of at least {resume['step']:,}")
    was_cuda = bool(saved.get("cuda"))
    if args.cuda is None:
        new.cuda = was_cuda
    if new.cuda and not torch.cuda.is_available():
        sys.exit(f"error: --resume {args.resume}: this run trained on a GPU and torch sees none here. Resume it "
                 "on the CPU with --no-cuda; its random streams then restart, so the rest of the run will not "
                 "equal an uninterrupted one")
    if getattr(new, "algo", None) == "maac" and make_q is None:
        sys.exit(f"error: {args.resume} is a MAAC run: resume it with baselines.py --resume")
    return new, new.cuda != was_cuda


def same_file(a, b):
    return os.path.exists(b) and os.path.samefile(a, b)


def holds_another_run(folder, evals, step, single_ckpt):
    """Whether a run folder holds the files of a run other than the one a checkpoint resumes: an eval.csv
    whose rows up to the checkpoint's step differ from the checkpoint's evaluations (rows after it are the
    resumed run's own, from after its last checkpoint) or, for a member of a population
    (single_ckpt=False), a single run's checkpoint.pt."""
    if not single_ckpt and os.path.exists(os.path.join(folder, "checkpoint.pt")):
        return True
    path = os.path.join(folder, "eval.csv")
    if not os.path.isfile(path):
        return False
    try:
        with open(path, newline="") as f:
            rows = [(int(r["step"]), float(r["eval_return"])) for r in csv.DictReader(f)]
    except (ValueError, KeyError, TypeError):
        return True
    return [r for r in rows if r[0] <= step] != [(int(e[0]), float(e[1])) for e in evals]


def train(args, make_q=None):
    """Algorithm 1. Returns the run folder (a population's: the list of its members' folders).
    `make_q(args, n, obs_dim, d)` replaces the per-agent critic (baselines.py uses it for MAAC's)."""
    from torch.utils.tensorboard import SummaryWriter

    resume = runlib.load_checkpoint(args.resume) if args.resume else None
    cross_device = False
    if resume is not None:
        args, cross_device = resumed_args(args, resume, make_q)
    args.cuda = bool(args.cuda)
    if args.total_steps is None:
        args.total_steps = DEFAULT_STEPS.get(args.env, OWN_ENV_STEPS)
    device = torch.device("cuda" if args.cuda else "cpu")
    # --seeds: K runs as one population; member k owns env copies k B .. (k + 1) B - 1 (one seed: a single run)
    seeds = args.seeds or [args.seed]
    pop, K = is_population(args), len(seeds)
    split = (lambda x: x.view(K, -1, *x.shape[1:])) if pop else (lambda x: x)  # (K B, ...) -> (K, B, ...)
    streams = runlib.seed_streams(*seeds)  # one seed per random stream, README "Seeds"
    runlib.seed_globals(streams)
    torch.use_deterministic_algorithms(not args.cuda)  # same seed, same curve (on CPU)

    env = make_env(args, K * args.num_envs, device)
    eval_env = make_env(args, K * args.eval_episodes, device)
    n, d = env.n_agents, env.act_dim
    if pop:
        nets, opts = build_population(args, env, device, make_q, seeds)
        actor = MemberActors(nets)
    else:
        nets, opts = build(args, env, device, make_q)
        actor = nets["actor"]
    S = n * env.obs_dim if args.mixer_state == "obs" else env.state_dim
    rb = ReplayBuffer(args.buffer_size, n, env.obs_dim, S, d, device, seed=streams["replay"],
                      members=K if pop else None)
    target_entropy = -float(n * d)
    run_dirs = [os.path.join(args.runs_dir, run_name(args, seed)) for seed in seeds]
    ckpt_dir = os.path.join(args.runs_dir, checkpoint_dir_name(args))
    ckpt_path = os.path.join(ckpt_dir, "checkpoint.pt")
    if resume is not None:  # e.g. a checkpoint set aside in earlier-<time>/: never overwrite a newer run
        own = same_file(args.resume, ckpt_path)
        member_evals = resume["evals"] if pop else [resume["evals"]]
        for folder, ev in zip(run_dirs, member_evals):
            if (pop or not own) and holds_another_run(folder, ev, resume["step"], single_ckpt=not pop):
                sys.exit(f"error: --resume {args.resume} would continue in {folder}, which holds the files of "
                         "another run (its eval.csv is not this checkpoint's curve, or it holds a single run's "
                         "checkpoint). Pass --runs-dir NEW_FOLDER to continue it there, or move that folder away")
    for folder in dict.fromkeys((*run_dirs, ckpt_dir)):
        os.makedirs(folder, exist_ok=True)
        aside = None if resume is not None else runlib.set_aside_earlier_run(folder)
        if aside:
            print(f"warning: {folder} held an earlier run; this fresh run starts over and its files are moved to "
                  f"{aside} (to continue that run instead, pass --resume with its checkpoint.pt)", file=sys.stderr)

    step, n_updates, updates_owed = 0, 0, 0.0
    evals, covs = [[] for _ in seeds], [[] for _ in seeds]  # per member
    obs, state = env.reset(seed=streams["env"])
    state = mixer_state(args, obs, state)
    ep_ret = torch.zeros(K * args.num_envs, device=device)  # returns stay on the device until logged
    ret_sum, ret_count = torch.zeros(K, device=device), torch.zeros(K, dtype=torch.long, device=device)
    if resume is not None:
        if pop:
            nets.load_state_dict(resume)
        else:
            for k in NETS:
                nets[k].load_state_dict(resume[k])
        with torch.no_grad():
            nets["log_alpha"].copy_(resume["log_alpha"])
        for k, opt in opts.items():
            opt.load_state_dict(resume["opt_" + k])
        rb.load_state_dict(resume["buffer"], restore_gen=not cross_device)
        env.load_state_dict(resume["env"], restore_gen=not cross_device)
        step, n_updates = resume["step"], resume["n_updates"]
        evals = resume["evals"] if pop else [resume["evals"]]
        covs = [[(s, torch.as_tensor(c)) for s, c in member] for member in (resume["covs"] if pop else [resume["covs"]])]
        updates_owed = resume.get("updates_owed", 0.0)
        obs, state, ep_ret = (resume[k].to(device) for k in ("obs", "state", "ep_ret"))
        if own_env(args):  # a PettingZoo env's episodes cannot be saved: they restart, from the saved generator
            obs, state = env.reset()
            state = mixer_state(args, obs, state)
            ep_ret.zero_()
            print(f"warning: {args.env} is a Python env whose episodes a checkpoint cannot hold: they restart "
                  "here, so the resumed run does not equal an uninterrupted one", file=sys.stderr)
        if "ret_sum" in resume:
            ret_sum, ret_count = resume["ret_sum"].to(device).reshape(K), resume["ret_count"].to(device).reshape(K)
        if cross_device:  # new streams, drawn from the seed and the step, so a re-run repeats them
            fresh = runlib.seed_streams(*seeds, step)
            runlib.seed_globals(fresh)
            rb.gen.manual_seed(fresh["replay"])
            env.gen.manual_seed(fresh["env"])
            print(f"warning: {args.resume} was written on the {'CPU' if args.cuda else 'GPU'} and resumes on the "
                  f"{'GPU' if args.cuda else 'CPU'}: its random streams restart here, so the rest of the run "
                  "will not equal an uninterrupted one", file=sys.stderr)
        elif "rng" in resume:
            runlib.set_global_rng_state(resume["rng"], device)
        else:  # a format-1 checkpoint saved the CPU generator only
            torch.set_rng_state(resume["torch_rng"])
        print(f"resumed {args.resume} at step {step:,}")

    settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("explicit", "own_env_sizes")}
    writers = []
    for seed, folder in zip(seeds, run_dirs):
        writers.append(SummaryWriter(folder, purge_step=step or None))  # a resumed run overwrites what came after
        table = {**settings, "seed": seed} if pop else settings
        writers[-1].add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in table.items()))
    if resume is None:
        print("settings: " + " ".join(f"{runlib.flag(k)}={v}" for k, v in settings.items()), flush=True)
        if pop:
            print(f"population of {K} runs, one process: {', '.join(run_dirs)}; checkpoint {ckpt_path}", flush=True)
    guard = runlib.Guard(LOSSES, device)

    def checkpoint():
        guard.raise_if_bad()  # never overwrite a finite checkpoint with a poisoned state
        weights = nets.state_dict() if pop else {k: nets[k].state_dict() for k in NETS}
        runlib.save_checkpoint(
            ckpt_path, args=settings, method=getattr(args, "algo", "iac"), step=step, n_updates=n_updates,
            evals=evals if pop else evals[0], covs=covs if pop else covs[0], updates_owed=updates_owed,
            buffer=rb.state_dict(), env=env.state_dict(), obs=obs, state=state, ep_ret=ep_ret, ret_sum=ret_sum,
            ret_count=ret_count, rng=runlib.global_rng_state(device), log_alpha=nets["log_alpha"].detach(),
            **weights, **{"opt_" + k: o.state_dict() for k, o in opts.items()})

    # The logging points: the only places that read values back from the device.
    header = ["step", "eval_return"] + [f"u{i}_{k}" for i in range(n) for k in range(d)]

    def log_eval():
        rets = evaluate(actor, eval_env, seed=streams["eval_env"], members=K if pop else None)
        rets = rets if pop else [rets]
        o0, s0 = eval_env.reset(seed=streams["eval_env"])
        with torch.no_grad():  # where the deterministic joint action sits (Fig. 2's trajectory), per member
            first = split(to_env(actor.mean(o0), eval_env))
            first = first[:, 0] if pop else first[:1]  # (K, n, d)
            if args.policy != "deterministic":  # Fig. 5: Sigma averaged over the eval start states
                cov = split(actor.covariance(o0, mixer_state(args, o0, s0))).mean(-3).cpu()
                cov = cov if pop else cov[None]
        for k, folder in enumerate(run_dirs):
            evals[k].append((step, rets[k], *first[k].flatten().tolist()))
            writers[k].add_scalar("eval/episodic_return", rets[k], step)
            runlib.write_csv(os.path.join(folder, "eval.csv"), header, evals[k])
            if args.policy != "deterministic":
                covs[k].append((step, cov[k]))
                runlib.save_npz(os.path.join(folder, "covariance.npz"), step=np.array([c[0] for c in covs[k]]),
                         sigma=torch.stack([c[1] for c in covs[k]]).numpy())
        return sum(rets) / K

    def log_train_return():  # the mean return of the training episodes that ended since the last call
        means = [(s / c if c else None) for s, c in zip(ret_sum.tolist(), ret_count.tolist())]
        for mean, writer in zip(means, writers):
            if mean is not None:
                writer.add_scalar("charts/episodic_return", mean, step)
        ret_sum.zero_()
        ret_count.zero_()
        ended = [m for m in means if m is not None]
        return sum(ended) / len(ended) if ended else None

    def log_losses(losses):
        guard.raise_if_bad()
        values = {k: v.reshape(K).tolist() for k, v in losses.items()}
        values["alpha"] = torch.as_tensor(alpha_value(args, nets["log_alpha"], n_updates)).reshape(-1).expand(K).tolist()
        for k, writer in enumerate(writers):
            for name, v in values.items():
                writer.add_scalar(f"losses/{name}", v[k], step)

    progress = runlib.Progress(args.total_steps, not args.no_progress)
    last_train_ret = last_eval = None
    stop = runlib.DeferredInterrupt().__enter__()  # Ctrl-C / SIGTERM: finish the step, then save and stop
    t0, step0 = time.time(), step
    try:
        if not evals[0]:
            last_eval = log_eval()
        while step < args.total_steps:
            if stop.requested:  # between two steps: the checkpoint below resumes exactly
                raise KeyboardInterrupt
            # Algorithm 1 line 6: u ~ pi(. | o, s), Eq. (14); uniform random during a --learning-starts warm-up
            with torch.no_grad():
                if step < args.learning_starts:
                    act = torch.rand(K * args.num_envs, n, d, device=device) * 2 - 1
                elif args.policy == "deterministic":
                    act = actor.mean(obs)
                    act = (act + args.exploration_noise * torch.randn_like(act)).clamp(-1, 1)
                else:  # with --squash none the raw sample is clipped here (authors: agent.py:56)
                    act = actor.sample(obs, state)[0].clamp(-1, 1)
            next_obs, next_state, rew, term, trunc, info = env.step(to_env(act, env), check=False)
            # lines 7-8; bootstrapping sees the episode's own last observation, not the reset one
            final_state = mixer_state(args, info["final_obs"], info["final_state"])
            rb.add(obs=split(obs), state=split(state), act=split(act), rew=split(rew),
                   next_obs=split(info["final_obs"]), next_state=split(final_state), term=split(term.float()))
            ep_ret += rew
            done = term | trunc
            ret_sum += split(ep_ret * done).sum(-1)
            ret_count += split(done).sum(-1)
            ep_ret *= ~done
            obs, state = next_obs, mixer_state(args, next_obs, next_state)
            step += args.num_envs
            # lines 9-20: once D holds a minibatch, one update per env step of each copy (x --updates-per-step)
            if step >= args.learning_starts and len(rb) >= args.batch_size:
                updates_owed += args.num_envs * args.updates_per_step
                while updates_owed >= 1:
                    updates_owed -= 1
                    n_updates += 1
                    losses = update(args, nets, opts, rb.sample(args.batch_size), n_updates, target_entropy, guard)
                    if n_updates % LOG_EVERY == 0:
                        log_losses(losses)
            if step // args.eval_every != (step - args.num_envs) // args.eval_every:
                guard.raise_if_bad()
                ret = log_train_return()
                last_train_ret = last_train_ret if ret is None else ret
                last_eval = log_eval()
                for writer in writers:
                    writer.add_scalar("charts/SPS", (step - step0) / (time.time() - t0), step)
            if args.save_model and step // args.checkpoint_every != (step - args.num_envs) // args.checkpoint_every:
                checkpoint()
            if progress.due():
                progress.update(step, (step - step0) / max(time.time() - t0, 1e-9), last_train_ret, last_eval)
        if progress.due(force=True):
            progress.update(step, (step - step0) / max(time.time() - t0, 1e-9), last_train_ret, last_eval)
            print()
        if args.save_model:  # still inside the deferral: a signal now waits for the final checkpoint
            checkpoint()
    except runlib.NonFinite as e:
        stop.mute()  # from here on the run saves what it can and stops; further signals wait
        for writer in writers:
            writer.close()
        what = f"non-finite {e.name} at gradient update {e.n_update:,} (env step {step:,} or before)"
        if guard.eager:
            what = f"non-finite {e.name} at env step {step:,} (gradient update {e.n_update:,})"
        if pop:
            culprits = "a member" if e.members is None else "the member(s) with seed " + ",".join(
                str(seeds[k]) for k in e.members)
            what += f" in {culprits} of the population (seeds {','.join(map(str, seeds))}; all stop)"
        if guard.eager:  # raised before the optimiser step: the weights are the last finite ones
            guard = runlib.Guard(LOSSES, device)  # (its checkpoint() check passes: nothing is poisoned)
            checkpoint()
            saved = f"the last finite state (step {step:,}) is saved in {ckpt_path}"
        else:
            saved = (f"{ckpt_path} holds the last checkpoint before it" if os.path.isfile(ckpt_path) else
                     "no checkpoint was written before it (--save-model writes them)")
        sys.exit(f"error: {what}; {saved}. Try a lower --actor-lr / --critic-lr or a smaller --grad-clip.")
    except runlib.HardInterrupt as e:
        stop.mute()
        on_disk = f"{ckpt_path} holds the last checkpoint" if os.path.isfile(ckpt_path) else "no checkpoint was written"
        print(f"\nstopped at once by a second {e}, mid-step, so nothing was saved; {on_disk}", file=sys.stderr)
        raise SystemExit(stop.exit_code(str(e)))
    except KeyboardInterrupt:
        stop.mute()
        try:
            checkpoint()
        except runlib.NonFinite as e:
            sys.exit(f"\ninterrupted at step {step:,}, after a non-finite {e.name} at gradient update "
                     f"{e.n_update:,}: the checkpoint on disk is from before it")
        print(f"\ninterrupted at step {step:,}; resume with --resume {ckpt_path}")
        raise SystemExit(stop.exit_code())
    finally:
        stop.__exit__()
    for writer in writers:
        writer.close()
    return run_dirs if pop else run_dirs[0]


def eval_only(args):
    """Evaluate a checkpoint's policy; a population's checkpoint, every member in turn. Returns the mean
    return (a population's: the list of its members')."""
    ckpt = runlib.load_checkpoint(args.checkpoint)
    targs = argparse.Namespace(**checkpoint_args(ckpt))
    method, asked = getattr(targs, "algo", "iac"), getattr(args, "algo", "iac")
    if method != asked:
        how = "iac.py" if method == "iac" else f"baselines.py --algo {method}"
        sys.exit(f"error: --checkpoint {args.checkpoint} is a {method} run, not {asked}: evaluate it with {how} --eval-only")
    device = torch.device("cuda" if args.cuda else "cpu")
    if args.capture_video:
        if own_env(targs):
            os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo draws off-screen; read when make_env imports it
        elif targs.env not in ("predator_prey", "po_predator_prey"):
            sys.exit(f"error: --capture-video draws predator-prey and pz: / mamujoco: envs, not {targs.env}")
    env = make_env(targs, args.eval_episodes, device)
    actor = make_actor(targs, env).to(device)
    pop = is_population(targs)
    rets = []
    for k, seed in enumerate(targs.seeds if pop else [targs.seed]):
        actor.load_state_dict({name: v[k] for name, v in ckpt["actor"].items()} if pop else ckpt["actor"])
        rets.append(evaluate(actor, env, seed=args.seed))
        print(f"{run_name(targs, seed)} step {ckpt['step']:,}: mean deterministic return "
              f"{rets[-1]:.2f} over {args.eval_episodes} episodes")
        if args.capture_video:
            name = f"eval-{seed}.gif" if pop else "eval.gif"
            path = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), name)
            import plots

            if own_env(targs):
                own_env_gif(actor, targs, args.seed, path, device)
            else:
                plots.render_gif(actor, make_env(targs, 1, device), args.seed, path, to_env)
            print(f"wrote {path}")
    return rets if pop else rets[0]


def own_env_gif(actor, targs, seed, path, device, max_frames=250):
    """One deterministic episode of a pz: / mamujoco: env as a GIF, drawn by the env's own rgb_array
    renderer (at most max_frames frames: a long episode keeps every k-th)."""
    import plots

    try:
        env = make_env(targs, 1, device, render_mode="rgb_array")
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
        sys.exit(f"error: --capture-video: --env {targs.env} could not draw its episode off-screen ({detail}). "
                 "The env must take render_mode='rgb_array'; MuJoCo draws with MUJOCO_GL=egl (the default here) "
                 "or MUJOCO_GL=osmesa, each needing its system library (libEGL, libOSMesa)")
    plots.save_gif(frames[:: -(-len(frames) // max_frames)], path, fps=20)


def main(argv=None):
    args = parse_args(argv)
    try:
        return eval_only(args) if args.eval_only else train(args)
    except envs.EnvSpecError as e:  # a pz: / mamujoco: env that breaks the wrapper's rules mid-run
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
