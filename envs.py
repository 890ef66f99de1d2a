"""Batched environments of "Modeling the Interaction between Agents in Cooperative MARL" (IAC,
Ma et al., arXiv 2102.06042), Section 3 and 5.1, as ../shared/DESIGN.md section 2 fixes them.

Every environment steps B independent copies as one set of torch operations, so the same code runs on
CPU or GPU, and hands the trainer one small interface:

    obs, state = env.reset(seed=0)            # (B, n, obs_dim), (B, state_dim)
    obs, state, reward, terminated, truncated, info = env.step(actions)
    # reward (B,), terminated / truncated (B,) bool; actions (B, n, act_dim) in [act_low, act_high]
    # (matrix game: (B, n) integer actions). A copy that ends is reset at once (same-step auto-reset):
    # obs / state are then the new episode's first ones and info["final_obs"], info["final_state"] hold
    # the last ones of the episode that ended, for bootstrapping.

`ParallelEnv(name)` is a PettingZoo view of one copy (B = 1) for use with other tools. The other way
round, `PettingZooBatch("pz:<module>[:<callable>]")` puts B copies of any PettingZoo ParallelEnv with
continuous actions (or "mamujoco:<Scenario>-<conf>", Multi-Agent MuJoCo) behind the interface above.
"""

import math

import sys

import gymnasium
import numpy as np
import pettingzoo
import torch

import runlib

ENV_NAMES = ("matrix_game", "simple_world", "multi_pendulum", "predator_prey", "po_predator_prey")


class BatchedEnv:
    """What all five environments share: seeding, action checks, step counting and auto-reset.

    A subclass sets the sizes below and writes `_reset_state(mask)` (draw new episodes where `mask`)
    and `_step(actions) -> (reward, terminated)` and `_observe() -> (obs, state)`.
    """

    n_agents: int
    obs_dim: int
    state_dim: int
    act_dim: int  # per agent; 1 for the matrix game, whose actions are indices
    act_low: float = -1.0
    act_high: float = 1.0
    n_actions: int = 0  # > 0 marks a discrete-action env
    episode_len: int

    def __init__(self, num_envs=1, device="cpu", dtype=torch.float32):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        self.gen = torch.Generator(device=self.device)
        self.t = torch.zeros(num_envs, dtype=torch.long, device=self.device)  # steps into the episode

    @property
    def discrete(self):
        return self.n_actions > 0

    def _rand(self, *shape, low=0.0, high=1.0):
        # uniform in [low, high), from this env's own generator so that seeding reproduces episodes
        u = torch.rand(*shape, generator=self.gen, device=self.device, dtype=self.dtype)
        return low + (high - low) * u

    def reset(self, seed=None):
        if seed is not None:
            self.gen.manual_seed(int(seed))
        self.t.zero_()
        self._reset_state(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self._observe()

    def state_dict(self):
        """Everything needed to continue these episodes exactly: tensors and the generator."""
        return {"gen": self.gen.get_state(),
                **{k: v.clone() for k, v in vars(self).items() if isinstance(v, torch.Tensor)}}

    def load_state_dict(self, sd, restore_gen=True):
        """Continue from a snapshot. The snapshot is copied, never kept: restoring one dict twice
        replays the same steps. restore_gen=False keeps this env's own generator (resuming on another
        device, whose generator state is not interchangeable)."""
        if restore_gen:
            self.gen.set_state(sd["gen"])
        for k, v in sd.items():
            if k != "gen":
                setattr(self, k, v.to(self.device, copy=True))

    def check_actions(self, actions):
        """Shape, type and finiteness checks; returns the clipped action tensor the physics uses."""
        actions = torch.as_tensor(actions, device=self.device)
        B, n = self.num_envs, self.n_agents
        if self.discrete:
            if actions.shape != (B, n) or actions.dtype.is_floating_point:
                raise ValueError(f"expected integer actions of shape ({B}, {n}), got "
                                 f"{actions.dtype} of shape {tuple(actions.shape)}")
            if ((actions < 0) | (actions >= self.n_actions)).any():
                raise ValueError(f"actions must be in 0..{self.n_actions - 1}")
            return actions
        if actions.shape != (B, n, self.act_dim):
            raise ValueError(f"expected actions of shape ({B}, {n}, {self.act_dim}) = (num_envs, "
                             f"n_agents, act_dim), got {tuple(actions.shape)}")
        actions = actions.to(self.dtype)
        if not torch.isfinite(actions).all():
            raise ValueError("actions contain NaN or inf")
        # out-of-range actions are clipped, as gymnasium's Pendulum-v1 clips its torque
        return actions.clamp(self.act_low, self.act_high)

    def step(self, actions, check=True):
        """Step every copy. `check=False` skips the validation (a GPU sync) for trusted callers."""
        actions = self.check_actions(actions) if check else actions
        reward, terminated = self._step(actions)
        self.t += 1
        truncated = (self.t >= self.episode_len) & ~terminated
        final_obs, final_state = self._observe()
        done = terminated | truncated
        self.t.masked_fill_(done, 0)
        self._reset_state(done)
        obs, state = self._observe()
        info = {"final_obs": final_obs, "final_state": final_state}
        return obs, state, reward, terminated, truncated, info


def _where(mask, new, old):
    # per-copy select: mask (B,) broadcast over the trailing dims of new / old
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


# --------------------------------------------------------------------------------------------------
# Section 3, Table 1: two agents, three actions, one step.
class MatrixGame(BatchedEnv):
    n_agents, obs_dim, state_dim, act_dim, n_actions, episode_len = 2, 1, 1, 1, 3, 1
    PAYOFF = ((8.0, -12.0, -12.0), (-12.0, 0.0, 0.0), (-12.0, 0.0, 0.0))

    def __init__(self, num_envs=1, device="cpu", dtype=torch.float32):
        super().__init__(num_envs, device, dtype)
        self.payoff = torch.tensor(self.PAYOFF, dtype=dtype, device=self.device)

    def _reset_state(self, mask):
        pass  # stateless

    def _observe(self):
        # no state information: every agent sees the same constant
        obs = torch.ones(self.num_envs, self.n_agents, 1, dtype=self.dtype, device=self.device)
        return obs, obs[:, 0]

    def _step(self, actions):
        reward = self.payoff[actions[:, 0], actions[:, 1]]
        return reward, torch.ones(self.num_envs, dtype=torch.bool, device=self.device)


# --------------------------------------------------------------------------------------------------
# Section 5.1 "Simple World": two agents, 1-D action each, one step, reward = two Gaussian bumps.
class SimpleWorld(BatchedEnv):
    n_agents, obs_dim, state_dim, act_dim, episode_len = 2, 1, 1, 1, 1
    act_low, act_high = -10.0, 10.0
    # our reading of "means [4, 3] and [-6, -6], variances 5 and 2": isotropic normalised densities,
    # scaled by 100, so a broad local optimum (peak 100/(2 pi 5) = 3.18) and a narrow global one (7.96)
    MEANS = ((4.0, 3.0), (-6.0, -6.0))
    VARIANCES = (5.0, 2.0)
    SCALE = 100.0

    def _reset_state(self, mask):
        pass

    def _observe(self):
        obs = torch.ones(self.num_envs, self.n_agents, 1, dtype=self.dtype, device=self.device)
        return obs, obs[:, 0]

    @classmethod
    def reward_fn(cls, u):
        """Reward of joint actions u (..., 2); a classmethod so figures can draw the landscape."""
        r = 0.0
        for mean, var in zip(cls.MEANS, cls.VARIANCES):
            d2 = ((u - torch.as_tensor(mean, dtype=u.dtype, device=u.device)) ** 2).sum(-1)
            r = r + torch.exp(-0.5 * d2 / var) / (2 * math.pi * var)
        return cls.SCALE * r

    def _step(self, actions):
        reward = self.reward_fn(actions[:, :, 0])
        return reward, torch.ones(self.num_envs, dtype=torch.bool, device=self.device)


# --------------------------------------------------------------------------------------------------
# Section 5.1 "Multi-Pendulum": n copies of gymnasium's Pendulum-v1, one per agent, shared sparse reward.
class MultiPendulum(BatchedEnv):
    obs_dim, act_dim, episode_len = 3, 1, 200
    act_low, act_high = -2.0, 2.0  # Pendulum-v1's max_torque
    G, M, L, DT, MAX_SPEED = 10.0, 1.0, 1.0, 0.05, 8.0  # Pendulum-v1's constants
    UPRIGHT = 0.2  # |normalised angle| below which a pendulum counts as upright

    def __init__(self, num_envs=1, device="cpu", dtype=torch.float32, n_agents=3, graded=False):
        if not isinstance(n_agents, int) or n_agents < 1:
            raise ValueError(f"multi_pendulum needs n_agents >= 1 pendulums, got {n_agents!r}")
        if graded and n_agents < 3:
            raise ValueError("the graded scalability reward (Fig. 6) is defined for n_agents >= 3")
        super().__init__(num_envs, device, dtype)
        self.n_agents, self.state_dim, self.graded = n_agents, 3 * n_agents, graded
        self.th = torch.zeros(num_envs, n_agents, dtype=dtype, device=self.device)  # (B, n)
        self.thdot = torch.zeros_like(self.th)
        self.levels = torch.tensor([0.0, 0.1, 0.2, 0.5] if graded else [0.0, 5.0], dtype=dtype,
                                   device=self.device)  # reward by level, see _step

    def _reset_state(self, mask):
        # Pendulum-v1: angle uniform in [-pi, pi], speed uniform in [-1, 1]
        shape = (self.num_envs, self.n_agents)
        self.th = _where(mask, self._rand(*shape, low=-math.pi, high=math.pi), self.th)
        self.thdot = _where(mask, self._rand(*shape, low=-1.0, high=1.0), self.thdot)

    def _observe(self):
        obs = torch.stack([self.th.cos(), self.th.sin(), self.thdot], -1)  # (B, n, 3)
        return obs, obs.flatten(1)

    def _step(self, actions):
        u = actions[..., 0]  # (B, n), already clipped to the max torque
        # reward from the state the action is taken in, as Pendulum-v1's cost
        upright = (angle_normalize(self.th).abs() < self.UPRIGHT).sum(-1)  # (B,) pendulums upright
        n = self.n_agents
        levels = self.levels
        if self.graded:  # our reading of Fig. 6's caption: 0.5 all, 0.2 at least 3, 0.1 at least 1
            level = (upright >= 1).long() + (upright >= 3).long() + (upright == n).long()
        else:
            level = (upright == n).long()
        reward = levels[level]
        g, m, l, dt = self.G, self.M, self.L, self.DT
        # Pendulum-v1.step, term for term
        thdot = self.thdot + (3 * g / (2 * l) * torch.sin(self.th) + 3.0 / (m * l**2) * u) * dt
        self.thdot = thdot.clamp(-self.MAX_SPEED, self.MAX_SPEED)
        self.th = self.th + self.thdot * dt
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return reward, terminated


def angle_normalize(x):
    return ((x + math.pi) % (2 * math.pi)) - math.pi


# --------------------------------------------------------------------------------------------------
# Section 5.1 "Predator-prey": MPE's simple_tag (3 slow predators learn, 1 fast prey acts at random,
# 2 landmarks) with mpe2's physics, sizes and observation layout; "PO" zeroes what is beyond 0.8.
class PredatorPrey(BatchedEnv):
    n_agents, act_dim, episode_len = 3, 2, 100
    N_PRED, N_LANDMARKS = 3, 2
    # mpe2 simple_tag / core.World constants
    DT, DAMPING, CONTACT_FORCE, CONTACT_MARGIN = 0.1, 0.25, 100.0, 1e-3
    SIZE = (0.075, 0.075, 0.075, 0.05, 0.2, 0.2)  # 3 predators, prey, 2 landmarks
    ACCEL = (3.0, 3.0, 3.0, 4.0)
    MAX_SPEED = (1.0, 1.0, 1.0, 1.3)
    CATCH_REWARD = 10.0
    SIGHT = 0.8  # PO variant: what lies farther than this is zeroed

    PREDATOR_ACTIONS = ("mpe2", "mpe5")

    def __init__(self, num_envs=1, device="cpu", dtype=torch.float32, partial=False,
                 predator_action="mpe2"):
        if predator_action not in self.PREDATOR_ACTIONS:
            raise ValueError(f"predator_action must be one of {', '.join(self.PREDATOR_ACTIONS)}, "
                             f"got {predator_action!r}")
        super().__init__(num_envs, device, dtype)
        self.partial, self.predator_action = partial, predator_action
        # "mpe5": the authors' 5-D action in [-1, 1]^5 (YiqinYang/IAC common/utils.py:34-51); "mpe2": 2-D
        self.act_dim = 5 if predator_action == "mpe5" else 2
        # obs: own vel (2), own pos (2), landmarks rel. (4), other agents rel. (6), prey vel (2)
        self.obs_dim, self.state_dim = 16, 20
        kw = dict(dtype=dtype, device=self.device)
        self.size = torch.tensor(self.SIZE, **kw)
        self.accel = torch.tensor(self.ACCEL, **kw)[None, :, None]  # (1, 4, 1)
        self.max_speed = torch.tensor(self.MAX_SPEED, **kw)[None, :]  # (1, 4)
        self.pos = torch.zeros(num_envs, 6, 2, **kw)  # (B, entities, 2): agents then landmarks
        self.vel = torch.zeros(num_envs, 4, 2, **kw)  # (B, agents, 2); landmarks never move
        self.min_dist = self.size[:, None] + self.size[None, :]  # (6, 6) contact distance
        self.not_self = ~torch.eye(6, dtype=torch.bool, device=self.device)
        # which other agents each predator sees, in mpe2's order (all agents but itself)
        self.others = torch.tensor([[j for j in range(4) if j != i] for i in range(3)], device=self.device)
        self.last_prey_action = torch.zeros(num_envs, 2, **kw)

    def _reset_state(self, mask):
        B = self.num_envs
        pos = torch.cat([self._rand(B, 4, 2, low=-1.0, high=1.0),  # agents, as simple_tag
                         self._rand(B, 2, 2, low=-0.9, high=0.9)], 1)  # landmarks
        self.pos = _where(mask, pos, self.pos)
        self.vel = _where(mask, torch.zeros_like(self.vel), self.vel)

    def _observe(self):
        B = self.num_envs
        pos, vel = self.pos, self.vel
        me = pos[:, :3]  # (B, 3, 2) predators
        rel_lm = pos[:, None, 4:] - me[:, :, None]  # (B, 3, 2, 2)
        rel_ag = pos[:, self.others] - me[:, :, None]  # (B, 3, 3, 2) other agents
        prey_vel = vel[:, None, 3].expand(B, 3, 2)  # (B, 3, 2)
        if self.partial:
            seen_lm = (rel_lm.norm(dim=-1, keepdim=True) <= self.SIGHT).to(self.dtype)
            seen_ag = (rel_ag.norm(dim=-1, keepdim=True) <= self.SIGHT).to(self.dtype)
            rel_lm, rel_ag = rel_lm * seen_lm, rel_ag * seen_ag
            prey_vel = prey_vel * seen_ag[:, :, -1]  # the prey is the last "other"
        obs = torch.cat([vel[:, :3], me, rel_lm.flatten(2), rel_ag.flatten(2), prey_vel], -1)
        state = torch.cat([pos[:, :4].flatten(1), vel.flatten(1), pos[:, 4:].flatten(1)], -1)
        return obs, state  # (B, 3, 16), (B, 20)

    def _step(self, actions):
        B = self.num_envs
        prey = self._rand(B, 1, 2, low=-1.0, high=1.0)  # the prey acts uniformly at random
        self.last_prey_action = prey[:, 0]
        if self.predator_action == "mpe5":  # old openai MPE multiagent/environment.py:173-181
            a = actions  # (B, 3, 5); a0 is ignored, the force is up to twice the 2-D action's
            actions = torch.stack([a[..., 1] - a[..., 2], a[..., 3] - a[..., 4]], -1)  # (B, 3, 2)
        force = torch.cat([actions, prey], 1) * self.accel  # (B, 4, 2) action forces
        # soft contact forces between every pair of entities, as mpe2's World.get_collision_force
        delta = self.pos[:, :, None] - self.pos[:, None, :]  # (B, 6, 6, 2), p_a - p_b
        dist = delta.norm(dim=-1)  # (B, 6, 6)
        k = self.CONTACT_MARGIN
        pen = torch.logaddexp(torch.zeros_like(dist), -(dist - self.min_dist) / k) * k
        pair = self.CONTACT_FORCE * delta / dist.masked_fill(~self.not_self, 1.0)[..., None] * pen[..., None]
        force = force + (pair * self.not_self[..., None]).sum(2)[:, :4]  # only agents move
        # mpe2 World.integrate_state (_mpe_utils/core.py:231-252): position with the OLD velocity, then
        # damping, force, speed cap; the old openai MPE the authors ran (multiagent/core.py:158-169)
        # does damping, force, speed cap, then moves with the NEW velocity. We keep mpe2's order.
        self.pos = torch.cat([self.pos[:, :4] + self.vel * self.DT, self.pos[:, 4:]], 1)
        vel = self.vel * (1 - self.DAMPING) + force * self.DT  # mass 1
        speed = vel.norm(dim=-1)  # (B, 4)
        self.vel = torch.where((speed > self.max_speed)[..., None],
                               vel / speed[..., None] * self.max_speed[..., None], vel)
        # simple_tag's adversary reward: +10 for each predator touching the prey after the move
        gap = (self.pos[:, :3] - self.pos[:, 3:4]).norm(dim=-1)  # (B, 3)
        reward = self.CATCH_REWARD * (gap < self.min_dist[:3, 3]).sum(-1).to(self.dtype)
        return reward, torch.zeros(B, dtype=torch.bool, device=self.device)


# --------------------------------------------------------------------------------------------------
def make_env(name, num_envs=1, device="cpu", dtype=torch.float32, n_agents=None, graded=False,
             predator_action=None):
    """Build a batched env by the name the command lines use. predator_action: "mpe2" (None, the
    default: 2-D force) or "mpe5" (the authors' 5-D action), predator-prey only."""
    if name not in ENV_NAMES:
        raise ValueError(f"unknown environment {name!r}; expected one of {', '.join(ENV_NAMES)}")
    if name != "multi_pendulum" and (n_agents is not None or graded):
        raise ValueError(f"n_agents and graded apply to multi_pendulum only, not {name!r}")
    if name not in ("predator_prey", "po_predator_prey") and predator_action is not None:
        raise ValueError(f"predator_action applies to predator_prey and po_predator_prey only, not {name!r}")
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating torch.dtype (torch.float32, torch.float64), got {dtype!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a torch device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but this torch build sees no CUDA GPU")
    if name == "matrix_game":
        return MatrixGame(num_envs, device, dtype)
    if name == "simple_world":
        return SimpleWorld(num_envs, device, dtype)
    if name == "multi_pendulum":
        return MultiPendulum(num_envs, device, dtype, n_agents=3 if n_agents is None else n_agents,
                             graded=graded)
    return PredatorPrey(num_envs, device, dtype, partial=name == "po_predator_prey",
                        predator_action="mpe2" if predator_action is None else predator_action)


class ParallelEnv(pettingzoo.ParallelEnv):
    """PettingZoo view of one copy of a batched env (float64 physics, float32 observations)."""

    metadata = {"name": "iac_envs", "render_modes": []}

    def __init__(self, name, **kwargs):
        self.env = make_env(name, num_envs=1, dtype=torch.float64, **kwargs)
        self.metadata = {"name": name, "render_modes": []}
        self.possible_agents = [f"agent_{i}" for i in range(self.env.n_agents)]
        self.agents = []
        inf = np.float32(np.inf)
        self._obs_space = gymnasium.spaces.Box(-inf, inf, (self.env.obs_dim,), np.float32)
        if self.env.discrete:
            self._act_space = gymnasium.spaces.Discrete(self.env.n_actions)
        else:
            self._act_space = gymnasium.spaces.Box(self.env.act_low, self.env.act_high,
                                                   (self.env.act_dim,), np.float32)
        self.state_space = gymnasium.spaces.Box(-inf, inf, (self.env.state_dim,), np.float32)
        self._state = None

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def state(self):
        return self._state

    def _split(self, obs, state):
        obs, state = obs.cpu(), state.cpu()
        self._state = state[0].numpy().astype(np.float32)
        return {a: obs[0, i].numpy().astype(np.float32) for i, a in enumerate(self.agents)}

    def reset(self, seed=None, options=None):
        if seed is None and self._state is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.agents = self.possible_agents[:]
        obs, state = self.env.reset(seed=seed)
        return self._split(obs, state), {a: {} for a in self.agents}

    def step(self, actions):
        missing = set(self.agents) - set(actions)
        if missing:
            raise ValueError(f"no action given for {sorted(missing)}")
        a = np.stack([np.asarray(actions[ag]) for ag in self.agents])[None]
        a = torch.as_tensor(a if self.env.discrete else a.astype(np.float64))
        _, _, reward, term, trunc, info = self.env.step(a)
        obs = self._split(info["final_obs"], info["final_state"])  # the episode's own last step
        r, te, tr = float(reward[0]), bool(term[0]), bool(trunc[0])
        agents = self.agents
        if te or tr:
            self.agents = []
        return (obs, {a: r for a in agents}, {a: te for a in agents}, {a: tr for a in agents},
                {a: {} for a in agents})


# --------------------------------------------------------------------------------------------------
# Your own task: any PettingZoo ParallelEnv with continuous actions, and Multi-Agent MuJoCo.
PZ_DEFAULT_EPISODE_LEN = 1000  # the wrapper's own time limit when the env states none
WARNED = set()  # the envs whose stand-in state has been reported: once per process, not per copy or wrapper
MAMUJOCO_REQUIREMENTS = "requirements-mamujoco.txt"


class EnvSpecError(ValueError):
    """An env named on the command line that cannot be trained on; the message says why."""


class EnvCallError(EnvSpecError, runlib.SaveAndStop):
    """A call into the user's env (reset(), step(), state()) failed during a run: the run saves its
    checkpoint (with --save-model) and stops with this one-line message, which names the env, the call
    and the step."""


def _import_factory(spec):
    """"pz:<module>[:<callable>]" (callable default: parallel_env) or "mamujoco:<Scenario>-<conf>"
    -> (a function that builds one ParallelEnv from keyword arguments, whether to ask it for
    continuous actions)."""
    import importlib

    kind, _, rest = spec.partition(":")
    if kind == "mamujoco":
        scenario, _, conf = rest.rpartition("-")
        if not scenario or not conf:
            raise EnvSpecError(f"--env {spec}: give mamujoco:<Scenario>-<agent_conf>, e.g. mamujoco:HalfCheetah-2x3")
        try:
            from gymnasium_robotics import mamujoco_v1
        except ImportError as e:
            raise EnvSpecError(f"--env {spec} needs Multi-Agent MuJoCo, which is not installed ({e.name} is "
                               f"missing): pip install -r {MAMUJOCO_REQUIREMENTS}") from None
        return (lambda **kw: mamujoco_v1.parallel_env(scenario, conf, **kw)), False
    module_name, _, attr = rest.partition(":")
    if kind != "pz" or not module_name:
        raise EnvSpecError(f"--env {spec}: give pz:<module>[:<callable>] (e.g. pz:mpe2.simple_spread_v3) or "
                           "mamujoco:<Scenario>-<agent_conf>")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = getattr(e, "name", None) or module_name
        raise EnvSpecError(f"--env {spec}: cannot import {module_name!r} ({missing} is not installed or does "
                           "not exist); install the package that provides it") from None
    attr = attr or "parallel_env"
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EnvSpecError(f"--env {spec}: module {module_name!r} has no callable {attr!r}")
    return factory, True


def _builds_with(factory, kwargs, ask_continuous):
    """Call factory(**kwargs), asking MPE-style factories (continuous_actions=False by default) for
    continuous actions where they may take the keyword; a factory that refuses it is called without."""
    import inspect

    kwargs = dict(kwargs)
    if ask_continuous and "continuous_actions" not in kwargs:
        try:
            params = inspect.signature(factory).parameters
            takes = "continuous_actions" in params or any(p.kind == p.VAR_KEYWORD for p in params.values())
        except (TypeError, ValueError):
            takes = False
        if takes:
            try:
                return factory(**kwargs, continuous_actions=True)
            except Exception as e:  # noqa: BLE001 -- any refusal of the keyword: build it as given
                if "continuous_actions" not in str(e):
                    raise EnvSpecError(f"building the env failed: {type(e).__name__}: {e}") from None
    try:
        return factory(**kwargs)
    except Exception as e:  # noqa: BLE001 -- the user's env: report, do not trace back into it
        raise EnvSpecError(f"building the env with {kwargs or 'no keyword arguments'} failed: "
                           f"{type(e).__name__}: {e}") from None


class PettingZooBatch:
    """B copies of a PettingZoo ParallelEnv with Box actions, behind the batched interface above.

    The copies are Python envs, stepped one after another (bench/envs.py measures what that costs).
    obs (B, n, o): each agent's observation, zero-padded to the largest; state: env.state() where the
    env has one (use_state=False, for --mixer-state obs: state() is never called), else the observations
    side by side; reward: the mean (or sum) of the agents' rewards; an episode ends when every agent is
    done (terminated if all terminated, else truncated), or after `episode_len` steps (the env's
    max_cycles / max_episode_steps, else PZ_DEFAULT_EPISODE_LEN). Resets draw their seeds from this env's
    own generator, so seeding reproduces the episodes.

    Real envs are uneven, and what each of their failures does is decided here, once:
      * whether the env has a state is decided when the wrapper is built: no state() method, or a
        state() that raises NotImplementedError there (pettingzoo.ParallelEnv's own), means none;
      * a state() that fails (raises, or returns another size) on the last step of an episode that
        ended by *termination*: that transition's next state is never bootstrapped from (the TD target
        multiplies it by 1 - terminated), so the copy's last good state stands in, with one warning
        (SISL's multiwalker tears its bodies down when a walker falls, and its state() then raises);
      * a state() that fails anywhere else (at a reset, mid-episode, at a truncation, whose next state
        *is* bootstrapped from) stops the run with EnvCallError, suggesting --mixer-state obs;
      * reset() or step() raising stops the run with EnvCallError, naming the call and the step."""

    act_dtype = np.float32
    n_actions = 0
    discrete = False

    def __init__(self, spec, num_envs=1, device="cpu", dtype=torch.float32, env_kwargs=None, team_reward="mean",
                 render_mode=None, use_state=True):
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if team_reward not in ("mean", "sum"):
            raise ValueError(f"team_reward must be 'mean' or 'sum', got {team_reward!r}")
        factory, ask_continuous = _import_factory(spec)
        self.spec, self.team_reward = spec, team_reward
        self.num_envs, self.device, self.dtype = num_envs, torch.device(device), dtype
        kwargs = dict(env_kwargs or {}, **({"render_mode": render_mode} if render_mode else {}))
        self.envs = [_builds_with(factory, kwargs, ask_continuous) for _ in range(num_envs)]
        env = self.envs[0]
        if not isinstance(env, pettingzoo.ParallelEnv) and not hasattr(env, "possible_agents"):
            raise EnvSpecError(f"--env {spec} built a {type(env).__name__}, not a PettingZoo ParallelEnv")
        self.agents = list(env.possible_agents)
        self.n_agents = len(self.agents)
        spaces = [env.action_space(a) for a in self.agents]
        bad = [f"{a}: {s}" for a, s in zip(self.agents, spaces) if not isinstance(s, gymnasium.spaces.Box)]
        if bad:
            raise EnvSpecError(f"--env {spec} has non-continuous action spaces ({'; '.join(bad)}); IAC's "
                               "policy is a Gaussian over continuous actions. Discrete actions: the built-in "
                               "matrix game (baselines.py --algo qmix --env matrix_game)")
        shapes = {s.shape for s in spaces}
        if len(shapes) > 1 or len(next(iter(shapes))) != 1:
            raise EnvSpecError(f"--env {spec}: the agents' actions must be vectors of one size, got "
                               f"{', '.join(f'{a}: {s.shape}' for a, s in zip(self.agents, spaces))}")
        self.act_dim = spaces[0].shape[0]
        bounds = lambda key: torch.tensor(np.stack([getattr(s, key) for s in spaces]), dtype=dtype, device=self.device)
        self.act_low, self.act_high = bounds("low"), bounds("high")  # (n, d), per agent and dimension
        if not (torch.isfinite(self.act_low).all() and torch.isfinite(self.act_high).all()):
            raise EnvSpecError(f"--env {spec}: unbounded action spaces; the policy's tanh needs finite bounds")
        obs_spaces = [env.observation_space(a) for a in self.agents]
        if any(len(s.shape) != 1 for s in obs_spaces):
            raise EnvSpecError(f"--env {spec}: observations must be vectors, got "
                               f"{', '.join(str(s.shape) for s in obs_spaces)}")
        self.obs_sizes = [s.shape[0] for s in obs_spaces]
        self.obs_dim = max(self.obs_sizes)
        self.has_state = use_state and callable(getattr(env, "state", None))  # else: the observations side by side
        self.state_dim = None  # decided by the first reset, below
        self.last_state, self.steps = [None] * num_envs, 0
        self.gen = torch.Generator()
        obs, state = self.reset(seed=0)
        self.state_dim = state.shape[-1]
        limit = getattr(env.unwrapped, "max_cycles", None) or getattr(getattr(env, "spec", None), "max_episode_steps", None)
        self.episode_len = int(limit) if limit else PZ_DEFAULT_EPISODE_LEN

    def _seed(self):
        return int(torch.randint(2**31 - 1, (), generator=self.gen))

    def _obs(self, i, env, obs, when):
        """Copy i's observations (n, o) and state after `when`: "reset", "step" (mid-episode),
        "terminated" or "truncated" (the last step of an episode)."""
        missing = [a for a in self.agents if a not in obs]
        if missing:
            raise EnvSpecError(f"--env {self.spec}: agent(s) {', '.join(missing)} left mid-episode; the "
                               "joint policy needs every agent at every step")
        out = np.zeros((self.n_agents, self.obs_dim), dtype=np.float32)
        for j, a in enumerate(self.agents):
            out[j, : self.obs_sizes[j]] = obs[a]
        state = self._state(i, env, when) if self.has_state else None
        return out, out.ravel() if state is None else state

    def _state(self, i, env, when):
        try:
            state = np.asarray(env.state(), dtype=np.float32).ravel()
        except NotImplementedError:
            if self.state_dim is None:  # at the first reset: pettingzoo.ParallelEnv's own state() says there is none
                self.has_state = False
                return None
            problem = "raised NotImplementedError (it had a state when the run began)"
        except Exception as e:  # noqa: BLE001 -- the env's own state(): every outcome is one of the cases below
            problem = f"raised {type(e).__name__}: {e}"
        else:
            if self.state_dim is None:  # the first state decides the size
                self.state_dim = state.size
            if state.shape == (self.state_dim,):
                self.last_state[i] = state
                return state
            problem = f"returned {state.size} numbers, not the {self.state_dim} it returned at the first reset"
        if when == "terminated" and self.last_state[i] is not None:
            if self.spec not in WARNED:
                print(f"warning: --env {self.spec}: state() {problem} on the last step of an episode that ended by "
                      "termination; that transition's next state is never bootstrapped from (the TD target "
                      "multiplies it by 1 - terminated), so the copy's last good state stands in (said once)",
                      file=sys.stderr)
                WARNED.add(self.spec)
            return self.last_state[i]
        where = {"reset": "at a reset", "step": "mid-episode", "truncated": "on the last step of an episode cut by "
                 "the time limit, whose next state the TD target bootstraps from", "terminated": "at the first step"}
        raise EnvCallError(f"--env {self.spec}: state() {problem} {where[when]} (copy {i}, step {self.steps} of this env). "
                           "Pass --mixer-state obs to use the agents' observations side by side as the state")

    def _call(self, i, name, fn, *args, **kwargs):
        """The env's reset() or step(): a failure stops the run with one line naming the call and the step."""
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- the user's env: its failure is reported, not traced back into
            raise EnvCallError(f"--env {self.spec}: {name}() of copy {i} raised {type(e).__name__}: {e} (step "
                               f"{self.steps} of this env)") from None

    def _tensor(self, x):
        return torch.as_tensor(np.stack(x), dtype=self.dtype, device=self.device)

    def reset(self, seed=None):
        if seed is not None:
            self.gen.manual_seed(int(seed))
        firsts = [self._obs(i, env, self._call(i, "reset", env.reset, seed=self._seed())[0], "reset")
                  for i, env in enumerate(self.envs)]
        self.t = torch.zeros(self.num_envs, dtype=torch.long)
        return self._tensor([o for o, _ in firsts]), self._tensor([s for _, s in firsts])

    def step(self, actions, check=True):
        actions = torch.as_tensor(actions)
        B, n, d = self.num_envs, self.n_agents, self.act_dim
        if actions.shape != (B, n, d):
            raise ValueError(f"expected actions of shape ({B}, {n}, {d}) = (num_envs, n_agents, act_dim), got "
                             f"{tuple(actions.shape)}")
        actions = actions.to(self.act_low.device, self.dtype).clamp(self.act_low, self.act_high)
        acts = actions.cpu().numpy().astype(self.act_dtype)
        obs, state, final_obs, final_state, rew, term, trunc = [], [], [], [], [], [], []
        self.steps += 1
        for i, env in enumerate(self.envs):
            o, r, te, tr, _ = self._call(i, "step", env.step, {a: acts[i, j] for j, a in enumerate(self.agents)})
            done_agents = [a for a in self.agents if te.get(a, False) or tr.get(a, False)]
            if done_agents and len(done_agents) < n:
                raise EnvSpecError(f"--env {self.spec}: agent(s) {', '.join(done_agents)} ended while the others "
                                   "go on; the joint policy needs every agent at every step")
            self.t[i] += 1
            ended_all = all(te.get(a, False) for a in self.agents)
            out_of_time = bool(done_agents) or int(self.t[i]) >= self.episode_len
            fo, fs = self._obs(i, env, o, "terminated" if ended_all else "truncated" if out_of_time else "step")
            rewards = [float(r.get(a, 0.0)) for a in self.agents]
            rew.append(sum(rewards) / (n if self.team_reward == "mean" else 1))
            term.append(ended_all)
            trunc.append(out_of_time and not ended_all)
            final_obs.append(fo)
            final_state.append(fs)
            if ended_all or out_of_time:
                fo, fs = self._obs(i, env, self._call(i, "reset", env.reset, seed=self._seed())[0], "reset")
                self.t[i] = 0
            obs.append(fo)
            state.append(fs)
        as_bool = lambda x: torch.tensor(x, dtype=torch.bool, device=self.device)
        info = {"final_obs": self._tensor(final_obs), "final_state": self._tensor(final_state)}
        return (self._tensor(obs), self._tensor(state), torch.tensor(rew, dtype=self.dtype, device=self.device),
                as_bool(term), as_bool(trunc), info)

    def frame(self):
        """The first copy's picture (built with render_mode="rgb_array"): an (H, W, 3) uint8 array."""
        img = self.envs[0].render()
        if not isinstance(img, np.ndarray) or img.ndim != 3:
            raise EnvSpecError(f"--env {self.spec}: render() gave {type(img).__name__}, not an RGB image; "
                               "the env does not draw with render_mode='rgb_array'")
        return img.astype(np.uint8)

    def state_dict(self):
        """The generator only: a Python env's episode cannot be saved, so a resumed run restarts them
        (reset() after load_state_dict draws their seeds from the restored generator)."""
        return {"gen": self.gen.get_state(), "pettingzoo": True}

    def load_state_dict(self, sd, restore_gen=True):
        if restore_gen:
            self.gen.set_state(sd["gen"])

    def close(self):
        for env in self.envs:
            env.close()


# --------------------------------------------------------------------------------------------------
# From the command line of iac.py / baselines.py to an env: --env, --env-kwargs, --team-reward,
# --n-agents, --graded-reward, --predator-action.
BUILTIN = tuple(e for e in ENV_NAMES if e != "matrix_game")  # the continuous ones


def own_env(args):
    return args.env.startswith(("pz:", "mamujoco:"))


def parse_env_kwargs(items):
    """--env-kwargs KEY=VALUE ... -> dict, values as Python literals where they parse."""
    import ast

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.isidentifier():
            raise ValueError(f"--env-kwargs {item!r}: give KEY=VALUE, e.g. max_cycles=50")
        if key in out:
            raise ValueError(f"--env-kwargs gives {key} twice; give each key once")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def check_args(p, args):
    """A built-in env name with the flags that apply to it, or a pz: / mamujoco: env that builds and can
    be trained on (its sizes are kept in args.own_env_sizes for the checks that follow)."""
    if own_env(args):
        try:
            env = PettingZooBatch(args.env, 1, env_kwargs=parse_env_kwargs(args.env_kwargs), team_reward=args.team_reward,
                                  use_state=args.mixer_state != "obs")
        except ValueError as e:
            p.error(str(e))
        args.own_env_sizes = (env.n_agents, env.act_dim, env.obs_dim, env.state_dim)
        env.close()
    else:
        if args.env not in BUILTIN:
            hint = " (the matrix game trains with baselines.py --algo qmix or qmixs)" if args.env == "matrix_game" else ""
            p.error(f"--env {args.env!r}: expected one of {', '.join(BUILTIN)}, pz:<module>[:<callable>] or "
                    f"mamujoco:<Scenario>-<conf>{hint}")
        for name in ("env_kwargs", "team_reward"):
            if name in args.explicit:
                p.error(f"--{name.replace('_', '-')} applies to pz: and mamujoco: envs only, not --env {args.env}")
    if args.env != "multi_pendulum" and (args.n_agents is not None or args.graded_reward):
        p.error("--n-agents and --graded-reward apply to --env multi_pendulum only")
    if args.n_agents is not None and args.n_agents < 1:
        p.error(f"--n-agents must be >= 1, got {args.n_agents}")
    if args.graded_reward and (args.n_agents or 3) < 3:
        p.error("--graded-reward (Fig. 6) needs --n-agents >= 3")
    if args.predator_action != "mpe2" and "predator_prey" not in args.env:
        p.error(f"--predator-action {args.predator_action} applies to predator-prey only, not --env {args.env}")


def sizes(args):
    """(n agents, d action dims, o observation dims, S state dims) of the env the flags name, unbuilt."""
    if own_env(args):
        return args.own_env_sizes
    if args.env == "simple_world":
        return 2, 1, 1, 1
    if args.env == "multi_pendulum":
        n = args.n_agents or 3
        return n, 1, 3, 3 * n
    return 3, 5 if getattr(args, "predator_action", "mpe2") == "mpe5" else 2, 16, 20


def from_args(args, num_envs, device, render_mode=None):
    """The batched env (num_envs copies) the flags name."""
    if own_env(args):
        return PettingZooBatch(args.env, num_envs, device, env_kwargs=parse_env_kwargs(args.env_kwargs),
                               team_reward=args.team_reward, render_mode=render_mode,
                               use_state=getattr(args, "mixer_state", "env") != "obs")
    kw = dict(n_agents=args.n_agents, graded=args.graded_reward) if args.env == "multi_pendulum" else {}
    if getattr(args, "predator_action", "mpe2") != "mpe2":
        kw["predator_action"] = args.predator_action
    return make_env(args.env, num_envs=num_envs, device=device, **kw)
