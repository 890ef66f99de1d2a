"""Your own task: --env pz:<module>[:<callable>] (any PettingZoo ParallelEnv with continuous actions) and
--env mamujoco:<Scenario>-<conf> (Multi-Agent MuJoCo), through envs.PettingZooBatch."""

import csv
import importlib.util
import math
import os
import sys

import numpy as np
import pytest
import torch
from mpe2 import simple_spread_v3

import baselines
import envs
import iac

SPREAD = "pz:mpe2.simple_spread_v3"
HAS_MAMUJOCO = importlib.util.find_spec("gymnasium_robotics") is not None
needs_mamujoco = pytest.mark.skipif(not HAS_MAMUJOCO, reason="gymnasium-robotics is not installed "
                                    "(pip install -r requirements-mamujoco.txt; CI installs it)")


def _stack(obs, agents):
    return np.stack([obs[a] for a in agents])


def _compare_with_raw_copies(spec, make_raw, B, steps, seed=7):
    """The wrapper's B copies, stepped as one batch, against B raw envs stepped one by one with the same
    actions and the reset seeds the wrapper draws from its generator (copy by copy)."""
    env = envs.PettingZooBatch(spec, B)
    obs, state = env.reset(seed=seed)
    g = torch.Generator().manual_seed(seed)
    draw = lambda: int(torch.randint(2**31 - 1, (), generator=g))
    raws = [make_raw() for _ in range(B)]
    agents = raws[0].possible_agents
    raw_obs = [r.reset(seed=draw())[0] for r in raws]
    np.testing.assert_allclose(obs.numpy(), np.stack([_stack(o, agents) for o in raw_obs]), rtol=1e-6)
    np.testing.assert_allclose(state.numpy(), np.stack([r.state() for r in raws]), rtol=1e-6)
    rng = np.random.default_rng(0)
    lo, hi = env.act_low.numpy(), env.act_high.numpy()
    ends = 0
    for _ in range(steps):
        acts = rng.uniform(lo, hi, (B, *lo.shape)).astype(np.float32)
        obs, state, rew, term, trunc, info = env.step(torch.tensor(acts))
        for i, raw in enumerate(raws):
            o, r, te, tr, _ = raw.step({a: acts[i, j] for j, a in enumerate(agents)})
            np.testing.assert_allclose(info["final_obs"][i].numpy(), _stack(o, agents), rtol=1e-5, atol=1e-6)
            assert float(rew[i]) == pytest.approx(np.mean([r[a] for a in agents]), rel=1e-5, abs=1e-6)
            ended, out_of_time = all(te.values()), all(tr.values())
            assert bool(term[i]) == ended and bool(trunc[i]) == (out_of_time and not ended)
            if ended or out_of_time:
                ends += 1
                o = raw.reset(seed=draw())[0]
            np.testing.assert_allclose(obs[i].numpy(), _stack(o, agents), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(state[i].numpy(), raw.state(), rtol=1e-5, atol=1e-6)
    return ends


def test_batched_simple_spread_equals_its_copies_stepped_one_by_one():
    ends = _compare_with_raw_copies(SPREAD, lambda: simple_spread_v3.parallel_env(continuous_actions=True), 3, 30)
    assert ends == 3  # every copy went through its 25-step time limit and the same-step reset


def test_sizes_bounds_episode_length_and_team_reward():
    env = envs.PettingZooBatch(SPREAD, 2, team_reward="sum")
    assert (env.n_agents, env.obs_dim, env.act_dim, env.state_dim, env.episode_len) == (3, 18, 5, 54, 25)
    assert torch.equal(env.act_low, torch.zeros(3, 5)) and torch.equal(env.act_high, torch.ones(3, 5))
    mean = envs.PettingZooBatch(SPREAD, 2)
    env.reset(seed=1)
    mean.reset(seed=1)
    a = torch.full((2, 3, 5), 0.5)
    assert torch.allclose(env.step(a)[2], 3 * mean.step(a)[2])
    # to_env maps the policy's [-1, 1] onto each dimension's own bounds
    assert torch.allclose(iac.to_env(-torch.ones(2, 3, 5), env), env.act_low.expand(2, 3, 5))


def test_smaller_observations_are_zero_padded():
    env = envs.PettingZooBatch("pz:pz_fakes:different_obs_sizes", 2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 2, 5) and torch.all(obs[:, 0, 3:] == 0) and torch.all(obs[:, 1, 3:] != 0)


def _train(tmp_path, env, algo="iac", *flags):
    argv = ["--env", env, "--total-steps", "1000", "--batch-size", "32", "--hidden", "32", "--eval-every", "500",
            "--eval-episodes", "2", "--runs-dir", str(tmp_path), "--no-progress", *flags]
    run_dir = iac.main(argv) if algo == "iac" else baselines.main(["--algo", algo, *argv])
    for d in run_dir if isinstance(run_dir, list) else [run_dir]:
        with open(os.path.join(d, "eval.csv")) as f:
            rows = list(csv.reader(f))[1:]
        assert [int(r[0]) for r in rows] == [0, 500, 1000]
        assert all(math.isfinite(float(r[1])) for r in rows)
    return run_dir


@pytest.mark.parametrize("algo", ["iac", *baselines.PRESETS])
def test_simple_spread_trains_1000_steps_with_every_method(tmp_path, algo):
    run_dir = _train(tmp_path, SPREAD, algo)
    assert os.path.basename(run_dir).startswith("pz-mpe2.simple_spread_v3__")


def test_own_env_population_and_resume(tmp_path, capsys):
    dirs = _train(tmp_path, SPREAD, "iac", "--seeds", "1,2", "--save-model")
    assert len(dirs) == 2
    ckpt = tmp_path / "pz-mpe2.simple_spread_v3__iac__seeds-1-2" / "checkpoint.pt"
    iac.main(["--resume", str(ckpt), "--total-steps", "1200", "--no-progress"])
    assert "episodes a checkpoint cannot hold" in capsys.readouterr().err


def _error(argv, capsys, algo=None):
    with pytest.raises(SystemExit) as e:
        iac.main(argv) if algo is None else baselines.main(["--algo", algo, *argv])
    assert e.value.code not in (0, None)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return out.err + (e.value.code if isinstance(e.value.code, str) else "")


@pytest.mark.parametrize("argv, message", [
    (["--env", "pz:pz_fakes:discrete"], "non-continuous action spaces"),
    (["--env", SPREAD, "--env-kwargs", "continuous_actions=False"], "matrix game"),
    (["--env", "pz:pz_fakes:different_action_sizes"], "must be vectors of one size"),
    (["--env", "pz:no_such_module_xyz"], "cannot import 'no_such_module_xyz'"),
    (["--env", "pz:mpe2.simple_spread_v3:nope"], "has no callable 'nope'"),
    (["--env", "pz:pz_fakes:not_a_function"], "has no callable 'not_a_function'"),
    (["--env", "mamujoco:HalfCheetah"], "mamujoco:<Scenario>-<agent_conf>"),
    (["--env", "gym:CartPole-v1"], "expected one of"),
    (["--env", "matrix_game"], "baselines.py --algo qmix"),
    (["--env", "predator_prey", "--env-kwargs", "N=4"], "--env-kwargs applies to pz: and mamujoco: envs only"),
    (["--env", SPREAD, "--env-kwargs", "N"], "give KEY=VALUE"),
    (["--env", SPREAD, "--env-kwargs", "nonsense_keyword=1"], "building the env"),
])
def test_bad_own_env_gives_a_message(argv, message, capsys):
    assert message in _error(argv, capsys)


def test_agent_leaving_mid_episode_stops_training_with_a_message(tmp_path, capsys):
    err = _error(["--env", "pz:pz_fakes:leaving", "--total-steps", "50", "--batch-size", "8", "--runs-dir",
                  str(tmp_path), "--no-progress"], capsys)
    assert "ended while the others go on" in err


def test_missing_mamujoco_names_its_requirements_file(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gymnasium_robotics", None)  # import fails as if not installed
    assert "pip install -r requirements-mamujoco.txt" in _error(["--env", "mamujoco:HalfCheetah-2x3"], capsys)


@needs_mamujoco
def test_batched_mamujoco_equals_its_copies_stepped_one_by_one():
    from gymnasium_robotics import mamujoco_v1

    _compare_with_raw_copies("mamujoco:HalfCheetah-2x3", lambda: mamujoco_v1.parallel_env("HalfCheetah", "2x3"), 2, 20)


@needs_mamujoco
@pytest.mark.parametrize("algo", ["iac", *baselines.PRESETS])
def test_mamujoco_trains_1000_steps_with_every_method(tmp_path, algo):
    argv = ["--env", "mamujoco:HalfCheetah-2x3", "--total-steps", "1000", "--batch-size", "32", "--hidden", "32",
            "--eval-every", "1000", "--eval-episodes", "1", "--runs-dir", str(tmp_path), "--no-progress"]
    run_dir = iac.main(argv) if algo == "iac" else baselines.main(["--algo", algo, *argv])
    with open(os.path.join(run_dir, "eval.csv")) as f:
        rows = list(csv.reader(f))[1:]
    assert [int(r[0]) for r in rows] == [0, 1000] and all(math.isfinite(float(r[1])) for r in rows)


def _gif_frames(path):
    from PIL import Image

    im = Image.open(path)
    frames, ms = [], 0
    for k in range(im.n_frames):
        im.seek(k)
        frames.append(np.asarray(im.convert("RGB"), dtype=np.int16))
        ms += im.info["duration"]
    return frames, ms  # Pillow merges equal consecutive pictures, adding their durations


@pytest.mark.parametrize("spec, n_frames", [
    (SPREAD, 25),  # max_cycles 25: the first picture and those after steps 1-24 (step 25 ends it)
    pytest.param("mamujoco:HalfCheetah-2x3", 250, marks=needs_mamujoco),  # 1000 steps, every 4th kept
])
def test_capture_video_draws_an_own_env_episode(tmp_path, spec, n_frames):
    """Through the command line, as a user runs it: MuJoCo must choose its off-screen GL at import."""
    run = [sys.executable, os.path.join(os.path.dirname(os.path.dirname(__file__)), "iac.py")]
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MUJOCO_GL", None)
    subprocess.run([*run, "--env", spec, "--total-steps", "40", "--batch-size", "8", "--eval-every", "40",
                    "--eval-episodes", "1", "--save-model", "--runs-dir", str(tmp_path), "--no-progress"],
                   check=True, capture_output=True, env=env, timeout=600, cwd=tmp_path)
    (run_dir,) = [d for d in tmp_path.iterdir() if d.name.endswith("__iac__1")]  # (MuJoCo logs beside it)
    r = subprocess.run([*run, "--eval-only", "--checkpoint", str(run_dir / "checkpoint.pt"), "--capture-video",
                        "--eval-episodes", "1"], capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    frames, ms = _gif_frames(run_dir / "eval.gif")
    assert ms == n_frames * 50 and frames[0].shape[-1] == 3  # 20 frames per second
    assert np.abs(frames[-1] - frames[0]).max() > 0  # the picture changes: the episode is drawn, not one frame


def test_capture_video_of_an_env_that_cannot_draw_gives_a_message(tmp_path, capsys):
    iac.main(["--env", "pz:pz_fakes:drawless", "--total-steps", "20", "--batch-size", "8", "--eval-every", "20",
              "--eval-episodes", "1", "--save-model", "--runs-dir", str(tmp_path), "--no-progress"])
    (ckpt,) = tmp_path.glob("*drawless__iac__1/checkpoint.pt")
    err = _error(["--eval-only", "--checkpoint", str(ckpt), "--capture-video", "--eval-episodes", "1"], capsys)
    assert "--capture-video" in err and "could not draw" in err and "NotImplementedError" in err
    assert not list(tmp_path.rglob("*.gif*"))  # no GIF, not even a half-written one
