"""Small PettingZoo ParallelEnvs that break one rule each, for the wrapper's error tests
(--env pz:pz_fakes:<callable>)."""

import gymnasium
import numpy as np
import pettingzoo


class Fake(pettingzoo.ParallelEnv):
    metadata = {"name": "fake"}

    def __init__(self, act_sizes=(2, 2), obs_sizes=(3, 3), discrete=False, leave_at=None, max_cycles=10):
        self.possible_agents = [f"a{i}" for i in range(len(act_sizes))]
        self.agents = list(self.possible_agents)
        self.act_sizes, self.obs_sizes, self.discrete = act_sizes, obs_sizes, discrete
        self.leave_at, self.max_cycles, self.t = leave_at, max_cycles, 0
        self.rng = np.random.default_rng(0)

    def action_space(self, agent):
        i = self.possible_agents.index(agent)
        if self.discrete:
            return gymnasium.spaces.Discrete(3)
        return gymnasium.spaces.Box(-1.0, 1.0, (self.act_sizes[i],), np.float32)

    def observation_space(self, agent):
        i = self.possible_agents.index(agent)
        return gymnasium.spaces.Box(-np.inf, np.inf, (self.obs_sizes[i],), np.float32)

    def _obs(self):
        return {a: self.rng.normal(size=self.obs_sizes[i]).astype(np.float32)
                for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        obs = self._obs()
        rew = {a: float(np.sum(actions[a])) for a in self.agents}
        term = {a: self.leave_at is not None and self.t >= self.leave_at and i == 0 for i, a in enumerate(self.agents)}
        trunc = {a: self.t >= self.max_cycles for a in self.agents}
        return obs, rew, term, trunc, {a: {} for a in self.agents}


def different_action_sizes(**kw):
    return Fake(act_sizes=(2, 3), **kw)


def different_obs_sizes(**kw):
    return Fake(obs_sizes=(3, 5), **kw)


def discrete(**kw):
    return Fake(discrete=True, **kw)


def leaving(**kw):
    return Fake(leave_at=3, **kw)


not_a_function = 3


def drawless(render_mode=None, **kw):
    """Takes render_mode but cannot draw (pettingzoo.ParallelEnv.render raises)."""
    return Fake(**kw)
