"""Env-steps per second of our batched environments vs the reference implementations, in one run.

    python bench/envs.py [--seconds 2]

An env-step is one step of one copy, so a batch of B copies stepped once counts B. The reference
envs (mpe2's simple_tag parallel env, gymnasium's Pendulum-v1) step one copy at a time. The last rows
compare the PettingZoo wrapper (--env pz:... / mamujoco:...) with the raw env it wraps.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import runlib  # noqa: E402


def rate(step, batch, seconds):
    """env-steps per second of `step()`, which advances `batch` copies, timed for about `seconds`."""
    step()  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(10):
            step()
        n += 10
    return n * batch / (time.perf_counter() - t0)


def ours(name, B, seconds, **kw):
    env = envs.make_env(name, num_envs=B, **kw)
    env.reset(seed=0)
    a = torch.zeros(B, env.n_agents, env.act_dim).uniform_(env.act_low, env.act_high)
    return rate(lambda: env.step(a, check=False), B, seconds)


def mpe2_tag(seconds):
    from mpe2 import simple_tag_v3

    env = simple_tag_v3.parallel_env(continuous_actions=True, max_cycles=100)
    env.reset(seed=0)
    rng = np.random.default_rng(0)

    def step():
        acts = {a: rng.uniform(0, 1, 5).astype(np.float32) for a in env.agents}
        *_, trunc, _ = env.step(acts)
        if any(trunc.values()):
            env.reset()
    return rate(step, 1, seconds)


def gym_pendulum(seconds):
    import gymnasium

    env = gymnasium.make("Pendulum-v1")
    env.reset(seed=0)
    u = np.array([0.5], dtype=np.float32)

    def step():
        *_, term, trunc, _ = env.step(u)
        if term or trunc:
            env.reset()
    return rate(step, 1, seconds)


def raw_pz(make, seconds):
    """A raw PettingZoo parallel env stepped one copy at a time, random actions in its Box."""
    env = make()
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    spaces = {a: env.action_space(a) for a in env.possible_agents}

    def step():
        acts = {a: rng.uniform(spaces[a].low, spaces[a].high).astype(np.float32) for a in env.agents}
        *_, term, trunc, _ = env.step(acts)
        if not env.agents or all(term.values()) or all(trunc.values()):
            env.reset()
    return rate(step, 1, seconds)


def wrapped(spec, B, seconds):
    """The same env through envs.PettingZooBatch: B copies, actions as one (B, n, d) tensor."""
    env = envs.PettingZooBatch(spec, B)
    env.reset(seed=0)
    a = torch.rand(B, env.n_agents, env.act_dim) * (env.act_high - env.act_low) + env.act_low
    return rate(lambda: env.step(a), B, seconds)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=2.0, help="time spent on each measurement")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = p.parse_args()
    runlib.check_number(p, args, "seconds", lo=0, lo_open=True)
    runlib.check_number(p, args, "threads", lo=1)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPU(s)\n")
    rows = []
    ref = mpe2_tag(args.seconds)
    rows.append(("mpe2 simple_tag_v3 (reference)", 1, ref, 1.0))
    for B in (1, 64, 1024):
        r = ours("predator_prey", B, args.seconds)
        rows.append(("ours predator_prey", B, r, r / ref))
    ref = gym_pendulum(args.seconds)
    rows.append(("gymnasium Pendulum-v1 (reference)", 1, ref, 1.0))
    for B in (1, 64, 1024):
        r = ours("multi_pendulum", B, args.seconds, n_agents=1)
        rows.append(("ours multi_pendulum n=1", B, r, r / ref))
    from mpe2 import simple_spread_v3

    ref = raw_pz(lambda: simple_spread_v3.parallel_env(continuous_actions=True), args.seconds)
    rows.append(("mpe2 simple_spread_v3 (raw)", 1, ref, 1.0))
    for B in (1, 64):
        r = wrapped("pz:mpe2.simple_spread_v3", B, args.seconds)
        rows.append(("pz:mpe2.simple_spread_v3 (wrapper)", B, r, r / ref))
    try:
        from gymnasium_robotics import mamujoco_v1
    except ImportError:
        print("(Multi-Agent MuJoCo not installed: pip install -r requirements-mamujoco.txt)")
    else:
        ref = raw_pz(lambda: mamujoco_v1.parallel_env("HalfCheetah", "2x3"), args.seconds)
        rows.append(("mamujoco HalfCheetah 2x3 (raw)", 1, ref, 1.0))
        for B in (1, 64):
            r = wrapped("mamujoco:HalfCheetah-2x3", B, args.seconds)
            rows.append(("mamujoco:HalfCheetah-2x3 (wrapper)", B, r, r / ref))
    print(f"| {'env':36} | {'B':>5} | {'env-steps/s':>12} | {'vs reference':>12} |")
    print(f"|{'-' * 38}|{'-' * 7}|{'-' * 14}|{'-' * 14}|")
    for name, B, r, ratio in rows:
        print(f"| {name:36} | {B:5d} | {r:12,.0f} | {ratio:11.1f}x |")


if __name__ == "__main__":
    main()
