"""Run plumbing shared by iac.py, baselines.py, reproduce.py and plots.py: none of it is the method,
and none of it imports the project (what it needs of the method, it is given).

  * flags: parsing with --preset, the checks that name the flag and the value, and the allow-lists of
    what --resume and --eval-only take;
  * random streams: one seed per stream, derived from --seed, and every stream's state for checkpoints;
  * checkpoints: atomic writes, and loading with torch's weights-only unpickler plus an explicit
    allow-list, so that a checkpoint from someone else cannot run code; the defaults of flags that
    older checkpoints lack;
  * `Run`: a training run's settings, seeds, folders and device, the loop's state it saves and restores,
    and its exits (Ctrl-C / SIGTERM save and stop between two steps; a non-finite loss stops with the
    update that caused it); `Logger`: TensorBoard, eval.csv, covariance.npz and the progress line;
  * run folders: a fresh run sets an earlier run's files aside instead of mixing with them;
  * --eval-only's plumbing;
  * atomic text / CSV / npz writes.
"""

import argparse
import contextlib
import csv
import glob
import math
import os
import pickle
import random
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------------
# Random streams. Each random stream of a run gets its own seed, spawned from --seed by numpy's
# SeedSequence: no two streams of one run share a seed, and the same --seed gives the same streams.
SEED_MAX = 2**32 - 1
STREAMS = ("torch", "env", "eval_env", "replay", "python", "numpy")


def seed_streams(seed, *more):
    """{stream: seed} for one run (and for `more` keys, e.g. a step to restart from); torch-side seeds
    are 63-bit, numpy's legacy seed is 32-bit."""
    children = np.random.SeedSequence([seed, *more] if more else seed).spawn(len(STREAMS))
    out = {name: int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for name, c in zip(STREAMS, children)}
    out["numpy"] %= 2**32
    return out


def seed_globals(streams):
    """Seed the process-wide generators: torch's CPU and (every) CUDA generator, Python, NumPy."""
    torch.manual_seed(streams["torch"])  # also seeds every CUDA device's generator
    random.seed(streams["python"])
    np.random.seed(streams["numpy"])


def global_rng_state(device):
    """The process-wide generator states a run draws from, as tensors and plain Python values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch_cpu=torch.get_rng_state(), python=random.getstate(),
                 numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                            has_gauss=int(has_gauss), gauss=float(gauss)))
    if device.type == "cuda":
        state["torch_cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_global_rng_state(state, device):
    torch.set_rng_state(state["torch_cpu"])
    random.setstate(_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["torch_cuda"], device)


def _tuples(x):  # random.setstate wants tuples where a round trip through a checkpoint may give lists
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# ----------------------------------------------------------------------------------------------------
# Checkpoints.
FORMAT = 2  # 1: written by the first release (args as a Namespace, numpy arrays inside); 2: plain data


def save_checkpoint(path, **state):
    """Write atomically: a crash or a SIGKILL mid-write leaves the previous checkpoint intact."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            torch.save(dict(state, format=FORMAT), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:  # a full disk, a folder that went away, Ctrl-C...
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            sys.exit(f"error: cannot write checkpoint {path}: {e}; the previous checkpoint (if any) is intact")
        raise


def _legacy_globals():
    """What a format-1 checkpoint holds beyond tensors and plain data: its args (a Namespace) and the
    numpy arrays of its covariance log. Nothing on this list can run code when unpickled."""
    core = getattr(np, "_core", None) or np.core
    return [argparse.Namespace, core.multiarray._reconstruct, np.ndarray, np.dtype,
            type(np.dtype(np.float32)), type(np.dtype(np.float64))]


def _safe_load(path, mmap=False):
    """torch.load on the CPU with the weights-only unpickler and our allow-list, without torch's warnings
    (about a plain pickle, say), which say nothing to a user."""
    with torch.serialization.safe_globals(_legacy_globals()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)


def load_checkpoint(path):
    """Load a checkpoint on the CPU with torch's weights-only unpickler and our allow-list; a file that
    is not ours, or that holds anything else, stops the program with a clear message."""
    try:
        ckpt = _safe_load(path)
    except pickle.UnpicklingError as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        culprit = [line for line in lines if "GLOBAL" in line]
        if culprit:  # a class or function outside the allow-list: unpickling it could run code
            sys.exit(f"error: refusing to load {path}: it holds Python objects that a checkpoint of iac.py / "
                     f"baselines.py never holds, and unpickling them could run code ({culprit[0][:200]})")
        text = str(e).split("WeightsUnpickler error:", 1)[-1].split("Check the documentation", 1)[0]
        why = " ".join(text.split())[:160] or type(e).__name__
        sys.exit(f"error: cannot read checkpoint {path}: not a checkpoint written by iac.py / baselines.py "
                 f"(the safe unpickler refused it: {why})")
    except Exception as e:  # truncated, not a torch file, a folder...
        sys.exit(f"error: cannot read checkpoint {path}: not a checkpoint written by iac.py / baselines.py, or "
                 f"a truncated one ({type(e).__name__}: {e})")
    if not isinstance(ckpt, dict) or "args" not in ckpt or "actor" not in ckpt:
        sys.exit(f"error: {path} is not a checkpoint written by iac.py / baselines.py")
    if isinstance(ckpt["args"], dict):
        ckpt["args"] = argparse.Namespace(**ckpt["args"])
    if not isinstance(ckpt["args"], argparse.Namespace) or not hasattr(ckpt["args"], "env"):
        sys.exit(f"error: {path} is not a checkpoint written by iac.py / baselines.py (its settings name no env)")
    ckpt.setdefault("format", 1)
    if ckpt["format"] not in (1, FORMAT):
        sys.exit(f"error: {path} has checkpoint format {ckpt['format']!r}; this code reads formats 1 and {FORMAT} "
                 "(a newer version of the project wrote it?)")
    step = ckpt.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        sys.exit(f"error: {path} is damaged: its step is {step!r}, not a count of env steps")
    return ckpt


def checkpoint_step(path):
    """The env step of the checkpoint at path, read without loading its tensors; None when it is unreadable."""
    try:
        step = _safe_load(path, mmap=True).get("step")
    except Exception:  # what cannot be read is not a newer run's checkpoint to protect
        return None
    return step if isinstance(step, int) else None


def is_run_file(name):
    """What a training run writes into its folder: its curve, Sigma log, TensorBoard events, checkpoint
    and evaluation GIFs."""
    return (name in ("eval.csv", "covariance.npz", "checkpoint.pt") or name.startswith("events.out.tfevents.")
            or (name.startswith("eval") and name.endswith(".gif")))


def set_aside_earlier_run(folder):
    """A fresh run (no --resume) in a folder that holds an earlier run's files moves them into
    folder/earlier-<time>/ first, so that the folder, its eval.csv and TensorBoard show one run and the
    earlier one is not lost. Returns where they went, or None when there was nothing."""
    names = sorted(f for f in os.listdir(folder) if is_run_file(f))
    if not names:
        return None
    aside = os.path.join(folder, "earlier-" + time.strftime("%Y%m%d-%H%M%S"))
    while os.path.exists(aside):  # two fresh starts within a second
        aside += "x"
    os.makedirs(aside)
    for f in names:
        os.replace(os.path.join(folder, f), os.path.join(aside, f))
    return aside


# ----------------------------------------------------------------------------------------------------
# Flag checks. Each message names the flag and the value.
def flag(name):
    return "--" + name.replace("_", "-")


def check_number(p, args, name, lo=None, hi=None, lo_open=False, hi_open=False, optional=False):
    """A finite number in [lo, hi] (open ends where asked); NaN and inf never pass."""
    v = getattr(args, name)
    if v is None and optional:
        return
    ok = v is not None and math.isfinite(v)
    ok = ok and (lo is None or (v > lo if lo_open else v >= lo)) and (hi is None or (v < hi if hi_open else v <= hi))
    if not ok:
        lo_s = "" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        hi_s = "" if hi is None else f"{hi:g}" + (")" if hi_open else "]")
        want = f"in {lo_s}, {hi_s}" if lo is not None and hi is not None else (
            f"{'>' if lo_open else '>='} {lo:g}" if lo is not None else f"{'<' if hi_open else '<='} {hi:g}")
        p.error(f"{flag(name)} must be a finite number {want}, got {v}")


def check_out_dir(p, name, path):
    """A folder we will write into: it may not exist yet, but it must not be a file, and the nearest
    existing folder above it must be writable."""
    if not path.strip():
        p.error(f"{flag(name)} {path!r}: give a folder (an empty name would mean the current folder)")
    if os.path.exists(path) and not os.path.isdir(path):
        p.error(f"{flag(name)} {path}: exists and is not a folder")
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        p.error(f"{flag(name)} {path}: {parent} is a file, not a folder")
    try:  # a real try, not os.access: root may "access" /proc or a read-only mount and still fail to write there
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".write-check-"))
    except OSError as e:
        p.error(f"{flag(name)} {path}: cannot create a folder in {parent} ({e.strerror or e})")


def check_out_file(p, name, path, suffix=None):
    """A file we will write: its folder must exist (or be creatable) and the path must not be a folder."""
    if not os.path.basename(path).strip() or (suffix and os.path.basename(path) == suffix):
        p.error(f"{flag(name)} {path!r}: give a file name")
    if suffix and not path.endswith(suffix):
        p.error(f"{flag(name)} {path}: give a {suffix} path")
    if os.path.isdir(path):
        p.error(f"{flag(name)} {path}: is a folder, not a file")
    check_out_dir(p, name, os.path.dirname(os.path.abspath(path)))


def check_in_file(p, name, path):
    if os.path.isdir(path):  # a run folder given for its checkpoint: name the file it holds, if any
        inside = os.path.join(path, "checkpoint.pt")
        hint = f"; its checkpoint is {inside}" if os.path.isfile(inside) else ""
        p.error(f"{flag(name)} {path}: is a folder, not a checkpoint file{hint}")
    if not os.path.isfile(path):
        p.error(f"{flag(name)} {path}: no such file{population_hint(path)}")
    if not os.access(path, os.R_OK):
        p.error(f"{flag(name)} {path}: not readable")


def population_hint(path):
    """A checkpoint looked for in a population member's folder (<env>__<exp>__<seed>/): the population's
    checkpoint lies in <env>__<exp>__seeds-<seeds>/, which a hint names."""
    run_dir = os.path.dirname(os.path.abspath(path))
    stem, _, seed = os.path.basename(run_dir).rpartition("__")
    if not (stem and seed.isdigit()):
        return ""
    for d in sorted(glob.glob(os.path.join(glob.escape(os.path.dirname(run_dir)), glob.escape(stem) + "__seeds-*"))):
        if str(int(seed)) in d.rpartition("__seeds-")[2].split("-") and os.path.isfile(os.path.join(d, "checkpoint.pt")):
            return f"; {run_dir} is a member of a population, whose checkpoint is {os.path.join(d, 'checkpoint.pt')}"
    return ""


def out_of_memory(e):
    """Whether an exception is an allocation that failed: torch's (GPU) OutOfMemoryError, Python's
    MemoryError, or the CPU allocator's RuntimeError."""
    return isinstance(e, (torch.OutOfMemoryError, MemoryError)) or "can't allocate memory" in str(e)


@contextlib.contextmanager
def fits_its_settings(path):
    """Loading a checkpoint's tensors into the networks its own settings build: a mismatch (a damaged or
    hand-edited file) ends in one line, not load_state_dict's traceback."""
    try:
        yield
    except (RuntimeError, KeyError) as e:  # load_state_dict's size mismatch or missing keys, a missing network
        if out_of_memory(e):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        sys.exit(f"error: {path}: its weights and buffers do not fit the networks its own settings build (a damaged "
                 f"or hand-edited checkpoint?): {type(e).__name__}: {first[:200]}")


@contextlib.contextmanager
def one_line_errors():
    """Running out of memory (a huge --eval-episodes, --num-envs, --hidden...) ends in one line, not a
    traceback from inside torch."""
    try:
        yield
    except (MemoryError, RuntimeError) as e:
        if not out_of_memory(e):
            raise
        text = str(e)
        sys.exit(f"error: out of memory ({text.splitlines()[0][:160] if text else type(e).__name__}). Lower "
                 "--eval-episodes, --num-envs, --batch-size, --buffer-size, --hidden or the number of --seeds")


# ----------------------------------------------------------------------------------------------------
class SaveAndStop(Exception):
    """An error outside the method that ends a run (the user's env failing, envs.EnvCallError): the run
    writes its checkpoint first, with --save-model, as for a non-finite loss, then exits with the message."""


class NonFinite(Exception):
    def __init__(self, name, n_update, members=None):
        super().__init__(name, n_update)
        self.name, self.n_update = name, n_update
        self.members = members  # a population's: the indices of the members that went non-finite


class Guard:
    """Catches the first non-finite loss or gradient norm of a run.

    On the CPU a check costs nothing, so it raises NonFinite at once, before the optimiser step that would
    poison the weights: the run can save its last finite state. On a GPU reading a flag stalls the device,
    so the check only records, on the device, which quantity went non-finite first and at which update;
    `raise_if_bad()` reads it at logging time (every LOG_EVERY updates) and before every checkpoint."""

    def __init__(self, names, device, eager=None):
        self.names = list(names)
        self.eager = device.type == "cpu" if eager is None else eager
        self.first = torch.full((), -1, dtype=torch.long, device=device)  # update index, -1: all finite
        self.which = torch.full((), -1, dtype=torch.long, device=device)

    def check(self, name, n_update, *values, per_member=None):
        """values: tensors to check; per_member (by default: whether they are vectors): each holds one
        value per population member (K,)."""
        per_member = values[0].dim() > 0 if per_member is None else per_member
        bad = torch.stack([~torch.isfinite(v).all() for v in values]).any()
        if self.eager:
            if bad:
                members = None
                if per_member:
                    finite = torch.stack([torch.isfinite(v) for v in values]).all(0)
                    members = torch.nonzero(~finite).flatten().tolist()
                raise NonFinite(name, n_update, members)
            return
        new = (self.first < 0) & bad
        self.first = torch.where(new, n_update, self.first)
        self.which = torch.where(new, self.names.index(name), self.which)

    def raise_if_bad(self):
        first = int(self.first)  # the one host sync, at logging time
        if first >= 0:
            raise NonFinite(self.names[int(self.which)], first)


# ----------------------------------------------------------------------------------------------------
def _write_atomic(path, write, mode="w"):
    """write(f) into path + ".tmp", then rename: a reader never sees half a file. On failure the temp file
    goes and the previous file stays; a full disk or a vanished folder stops the run with one line."""
    tmp = path + ".tmp"
    try:
        with open(tmp, mode, **({"newline": ""} if mode == "w" else {})) as f:
            write(f)
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            sys.exit(f"error: cannot write {path}: {e}; the previous {os.path.basename(path)} (if any) is intact")
        raise


def write_text(path, text):
    _write_atomic(path, lambda f: f.write(text))


def write_csv(path, header, rows):
    def write(f):
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)

    _write_atomic(path, write)


def save_npz(path, **arrays):
    _write_atomic(path, lambda f: np.savez(f, **arrays), mode="wb")


class DeferredInterrupt:
    """Ctrl-C (SIGINT) or SIGTERM (a scheduler's time limit) during training: the env step and updates in
    progress finish, then `requested` is set and the loop stops between two steps, where a checkpoint
    holds exactly the state an uninterrupted run has there (so its resume equals the uninterrupted run).
    A second signal stops at once, without a checkpoint (HardInterrupt); `mute()` ignores any further
    signal while the run saves and stops. Signals can only be caught in the main thread (elsewhere this
    does nothing), and a signal the process was started to ignore (`nohup`, `cmd &` in a script) stays
    ignored."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested, self.previous = None, {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                sig = getattr(signal, name)
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        import signal

        name = signal.Signals(signum).name
        if self.requested:
            raise HardInterrupt(name)
        self.requested = name
        msg = f"\n{name}: stopping after this step (send it again to stop at once, without saving)\n"
        os.write(2, msg.encode())  # not print: the signal may land inside a write to sys.stderr

    def exit_code(self, name=None):
        return 143 if (name or self.requested) == "SIGTERM" else 130

    def mute(self):
        import signal

        for sig in self.previous:
            signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.previous.items():  # None: a handler installed from C, not restorable
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        self.previous = {}
        return False


class HardInterrupt(KeyboardInterrupt):
    """A second Ctrl-C / SIGTERM: the state is mid-step, so no checkpoint is written from it."""


class Progress:
    """One status line, refreshed in place on a terminal, printed every 30 s otherwise."""

    def __init__(self, total, enabled):
        self.total, self.enabled, self.tty = total, enabled, sys.stdout.isatty()
        self.last = 0.0

    def due(self, force=False):
        return self.enabled and (force or time.time() - self.last >= (0.5 if self.tty else 30))

    def update(self, step, sps, train_ret, eval_ret):
        self.last = time.time()
        fmt = lambda x: "-" if x is None else f"{x:.2f}"
        line = (f"step {step:>9,}/{self.total:,} ({100 * step / max(self.total, 1):5.1f}%) | {sps:7.0f} SPS "
                f"| train return {fmt(train_ret)} | eval return {fmt(eval_ret)}")
        print("\r" + line if self.tty else line, end="" if self.tty else "\n", flush=True)


# ----------------------------------------------------------------------------------------------------
# The command line of iac.py and baselines.py: parsing, presets, and the checks every mode runs.
MAX_MEMBERS = 256
# what --resume may change; every other flag is the run's own
RESUME_MAY_SET = ("resume", "total_steps", "cuda", "no_progress", "runs_dir")
# what --eval-only takes; everything else comes from the checkpoint
EVAL_ONLY_FLAGS = ("eval_only", "checkpoint", "eval_episodes", "seed", "cuda", "capture_video", "no_progress")
# flags added after the first release, with the values that release used: a format-1 checkpoint resumes as it ran
LEGACY = dict(next_action="current", cov_diag="learned", l_bound="none", mean_noise=0.0, squash="tanh",
              alpha_decay=0.0, alpha_min=0.0, mixer_state="env", actor_objective="qtot", td_entropy="soft",
              predator_action="mpe2", preset=None, seeds=None, env_kwargs=[], team_reward="mean")


def parse_args(parser, argv, presets, preset_keys, env_sizes, check_env, base=None):
    """argv -> checked settings. parser() builds the argparse parser; `base` (a dict) replaces its defaults;
    a --preset sets its values except where a flag was given by hand (and, with preset_keys, only those
    keys); env_sizes(args) gives (n, d, o, S) of the env the flags name; check_env(p, args) checks the env
    flags."""
    p = parser()
    argv = list(argv)
    args = p.parse_args(argv)
    args.explicit = explicit_flags(parser, argv)
    for k, v in (base or {}).items():
        if k not in args.explicit:
            setattr(args, k, v)
    if args.preset:
        for k, v in presets[args.preset].items():
            if preset_keys is not None and k not in preset_keys:
                continue
            if k not in args.explicit:
                setattr(args, k, v)
    check_args(p, args, env_sizes, check_env)
    return args


def explicit_flags(parser, argv):
    """The flags given on the command line (argparse fills in the rest with defaults)."""
    q = parser()
    for action in q._actions:
        action.default = argparse.SUPPRESS
    return sorted(vars(q.parse_args(argv)))


def check_args(p, args, env_sizes, check_env):
    """Reject bad flag values at once, with a message that names the flag and the value. Every mode
    (training, --resume, --eval-only) checks every flag: a bad value is never silently ignored."""
    num = lambda name, *a, **k: check_number(p, args, name, *a, **k)
    for name in ("resume", "checkpoint"):  # an empty path (an unset shell variable) must not mean "none"
        if getattr(args, name) is not None and not getattr(args, name).strip():
            p.error(f"{flag(name)} {getattr(args, name)!r}: give the path of a checkpoint.pt")
    check_env(p, args)
    if not (args.resume or args.eval_only):  # a flag the other settings make meaningless is refused
        for name in args.explicit:
            if name in ONLY_WITH and not ONLY_WITH[name][0](args):
                p.error(f"{flag(name)} has no effect {ONLY_WITH[name][1](args)}; drop it")
    if args.cuda and not torch.cuda.is_available():
        p.error("--cuda was given but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if not 0 <= args.seed <= SEED_MAX:
        p.error(f"--seed must be in [0, {SEED_MAX}], got {args.seed}")
    if args.seeds is not None:
        check_seeds(p, args)
    for name in ("num_envs", "batch_size", "buffer_size", "eval_every", "eval_episodes", "hidden", "heads",
                 "mixer_embed", "checkpoint_every", "target_update_interval"):
        if getattr(args, name) < 1:
            p.error(f"{flag(name)} must be >= 1, got {getattr(args, name)}")
    for name in ("total_steps", "learning_starts"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"{flag(name)} must be >= 0, got {getattr(args, name)}")
    for name in ("actor_lr", "critic_lr", "alpha_lr", "updates_per_step"):
        num(name, 0, None, lo_open=True)
    num("gamma", 0, 1, hi_open=True)
    num("tau", 0, 1, lo_open=True)
    num("alpha", 0, None, optional=True)
    for name in ("alpha_decay", "alpha_min", "mean_noise", "exploration_noise", "grad_clip"):
        num(name, 0)
    if args.alpha is None:  # a learned alpha has no schedule: a default's or a preset's goes with it
        for name in ("alpha_decay", "alpha_min"):
            if name not in args.explicit:
                setattr(args, name, 0.0)
    if (args.alpha_decay or args.alpha_min) and args.alpha is None:
        p.error(f"--alpha-decay {args.alpha_decay} / --alpha-min {args.alpha_min} schedule a fixed alpha: "
                "give --alpha too")
    if args.alpha is not None and args.alpha_min > args.alpha:
        given = "" if "alpha_min" in args.explicit else " (the default: give --alpha-min too)"
        p.error(f"--alpha-min {args.alpha_min}{given} is above --alpha {args.alpha}")
    if args.alpha is None and args.policy == "joint" and args.cov_diag == "fixed":
        p.error("a learned alpha (--alpha learned) with --cov-diag fixed (D = 1e-6 I, the default) cannot reach "
                "its entropy target -nd and grows without end: give --cov-diag learned too (or --preset paper), "
                "or a fixed --alpha")
    if args.policy == "independent" and args.cov_diag == "fixed":  # the default, or --preset authors
        p.error("--policy independent with --cov-diag fixed (D = 1e-6 I; the authors' reading, the default) "
                "would not explore: without L that is all its variance. Give --cov-diag learned (or --preset "
                "paper), or --policy joint")
    if args.batch_size > args.buffer_size:
        p.error(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")
    if args.num_envs > args.buffer_size:
        p.error(f"--num-envs {args.num_envs} copies add {args.num_envs} transitions per step, more than "
                f"--buffer-size {args.buffer_size} holds")
    if args.hidden % args.heads:
        p.error(f"--hidden {args.hidden} must be a multiple of --heads {args.heads}")
    n, d, o, S = env_sizes(args)
    if args.policy == "joint" and not 1 <= args.rank <= n * d:
        p.error(f"--rank m must be in 1..n*d = {n * d} for {args.env} (Eq. 12: L is nd x m), got {args.rank}")
    if not args.exp_name or os.sep in args.exp_name or args.exp_name in (".", ".."):
        p.error(f"--exp-name {args.exp_name!r}: give a plain name (it becomes part of a folder name)")
    if not args.eval_only:  # --eval-only writes nothing into --runs-dir and keeps no buffer
        check_out_dir(p, "runs_dir", args.runs_dir)
        check_memory(p, args, n, d, o, S)
    else:
        if not args.checkpoint:
            p.error("--eval-only needs --checkpoint PATH")
        check_in_file(p, "checkpoint", args.checkpoint)
        if args.resume:
            p.error("--eval-only and --resume exclude each other")
        ignored = [k for k in args.explicit if k not in EVAL_ONLY_FLAGS]
        if ignored:
            p.error(f"--eval-only evaluates the checkpoint's own run; {', '.join(map(flag, ignored))} "
                    f"would be ignored (it takes {', '.join(map(flag, EVAL_ONLY_FLAGS))})")
        return
    if args.capture_video:
        p.error("--capture-video works with --eval-only --checkpoint PATH")
    if args.checkpoint:
        p.error("--checkpoint is for --eval-only; to continue training give --resume PATH")
    if args.resume:
        check_in_file(p, "resume", args.resume)
        changed = [k for k in args.explicit if k not in RESUME_MAY_SET]
        if changed:
            p.error(f"--resume continues a run with its own settings; {', '.join(map(flag, changed))} "
                    f"cannot be changed (only {', '.join(map(flag, RESUME_MAY_SET[1:]))} can)")


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


def check_seeds(p, args):
    """--seeds "1,2,3" -> args.seeds = [1, 2, 3] (args.seed becomes the first)."""
    if isinstance(args.seeds, str):
        try:
            args.seeds = [int(x) for x in args.seeds.split(",")]
        except ValueError:
            p.error(f"--seeds {args.seeds!r}: give whole numbers separated by commas, e.g. --seeds 1,2,3")
    if "seed" in args.explicit:
        p.error("--seed and --seeds exclude each other: --seeds names every run's seed")
    bad = [s for s in args.seeds if not 0 <= s <= SEED_MAX]
    if bad:
        p.error(f"--seeds: every seed must be in [0, {SEED_MAX}], got {bad[0]}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds {','.join(map(str, args.seeds))} repeats a seed: the runs would write the same folder")
    if not 1 <= len(args.seeds) <= MAX_MEMBERS:
        p.error(f"--seeds: give 1 to {MAX_MEMBERS} seeds, got {len(args.seeds)}")
    args.seed = args.seeds[0]


def check_memory(p, args, n, d, o, S):
    """The replay buffer is preallocated: refuse a --buffer-size the machine cannot hold, before training."""
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


# ----------------------------------------------------------------------------------------------------
# Run folders: runs/<env>__<exp-name>__<seed>; a population's checkpoint in <env>__<exp-name>__seeds-1-2-3.
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


def checkpoint_args(ckpt, parser):
    """A checkpoint's settings, completed for flags added after it was written: a first-release
    checkpoint with the values that release used, a later one with today's defaults."""
    saved = vars(ckpt["args"]).copy()
    for k, v in (LEGACY if ckpt["format"] == 1 else vars(parser().parse_args([]))).items():
        saved.setdefault(k, v)
    return saved


def method_of(args):
    return getattr(args, "algo", None) or "iac"


def command_of(method):
    return "iac.py" if method == "iac" else f"baselines.py --algo {method}"


def resumed_args(args, resume, parser):
    """The checkpoint's own settings, plus what --resume may set; and whether the run moves between CPU
    and GPU (their generators are not interchangeable, so its random streams then restart)."""
    saved = checkpoint_args(resume, parser)
    new = argparse.Namespace(**saved)
    if method_of(new) != method_of(args):
        sys.exit(f"error: --resume {args.resume} is a {method_of(new)} run: resume it with "
                 f"{command_of(method_of(new)).split(' --algo')[0]} --resume")
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


# ----------------------------------------------------------------------------------------------------
# A training run as the loop sees it.
LOG_EVERY = 100  # updates between loss logs; on a GPU also how often the non-finite guard is read


def crossed(step, every, stride):
    """Whether the last stride env steps, which ended at `step`, passed a multiple of `every`."""
    return step // every != (step - stride) // every


def warn_idle_budget(args):
    """A budget that never updates, or never evaluates the trained policy, is a run a user did not mean."""
    if args.total_steps <= 0:
        return
    last = -(-args.total_steps // args.num_envs) * args.num_envs  # the loop's last env step
    first = max(args.learning_starts, args.batch_size)  # the buffer holds min(step, size) >= batch_size rows
    steps = max(0, last // args.num_envs - (-(-first // args.num_envs)) + 1)  # loop steps that owe updates
    owed, per_step = 0.0, args.num_envs * args.updates_per_step
    for _ in range(min(steps, math.ceil(1 / per_step) + 1)):  # the loop's own sum: a fraction takes a while
        owed += per_step
        if owed >= 1:
            break
    if owed < 1:
        print(f"warning: no gradient update will happen: by --total-steps {args.total_steps} the loop never owes "
              f"one (--learning-starts {args.learning_starts}, --batch-size {args.batch_size}, --updates-per-step "
              f"{args.updates_per_step}), so the policy stays the initial one", file=sys.stderr)
    if args.eval_every > last:
        print(f"warning: --eval-every {args.eval_every} is above --total-steps {args.total_steps}: only the "
              "initial policy (step 0) is evaluated", file=sys.stderr)


class LoopState:
    """The training loop's counters and current observations: step, n_updates, updates_owed, obs, state."""

    def __init__(self, **values):
        self.__dict__.update(values)


class Run:
    """One training run, or a population (--seeds) trained in one process: its settings (a --resume's
    from the checkpoint), seeds and random streams, device, folders, the non-finite guard, and the loop's
    state, which save() writes to the checkpoint and attach() restores from it.

    parser() gives today's defaults; default_steps / own_env_steps the budget when --total-steps is not
    given; upgrade(ckpt) maps an older checkpoint's module names to today's."""

    def __init__(self, args, parser, default_steps, own_env_steps, upgrade=lambda ckpt: ckpt):
        self.resume, cross_device = None, False
        if args.resume:
            self.resume = upgrade(load_checkpoint(args.resume))
            args, cross_device = resumed_args(args, self.resume, parser)
        self.cross_device = cross_device
        args.cuda = bool(args.cuda)
        if args.total_steps is None:
            args.total_steps = default_steps.get(args.env, own_env_steps)
        warn_idle_budget(args)
        self.args, self.device = args, torch.device("cuda" if args.cuda else "cpu")
        self.seeds = args.seeds or [args.seed]
        self.streams = seed_streams(*self.seeds)  # one seed per random stream; docs/usage.md "Seeds"
        seed_globals(self.streams)
        torch.use_deterministic_algorithms(not args.cuda)  # same seed, same curve (on CPU)
        self.run_dirs = [os.path.join(args.runs_dir, run_name(args, seed)) for seed in self.seeds]
        self.ckpt_path = os.path.join(args.runs_dir, checkpoint_dir_name(args), "checkpoint.pt")
        self.settings = {k: v for k, v in sorted(vars(args).items()) if k not in ("explicit", "own_env_sizes")}
        self.guard = Guard(("actor_loss", "alpha_loss", "critic_loss"), self.device)
        self._prepare_folders()

    def member_seeds(self):
        """The torch seed each member of a population is initialised from: its single run's."""
        return [seed_streams(seed)["torch"] for seed in self.seeds]

    def _prepare_folders(self):
        pop, resume, args = len(self.seeds) > 1, self.resume, self.args
        ckpt_dir = os.path.dirname(self.ckpt_path)
        if resume is not None:  # e.g. a checkpoint set aside in earlier-<time>/: never overwrite a newer run
            own = same_file(args.resume, self.ckpt_path)
            for folder, ev in zip(self.run_dirs, resume["evals"] if pop else [resume["evals"]]):
                if (pop or not own) and holds_another_run(folder, ev, resume["step"], single_ckpt=not pop):
                    sys.exit(f"error: --resume {args.resume} would continue in {folder}, which holds the files of "
                             "another run (its eval.csv is not this checkpoint's curve, or it holds a single run's "
                             "checkpoint). Pass --runs-dir NEW_FOLDER to continue it there, or move that folder away")
            newer = None if own or not os.path.exists(self.ckpt_path) else checkpoint_step(self.ckpt_path)
            if newer is not None and newer > resume["step"]:  # e.g. an older copy of this run's checkpoint
                sys.exit(f"error: --resume {args.resume} (step {resume['step']:,}) would overwrite {self.ckpt_path}, "
                         f"the same run's newer checkpoint (step {newer:,}). Resume that one, or pass --runs-dir "
                         "NEW_FOLDER to branch off from the older step there")
        for folder in dict.fromkeys((*self.run_dirs, ckpt_dir)):
            try:  # a real write, as in check_out_dir: a read-only mount or folder is found here, not mid-run
                os.makedirs(folder, exist_ok=True)
                fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check-")
                os.close(fd)
                os.remove(probe)
            except OSError as e:
                hint = " Pass --runs-dir NEW_FOLDER to continue the run there" if resume is not None else ""
                sys.exit(f"error: cannot write into the run folder {folder} ({e.strerror or e}).{hint}")
            aside = None if resume is not None else set_aside_earlier_run(folder)
            if aside:
                print(f"warning: {folder} held an earlier run; this fresh run starts over and its files are moved "
                      f"to {aside} (to continue that run instead, pass --resume with its checkpoint.pt)", file=sys.stderr)

    def attach(self, loop, log, nets, opts, buffer, env, mixer_state):
        """The state a checkpoint holds; restored here from --resume. Then the logs open."""
        self.loop, self.log, self.nets, self.opts, self.buffer, self.env = loop, log, nets, opts, buffer, env
        if self.resume is not None:
            self._restore(self.resume, mixer_state)
        log.open(self.loop.step)

    def _restore(self, ck, mixer_state):
        args, device, loop = self.args, self.device, self.loop
        with fits_its_settings(args.resume):
            self.nets.load_weights(ck)
            for k, opt in self.opts.items():
                opt.load_state_dict(ck["opt_" + k])
            self.buffer.load_state_dict(ck["buffer"], restore_gen=not self.cross_device)
            self.env.load_state_dict(ck["env"], restore_gen=not self.cross_device)
        loop.step, loop.n_updates, loop.updates_owed = ck["step"], ck["n_updates"], ck.get("updates_owed", 0.0)
        loop.obs, loop.state = ck["obs"].to(device), ck["state"].to(device)
        self.log.load_state_dict(ck, device)
        if ck["env"].get("pettingzoo"):  # a Python env's episodes cannot be saved: they restart, from its generator
            loop.obs, loop.state = mixer_state(*self.env.reset())
            self.log.ep_ret.zero_()
            print(f"warning: {args.env} is a Python env whose episodes a checkpoint cannot hold: they restart "
                  "here, so the resumed run does not equal an uninterrupted one", file=sys.stderr)
        if self.cross_device:  # new streams, drawn from the seed and the step, so a re-run repeats them
            fresh = seed_streams(*self.seeds, loop.step)
            seed_globals(fresh)
            self.buffer.gen.manual_seed(fresh["replay"])
            self.env.gen.manual_seed(fresh["env"])
            print(f"warning: {args.resume} was written on the {'CPU' if args.cuda else 'GPU'} and resumes on the "
                  f"{'GPU' if args.cuda else 'CPU'}: its random streams restart here, so the rest of the run "
                  "will not equal an uninterrupted one", file=sys.stderr)
        elif "rng" in ck:
            set_global_rng_state(ck["rng"], device)
        else:  # a format-1 checkpoint saved the CPU generator only
            torch.set_rng_state(ck["torch_rng"])
        print(f"resumed {args.resume} at step {loop.step:,}")

    def save(self):
        """Write the checkpoint: everything an uninterrupted run holds at this point, so a resume equals it."""
        self.guard.raise_if_bad()  # never overwrite a finite checkpoint with a poisoned state
        loop, pop = self.loop, len(self.seeds) > 1
        save_checkpoint(
            self.ckpt_path, args=self.settings, method=method_of(self.args), step=loop.step, n_updates=loop.n_updates,
            updates_owed=loop.updates_owed, obs=loop.obs, state=loop.state, buffer=self.buffer.state_dict(),
            env=self.env.state_dict(), rng=global_rng_state(self.device), **self.log.state_dict(pop),
            **self.nets.weights(), **{"opt_" + k: o.state_dict() for k, o in self.opts.items()})

    def stop_if_asked(self):
        if self._interrupt.requested:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def stopping(self):
        """The training loop's exits. Ctrl-C / SIGTERM: the loop stops between two steps, saves and exits
        130 / 143; a second signal stops at once without saving. A non-finite loss or gradient norm stops
        the run, naming the quantity and the update, with the last finite state saved where it can be.
        At a normal end: the last progress line and, with --save-model, the final checkpoint."""
        stop = self._interrupt = DeferredInterrupt().__enter__()
        step = lambda: self.loop.step
        try:
            yield
            self.log.progress(step(), force=True)
            if self.args.save_model:  # still inside the deferral: a signal now waits for the final checkpoint
                self.save()
        except NonFinite as e:
            stop.mute()  # from here on the run saves what it can and stops; further signals wait
            self.log.close()
            what = f"non-finite {e.name} at gradient update {e.n_update:,} (env step {step():,} or before)"
            if self.guard.eager:
                what = f"non-finite {e.name} at env step {step():,} (gradient update {e.n_update:,})"
            if len(self.seeds) > 1:
                culprits = "a member" if e.members is None else "the member(s) with seed " + ",".join(
                    str(self.seeds[k]) for k in e.members)
                what += f" in {culprits} of the population (seeds {','.join(map(str, self.seeds))}; all stop)"
            if self.guard.eager:  # raised before the optimiser step: the weights are the last finite ones
                self.guard = Guard(self.guard.names, self.device)  # (so save() passes: nothing is poisoned)
                self.save()
                saved = f"the last finite state (step {step():,}) is saved in {self.ckpt_path}"
            else:
                saved = (f"{self.ckpt_path} holds the last checkpoint before it" if os.path.isfile(self.ckpt_path)
                         else "no checkpoint was written before it (--save-model writes them)")
            sys.exit(f"error: {what}; {saved}. Try a lower --actor-lr / --critic-lr or a smaller --grad-clip.")
        except SaveAndStop as e:
            stop.mute()
            self.log.close()
            saved = ""
            if self.args.save_model:
                self.save()
                saved = f"; the run up to env step {step():,} is saved in {self.ckpt_path}"
            sys.exit(f"error: {e}{saved}")
        except HardInterrupt as e:
            stop.mute()
            on_disk = (f"{self.ckpt_path} holds the last checkpoint" if os.path.isfile(self.ckpt_path)
                       else "no checkpoint was written")
            print(f"\nstopped at once by a second {e}, mid-step, so nothing was saved; {on_disk}", file=sys.stderr)
            raise SystemExit(stop.exit_code(str(e)))
        except KeyboardInterrupt:
            stop.mute()
            try:
                self.save()
            except NonFinite as e:
                sys.exit(f"\ninterrupted at step {step():,}, after a non-finite {e.name} at gradient update "
                         f"{e.n_update:,}: the checkpoint on disk is from before it")
            print(f"\ninterrupted at step {step():,}; resume with --resume {self.ckpt_path}")
            raise SystemExit(stop.exit_code())
        finally:
            stop.__exit__()

    def finish(self):
        """Close the logs; the run folder (a population's: the list of its members')."""
        self.log.close()
        return self.run_dirs if len(self.seeds) > 1 else self.run_dirs[0]


class TensorBoard:
    """torch's SummaryWriter for one run folder, as a secondary record: eval.csv and the checkpoints are the
    run's record, so when TensorBoard's writer fails (it raises the OSError of its writer thread at a later
    call) the run says so once and goes on without it."""

    def __init__(self, folder, purge_step):
        from torch.utils.tensorboard import SummaryWriter

        self.folder, self.writer = folder, None
        self._call(lambda: setattr(self, "writer", SummaryWriter(folder, purge_step=purge_step)))

    def _call(self, fn):
        try:
            fn()
        except OSError as e:
            if self.writer is not False:
                print(f"warning: TensorBoard's log in {self.folder} failed ({e}); the run goes on without it "
                      "(eval.csv and the checkpoints are unaffected)", file=sys.stderr)
            self.writer = False

    def add_scalar(self, *a):
        if self.writer:
            self._call(lambda: self.writer.add_scalar(*a))

    def add_text(self, *a):
        if self.writer:
            self._call(lambda: self.writer.add_text(*a))

    def close(self):
        if self.writer:
            self._call(self.writer.close)


class Logger:
    """What a run writes as it goes, per member of a population: TensorBoard (charts/episodic_return,
    eval/episodic_return, losses/<name>, charts/SPS), eval.csv (with the first deterministic joint action),
    covariance.npz (Sigma, Fig. 5) and the progress line. The training episodes' returns add up on the
    device; the device is read only at the logging points."""

    def __init__(self, run, n, d, device):
        self.run, self.K, self.args = run, len(run.seeds), run.args
        self.ep_ret = torch.zeros(self.K * run.args.num_envs, device=device)
        self.ret_sum = torch.zeros(self.K, device=device)
        self.ret_count = torch.zeros(self.K, dtype=torch.long, device=device)
        self.evals, self.covs = [[] for _ in run.seeds], [[] for _ in run.seeds]
        self.header = ["step", "eval_return"] + [f"u{i}_{k}" for i in range(n) for k in range(d)]
        self.writers, self.last_train_ret, self.last_eval = [], None, None

    def open(self, step):
        run = self.run
        for seed, folder in zip(run.seeds, run.run_dirs):
            self.writers.append(TensorBoard(folder, purge_step=step or None))  # a resumed run overwrites what came after
            table = {**run.settings, "seed": seed} if self.K > 1 else run.settings
            self.writers[-1].add_text("hyperparameters",
                                      "|param|value|\n|-|-|\n" + "\n".join(f"|{k}|{v}|" for k, v in table.items()))
        if run.resume is not None:  # the curve up to the checkpoint, also in a new --runs-dir before its next evaluation
            for k in range(self.K):
                self._write_curve(k)
        else:
            print("settings: " + " ".join(f"{flag(k)}={v}" for k, v in run.settings.items()), flush=True)
            if self.K > 1:
                print(f"population of {self.K} runs, one process: {', '.join(run.run_dirs)}; checkpoint "
                      f"{run.ckpt_path}", flush=True)
        self.bar = Progress(self.args.total_steps, not self.args.no_progress)
        self.t0, self.step0 = time.time(), step

    def episodes(self, rew, done):
        """Add one env step's team rewards (K B,) to the running returns; count the episodes that ended."""
        self.ep_ret += rew
        self.ret_sum += (self.ep_ret * done).view(self.K, -1).sum(-1)
        self.ret_count += done.view(self.K, -1).sum(-1)
        self.ep_ret *= ~done

    def sps(self, step):
        return (step - self.step0) / max(time.time() - self.t0, 1e-9)

    def evaluation(self, step, rets, first, cov):
        """rets: the K members' mean deterministic returns; first (K, n, d); cov (K, nd, nd) or None."""
        if step > 0:
            self.run.guard.raise_if_bad()
            ret = self._train_return(step)
            self.last_train_ret = self.last_train_ret if ret is None else ret
        for k in range(self.K):
            self.evals[k].append((step, rets[k], *first[k].flatten().tolist()))
            self.writers[k].add_scalar("eval/episodic_return", rets[k], step)
            if cov is not None:
                self.covs[k].append((step, cov[k]))
            self._write_curve(k)
        self.last_eval = sum(rets) / self.K
        if step > 0:
            for writer in self.writers:
                writer.add_scalar("charts/SPS", (step - self.step0) / (time.time() - self.t0), step)

    def _write_curve(self, k):  # member k's eval.csv and covariance.npz, whole, from what the log holds
        folder = self.run.run_dirs[k]
        write_csv(os.path.join(folder, "eval.csv"), self.header, self.evals[k])
        if self.covs[k]:
            save_npz(os.path.join(folder, "covariance.npz"), step=np.array([c[0] for c in self.covs[k]]),
                     sigma=torch.stack([c[1] for c in self.covs[k]]).numpy())

    def _train_return(self, step):  # the mean return of the training episodes that ended since the last call
        means = [(s / c if c else None) for s, c in zip(self.ret_sum.tolist(), self.ret_count.tolist())]
        for mean, writer in zip(means, self.writers):
            if mean is not None:
                writer.add_scalar("charts/episodic_return", mean, step)
        self.ret_sum.zero_()
        self.ret_count.zero_()
        ended = [m for m in means if m is not None]
        return sum(ended) / len(ended) if ended else None

    def losses(self, step, losses, alpha):
        self.run.guard.raise_if_bad()
        values = {k: v.reshape(self.K).tolist() for k, v in losses.items()}
        values["alpha"] = torch.as_tensor(alpha).reshape(-1).expand(self.K).tolist()
        for k, writer in enumerate(self.writers):
            for name, v in values.items():
                writer.add_scalar(f"losses/{name}", v[k], step)

    def progress(self, step, force=False):
        if self.bar.due(force):
            self.bar.update(step, self.sps(step), self.last_train_ret, self.last_eval)
            if force:
                print()

    def close(self):
        for writer in self.writers:
            writer.close()

    def state_dict(self, pop):
        return dict(evals=self.evals if pop else self.evals[0], covs=self.covs if pop else self.covs[0],
                    ep_ret=self.ep_ret, ret_sum=self.ret_sum, ret_count=self.ret_count)

    def load_state_dict(self, ck, device):
        pop = self.K > 1
        self.evals = ck["evals"] if pop else [ck["evals"]]
        self.covs = [[(s, torch.as_tensor(c)) for s, c in member] for member in (ck["covs"] if pop else [ck["covs"]])]
        self.ep_ret = ck["ep_ret"].to(device)
        if "ret_sum" in ck:
            self.ret_sum = ck["ret_sum"].to(device).reshape(self.K)
            self.ret_count = ck["ret_count"].to(device).reshape(self.K)


# ----------------------------------------------------------------------------------------------------
def eval_only(args, parser, make_env, load_actor, evaluate, upgrade, gif):
    """--eval-only: evaluate a checkpoint's deterministic policy (a population's: every member) and, with
    --capture-video, write a GIF of one episode beside the checkpoint.

    Without --seed it replays the run's own evaluation: the same episodes (the run's eval_env stream, and a
    population's one batched env seeded from the whole seed list), the run's --eval-episodes unless given,
    on the run's device where there is one, so each number equals the row of the checkpoint's step in the
    run's eval.csv. --seed S evaluates every member on the episodes of seed S instead.
    The method's parts come as arguments: make_env(args, num_envs, device, render_mode=None),
    load_actor(args, env, ckpt, device) -> an actor over K B env copies, evaluate(actor, env, seed, members),
    upgrade(ckpt), gif(actor, targs, seed, path, device). Returns the mean return (a population's: a list)."""
    ckpt = upgrade(load_checkpoint(args.checkpoint))
    targs = argparse.Namespace(**checkpoint_args(ckpt, parser))
    if method_of(targs) != method_of(args):
        sys.exit(f"error: --checkpoint {args.checkpoint} is a {method_of(targs)} run, not {method_of(args)}: "
                 f"evaluate it with {command_of(method_of(targs))} --eval-only")
    explicit = getattr(args, "explicit", ())
    cuda = args.cuda if args.cuda is not None else bool(targs.cuda) and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    own = targs.env.startswith(("pz:", "mamujoco:"))
    if args.capture_video:
        if own:
            os.environ.setdefault("MUJOCO_GL", "egl")  # MuJoCo draws off-screen; read when make_env imports it
        elif targs.env not in ("predator_prey", "po_predator_prey"):
            sys.exit(f"error: --capture-video draws predator-prey and pz: / mamujoco: envs, not {targs.env}")
    seeds = targs.seeds if is_population(targs) else [targs.seed]
    build_actor = load_actor

    def load_actor(*a, **kw):
        with fits_its_settings(args.checkpoint):
            return build_actor(*a, **kw)

    replay = "seed" not in explicit
    episodes = args.eval_episodes if "eval_episodes" in explicit else getattr(targs, "eval_episodes", args.eval_episodes)
    if replay:  # the run's own evaluation: all members at once, as the run evaluated them
        env = make_env(targs, len(seeds) * episodes, device)
        rets = evaluate(load_actor(targs, env, ckpt, device), env, seed_streams(*seeds)["eval_env"],
                        len(seeds) if len(seeds) > 1 else None)
        rets = rets if len(seeds) > 1 else [rets]
        which = "the run's evaluation episodes" + ("" if episodes == getattr(targs, "eval_episodes", None) else
                                                    f" (the run evaluated {targs.eval_episodes}, so other episodes)")
    else:  # the episodes of --seed, the same for every member
        env = make_env(targs, episodes, device)
        rets = [evaluate(load_actor(targs, env, ckpt, device, member=k), env, args.seed, None) for k in range(len(seeds))]
        which = f"the episodes of --seed {args.seed}"
    for k, seed in enumerate(seeds):
        print(f"{run_name(targs, seed)} step {ckpt['step']:,}: mean deterministic return {rets[k]:.2f} over "
              f"{episodes} episodes, {which}")
        if args.capture_video:
            path = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)),
                                f"eval-{seed}.gif" if len(seeds) > 1 else "eval.gif")
            gif(load_actor(targs, make_env(targs, 1, device), ckpt, device, member=k), targs, args.seed, path, device)
            print(f"wrote {path}")
    return rets if len(seeds) > 1 else rets[0]
