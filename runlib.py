"""Run plumbing shared by iac.py, baselines.py, reproduce.py and plots.py: none of it is the method.

  * random streams: one seed per stream, derived from --seed, and every stream's state for checkpoints;
  * checkpoints: atomic writes, and loading with torch's weights-only unpickler plus an explicit
    allow-list, so that a checkpoint from someone else cannot run code;
  * run folders: a fresh run sets an earlier run's files aside instead of mixing with them;
  * flag checks that name the flag and the value;
  * the non-finite guard of the training loop;
  * deferred Ctrl-C / SIGTERM (the loop stops between two steps), atomic text / CSV / npz writes and
    the progress line.
"""

import argparse
import csv
import math
import os
import pickle
import random
import sys
import time

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


def load_checkpoint(path):
    """Load a checkpoint on the CPU with torch's weights-only unpickler and our allow-list; a file that
    is not ours, or that holds anything else, stops the program with a clear message."""
    try:
        with torch.serialization.safe_globals(_legacy_globals()):
            ckpt = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        culprit = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line]
        if culprit:  # a class or function outside the allow-list: unpickling it could run code
            sys.exit(f"error: refusing to load {path}: it holds Python objects that a checkpoint of iac.py / "
                     f"baselines.py never holds, and unpickling them could run code ({culprit[0][:200]})")
        sys.exit(f"error: cannot read checkpoint {path}: not a checkpoint written by iac.py / baselines.py "
                 f"(the weights-only unpickler stopped: {' '.join(str(e).split())[-120:]})")
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
    return ckpt


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
    if not os.access(parent, os.W_OK | os.X_OK):
        p.error(f"{flag(name)} {path}: {parent} is not writable")


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
        p.error(f"{flag(name)} {path}: no such file")
    if not os.access(path, os.R_OK):
        p.error(f"{flag(name)} {path}: not readable")


# ----------------------------------------------------------------------------------------------------
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

    def check(self, name, n_update, *values, per_member=False):
        """values: tensors to check; per_member: each holds one value per population member (K,)."""
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
