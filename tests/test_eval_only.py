"""--eval-only replays the evaluation the run logged: a mid-run checkpoint's numbers equal that step's
rows of eval.csv (not its last rows), for a single run and for a population; --seed picks other episodes."""

import csv
import os
import shutil

import pytest

import baselines
import iac

COMMON = ["--env", "predator_prey", "--batch-size", "16", "--hidden", "16", "--heads", "2", "--eval-every", "100",
          "--eval-episodes", "6", "--no-progress", "--save-model", "--checkpoint-every", "300"]


def rows(run_dir):
    with open(os.path.join(run_dir, "eval.csv")) as f:
        return {int(r["step"]): float(r["eval_return"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("seeds, algo", [(["--seed", "7"], None), (["--seeds", "1,2"], None),
                                         (["--seeds", "3,4"], "maac")])
def test_eval_only_of_a_mid_run_checkpoint_equals_that_steps_rows(seeds, algo, tmp_path, capsys):
    main = iac.main if algo is None else (lambda argv: baselines.main(["--algo", algo, *argv]))
    out = main([*COMMON, *seeds, "--total-steps", "300", "--runs-dir", str(tmp_path)])
    dirs = out if isinstance(out, list) else [out]
    ck_dir = dirs[0] if len(dirs) == 1 else os.path.join(
        str(tmp_path), os.path.basename(dirs[0]).rsplit("__", 1)[0] + "__seeds-" + seeds[1].replace(",", "-"))
    mid = str(tmp_path / "mid.pt")
    shutil.copy(os.path.join(ck_dir, "checkpoint.pt"), mid)  # written at step 300
    main(["--resume", os.path.join(ck_dir, "checkpoint.pt"), "--total-steps", "700", "--no-progress"])
    logged = [rows(d) for d in dirs]
    got = main(["--eval-only", "--checkpoint", mid])
    got = got if isinstance(got, list) else [got]
    assert got == [r[300] for r in logged]  # bit for bit: the same episodes, actors and device
    assert [r[300] for r in logged] != [r[700] for r in logged]  # so printing the last row would fail
    assert "the run's evaluation episodes" in capsys.readouterr().out
    # --seed S: the episodes of seed S for every member, and the help says which is which
    other = main(["--eval-only", "--checkpoint", mid, "--seed", "11"])
    assert "episodes of --seed 11" in capsys.readouterr().out
    assert isinstance(other, list) == (len(dirs) > 1)


def test_the_help_says_which_episodes_eval_only_takes(capsys):
    with pytest.raises(SystemExit):
        iac.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "without it, the run's own evaluation episodes" in text and "the episodes of this seed" in text
