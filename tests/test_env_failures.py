"""A user's env that misbehaves (tests/pz_fakes.py's WithState, and SISL's multiwalker): each failure is
a training run that goes on or a one-line error, never a traceback from inside the env; a failure
that stops a run saves its checkpoint first."""

import os

import pytest
import torch

import baselines
import envs
import iac
import pz_fakes
import runlib

TINY = ["--batch-size", "8", "--hidden", "16", "--heads", "2", "--mixer-embed", "8", "--eval-every", "1000",
        "--eval-episodes", "2", "--buffer-size", "500", "--no-progress"]


@pytest.fixture(autouse=True)
def fresh_warnings():
    envs.WARNED.clear()  # the stand-in warning is said once per process


def train(tmp_path, kwargs, *flags, algo=None, steps=60):
    argv = ["--env", "pz:pz_fakes:with_state", "--env-kwargs", *kwargs, "--total-steps", str(steps),
            "--runs-dir", str(tmp_path), "--mixer-state", "env", *TINY, *flags]  # the env's state (paper)
    return iac.main(argv) if algo is None else baselines.main(["--algo", algo, *argv])


def error_of(tmp_path, kwargs, *flags, **kw):
    with pytest.raises(SystemExit) as e:
        train(tmp_path, kwargs, *flags, **kw)
    return str(e.value.code)


@pytest.mark.parametrize("algo", [None, "ddpg_mix"])
def test_a_state_that_fails_after_termination_trains_warns_once_and_never_reaches_a_target(algo, tmp_path, capsys):
    run = train(tmp_path, ["state_fails=after_termination", "term_at=4"], "--save-model", algo=algo)
    err = capsys.readouterr().err
    assert err.count("state() raised AttributeError") == 1 and "last good state stands in" in err
    ck = runlib.load_checkpoint(os.path.join(run, "checkpoint.pt"))
    data = ck["buffer"]["data"]
    term = data["term"].bool()
    assert term.sum() >= 10  # every fourth step ends an episode by termination
    # the stand-in is the copy's last good state: the state of the step before (the fake's state is t)
    assert torch.equal(data["next_state"][term], data["state"][term])
    # and it never reaches a TD target: other finite values there give the same y, row for row
    args = argparse_of(ck)
    nets, _ = iac.build(args, envs.from_args(args, 1, "cpu"), "cpu")
    nets.load_weights(iac.upgrade_checkpoint(ck))
    batch = dict(data)
    torch.manual_seed(0)
    y = iac.td_target(nets, batch, 0.1, args)
    moved = dict(batch, next_state=torch.where(term[:, None], batch["next_state"] + 1e3, batch["next_state"]))
    torch.manual_seed(0)
    assert torch.equal(iac.td_target(nets, moved, 0.1, args), y)
    torch.manual_seed(0)  # (and the check can fail: a non-terminal row's next state does reach y)
    moved_all = dict(batch, next_state=batch["next_state"] + 1e3)
    assert not torch.equal(iac.td_target(nets, moved_all, 0.1, args), y)


def argparse_of(ck):
    import argparse

    return argparse.Namespace(**runlib.checkpoint_args(ck, iac.parser))


@pytest.mark.parametrize("mode, where", [
    ("after_truncation", "on the last step of an episode cut by the time limit"),
    ("mid_episode", "mid-episode"),
    ("not_implemented_later", "raised NotImplementedError (it had a state when the run began) at a reset"),
    ("resized_mid_episode", "returned 6 numbers, not the 4 it returned at the first reset mid-episode"),
])
def test_a_state_that_fails_where_it_is_bootstrapped_from_stops_with_one_line(mode, where, tmp_path):
    msg = error_of(tmp_path, [f"state_fails={mode}"])
    assert msg.startswith("error: --env pz:pz_fakes:with_state: state() ") and where in msg, msg
    assert "(copy 0, step " in msg and "--mixer-state obs" in msg and "\n" not in msg


def test_a_state_resized_after_termination_gets_the_stand_in(tmp_path, capsys):
    train(tmp_path, ["state_fails=resized_after_termination", "term_at=4"])
    assert "returned 6 numbers, not the 4" in capsys.readouterr().err


def test_a_state_that_raises_at_the_first_reset_is_refused_at_once_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train(tmp_path, ["state_fails=at_first_reset"])
    err = capsys.readouterr().err
    assert "state() raised ValueError: no state before the first step at a reset" in err and "--mixer-state obs" in err


@pytest.mark.parametrize("mode", ["after_truncation", "at_first_reset", "mid_episode"])
def test_with_mixer_state_obs_the_wrapper_never_calls_state_and_the_run_trains(mode, tmp_path, monkeypatch):
    calls = []
    real = pz_fakes.WithState.state
    monkeypatch.setattr(pz_fakes.WithState, "state", lambda self: calls.append(1) or real(self))
    run = train(tmp_path, [f"state_fails={mode}"], "--mixer-state", "obs", "--save-model")
    assert calls == [] and os.path.isfile(os.path.join(run, "checkpoint.pt"))


def test_whether_the_env_has_a_state_is_decided_once_when_the_wrapper_is_built():
    env = envs.PettingZooBatch("pz:pz_fakes:with_state", 2, env_kwargs=dict(state_fails="not_implemented_later"))
    assert env.has_state and env.state_dim == 4
    with pytest.raises(envs.EnvCallError, match="NotImplementedError"):
        for _ in range(11):  # the episodes end at 10 steps: the reset's state() raises
            env.step(torch.zeros(2, 2, 2))
    assert env.has_state and env.state_dim == 4  # not flipped mid-run
    none = envs.PettingZooBatch("pz:pz_fakes:leaving", 1)  # pettingzoo.ParallelEnv's own state(): none
    assert not none.has_state and none.state_dim == 2 * 3


@pytest.mark.parametrize("kwargs, call", [(["step_fails_at=40"], "step"), (["reset_fails_at=5"], "reset")])
def test_a_reset_or_step_that_raises_stops_naming_the_call_after_saving_the_checkpoint(kwargs, call, tmp_path):
    msg = error_of(tmp_path, kwargs, "--save-model", "--checkpoint-every", "1000")
    assert msg.startswith(f"error: --env pz:pz_fakes:with_state: {call}() of copy 0 raised "), msg
    assert "\n" not in msg and "is saved in" in msg
    ck_path = msg.split("is saved in ")[1]
    ck = runlib.load_checkpoint(ck_path)
    # the checkpoint is the loop's state before the failing step: it resumes (with its episodes restarted)
    assert ck["step"] == (39 if call == "step" else 29)
    without = error_of(tmp_path / "nosave", kwargs)
    assert "saved" not in without


@pytest.mark.parametrize("algo", [None, "ddpg_mix"])
def test_sisl_multiwalker_whose_state_fails_after_a_fall_trains_end_to_end(algo, tmp_path, capsys):
    """SISL's multiwalker tears its walkers down when one falls (termination), and its state() then
    raises AttributeError: the run goes on with the stand-in state, and says so once."""
    pytest.importorskip("Box2D", reason="SISL needs Box2D: pip install -r requirements-dev.txt")
    argv = ["--env", "pz:pettingzoo.sisl.multiwalker_v9", "--total-steps", "300", "--runs-dir", str(tmp_path),
            "--mixer-state", "env", *TINY,
            "--eval-every", "300", "--eval-episodes", "1", "--save-model"]
    run = iac.main(argv) if algo is None else baselines.main(["--algo", algo, *argv])
    ck = runlib.load_checkpoint(os.path.join(run, "checkpoint.pt"))
    assert ck["step"] == 300 and ck["buffer"]["data"]["term"].sum() >= 1  # at least one fall
    assert capsys.readouterr().err.count("state() raised AttributeError") == 1
