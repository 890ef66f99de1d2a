"""Every table and figure of IAC (arXiv 2102.06042), resumable; `reproduce.sh` calls this.

    bash reproduce.sh [--quick | --paper] [--jobs N] [--list] [--plot-only] [--seeds K]

Tiers (time measured on the hardware named):
  --quick    toy budgets, 2 seeds: the whole pipeline end to end. About 4 minutes on a 2-core CPU
             (--jobs 2, torch 2.13 CPU build; measured before IAC's second reading joined). CI runs it.
  (default)  3 seeds. Predator-prey and PO-predator-prey: 100k env steps (2 env copies, one update
             per 2 env steps: 50k updates), past the early dip, for Fig. 4's five methods on
             predator-prey (six curves: IAC in both readings) and IAC (both), SIAQ, DDPG-MIX on
             PO-predator-prey; no ablation-only
             methods (SQ, SIQ, Attn-QMIX): Fig. 7 shows IAC and SIAQ. 3-pendulum and the scalability
             runs: 20k env steps (4 copies, one update per 4 steps); Simple World 3k. About 4 hours
             on a 2-core CPU with --jobs 2 (measured in two parts: README "Reproducing the paper").
  --paper    the paper's budget (authors' code): 2M env steps per run, one update per env step,
             batch 256, 100-step predator-prey episodes, 5 seeds. For GPUs (--cuda is passed).

IAC runs in both readings, each naming its preset: `iac`, Algorithm 1 as the paper writes it (`iac.py --preset
paper`, the defaults until 2026-12-06; Fig. 5 shows its Sigma), and `iac_authors`, the authors' code's reading
(`--preset authors`, the defaults since), on Fig. 4's three tasks and Fig. 6. Tiers committed before
2026-12-07 hold only the first: re-running one trains the second and leaves the rest as it is.
Every training job is a plain `python iac.py ...` or `python baselines.py ...` command (`--list`
prints them, one per line, for a cluster scheduler). The seeds of one curve (env, method) train as one
population (`--seeds 1,2,...`: one process, docs/usage.md "Populations"); Simple World's runs train one by one.
Runs write under runs/reproduce/<tier>/; a run counts as complete when its eval.csv reaches its last step. Re-running skips complete runs, resumes
interrupted ones from their checkpoint (or restarts them if none was written), then copies the results
of every complete run into figures/<tier>/data/ (committed) and draws every figure from what is there,
saying on each how many seeds it holds.
"""

import argparse
import concurrent.futures as cf
import csv
import json
import os
import shlex
import shutil
import subprocess
import signal
import sys
import threading
import time

import numpy as np

import runlib

HERE = os.path.dirname(os.path.abspath(__file__))
# IAC in both readings: `iac` is Algorithm 1 as the paper writes it (`--preset paper`, as every tier committed
# before 2026-12-07 ran it; Fig. 5's Sigma is its), `iac_authors` the authors' code's reading (`--preset
# authors`, iac.py's defaults since 2026-12-06, chosen by the 200k runs of issue 27: docs/experiments.md)
IAC_PRESETS = {"iac": "paper", "iac_authors": "authors"}
FIG4_ALGOS = ("iac", "iac_authors", "siaq", "ddpg_mix", "maddpg", "maac")
FIG7_ALGOS = ("iac", "siaq", "sq", "siq", "attn_qmix")
FIG2_ALGOS = ("ddpg_mix", "attn_qmix", "iac")
FIG4_ENVS = ("multi_pendulum", "predator_prey", "po_predator_prey")
SCALE_N = (3, 5, 7)
SCALE_ALGOS = ("iac", "iac_authors", "siaq")
MAX_SEEDS = 100  # seeds 1..N of every curve; 36 training runs per seed

TIERS = {
    "quick": dict(seeds=2, steps=600, sw_steps=300, flags=[
        "--learning-starts", "200", "--batch-size", "64", "--buffer-size", "5000", "--eval-every", "200",
        "--eval-episodes", "4", "--hidden", "32", "--checkpoint-every", "300"], sw_flags=[
        "--learning-starts", "100", "--batch-size", "64", "--eval-every", "50", "--hidden", "32"]),
    # predator-prey past its early dip (100k env steps, 50k updates) for Fig. 4's five methods (IAC in both
    # readings); PO-predator-prey for IAC (both), its ablation SIAQ (Fig. 7), DDPG-MIX (MAAC, MADDPG out for
    # time); the 3-pendulum and scalability runs at 20k; no ablation-only runs (SQ, SIQ, Attn-QMIX): Fig. 7
    # compares IAC and SIAQ
    "default": dict(seeds=3, steps=20_000, sw_steps=3_000, flags=[
        "--num-envs", "4", "--updates-per-step", "0.25", "--eval-every", "1000", "--checkpoint-every", "5000"],
        sw_flags=["--learning-starts", "500", "--eval-every", "100"], pp_steps=100_000, pp_flags=[
        "--num-envs", "2", "--updates-per-step", "0.5", "--eval-every", "2000", "--checkpoint-every", "10000"],
        ablations=False, po_algos=("iac", "iac_authors", "siaq", "ddpg_mix")),
    "paper": dict(seeds=5, steps=2_000_000, sw_steps=3_000, flags=[
        "--cuda", "--eval-every", "10000", "--checkpoint-every", "100000"], sw_flags=[
        "--cuda", "--learning-starts", "500", "--eval-every", "100"]),
}


# ------------------------------------------------------------------------------------------- runs
def runs_for(tier, seeds, runs_root=os.path.join("runs", "reproduce")):
    """Every training run of a tier: dicts with name, env, algo, seed, steps and the command."""
    t = TIERS[tier]
    runs_dir = os.path.join(runs_root, tier)
    specs = []
    for seed in range(1, seeds + 1):  # seed by seed, so that a partial reproduction covers every figure
        for algo in FIG2_ALGOS:
            specs.append(("simple_world", algo, seed, t["sw_steps"], [], t["sw_flags"]))
        for env in FIG4_ENVS:
            pp = env != "multi_pendulum"
            steps, flags = (t.get("pp_steps", t["steps"]), t.get("pp_flags", t["flags"])) if pp else (t["steps"], t["flags"])
            algos = t.get("po_algos", FIG4_ALGOS) if env == "po_predator_prey" else FIG4_ALGOS
            for algo in dict.fromkeys(algos + (FIG7_ALGOS if pp and t.get("ablations", True) else ())):
                specs.append((env, algo, seed, steps, [], flags))
        for n in SCALE_N:
            for algo in SCALE_ALGOS:
                specs.append(("multi_pendulum", algo, seed, t["steps"], ["--n-agents", str(n), "--graded-reward"],
                              t["flags"]))
    runs = []
    for env, algo, seed, steps, env_flags, flags in specs:
        exp = algo + (f"-n{env_flags[1]}-graded" if env_flags else "")
        # each IAC curve names its preset, so that a command keeps its reading whatever iac.py's defaults
        script = ["iac.py", "--preset", IAC_PRESETS[algo]] if algo in IAC_PRESETS else ["baselines.py", "--algo", algo]
        cmd = ["python", *script, "--env", env, *env_flags, "--seed", str(seed), "--total-steps", str(steps),
               "--exp-name", exp, "--runs-dir", runs_dir, "--save-model", "--no-progress", *flags]
        name = f"{env}__{exp}__{seed}"
        runs.append(dict(name=name, env=env, algo=algo, exp=exp, seed=seed, steps=steps, cmd=cmd,
                         dir=os.path.join(runs_dir, name)))
    return runs


def jobs_for(runs, data_dir=None):
    """The training jobs for `runs` (those not complete, if data_dir is given): the seeds of one env and
    method as one population command, Simple World's runs (whose landscape needs a checkpoint of its own)
    one by one. Each job: name, members (runs), cmd, ckpt (where it checkpoints), steps."""
    groups = {}
    for r in runs:
        if data_dir is not None and complete(r, data_dir):
            continue
        groups.setdefault(r["name"] if r["env"] == "simple_world" else (r["env"], r["exp"]), []).append(r)
    jobs = []
    for members in groups.values():
        first = members[0]
        if len(members) == 1:
            jobs.append(dict(name=first["name"], members=members, cmd=first["cmd"], steps=first["steps"],
                             ckpt=os.path.join(first["dir"], "checkpoint.pt")))
            continue
        seeds = [str(r["seed"]) for r in members]
        at = first["cmd"].index("--seed")
        cmd = first["cmd"][:at] + ["--seeds", ",".join(seeds)] + first["cmd"][at + 2:]
        name = f"{first['env']}__{first['exp']}__seeds-{'-'.join(seeds)}"
        jobs.append(dict(name=name, members=members, cmd=cmd, steps=first["steps"],
                         ckpt=os.path.join(os.path.dirname(first["dir"]), name, "checkpoint.pt")))
    return jobs


def last_step(path):
    """Last step in an eval.csv, or -1."""
    try:
        with open(path) as f:
            rows = list(csv.reader(f))
        return int(rows[-1][0]) if len(rows) > 1 else -1
    except (OSError, ValueError, IndexError):
        return -1


def complete(run, data_dir):
    return (last_step(os.path.join(data_dir, run["name"], "eval.csv")) >= run["steps"]
            or last_step(os.path.join(run["dir"], "eval.csv")) >= run["steps"])


STATUS_EVERY = 300  # seconds between two status lines while jobs run


def status_line(jobs, n_done, t_start):
    """One line: elapsed time, jobs done, and each running job's env step (the last evaluation of its
    members, read from their eval.csv) against its budget."""
    running = []
    for job in jobs:
        if job.get("started") and not job.get("finished"):
            at = min(last_step(os.path.join(r["dir"], "eval.csv")) for r in job["members"])
            running.append(f"{job['name']} {max(at, 0):,}/{job['steps']:,}")
    mins = (time.time() - t_start) / 60
    return (f"[{n_done}/{len(jobs)} done, {mins // 60:.0f}h{mins % 60:02.0f}m] running: "
            + ("; ".join(running) or "none"))


def command(job):
    """The command that trains a job: its own, or --resume of its checkpoint when it was interrupted."""
    cmd = [sys.executable, os.path.join(HERE, job["cmd"][1]), *job["cmd"][2:]]  # paths stay the caller's
    if os.path.isfile(job["ckpt"]):  # interrupted before: continue from the last checkpoint (iac.py or baselines.py)
        cmd = [sys.executable, cmd[1], "--resume", job["ckpt"], "--total-steps", str(job["steps"]), "--no-progress"]
    return cmd


RUNNING, STOP = {}, threading.Event()  # the training processes now running; set when the tier is interrupted
LOCK = threading.Lock()


def execute(job, log_dir):
    """Run (or resume) one training job; its output is appended to its log file. Returns (job, ok, seconds);
    ok is None for a job not started because the tier was interrupted. Each job runs in its own session, so
    that a Ctrl-C reaches it once, forwarded by interrupt() (a second one would stop it without saving)."""
    cmd = command(job)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # one thread per job
    t0 = time.time()
    with LOCK:
        if STOP.is_set():
            return job, None, 0.0
        job["started"] = True
        log = open(os.path.join(log_dir, job["name"] + ".log"), "a")
        log.write(shlex.join(cmd) + "\n")
        log.flush()
        proc = RUNNING[job["name"]] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                       start_new_session=True)
    with log:
        ok = job["ok"] = proc.wait() == 0
        RUNNING.pop(job["name"], None)
    job["finished"] = True
    return job, ok, time.time() - t0


def interrupt(signum=signal.SIGINT, frame=None):
    """Ctrl-C or SIGTERM: start no further job, pass the signal once to each running one (it finishes its
    step, writes its checkpoint and exits), then stop (KeyboardInterrupt in the main thread)."""
    with LOCK:
        first = not STOP.is_set()
        STOP.set()
        running = list(RUNNING.values())
    if first:
        for proc in running:
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
        os.write(2, f"\n{signal.Signals(signum).name}: no further job starts; the {len(running)} running "
                    f"job(s) save their checkpoints and stop\n".encode())
        raise KeyboardInterrupt
    os.write(2, b"still waiting for the running jobs to save their checkpoints\n")


def collect(run, data_dir):
    """Copy a complete run's small results into the committed data folder (atomically, per file)."""
    src, dst = run["dir"], os.path.join(data_dir, run["name"])
    if last_step(os.path.join(src, "eval.csv")) < run["steps"]:
        return
    # Fig. 2 needs the learned Q_tot landscape, read from the checkpoint: first, so that a run whose
    # checkpoint cannot be read leaves no eval.csv here that would pass it as collected
    landscape = None
    if run["env"] == "simple_world":
        try:
            landscape = simple_world_landscape(os.path.join(src, "checkpoint.pt"))
        except SystemExit as e:  # one unreadable checkpoint leaves its run out of the figures, not the whole tier
            print(f"warning: {run['name']} is left out of the figures: {e}. To train it again, remove {src}",
                  file=sys.stderr)
            return
    os.makedirs(dst, exist_ok=True)
    if landscape is not None:
        runlib.save_npz(os.path.join(dst, "landscape.npz"), **landscape)
    for f in ("eval.csv", "covariance.npz"):
        if os.path.isfile(os.path.join(src, f)):
            shutil.copyfile(os.path.join(src, f), os.path.join(dst, f + ".tmp"))
            os.replace(os.path.join(dst, f + ".tmp"), os.path.join(dst, f))


def collected(run, data_dir):
    dst = os.path.join(data_dir, run["name"])
    need = ["eval.csv"] + (["landscape.npz"] if run["env"] == "simple_world" else [])
    return all(os.path.isfile(os.path.join(dst, f)) for f in need)


def simple_world_landscape(ckpt_path, points=61):
    import torch

    import baselines
    import iac

    ckpt = runlib.load_checkpoint(ckpt_path)
    args = ckpt["args"]
    S = 2 if getattr(args, "mixer_state", "env") == "obs" else 1  # Simple World: n = 2 agents, o = 1
    critic = iac.Critic(args, 2, 1, S, 1, baselines.MAACCritic if getattr(args, "algo", "") == "maac" else None)
    critic.load_state_dict(ckpt["critic"])
    grid = np.linspace(-10, 10, points)
    u1, u2 = np.meshgrid(grid, grid, indexing="ij")
    act = torch.tensor(np.stack([u1, u2], -1).reshape(-1, 2, 1) / 10, dtype=torch.float32)  # tanh space
    with torch.no_grad():
        q = critic(torch.ones(len(act), 2, 1), torch.ones(len(act), S), act)
    return dict(u=grid, q_tot=q.view(points, points).numpy())


# ------------------------------------------------------------------------------------------- tables
def tables(out_dir):
    """Tables 1-4: the matrix game's QMIX and QMIXs, as markdown files."""
    for algo in ("qmix", "qmixs"):
        path = os.path.join(out_dir, f"tables_{algo}.md")
        if not os.path.isfile(path):
            subprocess.run([sys.executable, os.path.join(HERE, "baselines.py"), "--algo", algo, "--env", "matrix_game",
                            "--out", path], check=True, stdout=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------------- main
def check_cluster_flags(p, args):
    slurm_only = ("partition", "gpus_per_job", "time_limit", "slurm_param")
    given = [k for k in slurm_only if getattr(args, k) not in (None, [])]
    if args.launcher != "slurm" and given and not (args.launcher == "submitit-local" and given == ["time_limit"]):
        p.error(f"{', '.join(runlib.flag(k) for k in given)}: for --launcher slurm only")
    if args.launcher == "slurm":
        missing = [runlib.flag(k) for k in ("partition", "gpus_per_job", "time_limit") if getattr(args, k) is None]
        if missing:
            p.error(f"--launcher slurm needs {', '.join(missing)} (no cluster defaults are built in)")
    if args.launcher == "local" and (args.pack != 1 or args.max_parallel != 256 or args.max_requeues != 20):
        p.error("--pack, --max-parallel and --max-requeues are for --launcher slurm / submitit-local")
    for name in ("gpus_per_job",):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"{runlib.flag(name)} must be >= 0, got {getattr(args, name)}")
    for name in ("time_limit", "pack", "max_parallel"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            p.error(f"{runlib.flag(name)} must be >= 1, got {getattr(args, name)}")
    if args.max_requeues < 0:
        p.error(f"--max-requeues must be >= 0, got {args.max_requeues}")
    for kv in args.slurm_param:
        key, eq, value = kv.partition("=")
        if not eq or not key or not value:
            p.error(f"--slurm-param {kv!r}: give KEY=VALUE, e.g. account=abc")
    if args.status and (args.list or args.plot_only):
        p.error("--status only reports; drop --list / --plot-only")
    if args.list and args.plot_only:
        p.error("--list only prints the training commands; drop --plot-only (or --list, to draw)")


def main(argv=None):
    p = argparse.ArgumentParser(prog="reproduce.sh", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    tier = p.add_mutually_exclusive_group()
    tier.add_argument("--quick", action="store_const", dest="tier", const="quick", help="toy budgets (CI)")
    tier.add_argument("--paper", action="store_const", dest="tier", const="paper", help="the paper's budgets (GPU)")
    p.add_argument("--jobs", type=int, default=1, help="trainings run at once, each on one CPU thread")
    p.add_argument("--seeds", type=int, default=None, help="seeds per learning curve (default: the tier's)")
    p.add_argument("--list", action="store_true", help="print the training commands, one per line, and exit")
    p.add_argument("--plot-only", action="store_true", help="train nothing: draw from the complete runs")
    p.add_argument("--out", default="figures", help="figures go to OUT/<tier>/")
    p.add_argument("--runs-dir", default=os.path.join("runs", "reproduce"),
                   help="training runs (checkpoints, TensorBoard logs) go to RUNS_DIR/<tier>/")
    p.add_argument("--status", action="store_true", help="say which populations are complete, running, failed")
    c = p.add_argument_group("cluster (pip install -r requirements-cluster.txt; cluster.py)")
    c.add_argument("--launcher", default="local", choices=["local", "slurm", "submitit-local"],
                   help="local: --jobs processes here (default); slurm: a SLURM job array through submitit, "
                   "then exit (--status, --plot-only later); submitit-local: the same jobs as local processes")
    c.add_argument("--partition", default=None, help="slurm: the partition (required)")
    c.add_argument("--gpus-per-job", type=int, default=None, help="slurm: GPUs per job (required; 0 for none)")
    c.add_argument("--time-limit", type=int, default=None, metavar="MIN",
                   help="slurm: minutes per job (required); a job that reaches it is checkpointed and requeued")
    c.add_argument("--pack", type=int, default=1, help="populations per job, trained one after another")
    c.add_argument("--max-parallel", type=int, default=256, help="slurm: array tasks running at once")
    c.add_argument("--max-requeues", type=int, default=20, help="slurm: time-limit requeues before a job gives up")
    c.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="slurm: any other sbatch option, e.g. account=abc qos=high cpus-per-task=4 (repeatable)")
    args = p.parse_args(argv)
    args.tier = args.tier or "default"
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.seeds is not None and not 1 <= args.seeds <= MAX_SEEDS:
        p.error(f"--seeds must be in 1..{MAX_SEEDS}, got {args.seeds}")
    check_cluster_flags(p, args)
    seeds = args.seeds or TIERS[args.tier]["seeds"]
    if not args.list:
        runlib.check_out_dir(p, "out", args.out)
        runlib.check_out_dir(p, "runs_dir", args.runs_dir)
    runs = runs_for(args.tier, seeds, args.runs_dir)
    submitit_dir = os.path.join(args.runs_dir, args.tier, "submitit")
    if args.status:
        import cluster

        rows = cluster.status(jobs_for(runs), submitit_dir)
        for name, state, detail in rows:
            print(f"{name}: {state} ({detail})")
        counts = {s: sum(1 for _, x, _ in rows if x == s) for s in dict.fromkeys(x for _, x, _ in rows)}
        print(f"{args.tier} tier: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
        return rows
    if args.list:
        for job in jobs_for(runs):
            print(shlex.join(job["cmd"]))
        return
    out_dir = os.path.join(args.out, args.tier)
    data_dir = os.path.join(out_dir, "data")
    log_dir = os.path.join(args.runs_dir, args.tier, "logs")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(log_dir, exist_ok=True)
    t_start = time.time()
    if not args.plot_only and args.launcher != "local":  # through submitit: one job per --pack populations
        import cluster

        tables(out_dir)
        todo = jobs_for(runs, data_dir)
        if not todo:
            print(f"{args.tier} tier: every run is complete")
        else:
            os.makedirs(submitit_dir, exist_ok=True)
            handles = cluster.submit(args.launcher, todo, args, submitit_dir, log_dir)
            if args.launcher == "slurm":
                return handles
            for h in handles:  # submitit-local: wait, then draw as a local reproduction does
                h.wait()
            failed = [name for name, state, _ in cluster.status(todo, submitit_dir) if state != "complete"]
            if failed:
                print(f"{len(failed)} population(s) not complete; see {log_dir} and {submitit_dir}: "
                      f"{', '.join(failed)}", file=sys.stderr)
        args.plot_only = True
    if not args.plot_only:
        tables(out_dir)
        todo = jobs_for(runs, data_dir)
        n_todo = sum(len(job["members"]) for job in todo)
        print(f"{args.tier} tier: {len(runs)} runs, {len(runs) - n_todo} already complete, {n_todo} to run as "
              f"{len(todo)} job(s), {args.jobs} at a time; logs in {log_dir}", flush=True)
        failed, i = [], 0
        STOP.clear()
        previous = {}  # (signals reach only the main thread)
        if threading.current_thread() is threading.main_thread():
            previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            with cf.ThreadPoolExecutor(args.jobs) as pool:  # the jobs start in the tier's order
                pending = {pool.submit(execute, job, log_dir) for job in todo}
                while pending:
                    done, pending = cf.wait(pending, timeout=STATUS_EVERY, return_when=cf.FIRST_COMPLETED)
                    if not done:  # a long tier says where it stands every STATUS_EVERY seconds
                        print(status_line(todo, i, t_start), flush=True)
                    for future in done:
                        job, ok, secs = future.result()
                        i += 1
                        print(f"[{i}/{len(todo)}] {job['name']}: {'done' if ok else 'FAILED'} in {secs:.0f}s",
                              flush=True)
                        if ok:
                            for r in job["members"]:
                                collect(r, data_dir)
                        else:
                            failed.append(job["name"])
        except KeyboardInterrupt:  # leaving the pool above waited for the running jobs to save and stop
            done = sum(bool(job.get("ok")) for job in todo)
            stopped = sum(bool(job.get("started")) for job in todo) - done
            sys.exit(f"interrupted: {done} of {len(todo)} job(s) complete; the {stopped} running stopped, each with a "
                     f"checkpoint if it had begun training; the same command carries on from there")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failed:
            print(f"{len(failed)} run(s) failed; see their logs in {log_dir}: {', '.join(failed)}", file=sys.stderr)
    for r in runs:  # also runs finished elsewhere (--list on a cluster)
        if not collected(r, data_dir):
            collect(r, data_dir)
    import plots

    plots.draw_all(runs, data_dir, out_dir, args.tier)
    if not args.plot_only:
        with open(os.path.join(out_dir, "timing.json"), "w") as f:
            json.dump(dict(tier=args.tier, seconds=round(time.time() - t_start), jobs=args.jobs,
                           cpus=os.cpu_count(), runs_trained=n_todo, jobs_trained=len(todo)), f)
    print(f"figures in {out_dir}/ ({time.time() - t_start:.0f}s)")
    return out_dir


if __name__ == "__main__":
    main()
