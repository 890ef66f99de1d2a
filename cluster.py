"""reproduce.sh on a cluster: a tier's training populations as a SLURM job array, through submitit
(facebookincubator/submitit; `pip install -r requirements-cluster.txt`).

    bash reproduce.sh --paper --launcher slurm --partition gpu --gpus-per-job 1 --time-limit 1440
    bash reproduce.sh --paper --status         # what is complete, running, failed
    bash reproduce.sh --paper --plot-only      # collect and draw when the jobs are done

One job runs --pack populations one after another (default 1), each a plain `iac.py` / `baselines.py`
command with --save-model, as reproduce.sh runs them locally. Pre-emption and time limits go through
submitit's own mechanism: SLURM signals the job (USR2) --grace seconds before it ends or when it is
pre-empted; submitit calls the job's checkpoint(), which sends SIGTERM to the training run in progress
(it finishes its step, writes its checkpoint and exits 143) and returns the same job, which submitit
requeues; the requeued job resumes each population from its checkpoint (`--resume`) and skips the
complete ones. `--launcher submitit-local` runs the same jobs through submitit's local executor, as
separate processes on this machine (the tests use it).
"""

import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIREMENTS = "requirements-cluster.txt"
BYTES_PER_TRANSITION = 600  # predator-prey: 2 x (3 x 16 obs + 20 state) + 3 x 5 act + 2, float32, rounded up
WRITE_MB_PER_S = 50  # a slow shared file system; a local disk writes a checkpoint several times faster


def import_submitit():
    try:
        import submitit
    except ImportError:
        sys.exit(f"error: --launcher slurm / submitit-local needs submitit, which is not installed: "
                 f"pip install -r {REQUIREMENTS}")
    return submitit


def grace_seconds(pack, members, buffer_size):  # pack: populations per job, one trains at a time
    """Seconds between SLURM's warning signal and the kill: enough to finish a step and write the largest
    checkpoint a job holds (a population's replay buffers), at WRITE_MB_PER_S, twice over, plus a minute.
    (A full 500k-transition buffer made a 275 MiB checkpoint member in 2.4 s on a local disk, docs/benchmarks.md.)"""
    mb = members * buffer_size * BYTES_PER_TRANSITION / 2**20
    return int(60 + 2 * math.ceil(mb / WRITE_MB_PER_S))


class Populations:
    """A submitit job: train these populations (reproduce.py's jobs: name, cmd, ckpt, steps, members) one
    after another, each resumed from its checkpoint where it has one and skipped when complete."""

    def __init__(self, jobs, log_dir):
        self.jobs, self.log_dir = jobs, log_dir
        self.child = None

    def __getstate__(self):  # the running process stays here; a requeued job starts its own
        return dict(jobs=self.jobs, log_dir=self.log_dir, child=None)

    def __call__(self):
        import reproduce

        done = []
        for job in self.jobs:
            if all(reproduce.last_step(os.path.join(r["dir"], "eval.csv")) >= r["steps"] for r in job["members"]):
                done.append(job["name"])
                continue
            cmd = reproduce.command(job)
            env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            with open(os.path.join(self.log_dir, job["name"] + ".log"), "a") as log:
                log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {shlex.join(cmd)}\n")
                log.flush()
                # SLURM may send its warning signal to every process of the job: the run ignores it and
                # saves on the SIGTERM that checkpoint() sends
                self.child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE,
                                              preexec_fn=ignore_user_signals)
                code = wait_for(self.child)
                self.child = None
            if code != 0:
                raise RuntimeError(f"{job['name']} exited with {code}; see {self.log_dir}/{job['name']}.log")
            done.append(job["name"])
        return done

    def checkpoint(self, *args, **kwargs):
        """submitit's pre-emption / time-limit hook: the training run saves and stops (SIGTERM: it finishes
        its step and writes its checkpoint), and the same job is requeued to resume it."""
        from submitit.helpers import DelayedSubmission

        child = self.child
        if child is not None and child.returncode is None:
            child.send_signal(signal.SIGTERM)
            wait_for(child)
        return DelayedSubmission(Populations(self.jobs, self.log_dir))


def ignore_user_signals():
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)


def wait_for(child):
    """The child's exit code, waited for without Popen's lock: checkpoint() runs in a signal handler that
    may interrupt __call__ while it waits for the same child."""
    while child.returncode is None:
        try:
            pid, status = os.waitpid(child.pid, os.WNOHANG)
        except ChildProcessError:  # reaped by the other waiter, which set returncode
            break
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.2)
    return child.returncode


def executor(kind, folder, args, grace):
    """submitit's executor for --launcher slurm (SLURM's sbatch) or submitit-local (local processes)."""
    submitit = import_submitit()
    if kind == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=args.time_limit or 60 * 24, signal_delay_s=grace)
        return ex
    try:
        ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=args.max_requeues)
    except RuntimeError as e:  # no srun on PATH
        sys.exit(f"error: --launcher slurm: {e} (run reproduce.sh on the cluster's login node)")
    extra = dict(kv.split("=", 1) for kv in args.slurm_param)
    ex.update_parameters(partition=args.partition, time=args.time_limit, gpus_per_node=args.gpus_per_job,
                         signal_delay_s=grace, job_name="iac-reproduce", array_parallelism=args.max_parallel,
                         setup=[f"export PYTHONPATH={shlex.quote(HERE)}:${{PYTHONPATH:-}}"],
                         additional_parameters=extra)
    return ex


def submit(kind, jobs, args, folder, log_dir):
    """Submit the populations as one job array, --pack of them per job. Returns the submitit jobs and
    writes folder/jobs.json (job id -> populations) for --status."""
    submitit = import_submitit()
    pack = args.pack
    if kind == "submitit-local":  # local processes: --jobs at a time, so the populations share them out
        pack = max(pack, math.ceil(len(jobs) / args.jobs))
    packs = [jobs[i:i + pack] for i in range(0, len(jobs), pack)]
    members = max(len(j["members"]) for j in jobs)
    grace = grace_seconds(pack, members, buffer_size_of(jobs))
    ex = executor(kind, folder, args, grace)
    os.environ["PYTHONPATH"] = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")  # the jobs import reproduce
    try:
        with ex.batch():
            handles = [ex.submit(Populations(pack, log_dir)) for pack in packs]
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError) as e:
        detail = " ".join(str(e).split())[-600:]
        sys.exit(f"error: the submission failed; sbatch said: {detail}")
    record = {h.job_id: [j["name"] for j in pack] for h, pack in zip(handles, packs)}
    path = os.path.join(folder, "jobs.json")
    old = json.load(open(path)) if os.path.isfile(path) else {}
    with open(path + ".tmp", "w") as f:
        json.dump({**old, **record}, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"submitted {len(packs)} job(s) ({len(jobs)} population(s), up to {pack} per job) with a "
          f"{grace} s grace before the time limit; submitit's logs in {folder}; `reproduce.sh --status` says "
          "where they stand, `reproduce.sh --plot-only` draws when they are done")
    return handles


def buffer_size_of(jobs):
    cmd = jobs[0]["cmd"]
    return int(cmd[cmd.index("--buffer-size") + 1]) if "--buffer-size" in cmd else 500_000


def status(jobs_all, folder):
    """(population, state, detail) for each population: complete; running (submitted, not finished: queued
    or training; detail: its env step); failed (submititit's result holds an error; detail: its last
    line and the log to read); stopped (a checkpoint, no job); not submitted."""
    import reproduce

    path = os.path.join(folder, "jobs.json")
    record = json.load(open(path)) if os.path.isfile(path) else {}
    owner = {name: jid for jid, names in record.items() for name in names}
    out = []
    for job in jobs_all:
        at = min(reproduce.last_step(os.path.join(r["dir"], "eval.csv")) for r in job["members"])
        where = f"{max(at, 0):,}/{job['steps']:,} env steps"
        if at >= job["steps"]:
            out.append((job["name"], "complete", where))
        elif job["name"] in owner:
            jid = owner[job["name"]]
            outcome = job_outcome(folder, jid)
            if outcome:
                out.append((job["name"], "failed", f"job {jid}: {outcome}; log {os.path.join(folder, jid + '_0_log.err')}"))
            else:
                out.append((job["name"], "running", f"job {jid}, {where}"))
        else:
            out.append((job["name"], "stopped" if at >= 0 else "not submitted", where))
    return out


def job_outcome(folder, jid):
    """None while a job runs or succeeded; else the first line of the error submitit recorded."""
    import pickle

    path = os.path.join(folder, f"{jid}_0_result.pkl")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            kind, value = pickle.load(f)
    except Exception as e:  # noqa: BLE001 -- a result file we cannot read is reported as such
        return f"unreadable result ({type(e).__name__})"
    if kind == "success":
        return None
    return str(value).strip().splitlines()[-1][:200]
