"""reproduce.sh: the quick tier draws every table and figure; interrupted runs resume, complete ones stay."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import baselines
import iac
import reproduce

FIGURES = ["fig2_simple_world", "fig3_exploration", "fig4_learning_curves", "fig5_covariance", "fig6_scalability",
           "fig7_ablations"]
CSVS = {"fig2_trajectories": ["algo", "seed", "step", "u1", "u2", "eval_return"],
        "fig2_landscape": ["algo", "seed", "u1", "u2", "q_tot"],
        "fig2_correlation": ["algo", "seed", "corr_qtot_reward"],
        "fig3_exploration": ["policy", "covariance", "expected_reward"],
        "fig4_learning_curves": ["env", "algo", "seed", "step", "eval_return"],
        "fig5_covariance": ["seed", "step", "i", "j", "sigma"],
        "fig6_scalability": ["env", "algo", "seed", "step", "eval_return"],
        "fig7_ablations": ["env", "measure", "algo", "value"]}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    out = reproduce.main(["--quick", "--jobs", "2", "--out", str(root / "figures"), "--runs-dir", str(root / "runs")])
    return root, out


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_quick_tier_draws_every_table_and_figure(quick):
    _, out = quick
    for name in FIGURES:
        assert os.path.getsize(os.path.join(out, name + ".png")) > 10_000, name
    for name, columns in CSVS.items():
        with open(os.path.join(out, name + ".csv")) as f:
            assert next(csv.reader(f)) == columns, name
        assert len(_rows(os.path.join(out, name + ".csv"))) > 0, name
    for algo in ("qmix", "qmixs"):
        text = open(os.path.join(out, f"tables_{algo}.md")).read()
        assert "Greedy joint action" in text and "| A |" in text
    # every learning curve holds both quick-tier seeds, on every step
    fig4 = _rows(os.path.join(out, "fig4_learning_curves.csv"))
    for env in ("multi_pendulum", "predator_prey", "po_predator_prey"):
        for algo in ("iac", "iac_authors", "siaq", "ddpg_mix", "maddpg", "maac"):
            seeds = {r["seed"] for r in fig4 if r["env"] == env and r["algo"] == algo}
            assert seeds == {"1", "2"}, (env, algo, seeds)
    fig6 = _rows(os.path.join(out, "fig6_scalability.csv"))
    assert {r["algo"] for r in fig6} == {f"{a}-n{n}-graded" for a in ("iac", "iac_authors", "siaq") for n in (3, 5, 7)}


def test_rerun_resumes_the_interrupted_population_and_skips_complete_runs(quick):
    root, out = quick
    runs = reproduce.runs_for("quick", 2, str(root / "runs"))
    victims = [r for r in runs if r["env"] == "predator_prey" and r["algo"] == "iac"]
    data = os.path.join(out, "data")
    # both seeds' curves were interrupted halfway: results gone, only the population's half-way checkpoint left
    for r in victims:
        for d in (os.path.join(data, r["name"]), r["dir"]):
            subprocess.run(["rm", "-rf", d], check=True)
    (job,) = reproduce.jobs_for(victims)
    assert "--seeds" in job["cmd"] and job["cmd"][job["cmd"].index("--seeds") + 1] == "1,2"
    cmd = [sys.executable, *job["cmd"][1:]]
    cmd[cmd.index("--total-steps") + 1] = "300"
    subprocess.run(cmd, check=True, cwd=os.path.dirname(reproduce.__file__), capture_output=True)
    assert os.path.isfile(job["ckpt"])
    others = {r["name"]: os.path.getmtime(os.path.join(data, r["name"], "eval.csv")) for r in runs if r not in victims}
    reproduce.main(["--quick", "--jobs", "2", "--out", str(root / "figures"), "--runs-dir", str(root / "runs")])
    log = open(os.path.join(root, "runs", "quick", "logs", job["name"] + ".log")).read()
    cmds = [line for line in log.splitlines() if line.startswith(sys.executable)]  # one per segment, appended
    assert "--resume" in cmds[-1] and "resumed" in log
    for r in victims:
        assert reproduce.last_step(os.path.join(data, r["name"], "eval.csv")) == r["steps"]
    for name, mtime in others.items():  # nothing else was trained again
        assert os.path.getmtime(os.path.join(data, name, "eval.csv")) == mtime, name


def test_list_prints_one_command_per_population(capsys):
    reproduce.main(["--quick", "--list"])
    lines = capsys.readouterr().out.strip().splitlines()
    # 72 runs of 2 seeds: 6 Simple World runs one by one, the other 66 as 33 populations of both seeds
    assert len(reproduce.runs_for("quick", 2)) == 72 and len(lines) == 6 + 33
    assert all(line.startswith(("python iac.py", "python baselines.py --algo")) for line in lines)
    assert sum("--seeds 1,2" in line for line in lines) == 33
    for tier in reproduce.TIERS:  # each flag once: a command is read (and pasted into schedulers) by people
        for job in reproduce.jobs_for(reproduce.runs_for(tier, 2)):
            flags = [w for w in job["cmd"] if w.startswith("--")]
            assert len(flags) == len(set(flags)), job["cmd"]
            algo = job["members"][0]["algo"]  # and every command passes iac.py's / baselines.py's checks
            argv = [w for w in job["cmd"] if w != "--cuda" or torch.cuda.is_available()]  # (--paper's GPU runs)
            if algo in reproduce.IAC_PRESETS:  # each IAC curve names its reading
                assert argv[2:4] == ["--preset", reproduce.IAC_PRESETS[algo]], argv
                iac.parse_args(argv[2:])
            elif algo not in baselines.MATRIX_ALGOS:
                baselines.continuous_args(algo, argv[4:])


def test_plot_runs_draws_any_runs_and_rejects_a_folder_without_eval_csv(tmp_path):
    import plots

    for seed, vals in ((1, [1.0, 2.0, 4.0]), (2, [3.0, 2.0])):  # run 2 was interrupted after 2 evaluations
        d = tmp_path / f"pp__iac__{seed}"
        d.mkdir()
        (d / "eval.csv").write_text("step,eval_return\n" + "".join(f"{i * 1000},{v}\n" for i, v in enumerate(vals)))
    out = tmp_path / "fig" / "curves.png"
    plots.plot_runs([tmp_path / "pp__iac__1", tmp_path / "pp__iac__2"], str(out))
    assert out.is_file()
    with open(tmp_path / "fig" / "curves.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["run", "step", "eval_return"] and len(rows) == 1 + 5
    assert rows[3] == ["pp__iac__1", "2000", "4.0"] and rows[5] == ["pp__iac__2", "1000", "2.0"]
    with pytest.raises(SystemExit, match="eval.csv not found"):
        plots.plot_runs([tmp_path], str(out))
    with pytest.raises(SystemExit, match="give a .png"):
        plots.plot_runs([tmp_path / "pp__iac__1"], str(tmp_path / "curves.pdf"))
    plots.plot_runs([tmp_path / "pp__iac__1" / "eval.csv", tmp_path / "pp__iac__2"], str(out))  # a run's eval.csv
    with open(tmp_path / "fig" / "curves.csv") as f:
        assert len(list(csv.reader(f))) == 1 + 5
    other = tmp_path / "elsewhere" / "pp__iac__1"  # the same name and seed from another --runs-dir
    other.mkdir(parents=True)
    (other / "eval.csv").write_text("step,eval_return\n0,9.0\n")
    with pytest.raises(SystemExit, match="both the run pp__iac__1"):
        plots.plot_runs([tmp_path / "pp__iac__1", other], str(out))


def test_plot_runs_means_seeds_at_the_steps_they_share(tmp_path, monkeypatch):
    """Seeds evaluated on different schedules (another --eval-every or --num-envs) are averaged step by
    step, not row by row; a run named twice counts once."""
    import matplotlib.axes

    import plots

    for seed, every in ((1, 100), (2, 200)):  # return = step / 10 in both runs
        d = tmp_path / f"pp__iac__{seed}"
        d.mkdir()
        (d / "eval.csv").write_text("step,eval_return\n" + "".join(f"{t},{t / 10}\n" for t in range(0, 401, every)))
    lines, real = [], matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", lambda ax, x, y, **k: lines.append((list(x), list(y), k)) or real(ax, x, y, **k))
    runs = [tmp_path / "pp__iac__1", tmp_path / "pp__iac__2", str(tmp_path / "pp__iac__2") + "/"]
    plots.plot_runs(runs, str(tmp_path / "curves.png"))
    (x, y, k), = [line for line in lines if "label" in line[2]]
    assert x == [0, 200, 400] and y == [0.0, 20.0, 40.0] and k["label"] == "pp__iac (mean of 2)"


def test_a_simple_world_run_without_its_checkpoint_is_not_left_half_collected(tmp_path, capsys):
    """Fig. 2 reads the landscape from the run's checkpoint: if it cannot, nothing is copied, so a later
    --plot-only tries again instead of drawing from an eval.csv without its landscape."""
    src = tmp_path / "runs" / "simple_world__iac__1"
    src.mkdir(parents=True)
    (src / "eval.csv").write_text("step,eval_return\n0,1.0\n300,2.0\n")
    run = dict(name=src.name, env="simple_world", algo="iac", exp="iac", seed=1, steps=300, dir=str(src))
    data = tmp_path / "data"
    reproduce.collect(run, str(data))  # a warning, not the end of the tier: the other figures still draw
    assert "left out of the figures" in capsys.readouterr().err
    assert not reproduce.collected(run, str(data)) and not (data / src.name / "eval.csv").exists()


def test_default_tier_takes_predator_prey_past_its_dip_and_feeds_every_figure():
    """Issue 10's tier: >= 100k env steps on both predator-prey envs for Fig. 4's methods, the
    pendulum figures and Simple World still fed, nothing ablation-only; the seeds of a curve are one job."""
    runs = reproduce.runs_for("default", 3)
    by_env = lambda env: {r["algo"] for r in runs if r["env"] == env and r["exp"] == r["algo"]}
    assert by_env("predator_prey") == set(reproduce.FIG4_ALGOS)
    assert by_env("po_predator_prey") == {"iac", "iac_authors", "siaq", "ddpg_mix"}  # MAAC, MADDPG out for time
    for env in ("predator_prey", "po_predator_prey"):
        assert all(r["steps"] >= 100_000 for r in runs if r["env"] == env)
    assert by_env("multi_pendulum") == set(reproduce.FIG4_ALGOS)
    assert by_env("simple_world") == set(reproduce.FIG2_ALGOS)
    scale = {(r["algo"], r["exp"]) for r in runs if "graded" in r["exp"]}
    assert scale == {(a, f"{a}-n{n}-graded") for a in ("iac", "iac_authors", "siaq") for n in reproduce.SCALE_N}
    assert {r["seed"] for r in runs} == {1, 2, 3} and len(runs) == 3 * (3 + 6 + 6 + 4 + 9)
    pp = next(j for j in reproduce.jobs_for(runs) if j["name"].startswith("predator_prey__iac__"))
    cmd = pp["cmd"]
    assert cmd[cmd.index("--seeds") + 1] == "1,2,3"
    ups, B = float(cmd[cmd.index("--updates-per-step") + 1]), int(cmd[cmd.index("--num-envs") + 1])
    assert ups * B == 1  # one update per batched step of the env copies: 50k updates in 100k env steps


def test_status_line_names_each_running_job_at_its_members_last_evaluation(tmp_path):
    def run(name, steps_done):
        d = tmp_path / name
        d.mkdir()
        if steps_done is not None:
            (d / "eval.csv").write_text("step,eval_return\n" + "".join(f"{s},1.0\n" for s in steps_done))
        return dict(dir=str(d))

    jobs = [dict(name="pp__iac__seeds-1-2", steps=100_000, started=True, members=[run("a", [0, 2000, 4000]),
                                                                                  run("b", [0, 2000])]),
            dict(name="pp__siaq__seeds-1-2", steps=100_000, started=True, finished=True, members=[run("c", [0])]),
            dict(name="pp__maac__seeds-1-2", steps=50_000, started=True, members=[run("d", None)]),
            dict(name="pp__sq__seeds-1-2", steps=100_000, members=[run("e", [0])])]  # not started yet
    line = reproduce.status_line(jobs, 1, reproduce.time.time() - 3725)
    assert line.startswith("[1/4 done, 1h02m] running: ")
    # the slower member sets the step; a job that has not evaluated yet is at 0; finished and queued jobs are not running
    assert line.endswith("running: pp__iac__seeds-1-2 2,000/100,000; pp__maac__seeds-1-2 0/50,000")
    assert reproduce.status_line(jobs[3:], 0, reproduce.time.time()).endswith("running: none")


def test_a_panel_without_complete_runs_says_so():
    import matplotlib.pyplot as plt

    import plots

    fig, (empty, full) = plt.subplots(1, 2)
    run = dict(algo="iac", env="predator_prey", exp="iac", seed=1,
               eval={"step": np.array([0, 1000]), "eval_return": np.array([1.0, 2.0])})
    assert plots.curves(empty, [], ("iac",), "t") == []
    assert [t.get_text() for t in empty.texts] == ["no complete run yet"] and empty.get_legend() is None
    assert len(plots.curves(full, [run], ("iac",), "t")) == 2
    assert len(full.texts) == 0 and full.get_legend() is not None
    plt.close(fig)


def test_fig7_saved_steps_where_ddpg_mix_reaches_the_threshold_final_differences_where_it_does_not(tmp_path):
    import plots
    from test_experiments import fake_run
    runs = [dict(name=f"predator_prey__{a}__{s}", env="predator_prey", algo=a, exp=a, seed=s, steps=4000)
            for a in ("iac", "ddpg_mix") for s in (1, 2)]
    # DDPG-MIX reaches 1000 at 3k and 4k (mean 3.5k); IAC at 1k and 2k: 2.5 and 1.5 thousand steps saved
    for name, ret in [("iac__1", [0, 1200, 0, 0, 0]), ("iac__2", [0, 0, 1000, 0, 0]),
                      ("ddpg_mix__1", [0, 0, 0, 1500, 0]), ("ddpg_mix__2", [0, 0, 0, 0, 1000])]:
        fake_run(tmp_path / "reached", "predator_prey__" + name, ret)
    plots.fig7(runs, str(tmp_path / "reached"), str(tmp_path))
    rows = [(r["env"], r["measure"], r["algo"], float(r["value"])) for r in _rows(tmp_path / "fig7_ablations.csv")]
    assert rows == [("predator_prey", "saved_ksteps", "iac", 2.5), ("predator_prey", "saved_ksteps", "iac", 1.5)]
    # nobody reaches it: the final returns (mean of the last 3 evaluations) minus DDPG-MIX's mean final
    for name, ret in [("iac__1", [0, 30, 60, 90, 120]), ("iac__2", [0, 0, 0, 0, 30]),
                      ("ddpg_mix__1", [0, 0, 30, 30, 30]), ("ddpg_mix__2", [0, 0, 60, 60, 60])]:
        fake_run(tmp_path / "unreached", "predator_prey__" + name, ret)
    plots.fig7(runs, str(tmp_path / "unreached"), str(tmp_path))
    rows = [(r["env"], r["measure"], r["algo"], float(r["value"])) for r in _rows(tmp_path / "fig7_ablations.csv")]
    assert rows == [("predator_prey", "diff_return", "iac", 90 - 45), ("predator_prey", "diff_return", "iac", 10 - 45)]


def test_ctrl_c_stops_the_tier_starts_no_further_job_and_each_running_job_saves(tmp_path):
    """A Ctrl-C (SIGINT to the terminal's process group) reaches reproduce.py only, which passes it once to
    each running job (in its own session: a second signal would stop it without saving) and starts no more."""
    import signal
    import time

    runs = tmp_path / "runs"
    logs = runs / "quick" / "logs"
    p = subprocess.Popen([sys.executable, "reproduce.py", "--quick", "--jobs", "1", "--runs-dir", str(runs),
                          "--out", str(tmp_path / "figures")], cwd=os.path.dirname(reproduce.__file__),
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # wait until a job's training has begun (the first simple_world run takes ~8 s)
        begun = [f for f in logs.glob("*.log") if "settings:" in f.read_text()] if logs.is_dir() else []
        if begun:
            break
        time.sleep(0.2)
    assert begun, "no job began training"
    os.killpg(p.pid, signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 1 and "interrupted:" in err and "the same command carries on" in err
    job_logs = sorted(logs.glob("*.log"))
    assert 1 <= len(job_logs) <= 2  # the job running then, and at most the next (begun before the signal landed)
    texts = [f.read_text() for f in job_logs]
    assert not any("Traceback" in t for t in [out, err, *texts])
    last = texts[-1]  # the job stopped by the forwarded signal saved, or it had just completed
    assert "interrupted at step" in last or "eval_return" not in last
    r = subprocess.run(["pgrep", "-f", str(runs)], capture_output=True)
    assert r.returncode == 1, "a training process outlived reproduce.py"
