"""Run the authors' own released IAC code (github YiqinYang/IAC @ 925dc26) as a peer baseline, one seed
per call, and turn its evaluation curve into an eval.csv (`step,eval_return`) like our runs write.

None of the authors' code is kept in this repository, and none of it is edited: this driver puts two
working copies on sys.path and makes every change it needs at run time, in this process.

Working copies. Export both from the bare mirrors that the `fetch` tool makes (github:YiqinYang/IAC and
github:openai/multiagent-particle-envs), outside this repository:

    mkdir -p /tmp/authors/IAC /tmp/authors/mpe
    git --git-dir=/work/.mirror/YiqinYang+IAC/repo archive HEAD | tar -x -C /tmp/authors/IAC
    git --git-dir=/work/.mirror/openai+multiagent-particle-envs/repo archive HEAD | tar -x -C /tmp/authors/mpe

(IAC at 925dc26; the old MPE at 83ba4d1, the last commit of openai/multiagent-particle-envs, which adds
the SUPPRESS_MA_PROMPT switch.) Then install the two packages their code imports that we do not use,
`pip install gym==0.26.2 tqdm`, and run one seed:

    OMP_NUM_THREADS=1 python experiments/authors_code.py --code /tmp/authors/IAC --mpe /tmp/authors/mpe \\
        --seed 1 --out runs/authors_code/seed1

What runs. Their main.py, step for step: get_args() (common/arguments.py), make_env(args)
(common/utils.py:33), Runner(args, env) (runner.py:14), runner.run() (runner.py:27). Every setting is
their default (common/arguments.py:12-36): scenario simple_tag, 100-step episodes, batch 256, buffer 5e5,
lr 1e-4 / 1e-3, gamma 0.95, one update per env step once the buffer holds a batch (runner.py:43-45), the
prey (the last agent, `--num-adversaries 1` in their naming) moving uniformly at random (runner.py:38-39),
evaluation every 1000 steps over 10 episodes of 100 steps (runner.py:47-48, 61-79); only --time-steps
differs (theirs: 2,000,000). Their own flags can be passed after `--`.

What the driver changes at run time, and why:
  1. gym.spaces.prng: old MPE's multiagent/multi_discrete.py:7 does `from gym.spaces import prng`, a module
     of old gym releases that gym 0.26.2 no longer has. A stand-in module (np_random = RandomState, seed()) is put
     in sys.modules before MPE is imported. simple_tag never builds a MultiDiscrete space, so it is unused.
  2. matplotlib: runner.py:8-9 calls matplotlib.use("TkAgg"), which needs a display. The driver selects
     "Agg" and makes matplotlib.use a no-op while runner.py is imported; their plot (model/<scenario>/
     plt.png) is still drawn, into a file.
  3. SUPPRESS_MA_PROMPT=1: old MPE's multiagent/__init__.py:31-32 waits for Enter at import otherwise.
  4. `imp` (only on Python >= 3.12, where it is gone): multiagent/scenarios/__init__.py:1,7 loads the
     scenario with imp.load_source; a stand-in built on importlib is injected when `import imp` fails.
  5. memory only: runner.py:54-58 opens a matplotlib figure at every evaluation and never closes it
     (about 2 MB each: 200 MB by 100k steps, and a RuntimeWarning after 20); the driver closes the
     previous, already saved, figure after each evaluate(). No number and no file changes.
  Also: sys.dont_write_bytecode, so the working copies stay as exported (no __pycache__ written there).
It seeds Python's random, NumPy's global generator (which their env, prey, buffer and actor noise draw
from), torch and the prng stand-in with --seed; their main.py seeds nothing. It chdirs into --out,
because their code writes IAC_episode_rewards.txt (runner.py:49) and model/<scenario>/ (returns.pkl.npy
every step, runner.py:59; plt.png at each evaluation, runner.py:58; checkpoints every 10,000 updates,
agent.py:121-122) into the working folder. It wraps the Runner instance's evaluate() (not their class) to
append each result to eval.csv as it comes, and at the end checks eval.csv against their returns.pkl.npy.

eval.csv's step: their k-th evaluation runs when the loop index time_step equals k * evaluate_rate
(runner.py:47, `time_step > 0 and time_step % evaluate_rate == 0`, after that step's env step and update),
so the first is at step 1000 (1001 env steps taken) and there is none at step 0 or at --time-steps itself.
eval_return is their number: the mean over 10 episodes of the sum over 100 steps of r[0] (runner.py:75,
79), predator 0's reward, which in simple_tag is the predators' team reward (+10 per predator touching
the prey; every predator gets the same, multiagent/scenarios/simple_tag.py:115-129), with the policy's
deterministic mean action (agent.py:53-58) and the prey at random. authors_run.json holds the settings,
the seed, hashes of their files, and the timing.
"""

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import time
import types
import warnings

# files that make a folder "their code" / "old MPE"; checked before anything is imported
IAC_FILES = ("main.py", "runner.py", "agent.py", "common/arguments.py", "common/utils.py",
             "common/replay_buffer.py", "IAC/actor.py", "IAC/critics.py", "IAC/qmix_net.py")
MPE_FILES = ("multiagent/__init__.py", "multiagent/environment.py", "multiagent/core.py",
             "multiagent/multi_discrete.py", "multiagent/scenarios/__init__.py",
             "multiagent/scenarios/simple_tag.py")
# what this driver and their code write into --out; --force removes these first
OUTPUTS = ("eval.csv", "authors_run.json", "IAC_episode_rewards.txt")
# their flags the driver sets itself or that do not train
RESERVED = ("--time-steps", "--evaluate", "--model-dir")


class InputError(Exception):
    """Bad input: reported as one line, without a traceback."""


def parse(argv):
    ours, theirs = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(
        description="Train the authors' released IAC code (YiqinYang/IAC) for one seed; write eval.csv.",
        epilog="Arguments after a `--` go unchanged to their get_args() (common/arguments.py), e.g. "
               "`-- --batch-size 128`; --time-steps is set by the driver, --evaluate and --model-dir "
               "(evaluation only) are refused. See the module docstring (pydoc experiments/authors_code.py) "
               "for how to export the two working copies and what the driver changes at run time.")
    p.add_argument("--code", required=True, metavar="DIR", help="working copy of github YiqinYang/IAC (git archive)")
    p.add_argument("--mpe", required=True, metavar="DIR",
                   help="working copy of github openai/multiagent-particle-envs (git archive)")
    p.add_argument("--seed", type=int, required=True, help="seeds random, numpy, torch (their main.py seeds nothing)")
    p.add_argument("--time-steps", type=int, default=100_000, help="env steps to train (theirs: 2,000,000)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder to create; their code runs in it")
    p.add_argument("--force", action="store_true",
                   help="use an existing non-empty --out: its eval.csv, authors_run.json, "
                        "IAC_episode_rewards.txt and model/ are removed first, other files are left")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true", help="hide their tqdm progress bar")
    a = p.parse_args(ours)
    if a.time_steps < 1:
        p.error(f"--time-steps must be >= 1, got {a.time_steps}")
    if a.threads < 0:
        p.error(f"--threads must be >= 0, got {a.threads}")
    if not 0 <= a.seed < 2 ** 32:
        p.error(f"--seed must be in [0, 2**32), got {a.seed}")  # numpy's global seed range
    for flag in theirs:
        if flag.split("=")[0] in RESERVED:
            p.error(f"{flag.split('=')[0]} after `--` is not allowed (the driver sets it)")
    a.theirs = theirs
    return a


def check_tree(folder, files, what, origin):
    if not os.path.exists(folder):
        raise InputError(f"--{what} {folder}: no such directory")
    if not os.path.isdir(folder):
        raise InputError(f"--{what} {folder}: not a directory")
    if os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(os.path.join(folder, "objects")):
        raise InputError(f"--{what} {folder} is a bare git repository, not a working copy; export one with "
                         f"`git --git-dir={folder} archive HEAD | tar -x -C DIR`")
    missing = [f for f in files if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        raise InputError(f"--{what} {folder} does not look like a working copy of {origin} "
                         f"(missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})")
    return os.path.abspath(folder)


def check_out(out, force):
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} exists and is not a directory")
    if os.path.isdir(out) and os.listdir(out) and not force:
        raise InputError(f"--out {out} exists and is not empty; choose a new folder or pass --force")
    return os.path.abspath(out)


def prepare_out(out):
    if os.path.isdir(out):  # --force (check_out refused a non-empty one without it)
        for name in OUTPUTS:
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        if os.path.isdir(os.path.join(out, "model")):
            shutil.rmtree(os.path.join(out, "model"))
    os.makedirs(out, exist_ok=True)


def tree_hashes(folder, files):
    return {f: hashlib.sha256(open(os.path.join(folder, f), "rb").read()).hexdigest()[:16] for f in files}


def write_atomic(path, write):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        write(f)
    os.replace(tmp, path)


def write_eval_csv(path, rows):
    def write(f):
        w = csv.writer(f)
        w.writerow(["step", "eval_return"])
        w.writerows((s, repr(float(r))) for s, r in rows)
    write_atomic(path, write)


# ---------------------------------------------------------------- run-time changes (nothing is edited)
def patch_environment(seed):
    import numpy as np

    os.environ["SUPPRESS_MA_PROMPT"] = "1"  # change 3: old MPE's multiagent/__init__.py:31-32 input()

    # change 1: old gym's gym/spaces/prng.py, which MPE's multi_discrete.py:7 imports (not in gym 0.26)
    import gym.spaces
    if "gym.spaces.prng" not in sys.modules and not hasattr(gym.spaces, "prng"):
        prng = types.ModuleType("gym.spaces.prng", "stand-in for old gym's gym/spaces/prng.py (authors_code.py)")
        prng.np_random = np.random.RandomState()

        def _seed(seed=None):
            prng.np_random.seed(seed)
        prng.seed = _seed
        sys.modules["gym.spaces.prng"] = prng
        gym.spaces.prng = prng
    sys.modules["gym.spaces.prng"].seed(seed)

    # change 4: `imp`, which MPE's multiagent/scenarios/__init__.py:1 imports, is gone in Python >= 3.12
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import imp  # noqa: F401
    except ImportError:
        import importlib.machinery
        import importlib.util
        imp = types.ModuleType("imp", "stand-in for the removed imp module (authors_code.py)")

        def load_source(name, pathname):
            name = name or "_mpe_scenario_" + os.path.splitext(os.path.basename(pathname))[0]
            loader = importlib.machinery.SourceFileLoader(name, pathname)
            spec = importlib.util.spec_from_file_location(name, pathname, loader=loader)
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
            return module
        imp.load_source = load_source
        sys.modules["imp"] = imp

    # change 2: runner.py:8-9 matplotlib.use("TkAgg") needs a display; use Agg and ignore their call
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401  (Agg now; runner.py's own import then finds it loaded)
    return matplotlib


def import_theirs(code, mpe, matplotlib):
    sys.path[:0] = [code, mpe]
    use = matplotlib.use
    matplotlib.use = lambda *args, **kwargs: None  # only while runner.py is imported
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # imp, on Python 3.11
            from common.arguments import get_args
            from common.utils import make_env
            import multiagent.environment  # noqa: F401  (imported by make_env; fail here, not later)
            import multiagent.scenarios  # noqa: F401
            from runner import Runner
    except ImportError as e:
        raise InputError(f"cannot import the authors' code from --code {code} / --mpe {mpe}: {e}")
    finally:
        matplotlib.use = use
    import common.arguments
    import multiagent
    for module, root in ((common.arguments, code), (sys.modules["runner"], code), (multiagent, mpe)):
        if not os.path.abspath(module.__file__).startswith(root + os.sep):
            raise InputError(f"{module.__name__} was imported from {module.__file__}, not from {root} "
                             "(another package of that name shadows it)")
    return get_args, make_env, Runner


# ---------------------------------------------------------------- main
def main(argv=None):
    a = parse(sys.argv[1:] if argv is None else argv)
    code = check_tree(a.code, IAC_FILES, "code", "github YiqinYang/IAC")
    mpe = check_tree(a.mpe, MPE_FILES, "mpe", "github openai/multiagent-particle-envs")
    out = check_out(a.out, a.force)
    if a.no_progress:
        os.environ["TQDM_DISABLE"] = "1"  # tqdm >= 4.66 reads its defaults from TQDM_* variables
    sys.dont_write_bytecode = True  # keep the exported working copies as they are

    import numpy as np
    import torch
    matplotlib = patch_environment(a.seed)
    get_args, make_env, Runner = import_theirs(code, mpe, matplotlib)

    # their main.py:11, with sys.argv as their get_args() reads it (common/arguments.py:37)
    saved_argv, their_argv = sys.argv, ["main.py", "--time-steps", str(a.time_steps)] + a.theirs
    sys.argv = their_argv
    try:
        args = get_args()
    except SystemExit as e:  # their argparse has printed its one-line error (or --help)
        raise SystemExit(2 if e.code else 0)
    finally:
        sys.argv = saved_argv
    if args.evaluate_rate < 1 or args.max_episode_len < 1:
        raise InputError("--evaluate-rate and --max-episode-len must be >= 1")

    prepare_out(out)
    os.chdir(out)  # their outputs go to relative paths (runner.py:22-25, 49; agent.py:31-36)
    if a.threads:
        torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)

    # their main.py:12-18
    env, args = make_env(args)
    runner = Runner(args, env)

    rows, eval_csv = [], os.path.join(out, "eval.csv")
    write_eval_csv(eval_csv, rows)
    their_evaluate = runner.evaluate

    def evaluate_and_log():  # runner.py:47-48 calls self.evaluate() at time_step = k * evaluate_rate
        ret = their_evaluate()
        # change 5: runner.py:54 opens a new figure at every evaluation and never closes it (about 2 MB
        # each, 200 MB over 100k steps); the last one is saved already, so close it before theirs opens
        matplotlib.pyplot.close("all")
        rows.append(((len(rows) + 1) * args.evaluate_rate, ret))
        write_eval_csv(eval_csv, rows)
        return ret
    runner.evaluate = evaluate_and_log

    info = dict(source="github YiqinYang/IAC (their code, unmodified) + github openai/multiagent-particle-envs",
                code=code, mpe=mpe, seed=a.seed, seeded="random, numpy.random, torch, gym.spaces.prng stand-in",
                argv=sys.argv, their_argv=their_argv, their_args={k: v for k, v in vars(args).items()
                                           if isinstance(v, (int, float, str, bool, list, type(None)))},
                code_sha256_16=tree_hashes(code, IAC_FILES), mpe_sha256_16=tree_hashes(mpe, MPE_FILES),
                python=platform.python_version(), numpy=np.__version__, torch=torch.__version__,
                threads=torch.get_num_threads(), finished=False)
    info_path = os.path.join(out, "authors_run.json")
    write_atomic(info_path, lambda f: json.dump(info, f, indent=1))

    t0 = time.time()
    runner.run()  # their main.py:18
    wall = time.time() - t0

    # their own record of the curve: np.save(save_dir/scenario/returns.pkl, returns) (runner.py:59)
    saved = os.path.join(args.save_dir, args.scenario_name, "returns.pkl.npy")
    theirs = np.load(saved).tolist() if os.path.isfile(saved) else None
    if theirs is not None and not np.allclose(theirs, [r for _, r in rows]):
        print(f"authors_code.py: warning: {saved} differs from the returns seen; eval.csv follows {saved}",
              file=sys.stderr)
        rows = [((k + 1) * args.evaluate_rate, r) for k, r in enumerate(theirs)]
        write_eval_csv(eval_csv, rows)
    if not rows:
        print(f"authors_code.py: warning: no evaluation ran (their first is at step {args.evaluate_rate})",
              file=sys.stderr)
    info.update(finished=True, evaluations=len(rows), wall_s=round(wall, 1),
                ms_per_env_step=round(1000 * wall / a.time_steps, 2), agent_train_steps=runner.agents.train_step)
    write_atomic(info_path, lambda f: json.dump(info, f, indent=1))
    last = f", last eval_return {float(rows[-1][1]):.2f} at step {rows[-1][0]}" if rows else ""
    print(f"authors_code.py: {a.time_steps} steps in {wall:.0f} s ({info['ms_per_env_step']} ms/step, "
          f"evaluations included), {len(rows)} evaluations{last}; {eval_csv}")


if __name__ == "__main__":
    try:
        main()
    except InputError as e:
        print(f"authors_code.py: error: {e}", file=sys.stderr)
        sys.exit(2)
