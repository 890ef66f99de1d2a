"""A battery of bad inputs, tried as a new user would: every one exits non-zero within seconds, with a
message that names the flag (or the file) at fault, and never with a Python traceback."""

import os
import signal
import subprocess
import sys
import traceback

import pytest
import torch

import baselines
import iac
import plots
import reproduce

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V1 = os.path.join(HERE, "tests", "data", "checkpoint_v1.pt")  # an iac.py checkpoint (first release)
MAINS = {"iac.py": iac.main, "baselines.py": baselines.main, "plots.py": plots.main, "reproduce.sh": reproduce.main}

# (script, argv, what stderr must name); {tmp} is a scratch folder holding `file` (a plain file),
# `folder` (an empty folder), `noeval` (a folder without eval.csv), `emptyeval` (a header-only eval.csv),
# `evil.pt` (a pickle that would run code), `junk.pt` (not a checkpoint) and `run` (a folder holding a checkpoint.pt)
CASES = [
    # floats: NaN, inf, sign and range
    ("iac.py", ["--actor-lr", "nan"], "--actor-lr"),
    ("iac.py", ["--critic-lr", "inf"], "--critic-lr"),
    ("iac.py", ["--alpha-lr", "-1"], "--alpha-lr"),
    ("iac.py", ["--actor-lr", "0"], "--actor-lr"),
    ("iac.py", ["--grad-clip", "-1"], "--grad-clip"),
    ("iac.py", ["--grad-clip", "nan"], "--grad-clip"),
    ("iac.py", ["--alpha", "nan"], "--alpha"),
    ("iac.py", ["--alpha", "-0.1"], "--alpha"),
    ("iac.py", ["--exploration-noise", "inf"], "--exploration-noise"),
    ("iac.py", ["--updates-per-step", "nan"], "--updates-per-step"),
    ("iac.py", ["--updates-per-step", "0"], "--updates-per-step"),
    ("iac.py", ["--gamma", "nan"], "--gamma"),
    ("iac.py", ["--gamma", "1"], "--gamma"),
    ("iac.py", ["--tau", "0"], "--tau"),
    ("iac.py", ["--tau", "1.5"], "--tau"),
    ("iac.py", ["--mean-noise", "-0.05"], "--mean-noise"),
    ("iac.py", ["--alpha", "learned", "--alpha-decay", "1e-6"], "--alpha-decay"),
    ("iac.py", ["--policy", "independent"], "--cov-diag fixed"),
    ("iac.py", ["--alpha", "0.1", "--alpha-min", "0.5"], "--alpha-min"),
    ("iac.py", ["--actor-lr", "abc"], "--actor-lr"),
    # seeds and sizes
    ("iac.py", ["--seed", "-1"], "--seed"),
    ("iac.py", ["--seed", "4294967296"], "--seed"),
    ("iac.py", ["--num-envs", "0"], "--num-envs"),
    ("iac.py", ["--num-envs", "600", "--buffer-size", "500", "--batch-size", "10"], "--num-envs"),
    ("iac.py", ["--batch-size", "600", "--buffer-size", "500"], "--batch-size"),
    ("iac.py", ["--hidden", "30", "--heads", "4"], "--hidden"),
    ("iac.py", ["--rank", "0"], "--rank"),
    ("iac.py", ["--rank", "7"], "--rank"),
    ("iac.py", ["--total-steps", "-1"], "--total-steps"),
    ("iac.py", ["--learning-starts", "-5"], "--learning-starts"),
    ("iac.py", ["--target-update-interval", "0"], "--target-update-interval"),
    ("iac.py", ["--eval-every", "0"], "--eval-every"),
    ("iac.py", ["--env", "pong"], "--env"),
    ("iac.py", ["--n-agents", "3"], "--n-agents"),
    ("iac.py", ["--env", "multi_pendulum", "--n-agents", "0"], "--n-agents"),
    ("iac.py", ["--env", "multi_pendulum", "--predator-action", "mpe5"], "--predator-action"),
    # paths
    ("iac.py", ["--runs-dir", "{tmp}/file"], "--runs-dir"),
    ("iac.py", ["--runs-dir", "{tmp}/file/sub"], "--runs-dir"),
    ("iac.py", ["--resume", "{tmp}/missing.pt"], "--resume"),
    ("iac.py", ["--resume", "{tmp}/folder"], "is a folder, not a checkpoint file"),
    ("iac.py", ["--resume", "{tmp}/run"], "its checkpoint is"),
    ("iac.py", ["--resume", "{tmp}/evil.pt"], "refusing to load"),
    ("iac.py", ["--resume", "{tmp}/junk.pt"], "cannot read checkpoint"),
    ("iac.py", ["--resume", V1, "--actor-lr", "0.5"], "--actor-lr"),
    ("iac.py", ["--checkpoint", V1], "--checkpoint"),
    # modes: --eval-only checks its flags too
    ("iac.py", ["--eval-only"], "--checkpoint"),
    ("iac.py", ["--eval-only", "--checkpoint", "{tmp}/missing.pt"], "--checkpoint"),
    ("iac.py", ["--eval-only", "--checkpoint", V1, "--eval-episodes", "0"], "--eval-episodes"),
    ("iac.py", ["--eval-only", "--checkpoint", V1, "--seed", "-5"], "--seed"),
    ("iac.py", ["--eval-only", "--checkpoint", V1, "--resume", V1], "--resume"),
    ("iac.py", ["--capture-video"], "--capture-video"),
    ("iac.py", ["--eval-only", "--checkpoint", V1, "--env", "simple_world"], "--env"),
    ("iac.py", ["--eval-only", "--checkpoint", V1, "--hidden", "32"], "--hidden"),
    ("iac.py", ["--exp-name", "../../elsewhere"], "--exp-name"),
    ("iac.py", ["--exp-name", ""], "--exp-name"),
    ("iac.py", ["--buffer-size", "10000000000"], "--buffer-size"),
    # empty names, abbreviations, flags the other settings would silently ignore
    ("iac.py", ["--runs-dir", ""], "--runs-dir"),
    ("iac.py", ["--pol", "joint"], "unrecognized arguments: --pol"),
    ("iac.py", ["--checkpoint-every", "100"], "--checkpoint-every"),
    ("iac.py", ["--exploration-noise", "0.5"], "--exploration-noise"),
    ("iac.py", ["--policy", "deterministic", "--alpha", "0.3"], "--alpha"),
    ("iac.py", ["--policy", "independent", "--rank", "1"], "--rank"),
    ("iac.py", ["--alpha", "0.5", "--alpha-lr", "0.1"], "--alpha-lr"),
    ("iac.py", ["--others-actions", "buffer"], "--others-actions"),
    ("iac.py", ["--mixer", "none", "--actor-objective", "mean_q"], "--actor-objective"),
    ("iac.py", ["--resume", V1, "--total-steps", "10"], "--total-steps"),
    ("baselines.py", ["--algo", "ddpg_mix", "--alpha", "0.5"], "--alpha"),
    ("baselines.py", ["--algo", "ddpg_mix", "--pol", "joint"], "unrecognized arguments: --pol"),
    ("baselines.py", ["--algo", "maddpg", "--res", V1], "unrecognized arguments: --res"),
    ("iac.py", ["--resume", ""], "--resume"),
    ("iac.py", ["--eval-only", "--checkpoint", ""], "--checkpoint"),
    ("baselines.py", ["--algo", "ddpg_mix", "--eval-only", "--checkpoint", V1], "iac run"),
    ("plots.py", ["{tmp}/noeval", "--out", ".png"], "--out"),
    ("reproduce.sh", ["--quick", "--plot-only", "--out", ""], "--out"),
    # baselines.py
    ("baselines.py", ["--algo", "sq", "--actor-lr", "nan"], "--actor-lr"),
    ("baselines.py", ["--algo", "maddpg", "--grad-clip", "-1"], "--grad-clip"),
    ("baselines.py", ["--algo", "ddpg_mix", "--policy", "joint"], "--policy"),
    ("baselines.py", ["--algo", "qmix", "--cuda"], "--cuda"),
    ("baselines.py", ["--algo", "qmix", "--seed", "-1"], "--seed"),
    ("baselines.py", ["--algo", "qmix", "--out", "{tmp}/file/tables.md"], "--out"),
    ("baselines.py", ["--algo", "sq", "--env", "matrix_game"], "--algo"),
    ("baselines.py", ["--algo", "nope"], "--algo"),
    ("baselines.py", ["--env", "predator_prey"], "--algo"),
    ("baselines.py", ["--algo", "ddpg_mix", "--resume", V1], "--resume"),
    ("baselines.py", ["--algo", "sq", "--seed", "99999999999"], "--seed"),
    # plots.py
    ("plots.py", ["{tmp}/noeval", "--out", "{tmp}/x.pdf"], "--out"),
    ("plots.py", ["{tmp}/noeval", "--out", "{tmp}/file/x.png"], "--out"),
    ("plots.py", ["{tmp}/noeval", "--out", "{tmp}/x.png"], "eval.csv"),
    ("plots.py", ["{tmp}/emptyeval", "--out", "{tmp}/x.png"], "eval.csv"),
    # reproduce.sh
    ("reproduce.sh", ["--jobs", "0"], "--jobs"),
    ("reproduce.sh", ["--seeds", "0"], "--seeds"),
    ("reproduce.sh", ["--quick", "--list", "--plot-only"], "--plot-only"),
    ("reproduce.sh", ["--seeds", "100000"], "--seeds"),
    ("reproduce.sh", ["--quick", "--out", "{tmp}/file"], "--out"),
    ("reproduce.sh", ["--quick", "--runs-dir", "{tmp}/file"], "--runs-dir"),
    ("reproduce.sh", ["--quick", "--paper"], "--paper"),
]
if not torch.cuda.is_available():
    CASES.append(("iac.py", ["--cuda"], "--cuda"))


@pytest.fixture
def scratch(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "folder").mkdir()
    (tmp_path / "noeval").mkdir()
    (tmp_path / "emptyeval").mkdir()
    (tmp_path / "emptyeval" / "eval.csv").write_text("step,eval_return\n")
    (tmp_path / "junk.pt").write_bytes(b"\x00not a checkpoint")
    (tmp_path / "run").mkdir()  # a run folder, given where its checkpoint.pt belongs
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"\x00")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"args": {}, "actor": Evil()}, tmp_path / "evil.pt")
    return tmp_path


def _timeout(*_):
    raise TimeoutError("took more than 20 s")


def test_the_battery_is_large_enough():
    assert len(CASES) >= 40 and {c[0] for c in CASES} == set(MAINS)


@pytest.mark.parametrize("script, argv, names", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_input_exits_naming_the_flag(script, argv, names, scratch, capsys):
    argv = [a.replace("{tmp}", str(scratch)) for a in argv]
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(20)
    try:
        MAINS[script](argv)
    except SystemExit as e:
        code = e.code
    except BaseException:  # anything else is a traceback for the user
        pytest.fail(f"{script} {argv} raised instead of exiting:\n{traceback.format_exc()}")
    else:
        pytest.fail(f"{script} {argv} was accepted")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err + (code if isinstance(code, str) else "")
    assert code not in (0, None), err
    assert names in err, err


# a few through the real command lines: exit status, stderr, no traceback
@pytest.mark.parametrize("cmd", [
    [sys.executable, "iac.py", "--grad-clip", "-1"],
    [sys.executable, "iac.py", "--eval-only", "--checkpoint", V1, "--eval-episodes", "0"],
    [sys.executable, "baselines.py", "--algo", "ddpg_mix", "--resume", V1],
    [sys.executable, "plots.py", "tests", "--out", "x.png"],
    ["bash", "reproduce.sh", "--seeds", "0"],
    # the bench and analysis scripts, each with a value that used to end in a ZeroDivisionError or deep
    # in an env
    [sys.executable, "bench/envs.py", "--seconds", "0"],
    [sys.executable, "bench/loop.py", "--updates", "0"],
    [sys.executable, "bench/update_cost.py", "--blocks", "0"],
    [sys.executable, "bench/train.py", "--members", "1,0"],
    [sys.executable, "experiments/spread_reference.py", "--episodes", "0"],
    [sys.executable, "experiments/c4_sigma.py", "tests", "--agents", "0"],
])
def test_bad_input_on_the_command_line(cmd):
    r = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr and "error" in r.stderr, r.stderr
