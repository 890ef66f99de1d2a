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


class WithState(Fake):
    """A Fake with a state() (4 numbers) that misbehaves as `state_fails` says: "after_termination" (every
    agent terminates at step `term_at`, and state() then raises AttributeError, as SISL's multiwalker
    does), "after_truncation", "mid_episode" (at step 3), "not_implemented_later" (NotImplementedError
    from the second episode on), "resized_after_termination" / "resized_mid_episode" (6 numbers),
    "at_first_reset" (ValueError from the start); and reset() / step() that raise from the
    `reset_fails_at`-th reset / the `step_fails_at`-th step on."""

    def __init__(self, state_fails=None, term_at=None, reset_fails_at=None, step_fails_at=None, **kw):
        super().__init__(**kw)
        self.state_fails, self.term_at = state_fails, term_at
        self.reset_fails_at, self.step_fails_at = reset_fails_at, step_fails_at
        self.resets, self.steps, self.ended = 0, 0, None

    def reset(self, seed=None, options=None):
        self.resets += 1
        if self.reset_fails_at is not None and self.resets >= self.reset_fails_at:
            raise RuntimeError("the simulator lost its connection")
        self.ended = None
        return super().reset(seed, options)

    def step(self, actions):
        self.steps += 1
        if self.step_fails_at is not None and self.steps >= self.step_fails_at:
            raise OSError("the simulator crashed")
        obs, rew, term, trunc, info = super().step(actions)
        if self.term_at is not None and self.t >= self.term_at:
            term = {a: True for a in term}
        self.ended = "term" if all(term.values()) else "trunc" if any(trunc.values()) else None
        return obs, rew, term, trunc, info

    def state(self):
        mode, bad = self.state_fails, False
        if mode == "at_first_reset":
            raise ValueError("no state before the first step")
        if mode == "after_termination" and self.ended == "term":
            raise AttributeError("'NoneType' object has no attribute 'position'")
        if mode == "after_truncation" and self.ended == "trunc":
            raise AttributeError("'NoneType' object has no attribute 'position'")
        if mode == "mid_episode" and self.t == 3:
            raise KeyError("lidar")
        if mode == "not_implemented_later" and self.resets >= 2:
            raise NotImplementedError
        if mode == "resized_after_termination" and self.ended == "term":
            bad = True
        if mode == "resized_mid_episode" and self.t == 3:
            bad = True
        return np.full(6 if bad else 4, float(self.t), dtype=np.float32)


def with_state(**kw):
    return WithState(**kw)
