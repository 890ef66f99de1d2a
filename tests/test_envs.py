"""Environments: exactness against the reference implementations, batching, seeding, bad input."""

import math

import gymnasium
import numpy as np
import pytest
import torch
from pettingzoo.test import parallel_api_test

import envs


# ---------------------------------------------------------------- predator-prey vs mpe2's simple_tag
def _mpe_action(force):
    """Our 2-D force in [-1, 1]^2 as MPE's continuous 5-way action [noop, left, right, down, up]."""
    fx, fy = force
    return np.array([0.0, max(-fx, 0.0), max(fx, 0.0), max(-fy, 0.0), max(fy, 0.0)])


def _run_against_mpe2(start_pos, seed, steps=100, partial=False):
    """Step ours and mpe2 from the same start with the same actions; return the worst differences."""
    from mpe2 import simple_tag_v3

    # the raw AEC env: its wrappers would cast our float64 actions to float32
    ref = simple_tag_v3.raw_env(continuous_actions=True, max_cycles=steps)
    ref.reset(seed=seed)
    world, scenario = ref.world, ref.scenario
    env = envs.PredatorPrey(num_envs=1, dtype=torch.float64, partial=partial)
    env.reset(seed=seed)
    env.pos[0] = torch.as_tensor(start_pos)
    for i, ent in enumerate(world.agents + world.landmarks):
        ent.state.p_pos = start_pos[i].copy()
        if i < 4:
            ent.state.p_vel = np.zeros(2)
    rng = np.random.default_rng(seed)
    worst = dict(pos=0.0, vel=0.0, obs=0.0, reward=0.0)
    contacts = 0
    for t in range(steps):
        acts = rng.uniform(-1.2, 1.2, size=(3, 2))  # a little outside the bounds: both clip? we do
        acts_ours = np.clip(acts, -1, 1)
        _, _, reward, _, _, info = env.step(torch.as_tensor(acts_ours)[None])
        prey = env.last_prey_action[0].numpy()
        ref_actions = {f"adversary_{i}": _mpe_action(acts_ours[i]) for i in range(3)}
        ref_actions["agent_0"] = _mpe_action(prey)
        for name in ref.agents:  # one world step once every agent has acted
            ref.step(ref_actions[name])
        ref_rew = ref.rewards
        ref_pos = np.stack([e.state.p_pos for e in world.agents + world.landmarks])
        ref_vel = np.stack([a.state.p_vel for a in world.agents])
        ref_obs = np.stack([scenario.observation(a, world) for a in world.agents[:3]])
        if partial:  # PO: what lies beyond 0.8 is zeroed; computed here by plain loops, entry by entry
            for i, a in enumerate(world.agents[:3]):
                others = [e for e in world.landmarks] + [o for o in world.agents if o is not a]
                for k, e in enumerate(others):
                    if np.linalg.norm(e.state.p_pos - a.state.p_pos) > 0.8:
                        ref_obs[i, 4 + 2 * k: 6 + 2 * k] = 0.0
                        if e is world.agents[3]:
                            ref_obs[i, 14:16] = 0.0
        obs, state = info["final_obs"][0].numpy(), info["final_state"][0].numpy()  # before auto-reset
        pos = np.concatenate([state[:8], state[16:]]).reshape(6, 2)
        worst["pos"] = max(worst["pos"], np.abs(pos - ref_pos).max())
        worst["vel"] = max(worst["vel"], np.abs(state[8:16].reshape(4, 2) - ref_vel).max())
        worst["obs"] = max(worst["obs"], np.abs(obs - ref_obs).max())
        worst["reward"] = max(worst["reward"], abs(float(reward[0]) - ref_rew["adversary_0"]))
        contacts += int(ref_rew["adversary_0"] > 0)
    return worst, contacts


def test_predator_prey_matches_mpe2_random_start():
    rng = np.random.default_rng(0)
    for seed in range(3):
        start = np.concatenate([rng.uniform(-1, 1, (4, 2)), rng.uniform(-0.9, 0.9, (2, 2))])
        worst, _ = _run_against_mpe2(start, seed)
        assert max(worst.values()) < 1e-9, worst


@pytest.mark.parametrize("partial", [False, True])
def test_predator_prey_matches_mpe2_with_contacts(partial):
    # everybody starts bunched around one landmark, so contacts (agent-agent, agent-landmark, catches)
    # happen from the first step on
    start = np.array([[0.1, 0.0], [-0.05, 0.08], [0.0, -0.1], [0.0, 0.0], [0.25, 0.1], [0.9, 0.9]])
    worst, catches = _run_against_mpe2(start, seed=1, partial=partial)
    assert catches > 0, "the start was meant to force catches"
    assert max(worst.values()) < 1e-9, worst


def test_po_equals_full_with_far_entries_zeroed():
    full = envs.make_env("predator_prey", num_envs=64, dtype=torch.float64)
    po = envs.make_env("po_predator_prey", num_envs=64, dtype=torch.float64)
    o_full, _ = full.reset(seed=3)
    o_po, _ = po.reset(seed=3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        a = torch.rand(64, 3, 2, generator=g, dtype=torch.float64) * 2 - 1
        o_full, *_ = full.step(a)
        o_po, *_ = po.step(a)
        rel = o_full[..., 4:14].reshape(64, 3, 5, 2)  # landmarks then other agents
        far = rel.norm(dim=-1) > 0.8  # (B, 3, 5)
        expect = o_full.clone()
        expect[..., 4:14] = (rel * ~far[..., None]).flatten(2)
        expect[..., 14:16] *= ~far[..., -1:]
        assert torch.equal(o_po, expect)
        assert far.any() and (~far).any()  # both cases are exercised


# ---------------------------------------------------------------- multi-pendulum vs Pendulum-v1
def test_pendulum_matches_gymnasium():
    ref = gymnasium.make("Pendulum-v1")
    env = envs.make_env("multi_pendulum", n_agents=1, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for seed in range(3):
        ref.reset(seed=seed)
        env.reset(seed=seed)
        th, thdot = ref.unwrapped.state
        env.th[:], env.thdot[:] = th, thdot
        for t in range(200):
            u = rng.uniform(-2.5, 2.5)  # also outside the torque bound: both must clip
            _, _, _, ref_trunc, _ = ref.step(np.array([u]))
            _, _, _, _, trunc, info = env.step(torch.tensor([[[u]]], dtype=torch.float64))
            th, thdot = ref.unwrapped.state
            if t < 199:  # at step 200 our copy has already started its next episode
                assert abs(env.th.item() - th) < 1e-9 and abs(env.thdot.item() - thdot) < 1e-9, t
            expect_obs = np.array([np.cos(th), np.sin(th), thdot])
            assert np.abs(info["final_obs"][0, 0].numpy() - expect_obs).max() < 1e-9
            assert bool(trunc[0]) == ref_trunc, t  # both cut the episode at step 200


def test_pendulum_rewards_sparse_and_graded():
    th = torch.tensor([[0.0, 0.1, -0.1, 0.19, 3.0]], dtype=torch.float64)
    cases = {  # which pendulums are upright -> (sparse reward, graded reward)
        (0, 1, 2, 3, 4): (0.0, 0.2),  # four of five upright
        (0, 1, 2, 3): (5.0, 0.5),
        (0, 4): (0.0, 0.1),
        (4,): (0.0, 0.0),
    }
    for idx, (sparse, graded) in cases.items():
        n = len(idx)
        for is_graded, expected in ((False, sparse), (True, graded)):
            if is_graded and n < 3:
                continue
            env = envs.make_env("multi_pendulum", n_agents=n, graded=is_graded, dtype=torch.float64)
            env.reset(seed=0)
            env.th[:] = th[:, list(idx)]
            env.thdot.zero_()
            _, _, r, *_ = env.step(torch.zeros(1, n, 1, dtype=torch.float64))
            assert r.item() == expected, (idx, is_graded)
    # angles are normalised: 2 pi + 0.1 is upright
    env = envs.make_env("multi_pendulum", n_agents=1, dtype=torch.float64)
    env.reset(seed=0)
    env.th[:] = 2 * math.pi + 0.1
    _, _, r, *_ = env.step(torch.zeros(1, 1, 1, dtype=torch.float64))
    assert r.item() == 5.0


# ---------------------------------------------------------------- one-step games
def test_matrix_game_payoff():
    env = envs.make_env("matrix_game", num_envs=9)
    env.reset(seed=0)
    a = torch.tensor([[i, j] for i in range(3) for j in range(3)])
    _, _, r, term, trunc, _ = env.step(a)
    assert r.view(3, 3).tolist() == [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]
    assert term.all() and not trunc.any()


def test_simple_world_reward_peaks():
    u = torch.tensor([[[4.0], [3.0]], [[-6.0], [-6.0]], [[10.0], [-10.0]]], dtype=torch.float64)
    env = envs.make_env("simple_world", num_envs=3, dtype=torch.float64)
    env.reset(seed=0)
    _, _, r, term, *_ = env.step(u)
    # each peak is its own normalised density times 100 plus the other bump's tail
    local = 100 / (2 * math.pi * 5) + 100 / (2 * math.pi * 2) * math.exp(-0.5 * (100 + 81) / 2)
    glob = 100 / (2 * math.pi * 2) + 100 / (2 * math.pi * 5) * math.exp(-0.5 * (100 + 81) / 5)
    assert r[0].item() == pytest.approx(local, rel=1e-12)
    assert r[1].item() == pytest.approx(glob, rel=1e-12)
    assert r[1] > r[0] > r[2] >= 0 and term.all()


# ---------------------------------------------------------------- batching, seeding, auto-reset
@pytest.mark.parametrize("name", envs.ENV_NAMES)
def test_seeding_reproduces_episodes(name):
    def rollout():
        env = envs.make_env(name, num_envs=8)
        obs, state = env.reset(seed=42)
        g = torch.Generator().manual_seed(1)
        out = [obs]
        for _ in range(5):
            if env.discrete:
                a = torch.randint(0, env.n_actions, (8, env.n_agents), generator=g)
            else:
                a = torch.rand(8, env.n_agents, env.act_dim, generator=g) * 2 - 1
            obs, state, r, *_ = env.step(a)
            out += [obs, state, r]
        return out

    a, b = rollout(), rollout()
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_copies_are_independent_and_auto_reset():
    env = envs.make_env("predator_prey", num_envs=4, dtype=torch.float64)
    obs, _ = env.reset(seed=0)
    assert not torch.equal(obs[0], obs[1])  # copies start apart
    env.t[1] = env.episode_len - 1  # copy 1 is one step from its time limit
    before = env.pos.clone()
    obs, state, r, term, trunc, info = env.step(torch.zeros(4, 3, 2, dtype=torch.float64))
    assert trunc.tolist() == [False, True, False, False] and not term.any()
    assert env.t.tolist() == [1, 0, 1, 1]
    assert torch.equal(obs[0], info["final_obs"][0])  # ongoing copies: same obs
    assert not torch.equal(obs[1], info["final_obs"][1])  # ended copy: a fresh episode
    assert torch.equal(env.vel[1], torch.zeros(4, 2, dtype=torch.float64))
    assert not torch.equal(env.pos[1, 4:], before[1, 4:])  # new landmarks too


def test_shapes_and_bounds():
    for name in envs.ENV_NAMES:
        env = envs.make_env(name, num_envs=5)
        obs, state = env.reset(seed=0)
        assert obs.shape == (5, env.n_agents, env.obs_dim) and state.shape == (5, env.state_dim)
        assert obs.dtype == torch.float32
    env = envs.make_env("multi_pendulum", num_envs=2, n_agents=7)
    obs, state = env.reset(seed=0)
    assert obs.shape == (2, 7, 3) and state.shape == (2, 21)


# ---------------------------------------------------------------- bad input
def test_bad_input_gives_clear_errors():
    env = envs.make_env("predator_prey", num_envs=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 3, 2\)"):
        env.step(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(torch.full((2, 3, 2), float("nan")))
    with pytest.raises(ValueError, match="unknown environment 'pong'.*matrix_game"):
        envs.make_env("pong")
    with pytest.raises(ValueError, match="n_agents >= 1"):
        envs.make_env("multi_pendulum", n_agents=0)
    with pytest.raises(ValueError, match="graded.*n_agents >= 3"):
        envs.make_env("multi_pendulum", n_agents=2, graded=True)
    with pytest.raises(ValueError, match="multi_pendulum only"):
        envs.make_env("predator_prey", n_agents=5)
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        envs.make_env("simple_world", num_envs=0)
    game = envs.make_env("matrix_game")
    game.reset()
    with pytest.raises(ValueError, match="integer actions of shape"):
        game.step(torch.zeros(1, 2))
    with pytest.raises(ValueError, match="in 0..2"):
        game.step(torch.tensor([[0, 3]]))


def test_out_of_bound_actions_are_clipped():
    a, b = (envs.make_env("simple_world", num_envs=1, dtype=torch.float64) for _ in range(2))
    a.reset(seed=0), b.reset(seed=0)
    ra = a.step(torch.tensor([[[-50.0], [3.0]]], dtype=torch.float64))[2]
    rb = b.step(torch.tensor([[[-10.0], [3.0]]], dtype=torch.float64))[2]
    assert ra.item() == rb.item()


# ---------------------------------------------------------------- PettingZoo views
@pytest.mark.parametrize("name", envs.ENV_NAMES)
def test_pettingzoo_parallel_api(name):
    parallel_api_test(envs.ParallelEnv(name), num_cycles=250)
