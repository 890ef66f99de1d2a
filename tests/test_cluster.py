"""reproduce.sh on a cluster (cluster.py), tested for real without one: submitit's local executor runs
the jobs as separate processes through the same code path; a job sent submitit's pre-emption signal is
requeued through checkpoint() and resumes to the uninterrupted curve; a fake sbatch records the job
script submitit writes; a missing submitit and a refusing sbatch give one line each."""

import argparse
import builtins
import os
import pickle
import signal
import stat
import subprocess
import sys
import time

import pytest

import cluster
import reproduce

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
submitit = pytest.importorskip("submitit", reason=f"pip install -r {cluster.REQUIREMENTS}")


def test_submitit_local_trains_the_quick_tier_and_draws_every_figure(tmp_path):
    out, runs = str(tmp_path / "figures"), str(tmp_path / "runs")
    reproduce.main(["--quick", "--seeds", "1", "--launcher", "submitit-local", "--jobs", "2", "--out", out,
                    "--runs-dir", runs])
    every = reproduce.runs_for("quick", 1, runs)
    assert all(reproduce.complete(r, os.path.join(out, "quick", "data")) for r in every)
    for fig in ("fig2_simple_world", "fig4_learning_curves", "fig5_covariance", "fig6_scalability", "fig7_ablations"):
        assert os.path.isfile(os.path.join(out, "quick", fig + ".png")), fig
    jobs = [f for f in os.listdir(os.path.join(runs, "quick", "submitit")) if f.endswith("_result.pkl")]
    assert len(jobs) == 2  # --jobs 2: the populations shared out over two submitit jobs
    rows = reproduce.main(["--quick", "--seeds", "1", "--status", "--runs-dir", runs, "--out", out])
    assert {state for _, state, _ in rows} == {"complete"}


def _job(runs_dir, steps):
    cmd = ["python", "iac.py", "--env", "predator_prey", "--seeds", "1,2", "--total-steps", str(steps),
           "--batch-size", "16", "--hidden", "16", "--heads", "2", "--eval-every", "100", "--eval-episodes", "2",
           "--exp-name", "pre", "--runs-dir", runs_dir, "--save-model", "--no-progress", "--checkpoint-every", "100000"]
    name = "predator_prey__pre__seeds-1-2"
    members = [dict(dir=os.path.join(runs_dir, f"predator_prey__pre__{s}"), steps=steps) for s in (1, 2)]
    return dict(name=name, cmd=cmd, steps=steps, members=members, ckpt=os.path.join(runs_dir, name, "checkpoint.pt"))


def test_a_preempted_job_is_requeued_through_checkpoint_and_resumes_to_the_uninterrupted_curve(tmp_path):
    steps = 1500
    straight = _job(str(tmp_path / "straight"), steps)
    subprocess.run(reproduce.command(straight), cwd=HERE, check=True, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS="1"))
    job = _job(str(tmp_path / "pre"), steps)
    args = argparse.Namespace(pack=1, jobs=1, time_limit=None, max_requeues=3)
    folder, logs = str(tmp_path / "submitit"), str(tmp_path / "logs")
    os.makedirs(logs)
    (handle,) = cluster.submit("submitit-local", [job], args, folder, logs)
    first = os.path.join(job["members"][0]["dir"], "eval.csv")
    t0 = time.time()
    while reproduce.last_step(first) < 300:  # part-way through training
        assert time.time() - t0 < 300 and handle.state != "FINISHED"
        time.sleep(0.2)
    # SLURM's pre-emption signal (USR2) to the job's processes: submitit's task calls checkpoint() and
    # requeues; the training run itself ignores USR2 and saves on the SIGTERM that checkpoint() sends
    for pid in _children(handle._process.pid):
        os.kill(pid, signal.SIGUSR2)
    assert handle.result() == [job["name"]]  # requeued, resumed and finished
    log = open(os.path.join(logs, job["name"] + ".log")).read()
    assert "--resume" in log and "interrupted at step" in log  # it saved on SIGTERM and came back with --resume
    submitit_log = "".join(open(os.path.join(folder, f"{handle.job_id}_0_log.{k}")).read() for k in ("out", "err"))
    assert "Calling checkpoint method" in submitit_log and "Requeued job" in submitit_log
    for a, b in zip(straight["members"], job["members"]):
        assert open(os.path.join(a["dir"], "eval.csv")).read() == open(os.path.join(b["dir"], "eval.csv")).read()


def _children(pid):
    """The processes whose parent is pid (from /proc)."""
    out = []
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _fake_slurm(tmp_path, fail=None):
    """sbatch and srun on PATH: sbatch keeps the job script it is given and answers as SLURM does, or
    fails with `fail` on stderr."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "sbatch_scripts"
    record.mkdir()
    body = (f'echo "{fail}" >&2; exit 1' if fail else
            f'cp "$1" "{record}/$(date +%s%N).sh"; echo "Submitted batch job 4242"')
    for name, text in (("sbatch", body), ("srun", "exit 0")):
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + text + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir, record


def test_the_slurm_job_script_has_the_array_partition_time_gpus_and_each_jobs_command(tmp_path, monkeypatch, capsys):
    bin_dir, record = _fake_slurm(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    runs, out = str(tmp_path / "runs"), str(tmp_path / "figures")
    reproduce.main(["--paper", "--seeds", "2", "--launcher", "slurm", "--partition", "gpu", "--gpus-per-job", "1",
                    "--time-limit", "1440", "--pack", "4", "--slurm-param", "account=abc", "--slurm-param",
                    "qos=high", "--runs-dir", runs, "--out", out])
    (script,) = [p.read_text() for p in record.iterdir()]
    todo = reproduce.jobs_for(reproduce.runs_for("paper", 2, runs))
    n_jobs = -(-len(todo) // 4)
    assert f"#SBATCH --array=0-{n_jobs - 1}%{min(n_jobs, 256)}" in script
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=1440", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --account=abc", "#SBATCH --qos=high", "#SBATCH --signal=USR2@"):
        assert line in script, line
    grace = int(script.split("#SBATCH --signal=USR2@")[1].split()[0])
    assert grace >= cluster.grace_seconds(4, 2, 500_000) >= 60 + 2 * 2 * 500_000 * 600 / 2**20 / 50
    assert "submitit.core._submit" in script and f"export PYTHONPATH={HERE}" in script
    folder = os.path.join(runs, "paper", "submitit")
    pickles = sorted(f for f in os.listdir(folder) if f.endswith("_submitted.pkl"))
    assert len(pickles) == n_jobs
    commands = []
    for f in sorted(pickles, key=lambda f: int(f.split("_")[1])):
        with open(os.path.join(folder, f), "rb") as fh:
            commands += [j["cmd"] for j in pickle.load(fh).function.jobs]
    assert commands == [j["cmd"] for j in todo]  # every population once, in the tier's order
    assert "--cuda" in commands[0] and "--save-model" in commands[0]
    status = reproduce.main(["--paper", "--seeds", "2", "--status", "--runs-dir", runs, "--out", out])
    assert {state for _, state, _ in status} == {"running"} and "job 4242_0" in status[0][2]


def test_a_refusing_sbatch_is_passed_on_in_one_line(tmp_path, monkeypatch):
    bin_dir, _ = _fake_slurm(tmp_path, fail="sbatch: error: invalid partition specified: nope")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--paper", "--seeds", "1", "--launcher", "slurm", "--partition", "nope", "--gpus-per-job",
                        "1", "--time-limit", "60", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "f")])
    msg = str(e.value.code)
    assert msg.startswith("error: the submission failed; sbatch said:") and "invalid partition specified: nope" in msg
    assert "\n" not in msg


def test_a_missing_submitit_names_the_requirements_file(tmp_path, monkeypatch):
    real = builtins.__import__
    monkeypatch.setattr(builtins, "__import__", lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name))
                        if name == "submitit" else real(name, *a, **k))
    monkeypatch.delitem(sys.modules, "submitit", raising=False)
    with pytest.raises(SystemExit) as e:
        reproduce.main(["--quick", "--launcher", "submitit-local", "--runs-dir", str(tmp_path / "r"), "--out",
                        str(tmp_path / "f")])
    assert "pip install -r requirements-cluster.txt" in str(e.value.code)


@pytest.mark.parametrize("argv, message", [
    (["--launcher", "slurm"], "--launcher slurm needs --partition, --gpus-per-job, --time-limit"),
    (["--launcher", "slurm", "--partition", "p", "--gpus-per-job", "-1", "--time-limit", "5"], "--gpus-per-job must be >= 0"),
    (["--partition", "p"], "--partition: for --launcher slurm only"),
    (["--pack", "3"], "--pack, --max-parallel and --max-requeues are for --launcher slurm"),
    (["--launcher", "slurm", "--partition", "p", "--gpus-per-job", "1", "--time-limit", "5", "--slurm-param", "x"],
     "--slurm-param 'x': give KEY=VALUE"),
    (["--status", "--plot-only"], "--status only reports"),
])
def test_bad_cluster_flags_exit_naming_the_flag(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproduce.main([*argv, "--runs-dir", str(tmp_path / "r"), "--out", str(tmp_path / "f")])
    assert message in capsys.readouterr().err
