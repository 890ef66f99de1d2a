"""The analysis scripts whose numbers the README quotes (experiments/), on runs whose answers are known."""

import csv
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments"))
import c4_sigma  # noqa: E402
import final_table  # noqa: E402
import issue9_summary  # noqa: E402
import perm_test  # noqa: E402
import tb_windows  # noqa: E402


def fake_run(root, name, returns, every=1000):
    d = root / name
    d.mkdir(parents=True)
    with open(d / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "eval_return", "u0_0"])
        w.writerows((i * every, r, 0.0) for i, r in enumerate(returns))
    return str(d)


def test_final_table_averages_each_runs_last_k_then_seeds(tmp_path, capsys):
    a = fake_run(tmp_path, "pp__x__1", [0, 100, 1, 2, 3])
    b = fake_run(tmp_path, "pp__x__2", [0, 0, 5, 6, 7])
    c = fake_run(tmp_path, "pp__y__1", [9, 9, 9, 9, 4])
    out = tmp_path / "t.csv"
    final_table.main([a, b, c, "--last", "3", "--csv", str(out)])
    rows = {r["runs"]: r for r in csv.DictReader(open(out))}
    assert rows["pp__x"]["per_seed"] == "2.0, 6.0"  # the 100 at step 1000 is outside the last 3
    assert rows["pp__x"]["mean"] == "4.0" and rows["pp__x"]["std"] == f"{np.std([2, 6], ddof=1):.1f}"
    assert rows["pp__x"]["window"] == "[2,000, 4,000]"
    assert rows["pp__y"]["per_seed"] == "7.3" and rows["pp__y"]["std"] == "nan"
    with pytest.raises(SystemExit, match="fewer than --last 9"):
        final_table.main([a, "--last", "9"])


def test_tb_windows_averages_per_window_and_a_resumed_runs_later_file_wins(tmp_path, capsys):
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "pp__iac__1"
    w = SummaryWriter(str(run))
    for step in range(0, 10001, 1000):
        w.add_scalar("losses/actor_loss", -step / 1000, step)  # 0, -1, ..., -10
    w.close()
    os.utime(next(run.glob("events*")), (1, 1))  # the first file is the older one
    w = SummaryWriter(str(run), filename_suffix=".resumed")  # resumed at 6000: rewrites 6000 onwards
    for step in range(6000, 10001, 1000):
        w.add_scalar("losses/actor_loss", 100.0, step)
    w.close()
    pts = dict(tb_windows.scalars(str(run), "losses/actor_loss"))
    assert pts[5000] == -5 and pts[6000] == 100 and pts[10000] == 100 and len(pts) == 11
    tb_windows.main([str(run), "--window", "5000", "--until", "10000"])
    table = capsys.readouterr().out.splitlines()[-1]
    assert table == f"| pp__iac__1 | {np.mean([-1, -2, -3, -4, -5]):.1f} | 100.0 |"  # (0, 5k], (5k, 10k]
    fake_run(tmp_path, "pp__ev__1", [4, 6, 8])
    tb_windows.main([str(tmp_path / "pp__ev__1"), "--tag", "eval", "--window", "1000", "--until", "2000"])
    assert capsys.readouterr().out.splitlines()[-1] == "| pp__ev__1 | 6.0 | 8.0 |"
    with pytest.raises(SystemExit, match="no TensorBoard scalar 'nope'"):
        tb_windows.main([str(run), "--tag", "nope"])
    capsys.readouterr()
    with pytest.raises(SystemExit, match="no TensorBoard scalar"):  # a bad run among good ones: no half table
        tb_windows.main([str(run), str(tmp_path / "pp__ev__1")])
    assert capsys.readouterr().out == ""


def test_c4_sigma_reads_between_agent_correlations_only():
    # 2 agents x 2 action entries: entries 0, 1 belong to agent 0; 2, 3 to agent 1
    sigma = np.eye(4) * 4.0
    sigma[0, 1] = sigma[1, 0] = 3.9  # within agent 0: must be ignored
    sigma[0, 2] = sigma[2, 0] = 2.0  # between agents: corr 2 / (2 * 2) = 0.5
    sigma[1, 3] = sigma[3, 1] = -1.0  # corr -0.25
    c = c4_sigma.between_agent_corr(sigma[None], 2)
    assert sorted(np.round(c[0], 6)) == [-0.25, 0.0, 0.0, 0.5]


@pytest.mark.parametrize("agents", ["0", "1", "-2"])
def test_c4_sigma_refuses_fewer_than_two_agents(agents, tmp_path, capsys):
    with pytest.raises(SystemExit):
        c4_sigma.main([str(tmp_path), "--agents", agents])
    assert "--agents must be >= 2" in capsys.readouterr().err


def test_issue9_summary_keeps_complete_runs_and_averages_the_last_10k(tmp_path, monkeypatch, capsys):
    out = tmp_path / "figures"
    monkeypatch.setattr(issue9_summary, "OUT", str(out))
    runs = tmp_path / "runs"
    flat = [0.0] * 90  # evaluations at 0, 1k, ..., 89k
    fake_run(runs, "predator_prey__iac-alg1__1", flat + [10.0] * 11)  # (90k, 100k]: ten 10s
    fake_run(runs, "predator_prey__iac-alg1__2", flat + [0.0] + [20.0] * 5 + [40.0] * 5)  # mean 30
    fake_run(runs, "predator_prey__ddpg_mix__1", flat + [99.0] + [4.0] * 10)  # 90k itself is not counted
    fake_run(runs, "predator_prey__iac-polyak__1", [50.0] * 60)  # stopped at 59k: left out
    issue9_summary.main([str(runs)])
    with open(out / "factors_100k.csv") as f:
        rows = {r["cell"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"iac-alg1", "ddpg_mix-alg1"}  # the experiments/issue9.sh name is renamed
    assert rows["iac-alg1"]["per_seed_mean_90k_100k"] == "10.0, 30.0"
    assert (rows["iac-alg1"]["mean"], rows["iac-alg1"]["std"]) == ("20.0", "14.1")
    assert rows["ddpg_mix-alg1"]["mean"] == "4.0"
    assert sorted(os.listdir(out / "data")) == ["predator_prey__ddpg_mix-alg1__1", "predator_prey__iac-alg1__1",
                                                 "predator_prey__iac-alg1__2"]
    assert (out / "factors_100k.png").is_file()
    assert "| iac-alg1 | 1 2 | 10.0, 30.0 | 20.0 +- 14.1 |" in capsys.readouterr().out


def test_issue9_summary_refuses_a_missing_runs_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["issue9_summary.py", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="not a folder of runs"):
        issue9_summary.main()


def test_permutation_p_counts_every_split_by_hand():
    # the 6 splits of {1, 2, 3, 4} into two pairs have gaps 2, 1, 0, 0, -1, -2
    assert perm_test.permutation_p([1, 2], [3, 4]) == (2, 1 / 6, 2 / 6)
    assert perm_test.permutation_p([3, 4], [1, 2]) == (-2, 1.0, 2 / 6)
    gap, one, two = perm_test.permutation_p([5, 5, 5], [5, 5, 5])
    assert (gap, one, two) == (0, 1.0, 1.0)


def test_perm_test_reads_each_runs_last_evaluations(tmp_path, capsys):
    a = [fake_run(tmp_path, f"x__a__{i}", [100.0, v]) for i, v in enumerate((1.0, 2.0))]
    b = [fake_run(tmp_path, f"x__b__{i}", [-100.0, v]) for i, v in enumerate((3.0, 4.0))]
    perm_test.main(a + ["--vs"] + b + ["--last", "1"])
    out = capsys.readouterr().out
    assert "gap (second - first): 2.0; one-sided p = 0.167, two-sided p = 0.333" in out
    with pytest.raises(SystemExit):
        perm_test.main(a[:1] + ["--vs"] + b)  # one run is no group


def _cell(tmp_path, name, finals):
    dirs = []
    for k, v in enumerate(finals):
        d = tmp_path / f"{name}{k}"
        d.mkdir()
        (d / "eval.csv").write_text(f"step,eval_return\n0,0\n100,{v - 1}\n200,{v + 1}\n300,999\n")
        dirs.append(str(d))
    return dirs


def test_rliable_table_iqm_and_probability_of_improvement_by_hand(tmp_path, capsys):
    pytest.importorskip("rliable", reason="pip install -r requirements-analysis.txt")
    import rliable_table as rt
    a = _cell(tmp_path, "a", [11, 21, 31, 41, 51])  # window (0, 200]: the mean of 100 and 200 = the value
    b = _cell(tmp_path, "b", [3, 6, 9, 12, 15])
    c = _cell(tmp_path, "c", [1, 2, 3, 4, 60])
    args = ["--window", "0", "200", "--cell", "A", *a, "--cell", "B", *b, "--cell", "C", *c, "--reps", "2000"]
    rows = rt.main(args + ["--vs", "B"])
    by = {r["cell"]: r for r in rows}
    assert by["A"]["iqm"] == pytest.approx(31.0) and by["B"]["iqm"] == pytest.approx(9.0)  # the middle three's mean
    assert by["C"]["iqm"] == pytest.approx(3.0)  # the outlier 60 is outside the interquartile range
    assert by["A"]["p_vs_B"] == pytest.approx(23 / 25)  # A > B in 23 of the 25 pairs
    assert by["C"]["p_vs_B"] == pytest.approx(6.5 / 25)  # C > B: 60 beats all 5, 4 beats 3, 3 ties 3 (a half)
    assert "p_vs_B" not in by["B"]  # a cell against itself: no number
    assert by["A"]["iqm_lo"] < 31.0 < by["A"]["iqm_hi"]
    # several references: one column set each, and each column as it is when asked for alone
    out = tmp_path / "t.csv"
    rows2 = {r["cell"]: r for r in rt.main(args + ["--vs", "B", "C", "--csv", str(out)])}
    alone_c = {r["cell"]: r for r in rt.main(args + ["--vs", "C"])}
    for k in ("A", "C"):
        assert {q: rows2[k][q] for q in by[k] if q.startswith("p_vs_B")} == \
            {q: by[k][q] for q in by[k] if q.startswith("p_vs_B")}
    assert rows2["A"]["p_vs_C"] == alone_c["A"]["p_vs_C"] and rows2["B"]["p_vs_C"] == pytest.approx(1 - 6.5 / 25)
    head = out.read_text().splitlines()[0].split(",")
    assert head == ["cell", "runs", "iqm", "iqm_lo", "iqm_hi", "p_vs_B", "p_vs_B_lo", "p_vs_B_hi",
                    "p_vs_C", "p_vs_C_lo", "p_vs_C_hi"]
    printed = capsys.readouterr().out
    assert "| P(cell > B) (95% CI) | P(cell > C) (95% CI) |" in printed
    for bad, message in ((["--vs", "D"], "--vs D: not one of the cells"), (["--vs", "B", "B"], "given twice")):
        with pytest.raises(SystemExit):
            rt.main(args + bad)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # a run without an evaluation in the window is an error
        rt.main(["--window", "300", "400", "--cell", "A", *a])
    assert "no evaluation in (300, 400]" in str(e.value.code)


def test_authors_peer_window_means_figure_and_permutation_test(tmp_path, capsys):
    import authors_peer

    a = _cell(tmp_path, "authors", [200, 250, 300])
    b = _cell(tmp_path, "ours", [50, 100, 150])
    finals, gap, p_one, p_two = authors_peer.main(["--authors", *a, "--ours", *b, "--window", "0", "200", "--out",
                                                   str(tmp_path / "peer")])
    assert list(finals.values()) == [[200, 250, 300], [50, 100, 150]]
    assert gap == pytest.approx(150.0) and p_one == pytest.approx(1 / 20)  # the one split of 20 this extreme
    assert (tmp_path / "peer.png").is_file() and (tmp_path / "peer.csv").is_file()
    with pytest.raises(SystemExit) as e:
        authors_peer.main(["--authors", *a, "--ours", *b, "--window", "300", "400", "--out", str(tmp_path / "x")])
    assert "no evaluation in (300, 400]" in str(e.value.code)


@pytest.mark.parametrize("argv, message", [
    (["--code", "/no/such", "--mpe", "/no/such", "--seed", "1", "--out", "OUT"], "--code"),
])
def test_the_authors_code_driver_refuses_bad_folders_in_one_line(argv, message, tmp_path):
    import subprocess
    import sys as _sys

    argv = [x.replace("OUT", str(tmp_path / "out")) for x in argv]
    r = subprocess.run([_sys.executable, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "experiments", "authors_code.py"), *argv], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_leave_one_out_summary_groups_by_name_and_tests_each_against_the_reference(tmp_path, capsys):
    import leave_one_out_summary as loo

    whole = [fake_run(tmp_path, f"pp__whole__{s}", [0, 300 + 10 * s, 300 + 10 * s]) for s in (1, 2, 3)]
    cell = [fake_run(tmp_path, f"pp__cell__{s}", [0, 100 + s, 100 + s]) for s in (1, 2, 3)]
    mixed = [fake_run(tmp_path, f"pp__mixed__{s}", [0, v, v]) for s, v in zip((1, 2, 3), (305, 50, 325))]
    out = str(tmp_path / "loo")
    table = loo.main([*whole, *cell, *mixed, "--ref", "pp__whole", "--window", "1000", "2000", "--out", out])
    assert table["pp__whole"]["mean"] == pytest.approx(320.0) and table["pp__whole"]["p"] is None
    assert table["pp__cell"]["values"] == [101, 102, 103]
    assert table["pp__cell"]["gap"] == pytest.approx(102 - 320) and table["pp__cell"]["p"] == pytest.approx(1 / 20)
    # (305, 50, 325) against (310, 320, 330): 4 of the 20 splits have a gap group - ref at most -93.3
    assert table["pp__mixed"]["p"] == pytest.approx(4 / 20)
    rows = list(csv.DictReader(open(out + ".csv")))
    assert [r["group"] for r in rows] == ["pp__whole", "pp__cell", "pp__mixed"] and os.path.isfile(out + ".png")
    for argv, message in ((["--ref", "pp__none"], "--ref pp__none"), (["--ref", "pp__whole", "--window", "5", "5"],
                                                                      "--window")):
        with pytest.raises(SystemExit):
            loo.main([*whole, *cell, *argv, "--out", out])
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        loo.main([str(tmp_path), "--ref", "x", "--out", out])
    assert "<env>__<exp-name>__<seed>" in str(e.value.code)


def _grid(tmp_path, *cells, **env):
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    e = dict(os.environ, RUNS=str(tmp_path / "runs"), **env)
    return subprocess.run(["bash", os.path.join(root, "experiments", "c6_200k.sh"), *cells], env=e,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("cells, env, message", [
    (["iac-alg1"], {"ENV": "simple_spread"}, "ENV=simple_spread"),
    (["iac-alg1"], {"SEEDS": "1 2"}, "SEEDS=1 2"),
    (["iac-alg1"], {"STEPS": "2e5"}, "STEPS=2e5"),
    (["iac-alg1"], {"STEPS": "1500"}, "multiple of 1000"),
    (["siaq"], {"ENV": "po_predator_prey"}, "unknown cell siaq"),
    (["ddpg_mix-warmup"], {"ENV": "multi_pendulum"}, "unknown cell ddpg_mix-warmup"),
    (["siaq"], {"N": "5"}, "N and GRADED are multi_pendulum's"),
    (["siaq"], {"ENV": "multi_pendulum", "N": "five"}, "N=five"),
    (["siaq"], {"ENV": "multi_pendulum", "GRADED": "yes"}, "GRADED=yes"),
])
def test_the_200k_grid_refuses_bad_settings_in_one_line(cells, env, message, tmp_path):
    r = _grid(tmp_path, *cells, **env)
    assert r.returncode == 2 and message in r.stderr and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("seeds, given, folder", [("1,2", "1,2", "seeds-1-2"), ("1", "01", "1")])
def test_the_200k_grid_trains_a_population_resumes_it_and_skips_it_when_complete(seeds, given, folder, tmp_path):
    r = _grid(tmp_path, "ddpg_mix-alg1", STEPS="1000", SEEDS=given)
    assert r.returncode == 0 and f"--seeds {seeds} --total-steps 1000" in r.stdout
    runs = tmp_path / "runs"
    last = seeds.split(",")[-1]
    first = (runs / f"predator_prey__ddpg_mix-alg1__{last}" / "eval.csv").read_text()
    assert first.splitlines()[-1].startswith("1000,")
    assert (runs / f"predator_prey__ddpg_mix-alg1__{folder}" / "checkpoint.pt").is_file()
    r = _grid(tmp_path, "ddpg_mix-alg1", STEPS="1000", SEEDS=given)  # complete: skipped, nothing rewritten
    assert r.returncode == 0 and "ddpg_mix-alg1: complete" in r.stdout
    assert (runs / f"predator_prey__ddpg_mix-alg1__{last}" / "eval.csv").read_text() == first
    r = _grid(tmp_path, "ddpg_mix-alg1", STEPS="2000", SEEDS=given)  # a longer budget resumes the population
    assert r.returncode == 0 and "--resume" in r.stdout
    longer = (runs / f"predator_prey__ddpg_mix-alg1__{last}" / "eval.csv").read_text()
    assert longer.startswith(first) and longer.splitlines()[-1].startswith("2000,")
    log = (runs / "logs" / f"predator_prey__ddpg_mix-alg1__{folder}.log").read_text()
    assert log.count("settings:") == 1 and "resumed" in log  # the log of each segment is kept


@pytest.mark.parametrize("env, folder, flags, absent", [
    ({"N": "05", "GRADED": "1"}, "siaq-n5-graded", "--n-agents 5 --graded-reward --seeds 1", None),
    ({"N": "3"}, "siaq", "--env multi_pendulum --seeds 1", "--n-agents"),  # C3's sparse 3-pendulum: the plain cell
])
def test_the_grid_names_each_pendulum_cell_by_its_n_and_reward(env, folder, flags, absent, tmp_path):
    r = _grid(tmp_path, "siaq", ENV="multi_pendulum", STEPS="1000", SEEDS="1", **env)
    assert r.returncode == 0 and flags in r.stdout and f"--exp-name {folder} " in r.stdout, r.stderr
    assert absent is None or absent not in r.stdout
    rows = (tmp_path / "runs" / f"multi_pendulum__{folder}__1" / "eval.csv").read_text().splitlines()
    assert rows[-1].startswith("1000,")


def test_the_200k_grid_shows_why_a_cell_stopped(tmp_path):
    r = _grid(tmp_path, "maac", STEPS="1000", SEEDS="1,2,1")
    assert r.returncode == 1 and "error: maac stopped" in r.stderr and "repeats a seed" in r.stderr
