"""Reference returns on mpe2's simple_spread_v3 through our wrapper, for reading issue 11's curves:
standing still, uniform random actions, and a hand-written controller (agent i steers to landmark i).

    python experiments/spread_reference.py [--episodes 20] [--seed 0]

Returns are what iac.py's evaluation reports: the sum over the 25 steps of the mean of the agents'
rewards, averaged over the episodes.
"""

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import envs  # noqa: E402
import runlib  # noqa: E402


def steer_to_own_landmark(obs):
    """mpe2 continuous action (no-op, left, right, down, up) in [0, 1]^5; the observation holds the
    agent's velocity (0:2), position (2:4) and the landmarks' relative positions (4:10)."""
    B, n, _ = obs.shape
    rel = obs[:, torch.arange(n)[:, None], 4 + 2 * torch.arange(n)[:, None] + torch.arange(2)]  # (B, n, 2)
    force = (rel - 0.5 * obs[..., 0:2]).clamp(-1, 1)  # toward the landmark, damped by the own velocity
    act = torch.zeros(B, n, 5)
    act[..., 2], act[..., 1] = force[..., 0].clamp(min=0), (-force[..., 0]).clamp(min=0)
    act[..., 4], act[..., 3] = force[..., 1].clamp(min=0), (-force[..., 1]).clamp(min=0)
    return act


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    runlib.check_number(p, a, "episodes", lo=1)
    env = envs.PettingZooBatch("pz:mpe2.simple_spread_v3", a.episodes)
    g = torch.Generator().manual_seed(a.seed)
    policies = {"standing still": lambda o: torch.full((a.episodes, env.n_agents, 5), 0.5),
                "uniform random": lambda o: torch.rand(a.episodes, env.n_agents, 5, generator=g),
                "steer to own landmark": steer_to_own_landmark}
    for name, policy in policies.items():
        obs, _ = env.reset(seed=a.seed)
        ret = torch.zeros(a.episodes)
        for _ in range(env.episode_len):
            obs, _, r, *_ = env.step(policy(obs))
            ret += r
        print(f"{name}: {ret.mean():.1f} +- {ret.std():.1f} over {a.episodes} episodes")


if __name__ == "__main__":
    main()
