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


def _mpe2_from_mpe5(a):
    """The old openai MPE's 5-D action as mpe2's: old force (a1 - a2, a3 - a4) (multiagent/
    environment.py:173-181), mpe2's (a2 - a1, a4 - a3) (mpe2 SimpleEnv._set_action), so swap 1<->2, 3<->4."""
    return a[[0, 2, 1, 4, 3]]


def _run_against_mpe2(start_pos, seed, steps=100, partial=False, predator_action="mpe2"):
    """Step ours and mpe2 from the same start with the same actions; return the worst differences.
    predator_action="mpe5" feeds 5-D actions in [-1, 1]^5 to both (mpe2's raw_env does not clip them
    to its Box [0, 1]^5; its env() / parallel_env() wrappers would)."""
    from mpe2 import simple_tag_v3

    # the raw AEC env: its wrappers would cast our float64 actions to float32
    ref = simple_tag_v3.raw_env(continuous_actions=True, max_cycles=steps)
    ref.reset(seed=seed)
    world, scenario = ref.world, ref.scenario
    env = envs.PredatorPrey(num_envs=1, dtype=torch.float64, partial=partial,
                            predator_action=predator_action)
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
        acts = rng.uniform(-1.2, 1.2, size=(3, env.act_dim))  # a little outside the bounds: we clip
        acts_ours = np.clip(acts, -1, 1)
        _, _, reward, _, _, info = env.step(torch.as_tensor(acts)[None])
        prey = env.last_prey_action[0].numpy()
        to_mpe2 = _mpe2_from_mpe5 if predator_action == "mpe5" else _mpe_action
        ref_actions = {f"adversary_{i}": to_mpe2(acts_ours[i]) for i in range(3)}
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


@pytest.mark.parametrize("partial", [False, True])
def test_predator_prey_mpe5_matches_mpe2_raw_env(partial):
    # the authors' 5-D action, fed unclipped to mpe2's raw_env with entries 1<->2 and 3<->4 swapped
    rng = np.random.default_rng(5)
    starts = [np.concatenate([rng.uniform(-1, 1, (4, 2)), rng.uniform(-0.9, 0.9, (2, 2))]),
              np.array([[0.1, 0.0], [-0.05, 0.08], [0.0, -0.1], [0.0, 0.0], [0.25, 0.1], [0.9, 0.9]])]
    catches = 0
    for seed, start in enumerate(starts):
        worst, c = _run_against_mpe2(start, seed, partial=partial, predator_action="mpe5")
        catches += c
        assert max(worst.values()) < 1e-9, (seed, worst)
    assert catches > 0, "the bunched start was meant to force contacts"


def test_predator_prey_mpe5_force_is_twice_the_2d_force():
    # from rest, far from everything: one step gives vel = accel * force * dt (mass 1), position unmoved
    start = torch.tensor([[-0.8, -0.8], [0.8, -0.8], [0.0, 0.8], [0.8, 0.8], [-0.6, 0.3], [0.5, 0.0]],
                         dtype=torch.float64)
    vel = {}
    for kind, a0 in (("mpe2", [1.0, 0.0]), ("mpe5", [0.0, 1.0, -1.0, 0.0, 0.0])):
        env = envs.make_env("predator_prey", dtype=torch.float64, predator_action=kind)
        env.reset(seed=0)
        env.pos[0] = start
        a = torch.zeros(1, 3, env.act_dim, dtype=torch.float64)
        a[0, 0] = torch.tensor(a0)
        env.step(a)
        vel[kind] = env.vel[0, 0]
        assert torch.equal(env.pos[0, 0], start[0])  # mpe2 order: moved with the old velocity, 0
    assert torch.allclose(vel["mpe2"], torch.tensor([3.0 * 0.1, 0.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(vel["mpe5"], torch.tensor([2 * 3.0 * 0.1, 0.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(vel["mpe5"], 2 * vel["mpe2"], rtol=0, atol=1e-12)


def test_predator_action_option_is_checked():
    env = envs.make_env("po_predator_prey", num_envs=2, predator_action="mpe5")
    assert (env.act_dim, env.act_low, env.act_high) == (5, -1.0, 1.0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"expected actions of shape \(2, 3, 5\)"):
        env.step(torch.zeros(2, 3, 2))
    assert envs.make_env("predator_prey").act_dim == 2  # the default is mpe2's 2-D force
    with pytest.raises(ValueError, match="predator_action must be one of mpe2, mpe5, got 'mpe3'"):
        envs.make_env("predator_prey", predator_action="mpe3")
    for name in ("matrix_game", "simple_world", "multi_pendulum"):
        with pytest.raises(ValueError, match="predator_action applies to predator_prey"):
            envs.make_env(name, predator_action="mpe2")


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


@pytest.mark.parametrize("n", [3, 4, 5])
def test_pendulum_graded_and_sparse_reward_at_every_level(n):
    # by hand from DESIGN.md section 2, reward by k = number upright (index k):
    # graded 0.5 if k = n, else 0.2 if k >= 3, else 0.1 if k >= 1, else 0; sparse 5 only if k = n
    graded = {3: [0.0, 0.1, 0.1, 0.5],
              4: [0.0, 0.1, 0.1, 0.2, 0.5],
              5: [0.0, 0.1, 0.1, 0.2, 0.2, 0.5]}[n]
    sparse = [0.0] * n + [5.0]
    up_angles = [0.0, 0.15, -0.19, 2 * math.pi - 0.1, -2 * math.pi + 0.05]  # |normalised| < 0.2
    down_angles = [math.pi, 1.0, -0.5, 0.21, 2 * math.pi - 0.3]
    rng = np.random.default_rng(n)
    th = np.tile(down_angles[:n], (n + 1, 1))  # copy k has k pendulums upright, at random places
    for k in range(n + 1):
        th[k, rng.permutation(n)[:k]] = up_angles[:k]
    for is_graded, expected in ((True, graded), (False, sparse)):
        env = envs.make_env("multi_pendulum", num_envs=n + 1, n_agents=n, graded=is_graded,
                            dtype=torch.float64)
        env.reset(seed=0)
        env.th[:] = torch.as_tensor(th)
        env.thdot.zero_()
        _, _, r, *_ = env.step(torch.zeros(n + 1, n, 1, dtype=torch.float64))
        assert r.tolist() == expected, (n, is_graded)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_pendulum_upright_threshold_is_0_2_of_the_normalised_angle(dtype):
    eps, two_pi = 1e-4, 2 * math.pi
    inside = [0.2 - eps, -0.2 + eps, two_pi + 0.2 - eps, two_pi - 0.2 + eps, -two_pi + 0.2 - eps,
              -two_pi - 0.2 + eps, 2 * two_pi + 0.1]
    outside = [0.2 + eps, -0.2 - eps, two_pi + 0.2 + eps, two_pi - 0.2 - eps, -two_pi + 0.2 + eps,
               -two_pi - 0.2 - eps, math.pi, two_pi - 0.5 * math.pi]
    th = torch.tensor(inside + outside, dtype=dtype)
    env = envs.make_env("multi_pendulum", num_envs=len(th), n_agents=1, dtype=dtype)
    env.reset(seed=0)
    env.th[:, 0], env.thdot[:] = th, 0.0
    _, _, r, *_ = env.step(torch.zeros(len(th), 1, 1, dtype=dtype))
    assert r.tolist() == [5.0] * len(inside) + [0.0] * len(outside)


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


# ---------------------------------------------------------------- episode length and start distributions
def _zero_actions(env):
    if env.discrete:
        return torch.zeros(env.num_envs, env.n_agents, dtype=torch.long)
    return torch.zeros(env.num_envs, env.n_agents, env.act_dim, dtype=env.dtype)


def _episode_ends(env, steps):
    """Step from reset; return (step, terminated, truncated) of every step at which the episodes end."""
    env.reset(seed=0)
    ends = []
    for t in range(1, steps + 1):
        *_, term, trunc, _ = env.step(_zero_actions(env))
        assert not (term & trunc).any(), t  # never both
        assert term.all() == term.any() and trunc.all() == trunc.any(), t  # copies started together
        if term[0] or trunc[0]:
            ends.append((t, bool(term[0]), bool(trunc[0])))
    return ends


def test_episode_length_and_truncation_match_the_references():
    from mpe2 import simple_tag_v3

    # mpe2's simple_tag made with max_cycles=100 (the authors' episode length): the step it truncates at
    ref = simple_tag_v3.parallel_env(continuous_actions=True, max_cycles=100)
    ref.reset(seed=0)
    for mpe_len in range(1, 1000):
        _, _, term, trunc, _ = ref.step({a: np.zeros(5, np.float32) for a in ref.agents})
        if any(term.values()) or any(trunc.values()):
            assert all(trunc.values()) and not any(term.values())
            break
    assert mpe_len == 100
    # gymnasium's Pendulum-v1: TimeLimit of 200, truncation on the 200th step
    pend = gymnasium.make("Pendulum-v1")
    assert pend.spec.max_episode_steps == 200
    pend.reset(seed=0)
    for pend_len in range(1, 1000):
        _, _, term, trunc, _ = pend.step(np.zeros(1, np.float32))
        if term or trunc:
            assert trunc and not term
            break
    assert pend_len == 200
    for name, length in (("predator_prey", mpe_len), ("po_predator_prey", mpe_len),
                         ("multi_pendulum", pend_len)):
        # truncated (not terminated) at exactly `length`, and again `length` steps after the auto-reset
        ends = _episode_ends(envs.make_env(name, num_envs=2), 2 * length + 3)
        assert ends == [(length, False, True), (2 * length, False, True)], name
    for name in ("matrix_game", "simple_world"):  # one-step games: terminated after every step
        assert _episode_ends(envs.make_env(name, num_envs=2), 3) == [(t, True, False) for t in (1, 2, 3)]


def _assert_uniform(x, low, high, what):
    """Each column of x (N, d) looks like U[low, high]: in bounds, reaching near both ends, and mean and
    std within 5 standard errors (sigma / sqrt(N) for the mean, sigma / sqrt(5 N) for the std of a
    uniform, whose kurtosis is 9/5)."""
    N, sigma = x.shape[0], (high - low) / math.sqrt(12)
    assert x.min() >= low and x.max() <= high, what
    edge = 0.005 * (high - low)  # P(no sample this close to an end) = 0.995^N, e^-20 for N = 4000
    assert (x.min(0) < low + edge).all() and (x.max(0) > high - edge).all(), what
    assert np.abs(x.mean(0) - (low + high) / 2).max() < 5 * sigma / math.sqrt(N), what
    assert np.abs(x.std(0) - sigma).max() < 5 * sigma / math.sqrt(5 * N), what


def _assert_same_moments(x, y, sigma, what):
    """Two samples (N, d), (M, d) of one distribution of std sigma: means and stds within 5 s.e."""
    N, M = x.shape[0], y.shape[0]
    assert np.abs(x.mean(0) - y.mean(0)).max() < 5 * sigma * math.sqrt(1 / N + 1 / M), what
    assert np.abs(x.std(0) - y.std(0)).max() < 5 * sigma * math.sqrt(1 / (5 * N) + 1 / (5 * M)), what


def test_predator_prey_reset_distribution_matches_mpe2():
    from mpe2 import simple_tag_v3

    N = 4000
    # mpe2 simple_tag Scenario.reset_world: agents uniform(-1, +1), landmarks uniform(-0.9, +0.9),
    # velocities zero
    ref = simple_tag_v3.raw_env(max_cycles=100)
    ref.reset(seed=0)
    ref_agents, ref_lm = [], []
    for _ in range(N):
        ref.reset()
        ref_agents.append(np.concatenate([a.state.p_pos for a in ref.world.agents]))
        ref_lm.append(np.concatenate([lm.state.p_pos for lm in ref.world.landmarks]))
        assert all(not a.state.p_vel.any() for a in ref.world.agents)
    ref_agents, ref_lm = np.array(ref_agents), np.array(ref_lm)  # (N, 8), (N, 4)
    _assert_uniform(ref_agents, -1.0, 1.0, "mpe2 agents")  # the ranges above are mpe2's
    _assert_uniform(ref_lm, -0.9, 0.9, "mpe2 landmarks")
    _, state = envs.make_env("predator_prey", num_envs=N, dtype=torch.float64).reset(seed=0)
    state = state.numpy()  # agent positions (8), agent velocities (8), landmark positions (4)
    agents, vel, lm = state[:, :8], state[:, 8:16], state[:, 16:]
    assert not vel.any()
    _assert_uniform(agents, -1.0, 1.0, "our agents")
    _assert_uniform(lm, -0.9, 0.9, "our landmarks")
    _assert_same_moments(agents, ref_agents, 2 / math.sqrt(12), "agents vs mpe2")
    _assert_same_moments(lm, ref_lm, 1.8 / math.sqrt(12), "landmarks vs mpe2")


def test_pendulum_reset_distribution_matches_gymnasium():
    N = 4000
    # Pendulum-v1.reset: angle uniform in [-pi, pi], speed uniform in [-1, 1]
    ref = gymnasium.make("Pendulum-v1")
    ref.reset(seed=0)
    ref_obs = np.array([ref.reset()[0] for _ in range(N)], dtype=np.float64)  # (N, 3)
    obs, _ = envs.make_env("multi_pendulum", num_envs=N, n_agents=2, dtype=torch.float64).reset(seed=0)
    obs = obs.numpy()  # (N, 2, 3)
    for what, o in (("gymnasium", ref_obs[:, None]), ("ours", obs)):
        th = np.arctan2(o[..., 1], o[..., 0])  # (N, n)
        _assert_uniform(th, -math.pi, math.pi, f"{what} angle")
        _assert_uniform(o[..., 2], -1.0, 1.0, f"{what} speed")
    th = np.arctan2(obs[..., 1], obs[..., 0])
    ref_th = np.arctan2(ref_obs[:, 1], ref_obs[:, 0])[:, None]
    _assert_same_moments(th, ref_th, 2 * math.pi / math.sqrt(12), "angle vs gymnasium")
    _assert_same_moments(obs[..., 2], ref_obs[:, 2:3], 2 / math.sqrt(12), "speed vs gymnasium")


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


@pytest.mark.parametrize("name", ["multi_pendulum", "predator_prey", "po_predator_prey"])
def test_reset_seed_sets_the_start_and_none_continues(name):
    a, b = envs.make_env(name, num_envs=4), envs.make_env(name, num_envs=4)
    _, s1 = a.reset(seed=1)
    _, s2 = b.reset(seed=2)
    assert not torch.equal(s1, s2)  # different seeds, different starts
    _, s1_again = b.reset(seed=1)  # the same seed, on an env whose generator has been used
    assert torch.equal(s1, s1_again)
    # seed=None continues the generator: new starts each time, the same continuation on both envs
    _, a2 = a.reset()
    _, a3 = a.reset()
    _, b2 = b.reset()
    _, b3 = b.reset()
    assert not torch.equal(a2, s1) and not torch.equal(a3, a2)
    assert torch.equal(a2, b2) and torch.equal(a3, b3)


def test_final_obs_is_the_ended_episode_last_obs_predator_prey():
    env = envs.make_env("predator_prey", num_envs=2, dtype=torch.float64)
    env.reset(seed=0)
    # far apart (no contact forces), predator 1 will hit its speed cap 1.0
    pos = np.array([[-0.8, -0.8], [0.8, -0.8], [0.0, 0.8], [0.8, 0.8], [-0.6, 0.3], [0.5, 0.0]])
    vel = np.array([[0.1, -0.2], [0.0, 0.9], [-0.4, 0.0], [0.5, 0.5]])
    act = np.array([[0.5, -1.0], [1.0, 1.0], [-0.7, 0.9]])
    env.pos[:], env.vel[:] = torch.as_tensor(pos), torch.as_tensor(vel)
    env.t[:] = torch.tensor([env.episode_len - 1, 5])  # copy 0 ends at this step, copy 1 goes on
    obs, state, r, term, trunc, info = env.step(torch.as_tensor(np.stack([act, act])))
    assert trunc.tolist() == [True, False] and not term.any() and r.tolist() == [0.0, 0.0]
    for b in range(2):
        # mpe2 physics by hand: move with the old velocity, then damping, force, speed cap
        force = np.concatenate([act, env.last_prey_action[b, None].numpy()]) * np.array([[3], [3], [3], [4]])
        p = pos[:4] + vel * 0.1
        v = vel * 0.75 + force * 0.1
        speed = np.linalg.norm(v, axis=1, keepdims=True)
        cap = np.array([[1.0], [1.0], [1.0], [1.3]])
        v = np.where(speed > cap, v / speed * cap, v)
        expect = np.array([np.concatenate([v[i], p[i], (pos[4:] - p[i]).ravel(),
                                           (p[[j for j in range(4) if j != i]] - p[i]).ravel(), v[3]])
                           for i in range(3)])
        assert np.abs(info["final_obs"][b].numpy() - expect).max() < 1e-12, b
        expect_state = np.concatenate([p.ravel(), v.ravel(), pos[4:].ravel()])
        assert np.abs(info["final_state"][b].numpy() - expect_state).max() < 1e-12, b
    assert np.linalg.norm(info["final_state"][0, 10:12].numpy()) == pytest.approx(1.0)  # capped
    # the copy that ended returns its new episode's first observation; the other goes on
    assert env.t.tolist() == [0, 6]
    assert not obs[0, :, [0, 1, 14, 15]].any() and not state[0, 8:16].any()  # a fresh start, at rest
    assert (state[0, :8].abs() <= 1).all() and (state[0, 16:].abs() <= 0.9).all()
    assert not torch.equal(state[0, 16:], torch.as_tensor(pos[4:]).flatten())  # new landmarks
    assert torch.equal(obs[1], info["final_obs"][1]) and torch.equal(state[1], info["final_state"][1])


def test_final_obs_is_the_ended_episode_last_obs_pendulum():
    env = envs.make_env("multi_pendulum", num_envs=2, n_agents=2, dtype=torch.float64)
    env.reset(seed=0)
    th = np.array([[0.5, -2.0], [3.0, 0.1]])
    thdot = np.array([[1.0, -7.9], [0.0, 2.0]])
    u = np.array([[1.5, -2.0], [0.3, 2.0]])
    env.th[:], env.thdot[:] = torch.as_tensor(th), torch.as_tensor(thdot)
    env.t[:] = torch.tensor([env.episode_len - 1, 10])
    obs, state, _, term, trunc, info = env.step(torch.as_tensor(u)[..., None])
    assert trunc.tolist() == [True, False] and not term.any()
    # Pendulum-v1.step by hand: g = 10, m = l = 1, dt = 0.05, speed clipped to 8
    new_thdot = np.clip(thdot + (3 * 10 / 2 * np.sin(th) + 3.0 * u) * 0.05, -8, 8)
    new_th = th + new_thdot * 0.05
    expect = np.stack([np.cos(new_th), np.sin(new_th), new_thdot], -1)  # (2, 2, 3)
    assert new_thdot[0, 1] == -8.0  # the cap is exercised
    assert np.abs(info["final_obs"].numpy() - expect).max() < 1e-12
    assert np.abs(info["final_state"].numpy() - expect.reshape(2, 6)).max() < 1e-12
    assert np.abs(obs[0].numpy() - expect[0]).max() > 0.01  # copy 0 restarted
    assert (obs[0, :, 2].abs() <= 1).all()  # a new start speed
    assert torch.equal(obs[1], info["final_obs"][1])


def test_state_dict_snapshots_are_copies():
    env = envs.make_env("predator_prey", num_envs=3, dtype=torch.float64)
    env.reset(seed=0)
    g = torch.Generator().manual_seed(0)
    acts = [torch.rand(3, 3, 2, generator=g, dtype=torch.float64) * 2 - 1 for _ in range(6)]
    env.step(acts[0])
    env.t[:] = env.episode_len - 3  # the replays cross an episode end, so auto-reset draws too
    sd = env.state_dict()
    t_saved = sd["t"].clone()

    def replay():
        out = [torch.cat([o.flatten() for o in env.step(a)[:5]]) for a in acts]
        return torch.stack(out), env.t.clone()

    runs = [replay()]  # straight on from the snapshot
    for _ in range(2):  # then twice from the one dict
        env.load_state_dict(sd)
        runs.append(replay())
    for x, t in runs[1:]:
        assert torch.equal(x, runs[0][0]) and torch.equal(t, runs[0][1])
    assert torch.equal(sd["t"], t_saved)  # stepping never wrote into the dict
    one, two = (envs.make_env("predator_prey", num_envs=3, dtype=torch.float64) for _ in range(2))
    one.load_state_dict(sd)
    two.load_state_dict(sd)
    before = two.state_dict()
    one.step(acts[0])
    after = two.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # `two` shares nothing with `one`
    assert torch.equal(one.t, t_saved + 1) and torch.equal(two.t, t_saved)


def test_shapes_and_bounds():
    # action spaces by hand from DESIGN.md section 2: (act_dim, act_low, act_high, n_actions)
    spaces = {"matrix_game": (1, None, None, 3), "simple_world": (1, -10.0, 10.0, 0),
              "multi_pendulum": (1, -2.0, 2.0, 0), "predator_prey": (2, -1.0, 1.0, 0),
              "po_predator_prey": (2, -1.0, 1.0, 0)}
    assert set(spaces) == set(envs.ENV_NAMES)
    g = torch.Generator().manual_seed(0)
    for name, (act_dim, low, high, n_actions) in spaces.items():
        env = envs.make_env(name, num_envs=5)
        assert (env.act_dim, env.n_actions, env.discrete) == (act_dim, n_actions, n_actions > 0), name
        if low is not None:
            assert (env.act_low, env.act_high) == (low, high), name
        obs, state = env.reset(seed=0)
        for t in range(30):
            assert obs.shape == (5, env.n_agents, env.obs_dim) and state.shape == (5, env.state_dim)
            assert obs.dtype == torch.float32 and state.dtype == torch.float32
            assert torch.isfinite(obs).all() and torch.isfinite(state).all(), name
            if env.discrete:
                a = torch.randint(0, n_actions, (5, env.n_agents), generator=g)
            else:  # actions at the bounds
                a = torch.where(torch.rand(5, env.n_agents, act_dim, generator=g) < 0.5, low, high)
            obs, state, r, *_ = env.step(a)
            assert r.shape == (5,) and torch.isfinite(r).all()
    env = envs.make_env("multi_pendulum", num_envs=2, n_agents=7)
    obs, state = env.reset(seed=0)
    assert obs.shape == (2, 7, 3) and state.shape == (2, 21)
    # pendulum observations: cos, sin in [-1, 1], speed in [-8, 8]; full torque along the motion
    # pumps energy, so the speed cap is reached
    env = envs.make_env("multi_pendulum", num_envs=64, n_agents=3, dtype=torch.float64)
    obs, _ = env.reset(seed=0)
    top = 0.0
    for t in range(150):
        obs, *_ = env.step(torch.where(obs[..., 2:] >= 0, 2.0, -2.0))
        assert (obs[..., :2].abs() <= 1).all() and (obs[..., 2].abs() <= 8).all(), t
        top = max(top, obs[..., 2].abs().max().item())
    assert top == 8.0


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
    with pytest.raises(ValueError, match="floating torch.dtype"):
        envs.make_env("simple_world", dtype="float32")
    with pytest.raises(ValueError, match="not a torch device"):
        envs.make_env("simple_world", device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            envs.make_env("simple_world", device="cuda")
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


def test_pettingzoo_parallel_api_mpe5_actions():
    env = envs.ParallelEnv("predator_prey", predator_action="mpe5")
    assert env.action_space("agent_0").shape == (5,)
    parallel_api_test(env, num_cycles=250)


class _DeviceTensor(torch.Tensor):
    """Stands in for a tensor on an accelerator: .numpy() fails until .cpu() brings it back."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert a device tensor to numpy; use Tensor.cpu() first")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def test_parallel_env_moves_device_tensors_to_cpu(monkeypatch):
    penv = envs.ParallelEnv("predator_prey")

    def on_device(fn):  # the batched env's outputs as if they lived on a GPU
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            return tuple({k: v.as_subclass(_DeviceTensor) for k, v in o.items()} if isinstance(o, dict)
                         else o.as_subclass(_DeviceTensor) for o in out)
        return wrapped

    monkeypatch.setattr(penv.env, "reset", on_device(penv.env.reset))
    monkeypatch.setattr(penv.env, "step", on_device(penv.env.step))
    obs, _ = penv.reset(seed=0)
    for _ in range(3):
        obs, *_ = penv.step({a: np.zeros(2) for a in penv.agents})
    assert all(type(o) is np.ndarray and o.dtype == np.float32 for o in obs.values())
    assert type(penv.state()) is np.ndarray


# ---------------------------------------------------------------- on a GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


def _draw_from_cpu(env, seed):
    """Make env draw its random numbers from a CPU generator, moved to its device, so that copies on
    different devices see the same starts and prey actions (CPU and CUDA generators differ)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, low=0.0, high=1.0):
        u = torch.rand(*shape, generator=g, dtype=env.dtype).to(env.device)
        return low + (high - low) * u

    env._rand = rand


def _assert_device_matches_cpu(device, name, steps=210, **kwargs):
    """Step a copy on `device` and one on the CPU with the same draws and actions, across auto-resets."""
    cpu, dev = (envs.make_env(name, num_envs=16, device=d, dtype=torch.float64, **kwargs)
                for d in ("cpu", device))
    for env in (cpu, dev):
        _draw_from_cpu(env, 0)
    outs = [cpu.reset(seed=0), dev.reset(seed=0)]
    g = torch.Generator().manual_seed(1)
    for t in range(steps + 1):
        c, d = ([x for o in out for x in (o.values() if isinstance(o, dict) else [o])] for out in outs)
        for x, y in zip(c, d, strict=True):  # obs, state (, reward, terminated, truncated, final ones)
            assert y.device.type == torch.device(device).type and x.dtype == y.dtype, (name, t)
            assert torch.allclose(x, y.cpu(), rtol=0, atol=1e-9), (name, t)
        if cpu.discrete:
            a = torch.randint(0, cpu.n_actions, (16, cpu.n_agents), generator=g)
        else:
            a = cpu.act_low + (cpu.act_high - cpu.act_low) * torch.rand(
                16, cpu.n_agents, cpu.act_dim, generator=g, dtype=torch.float64)
        outs = [cpu.step(a), dev.step(a.to(device))]


@needs_cuda
@pytest.mark.parametrize("name,kwargs", [(n, {}) for n in envs.ENV_NAMES]
                         + [("predator_prey", {"predator_action": "mpe5"})])
def test_cuda_env_matches_cpu_step_for_step(name, kwargs):
    _assert_device_matches_cpu("cuda", name, **kwargs)


@needs_cuda
def test_cuda_env_resumes_from_a_cpu_snapshot():
    cpu = envs.make_env("predator_prey", num_envs=4, dtype=torch.float64)
    cpu.reset(seed=0)
    cpu.step(torch.zeros(4, 3, 2, dtype=torch.float64))
    sd = cpu.state_dict()
    dev = envs.make_env("predator_prey", num_envs=4, device="cuda", dtype=torch.float64)
    dev.load_state_dict(sd, restore_gen=False)  # generator states do not move between devices
    for k, v in sd.items():
        if k != "gen":
            assert getattr(dev, k).device.type == "cuda" and torch.equal(getattr(dev, k).cpu(), v), k
    dev.step(torch.zeros(4, 3, 2, dtype=torch.float64, device="cuda"))
    assert dev.t.tolist() == (sd["t"] + 1).tolist()


@needs_cuda
@pytest.mark.parametrize("name", envs.ENV_NAMES)
def test_cuda_pettingzoo_parallel_api(name):
    parallel_api_test(envs.ParallelEnv(name, device="cuda"), num_cycles=50)
