"""Interactive Actor-Critic (IAC), the reference implementation.

Ma et al., "Modeling the Interaction between Agents in Cooperative Multi-Agent Reinforcement Learning",
arXiv 2102.06042. This one file holds the whole method:
  * the joint stochastic policy with collaborative exploration, Section 4.1, Eq. (12)-(15): per-agent
    Gaussian heads mu_i(o_i), sigma_i(o_i) plus a low-rank covariance factor L = f_psi(s);
  * the shared-attention per-agent critics Q_i(o, u), Section 4.2, Eq. (19)-(21);
  * the QMIX mixer, Eq. (22), trained on the soft TD target of Eq. (23)-(24);
  * three switches (--policy, --critic, --mixer) that turn IAC into the paper's ablations (SQ, SIQ,
    SIAQ, Attn-QMIX, DDPG-MIX) and into the per-agent-critic setting of MADDPG / MAAC; `baselines.py`
    names those presets.

    python iac.py --env predator_prey            # train; logs under runs/, see README.md
    python iac.py --eval-only --checkpoint runs/<run>/checkpoint.pt --capture-video

Shapes: B batch, n agents, o observation dim, S state dim, d action dim per agent, m rank of L.
Actions inside the algorithm are in [-1, 1]^d (tanh space); they are scaled to the env's bounds only
when the env is stepped.
"""

import argparse
import csv
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import LowRankMultivariateNormal, Normal

import envs

# default training budget (env steps) per env, when --total-steps is not given; see README "Budgets"
DEFAULT_STEPS = {"simple_world": 3_000, "multi_pendulum": 200_000, "predator_prey": 200_000,
                 "po_predator_prey": 200_000}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Train IAC (arXiv 2102.06042) or one of its ablations on a batched env. With no "
        "flags beyond --env, predator_prey trains for 200k env steps, about an hour on one CPU core "
        "(~50-60 updates/s). Measured (2 seeds): the evaluation return dips from the random policy's ~13 "
        "to ~0 by 10k steps, climbs from 25k and holds ~55 from 100k on, far below the 1000 the paper "
        "reports within 2M steps (not run here). README 'Results' has the curve.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--env", default="predator_prey", choices=[e for e in envs.ENV_NAMES if e != "matrix_game"],
      help="environment of Section 5.1 (the matrix game of Section 3 is in baselines.py)")
    a("--n-agents", type=int, default=None, help="multi_pendulum only: number of pendulums n (default 3)")
    a("--graded-reward", action="store_true",
      help="multi_pendulum only: the graded reward of the scalability experiment, Fig. 6")
    a("--exp-name", default="iac", help="name of the run; logs go to runs/<env>__<exp-name>__<seed>")
    a("--seed", type=int, default=1, help="seed of torch, the envs and the replay sampling")
    a("--cuda", action="store_true", help="put envs, replay buffer and networks on the GPU")
    a("--total-steps", type=int, default=None,
      help=f"env steps to train, counted over all copies (default per env: {DEFAULT_STEPS})")
    a("--num-envs", type=int, default=1, help="B parallel env copies; one step of each counts as one")
    # --- the method grid, ../shared/DESIGN.md section 1 ---
    a("--policy", default="joint", choices=["joint", "independent", "deterministic"],
      help="joint: Gaussian with collaborative exploration, Eq. (14); independent: per-agent "
      "Gaussians, Eq. (25); deterministic: mu_i(o_i) plus Gaussian exploration noise (DDPG)")
    a("--critic", default="attention", choices=["attention", "individual", "centralized"],
      help="per-agent critic Q_i: attention over the other agents, Eq. (19)-(21); individual "
      "Q_i(o_i, u_i); centralized Q_i(o, u) as MADDPG")
    a("--mixer", default="qmix", choices=["qmix", "none"],
      help="qmix: Q_tot = MIX(Q_1..Q_n, s), Eq. (22); none: each Q_i regresses the team reward")
    a("--others-actions", default="policy", choices=["policy", "buffer"],
      help="--mixer none: the other agents' actions in agent i's policy gradient: the current "
      "policies' (MAAC) or the replay buffer's (MADDPG)")
    a("--rank", type=int, default=2,
      help="rank m of the collaborative exploration matrix L (nd x m), Eq. (12) (authors' code: 1)")
    # --- networks ---
    a("--hidden", type=int, default=64, help="width of every per-agent MLP layer (2 layers)")
    a("--heads", type=int, default=4, help="attention heads of the critic, Section 4.2")
    a("--mixer-embed", type=int, default=32, help="embedding size of the QMIX mixer, Eq. (22)")
    # --- optimisation ---
    a("--gamma", type=float, default=0.95, help="discount gamma, Eq. (24)")
    a("--actor-lr", type=float, default=1e-4, help="learning rate of theta and psi, Eq. (15)")
    a("--critic-lr", type=float, default=1e-3, help="learning rate of critics and mixer, Eq. (23)")
    a("--batch-size", type=int, default=256, help="minibatch size |b| of Eq. (23)")
    a("--buffer-size", type=int, default=500_000, help="replay buffer D capacity (transitions)")
    a("--learning-starts", type=int, default=2_000, help="env steps of uniform random actions first")
    a("--updates-per-step", type=float, default=1.0, help="gradient updates per env step (UTD ratio)")
    a("--tau", type=float, default=0.01,
      help="Polyak rate of the target networks; tau = 1 with --target-update-interval T gives "
      "Algorithm 1's hard copy every T updates")
    a("--target-update-interval", type=int, default=1, help="updates between target updates, T")
    a("--alpha", type=float, default=None,
      help="fix the entropy temperature alpha of Eq. (8); by default it is learned (SAC v2)")
    a("--alpha-lr", type=float, default=3e-4, help="learning rate of log alpha")
    a("--exploration-noise", type=float, default=0.1,
      help="--policy deterministic: std of the Gaussian noise added to tanh(mu) in [-1, 1] units")
    a("--grad-clip", type=float, default=10.0, help="max gradient norm of each optimiser step")
    # --- evaluation, logging, checkpoints ---
    a("--eval-every", type=int, default=1_000, help="env steps between deterministic evaluations")
    a("--eval-episodes", type=int, default=10, help="episodes per evaluation (run as one batch)")
    a("--save-model", action="store_true", help="write runs/<run>/checkpoint.pt (also periodically)")
    a("--checkpoint-every", type=int, default=25_000, help="env steps between checkpoints")
    a("--resume", default=None, metavar="PATH", help="continue the run saved in this checkpoint")
    a("--eval-only", action="store_true", help="only evaluate the policy in --checkpoint")
    a("--checkpoint", default=None, metavar="PATH", help="checkpoint for --eval-only")
    a("--capture-video", action="store_true",
      help="with --eval-only: write a GIF of one deterministic episode (predator-prey only)")
    a("--runs-dir", default="runs", help="folder of the run folders")
    a("--no-progress", action="store_true", help="no progress line on the terminal")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p, args):
    """Reject bad flag values at once, with a message that names the flag."""
    if args.cuda and not torch.cuda.is_available():
        p.error("--cuda was given but torch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if args.eval_only:
        if not args.checkpoint:
            p.error("--eval-only needs --checkpoint PATH")
        if not os.path.isfile(args.checkpoint):
            p.error(f"--checkpoint {args.checkpoint}: no such file")
        return
    if args.capture_video:
        p.error("--capture-video works with --eval-only --checkpoint PATH")
    if args.resume and not os.path.isfile(args.resume):
        p.error(f"--resume {args.resume}: no such file")
    if args.env != "multi_pendulum" and (args.n_agents is not None or args.graded_reward):
        p.error("--n-agents and --graded-reward apply to --env multi_pendulum only")
    if args.n_agents is not None and args.n_agents < 1:
        p.error(f"--n-agents must be >= 1, got {args.n_agents}")
    if args.graded_reward and (args.n_agents or 3) < 3:
        p.error("--graded-reward (Fig. 6) needs --n-agents >= 3")
    for flag in ("num_envs", "batch_size", "buffer_size", "eval_every", "eval_episodes", "hidden",
                 "heads", "mixer_embed", "checkpoint_every", "target_update_interval"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be >= 1, got {getattr(args, flag)}")
    for flag in ("total_steps", "learning_starts"):
        if getattr(args, flag) is not None and getattr(args, flag) < 0:
            p.error(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}")
    for flag in ("actor_lr", "critic_lr", "alpha_lr", "updates_per_step"):
        if not getattr(args, flag) > 0:
            p.error(f"--{flag.replace('_', '-')} must be > 0, got {getattr(args, flag)}")
    if not 0 <= args.gamma < 1:
        p.error(f"--gamma must be in [0, 1), got {args.gamma}")
    if not 0 < args.tau <= 1:
        p.error(f"--tau must be in (0, 1], got {args.tau}")
    if args.alpha is not None and args.alpha < 0:
        p.error(f"--alpha must be >= 0, got {args.alpha}")
    if args.batch_size > args.buffer_size:
        p.error(f"--batch-size {args.batch_size} is larger than --buffer-size {args.buffer_size}")
    if args.hidden % args.heads:
        p.error(f"--hidden {args.hidden} must be a multiple of --heads {args.heads}")
    n, d = env_sizes(args)
    if args.policy == "joint" and not 1 <= args.rank <= n * d:
        p.error(f"--rank m must be in 1..n*d = {n * d} for {args.env} (Eq. 12: L is nd x m), "
                f"got {args.rank}")


def env_sizes(args):
    """(n agents, d action dims) of the env the flags name, without building it."""
    return {"simple_world": (2, 1), "predator_prey": (3, 2), "po_predator_prey": (3, 2)}.get(
        args.env, (args.n_agents or 3, 1))


def make_env(args, num_envs, device):
    kw = dict(n_agents=args.n_agents, graded=args.graded_reward) if args.env == "multi_pendulum" else {}
    return envs.make_env(args.env, num_envs=num_envs, device=device, **kw)


# ----------------------------------------------------------------------------------------------------
# Per-agent networks run for all agents at once: one weight tensor (n, in, out) instead of n Linears.
class AgentLinear(nn.Module):
    def __init__(self, n, fan_in, fan_out):
        super().__init__()
        bound = 1 / math.sqrt(fan_in)  # nn.Linear's default init, agent by agent
        self.weight = nn.Parameter(torch.empty(n, fan_in, fan_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, fan_out).uniform_(-bound, bound))

    def forward(self, x):  # (..., n, in) -> (..., n, out)
        lead = x.shape[:-2]
        x = x.reshape(-1, *x.shape[-2:]).transpose(0, 1)  # (n, B, in): one matmul per agent, batched
        y = torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)  # (n, B, out)
        return y.transpose(0, 1).reshape(*lead, y.shape[0], y.shape[2])


def agent_mlp(n, sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [AgentLinear(n, sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


def mlp(sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [nn.Linear(sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's SAC bounds on the state-dependent log-std


def squash_log_prob(x):
    """log |det d tanh(x)/dx| per element, in the stable form 2 (log 2 - x - softplus(-2x))."""
    return 2 * (math.log(2) - x - F.softplus(-2 * x))


# ----------------------------------------------------------------------------------------------------
# Section 4.1: the joint stochastic policy with collaborative exploration.
class Actor(nn.Module):
    """pi(u | o, s). joint: x = mu(o) + sigma(o) eps_N + L(s) eps_M, Eq. (14), u = tanh(x);
    independent: L = 0, Eq. (25); deterministic: u = tanh(mu(o)) (+ noise, added by the caller).
    Execution uses tanh(mu_i(o_i)) only, so agent i needs nothing but its own observation."""

    def __init__(self, n, obs_dim, state_dim, d, hidden, policy, rank):
        super().__init__()
        self.n, self.d, self.policy, self.rank = n, d, policy, rank
        out = d if policy == "deterministic" else 2 * d  # mu_i and log sigma_i
        self.net = agent_mlp(n, [obs_dim, hidden, hidden, out])  # theta_i, one per agent
        if policy == "joint":
            # f_psi(s) of Eq. (13): the collaborative exploration matrix from the global state
            self.f_psi = mlp([state_dim, hidden, hidden, n * d * rank])

    def mean(self, obs):  # (B, n, o) -> (B, n, d), in tanh space
        return torch.tanh(self.net(obs)[..., : self.d])

    def distribution(self, obs, state):
        """Pre-squash distribution of x: (B, nd) low-rank Gaussian (joint) or (B, n, d) Normal."""
        mu, log_std = self.net(obs).split(self.d, -1)  # (B, n, d) each
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        if self.policy == "independent":
            return Normal(mu, log_std.exp(), validate_args=False)
        B = obs.shape[0]
        L = self.f_psi(state).view(B, self.n * self.d, self.rank)  # (B, nd, m), Eq. (13)
        # Sigma = L L^T + D, Eq. (12); D = diag(sigma^2) from the agents' own heads
        return LowRankMultivariateNormal(mu.flatten(1), cov_factor=L, cov_diag=(2 * log_std).exp().flatten(1),
                                         validate_args=False)

    def sample(self, obs, state):
        """Reparameterised u (B, n, d) in [-1, 1] and log pi(u | o, s): (B,) joint, (B, n) independent."""
        dist = self.distribution(obs, state)
        x = dist.rsample()
        if self.policy == "joint":
            # log pi(u) = log N_LM(x) - sum over all nd dims of log(1 - tanh(x)^2)
            log_prob = dist.log_prob(x) - squash_log_prob(x).sum(-1)
            return torch.tanh(x).view(*obs.shape[:2], self.d), log_prob
        log_prob = (dist.log_prob(x) - squash_log_prob(x)).sum(-1)  # (B, n), per agent
        return torch.tanh(x), log_prob

    def covariance(self, obs, state):
        """Sigma = L L^T + D of the pre-squash joint Gaussian, (B, nd, nd); Fig. 5."""
        dist = self.distribution(obs, state)
        if self.policy == "independent":
            return torch.diag_embed(dist.variance.flatten(1))
        return dist.covariance_matrix


# ----------------------------------------------------------------------------------------------------
# Section 4.2: per-agent critics Q_i. Every critic maps (o (B, n, o), u (B, n, d)) -> Q (B, n).
class AttentionCritic(nn.Module):
    """Q_i(o, u) = f_i(e_i, x_i), e_i = g_i(o_i, u_i), x_i = sum_{j != i} alpha_j h(V e_j), Eq. (19)-(21).
    g_i and f_i are per agent; W_q, W_k and V are shared across agents, as in MAAC."""

    def __init__(self, n, obs_dim, d, hidden, heads):
        super().__init__()
        self.heads = heads
        self.g = nn.Sequential(AgentLinear(n, obs_dim + d, hidden), nn.LeakyReLU())  # e_i
        self.W_q = nn.Linear(hidden, hidden, bias=False)
        self.W_k = nn.Linear(hidden, hidden, bias=False)
        self.V = nn.Sequential(nn.Linear(hidden, hidden, bias=False), nn.LeakyReLU())  # h(V e_j)
        self.f = agent_mlp(n, [2 * hidden, hidden, 1])
        self.register_buffer("others", ~torch.eye(n, dtype=torch.bool))  # j != i

    def attention(self, e, e_kv=None):
        """x_i (B, n, hidden) and the attention logits (B, heads, n, n) over the other agents.
        Queries come from e, keys and values from e_kv (IAC: both are e_i = g_i(o_i, u_i))."""
        e_kv = e if e_kv is None else e_kv
        B, n, h = e.shape
        split = lambda t: t.view(B, n, self.heads, h // self.heads).transpose(1, 2)  # (B, H, n, h/H)
        q, k, v = split(self.W_q(e)), split(self.W_k(e_kv)), split(self.V(e_kv))
        logits = q @ k.transpose(-1, -2) / math.sqrt(h // self.heads)  # (B, H, n, n), Eq. (21)
        logits = logits.masked_fill(~self.others, float("-inf"))
        # with one agent there is nobody to attend to: the weights of an all-masked row become 0
        alpha = torch.nan_to_num(logits.softmax(-1)) if n == 1 else logits.softmax(-1)
        x = (alpha @ v).transpose(1, 2).reshape(B, n, h)  # Eq. (20)
        return x, logits

    def forward(self, obs, act):
        e = self.g(torch.cat([obs, act], -1))  # (B, n, hidden), e_i = g_i(o_i, u_i)
        x, _ = self.attention(e)
        return self.f(torch.cat([e, x], -1)).squeeze(-1)  # (B, n), Eq. (19)


class IndividualCritic(nn.Module):
    """Q_i(o_i, u_i): agent i sees only its own observation and action (QMIX's per-agent utility)."""

    def __init__(self, n, obs_dim, d, hidden):
        super().__init__()
        self.q = agent_mlp(n, [obs_dim + d, hidden, hidden, 1])

    def forward(self, obs, act):
        return self.q(torch.cat([obs, act], -1)).squeeze(-1)


class CentralizedCritic(nn.Module):
    """Q_i(o, u): one MLP per agent over every observation and action (MADDPG's critic)."""

    def __init__(self, n, obs_dim, d, hidden):
        super().__init__()
        self.n = n
        self.q = agent_mlp(n, [n * (obs_dim + d), hidden, hidden, 1])

    def forward(self, obs, act):
        joint = torch.cat([obs, act], -1).flatten(-2)  # (B, n (o + d))
        return self.q(joint.unsqueeze(-2).expand(*joint.shape[:-1], self.n, -1)).squeeze(-1)


class QMixer(nn.Module):
    """Q_tot = MIX(Q_1..Q_n, s), Eq. (22): QMIX's hypernetworks, |weights| keep dQ_tot/dQ_i >= 0, Eq. (3)."""

    def __init__(self, n, state_dim, embed):
        super().__init__()
        self.n, self.embed = n, embed
        self.hyper_w1 = nn.Linear(state_dim, n * embed)
        self.hyper_b1 = nn.Linear(state_dim, embed)
        self.hyper_w2 = nn.Linear(state_dim, embed)
        self.V = mlp([state_dim, embed, 1])  # state-dependent bias V(s)

    def forward(self, q, state):  # (B, n), (B, S) -> (B,)
        w1 = self.hyper_w1(state).abs().view(-1, self.n, self.embed)  # (B, n, E)
        hidden = F.elu(torch.einsum("bn,bne->be", q, w1) + self.hyper_b1(state))  # (B, E)
        return (hidden * self.hyper_w2(state).abs()).sum(-1) + self.V(state).squeeze(-1)


class Critic(nn.Module):
    """The value side: per-agent critics and, with --mixer qmix, the mixer on top."""

    def __init__(self, args, n, obs_dim, state_dim, d, make_q=None):
        super().__init__()
        if make_q is not None:  # a per-agent critic from elsewhere (baselines.py: MAAC's)
            self.q = make_q(args, n, obs_dim, d)
        elif args.critic == "attention":
            self.q = AttentionCritic(n, obs_dim, d, args.hidden, args.heads)
        elif args.critic == "individual":
            self.q = IndividualCritic(n, obs_dim, d, args.hidden)
        else:
            self.q = CentralizedCritic(n, obs_dim, d, args.hidden)
        self.mixer = QMixer(n, state_dim, args.mixer_embed) if args.mixer == "qmix" else None

    def forward(self, obs, state, act):
        """Q_tot (B,) with the mixer, else the per-agent Q_i (B, n)."""
        q = self.q(obs, act)
        return q if self.mixer is None else self.mixer(q, state)


# ----------------------------------------------------------------------------------------------------
# The losses. `batch` holds obs (B, n, o), state (B, S), act (B, n, d), rew (B,), next_obs,
# next_state, term (B,); with --mixer none the values are per agent (B, n) and the reward broadcasts.
def joint_log_prob(log_prob, mixer):
    """log pi as the value side needs it: the joint (B,) under a mixer, per agent (B, n) without one."""
    if mixer is None:
        return log_prob if log_prob.dim() == 2 else log_prob.unsqueeze(-1)
    return log_prob if log_prob.dim() == 1 else log_prob.sum(-1)


def td_target(batch, actor, actor_target, critic_target, alpha, gamma, policy):
    # Eq. (24), soft form: y = r + gamma (1 - terminated) (Q_tot'(o', u', s') - alpha log pi(u' | o', s')).
    # u' comes from the current policy (SAC convention) for stochastic policies and from the target
    # policy pi^- (Algorithm 1 line 15, DDPG convention) for the deterministic one.
    with torch.no_grad():
        if policy == "deterministic":
            next_act, entropy_term = actor_target.mean(batch["next_obs"]), 0.0
        else:
            next_act, log_prob = actor.sample(batch["next_obs"], batch["next_state"])
            entropy_term = alpha * joint_log_prob(log_prob, critic_target.mixer)
        next_q = critic_target(batch["next_obs"], batch["next_state"], next_act) - entropy_term
        not_done = 1.0 - batch["term"]
        if next_q.dim() == 2:  # per-agent critics: every Q_i regresses the team reward
            return batch["rew"][:, None] + gamma * not_done[:, None] * next_q
        return batch["rew"] + gamma * not_done * next_q


def critic_loss(batch, critic, y):
    # Eq. (23): squared TD error of Q_tot (or of each Q_i with --mixer none)
    loss = F.mse_loss(critic(batch["obs"], batch["state"], batch["act"]), y)
    if hasattr(critic.q, "aux_loss"):  # a regulariser of the critic's own (MAAC's attention logits)
        loss = loss + critic.q.aux_loss()
    return loss


def policy_loss(batch, actor, critic, alpha, policy, others_actions="policy"):
    # Eq. (15): E[alpha log pi(u | o, s) - Q_tot(o, u, s)], u reparameterised through mu, sigma and L.
    # (The authors' code uses the mean of the Q_i instead of Q_tot; the paper says Q_tot.)
    obs, state = batch["obs"], batch["state"]
    if policy == "deterministic":
        act, log_prob = actor.mean(obs), None
    else:
        act, log_prob = actor.sample(obs, state)
    if critic.mixer is None:
        # no Q_tot: agent i follows its own Q_i with the other agents' actions held fixed: the
        # current policies' (MAAC) or the buffer's (MADDPG). All n variants of the joint action go
        # through the critic as one batch of n B.
        n = act.shape[1]
        others = batch["act"] if others_actions == "buffer" else act.detach()
        eye = torch.eye(n, dtype=torch.bool, device=act.device)[:, None, :, None]  # (n, 1, n, 1)
        mixed = torch.where(eye, act.unsqueeze(0), others.unsqueeze(0))  # (n, B, n, d)
        q = critic(obs.repeat(n, 1, 1), state.repeat(n, 1), mixed.flatten(0, 1))  # (n B, n)
        q = q.view(n, -1, n).diagonal(dim1=0, dim2=2)  # (B, n): Q_i with agent i's fresh action
    else:
        q = critic(obs, state, act)  # (B,)
    if log_prob is None:
        return -q.mean(), None
    log_prob = joint_log_prob(log_prob, critic.mixer)
    return (alpha * log_prob - q).mean(), log_prob.detach()


def alpha_loss(log_alpha, log_prob, target_entropy):
    # SAC v2 temperature: drive the policy entropy towards target_entropy (-nd)
    return -(log_alpha * (log_prob + target_entropy)).mean()


# ----------------------------------------------------------------------------------------------------
class ReplayBuffer:
    """Preallocated tensors on the training device; B transitions go in per env step."""

    def __init__(self, size, n, obs_dim, state_dim, d, device):
        z = lambda *shape: torch.zeros(size, *shape, device=device)
        self.data = dict(obs=z(n, obs_dim), state=z(state_dim), act=z(n, d), rew=z(), next_obs=z(n, obs_dim),
                         next_state=z(state_dim), term=z())
        self.size, self.pos, self.full = size, 0, False
        self.gen = torch.Generator(device=device)

    def __len__(self):
        return self.size if self.full else self.pos

    def add(self, **tr):
        B = tr["rew"].shape[0]
        idx = (self.pos + torch.arange(B, device=self.data["rew"].device)) % self.size
        for k, v in tr.items():
            self.data[k][idx] = v.to(self.data[k].dtype)
        self.full = self.full or self.pos + B >= self.size
        self.pos = (self.pos + B) % self.size

    def sample(self, batch_size):
        idx = torch.randint(len(self), (batch_size,), generator=self.gen, device=self.gen.device)
        return {k: v[idx] for k, v in self.data.items()}

    def state_dict(self):
        n = len(self)
        return dict(data={k: v[:n].cpu() for k, v in self.data.items()}, pos=self.pos, full=self.full,
                    gen=self.gen.get_state())

    def load_state_dict(self, sd):
        for k, v in sd["data"].items():
            self.data[k][: len(v)] = v.to(self.data[k].device)
        self.pos, self.full = sd["pos"], sd["full"]
        self.gen.set_state(sd["gen"])


def soft_update(target, source, tau):
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


def to_env(act, env):
    """[-1, 1] actions of the networks -> the env's bounds."""
    return env.act_low + (act + 1) * 0.5 * (env.act_high - env.act_low)


@torch.no_grad()
def evaluate(actor, env, seed):
    """Deterministic decentralised execution, u_i = tanh(mu_i(o_i)): mean return over env.num_envs
    episodes, run side by side, each copy counted until its first episode ends."""
    obs, _ = env.reset(seed=seed)
    ret = torch.zeros(env.num_envs, device=obs.device)
    live = torch.ones(env.num_envs, dtype=torch.bool, device=obs.device)
    for _ in range(env.episode_len):
        obs, _, r, term, trunc, _ = env.step(to_env(actor.mean(obs), env), check=False)
        ret += r * live
        live &= ~(term | trunc)
    return ret.mean().item()


def load_checkpoint(path, device="cpu"):
    """torch.load with a clear message for a file that is not one of our checkpoints."""
    try:
        ckpt = torch.load(path, weights_only=False, map_location=device)
    except Exception as e:  # truncated, not a torch file, wrong pickle...
        sys.exit(f"error: cannot read checkpoint {path}: {type(e).__name__}: {e}")
    if not isinstance(ckpt, dict) or "args" not in ckpt or "actor" not in ckpt:
        sys.exit(f"error: {path} is not a checkpoint written by iac.py / baselines.py")
    return ckpt


def save_checkpoint(path, **state):
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_csv(path, header, rows):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


class Progress:
    """One status line, refreshed in place on a terminal, printed every 30 s otherwise."""

    def __init__(self, total, enabled):
        self.total, self.enabled, self.tty = total, enabled, sys.stdout.isatty()
        self.last = 0.0

    def update(self, step, sps, train_ret, eval_ret, force=False):
        now = time.time()
        if not self.enabled or (not force and now - self.last < (0.5 if self.tty else 30)):
            return
        self.last = now
        fmt = lambda x: "-" if x is None else f"{x:.2f}"
        line = (f"step {step:>9,}/{self.total:,} ({100 * step / max(self.total, 1):5.1f}%) | {sps:7.0f} SPS "
                f"| train return {fmt(train_ret)} | eval return {fmt(eval_ret)}")
        print("\r" + line if self.tty else line, end="" if self.tty else "\n", flush=True)


# ----------------------------------------------------------------------------------------------------
def build(args, env, device, make_q=None):
    """Networks, their target copies and optimisers for the grid point the flags name."""
    n, o, S, d = env.n_agents, env.obs_dim, env.state_dim, env.act_dim
    actor = Actor(n, o, S, d, args.hidden, args.policy, args.rank).to(device)
    critic = Critic(args, n, o, S, d, make_q).to(device)
    nets = dict(actor=actor, critic=critic,
                actor_target=Actor(n, o, S, d, args.hidden, args.policy, args.rank).to(device),
                critic_target=Critic(args, n, o, S, d, make_q).to(device))
    nets["actor_target"].load_state_dict(actor.state_dict())
    nets["critic_target"].load_state_dict(critic.state_dict())
    learn_alpha = args.policy != "deterministic" and args.alpha is None
    nets["log_alpha"] = torch.zeros(1, device=device, requires_grad=learn_alpha)
    opts = dict(actor=torch.optim.Adam(actor.parameters(), lr=args.actor_lr),
                critic=torch.optim.Adam(critic.parameters(), lr=args.critic_lr))
    if learn_alpha:
        opts["alpha"] = torch.optim.Adam([nets["log_alpha"]], lr=args.alpha_lr)
    return nets, opts


def update(args, nets, opts, batch, n_updates, target_entropy):
    """One gradient step of Algorithm 1, lines 10-20. Returns the losses (tensors, not synced)."""
    actor, critic = nets["actor"], nets["critic"]
    alpha = args.alpha if args.alpha is not None else nets["log_alpha"].exp().detach()
    if args.policy == "deterministic":
        alpha = 0.0
    # lines 11-13: the joint policy through Q_tot, Eq. (15); the critic's grads it leaves are zeroed below
    loss_pi, log_prob = policy_loss(batch, actor, critic, alpha, args.policy, args.others_actions)
    opts["actor"].zero_grad(set_to_none=True)
    loss_pi.backward()
    nn.utils.clip_grad_norm_(actor.parameters(), args.grad_clip)
    opts["actor"].step()
    out = {"actor_loss": loss_pi.detach()}
    if "alpha" in opts:  # the target entropy -nd is the joint policy's: per-agent log pi are summed
        joint = log_prob if log_prob.dim() == 1 else log_prob.sum(-1)
        loss_a = alpha_loss(nets["log_alpha"], joint, target_entropy)
        opts["alpha"].zero_grad(set_to_none=True)
        loss_a.backward()
        opts["alpha"].step()
        out["alpha_loss"] = loss_a.detach()
    # lines 14-17: Eq. (23)-(24)
    y = td_target(batch, actor, nets["actor_target"], nets["critic_target"], alpha, args.gamma, args.policy)
    loss_q = critic_loss(batch, critic, y)
    opts["critic"].zero_grad(set_to_none=True)
    loss_q.backward()
    nn.utils.clip_grad_norm_(critic.parameters(), args.grad_clip)
    opts["critic"].step()
    out["critic_loss"] = loss_q.detach()
    # lines 19-20: target networks
    if n_updates % args.target_update_interval == 0:
        soft_update(nets["critic_target"], critic, args.tau)
        soft_update(nets["actor_target"], actor, args.tau)
    return out


def run_name(args):
    return f"{args.env}__{args.exp_name}__{args.seed}"


def train(args, make_q=None):
    """Algorithm 1. Returns the run folder. `make_q(args, n, obs_dim, d)` replaces the per-agent
    critic (baselines.py uses it for MAAC's)."""
    from torch.utils.tensorboard import SummaryWriter

    resume = load_checkpoint(args.resume) if args.resume else None
    if resume is not None:  # the run's own settings, except how long to train and where
        keep = {k: getattr(args, k) for k in ("total_steps", "cuda", "no_progress", "resume")}
        args = argparse.Namespace(**{**vars(resume["args"]), **{k: v for k, v in keep.items() if v is not None}})
    if getattr(args, "algo", None) == "maac" and make_q is None:
        sys.exit(f"error: {args.resume} is a MAAC run: resume it with baselines.py --resume")
    if args.total_steps is None:
        args.total_steps = DEFAULT_STEPS[args.env]
    device = torch.device("cuda" if args.cuda else "cpu")
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(not args.cuda)  # same seed, same curve (on CPU)

    env = make_env(args, args.num_envs, device)
    eval_env = make_env(args, args.eval_episodes, device)
    n, d = env.n_agents, env.act_dim
    nets, opts = build(args, env, device, make_q)
    rb = ReplayBuffer(args.buffer_size, n, env.obs_dim, env.state_dim, d, device)
    target_entropy = -float(n * d)
    run_dir = os.path.join(args.runs_dir, run_name(args))
    os.makedirs(run_dir, exist_ok=True)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")

    step, n_updates, evals, covs = 0, 0, [], []
    obs, state = env.reset(seed=args.seed)
    ep_ret = torch.zeros(args.num_envs, device=device)
    if resume is not None:
        for k in ("actor", "critic", "actor_target", "critic_target"):
            nets[k].load_state_dict(resume[k])
        with torch.no_grad():
            nets["log_alpha"].copy_(resume["log_alpha"])
        for k, opt in opts.items():
            opt.load_state_dict(resume["opt_" + k])
        rb.load_state_dict(resume["buffer"])
        env.load_state_dict(resume["env"])
        step, n_updates, evals, covs = resume["step"], resume["n_updates"], resume["evals"], resume["covs"]
        obs, state, ep_ret = (resume[k].to(device) for k in ("obs", "state", "ep_ret"))
        torch.set_rng_state(resume["torch_rng"])
        print(f"resumed {args.resume} at step {step:,}")

    writer = SummaryWriter(run_dir, purge_step=step or None)  # a resumed run overwrites what came after
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
        f"|{k}|{v}|" for k, v in sorted(vars(args).items())))

    def checkpoint():
        save_checkpoint(ckpt_path, args=args, step=step, n_updates=n_updates, evals=evals, covs=covs,
                        buffer=rb.state_dict(), env=env.state_dict(), obs=obs, state=state, ep_ret=ep_ret,
                        torch_rng=torch.get_rng_state(), log_alpha=nets["log_alpha"].detach(),
                        **{k: nets[k].state_dict() for k in ("actor", "critic", "actor_target", "critic_target")},
                        **{"opt_" + k: o.state_dict() for k, o in opts.items()})

    def log_eval():
        ret = evaluate(nets["actor"], eval_env, seed=args.seed + 10_000)
        o0, s0 = eval_env.reset(seed=args.seed + 10_000)
        with torch.no_grad():  # where the deterministic joint action sits (Fig. 2's trajectory)
            mean_act = to_env(nets["actor"].mean(o0[:1]), eval_env)[0].flatten().tolist()
        evals.append((step, ret, *mean_act))
        writer.add_scalar("eval/episodic_return", ret, step)
        write_csv(os.path.join(run_dir, "eval.csv"), ["step", "eval_return"] + [
            f"u{i}_{k}" for i in range(n) for k in range(d)], evals)
        if args.policy != "deterministic":  # Fig. 5: Sigma averaged over the eval start states
            with torch.no_grad():
                covs.append((step, nets["actor"].covariance(o0, s0).mean(0).cpu().numpy()))
            np.savez(os.path.join(run_dir, "covariance.npz"), step=np.array([c[0] for c in covs]),
                     sigma=np.stack([c[1] for c in covs]))
        return ret

    progress = Progress(args.total_steps, not args.no_progress)
    last_train_ret = last_eval = None
    if not evals:
        last_eval = log_eval()
    t0, step0, updates_owed = time.time(), step, 0.0
    try:
        while step < args.total_steps:
            # Algorithm 1 line 6: u ~ pi(. | o, s), Eq. (14); uniform random before learning starts
            with torch.no_grad():
                if step < args.learning_starts:
                    act = torch.rand(args.num_envs, n, d, device=device) * 2 - 1
                elif args.policy == "deterministic":
                    act = nets["actor"].mean(obs)
                    act = (act + args.exploration_noise * torch.randn_like(act)).clamp(-1, 1)
                else:
                    act, _ = nets["actor"].sample(obs, state)
            next_obs, next_state, rew, term, trunc, info = env.step(to_env(act, env), check=False)
            # lines 7-8; bootstrapping sees the episode's own last observation, not the reset one
            rb.add(obs=obs, state=state, act=act, rew=rew, next_obs=info["final_obs"],
                   next_state=info["final_state"], term=term.float())
            ep_ret += rew
            done = term | trunc
            obs, state = next_obs, next_state
            step += args.num_envs
            if done.any():
                last_train_ret = ep_ret[done].mean().item()
                writer.add_scalar("charts/episodic_return", last_train_ret, step)
                ep_ret = ep_ret * ~done
            # lines 9-20: one gradient update per env step of each copy (times --updates-per-step)
            if step >= args.learning_starts and len(rb) >= args.batch_size:
                updates_owed += args.num_envs * args.updates_per_step
                before = n_updates
                while updates_owed >= 1:
                    updates_owed -= 1
                    n_updates += 1
                    losses = update(args, nets, opts, rb.sample(args.batch_size), n_updates, target_entropy)
                    # checked after every update: one NaN poisons the networks, and the next update
                    # would die inside the low-rank Gaussian's Cholesky with a less helpful message
                    if not torch.isfinite(torch.stack(list(losses.values()))).all():
                        bad = next(k for k, v in losses.items() if not torch.isfinite(v))
                        checkpoint()
                        sys.exit(f"error: non-finite {bad} ({losses[bad].item()}) at step {step:,}, update "
                                 f"{n_updates:,}; the state at the failure is in {ckpt_path}. Try a lower "
                                 f"--actor-lr / --critic-lr or a smaller --grad-clip.")
                log_now = n_updates // 100 != before // 100  # log every 100 updates
                if log_now:
                    for k, v in losses.items():
                        writer.add_scalar(f"losses/{k}", v.item(), step)
                    writer.add_scalar("losses/alpha", nets["log_alpha"].exp().item(), step)
            if step // args.eval_every != (step - args.num_envs) // args.eval_every:
                last_eval = log_eval()
                sps = (step - step0) / (time.time() - t0)
                writer.add_scalar("charts/SPS", sps, step)
            if args.save_model and step // args.checkpoint_every != (step - args.num_envs) // args.checkpoint_every:
                checkpoint()
            progress.update(step, (step - step0) / max(time.time() - t0, 1e-9), last_train_ret, last_eval)
    except KeyboardInterrupt:
        checkpoint()
        print(f"\ninterrupted at step {step:,}; resume with --resume {ckpt_path}")
        raise SystemExit(130)
    progress.update(step, (step - step0) / max(time.time() - t0, 1e-9), last_train_ret, last_eval, force=True)
    print()
    if args.save_model:
        checkpoint()
    writer.close()
    return run_dir


def eval_only(args):
    ckpt = load_checkpoint(args.checkpoint)
    targs = ckpt["args"]
    device = torch.device("cuda" if args.cuda else "cpu")
    env = make_env(targs, args.eval_episodes, device)
    actor = Actor(env.n_agents, env.obs_dim, env.state_dim, env.act_dim, targs.hidden, targs.policy, targs.rank)
    actor.load_state_dict(ckpt["actor"])
    actor.to(device)
    ret = evaluate(actor, env, seed=args.seed)
    print(f"{targs.env} {targs.exp_name} step {ckpt['step']:,}: mean deterministic return "
          f"{ret:.2f} over {args.eval_episodes} episodes")
    if args.capture_video:
        if targs.env not in ("predator_prey", "po_predator_prey"):
            sys.exit("error: --capture-video draws predator-prey only")
        path = os.path.join(os.path.dirname(os.path.abspath(args.checkpoint)), "eval.gif")
        import plots

        plots.render_gif(actor, make_env(targs, 1, device), args.seed, path, to_env)
        print(f"wrote {path}")
    return ret


if __name__ == "__main__":
    args = parse_args()
    if args.eval_only:
        eval_only(args)
    else:
        train(args)
