"""Interactive Actor-Critic (IAC), the reference implementation.

Ma et al., "Modeling the Interaction between Agents in Cooperative Multi-Agent Reinforcement Learning",
arXiv 2102.06042. This file is the method and its training loop (Algorithm 1):
  * the joint stochastic policy with collaborative exploration, Section 4.1, Eq. (12)-(15): per-agent
    Gaussian heads mu_i(o_i), sigma_i(o_i) plus a low-rank covariance factor L = f_psi(s);
  * the shared-attention per-agent critics Q_i(o, u), Section 4.2, Eq. (19)-(21);
  * the QMIX mixer, Eq. (22), trained on the TD target of Eq. (23)-(24) with the entropy term of the
    paper's maximum-entropy derivation (Eq. 24 is printed without it: --td-entropy none);
  * Algorithm 1's loop: updates from the first minibatch, u' from the target policy, hard target copies
    every T = 200 updates.
Three switches (--policy, --critic, --mixer) turn IAC into the paper's ablations and baselines, which
`baselines.py` names. Where the authors' released code (github YiqinYang/IAC) reads the paper
differently, a flag gives its reading, with the file and line. The defaults are the authors' reading (ahead
at 200k env steps with 5 seeds; README, "Which settings should I use?"); --preset paper gives Algorithm 1
as written, item by item.
What is not the method lives beside this file: flag checks, checkpoints, logging and the exits in
runlib.py, populations (--seeds) in population.py, the environments in envs.py.

    python iac.py --env predator_prey            # train; logs under runs/, see README.md
    python iac.py --eval-only --checkpoint runs/<run>/checkpoint.pt --capture-video

Shapes: B batch, n agents, o observation dim, S state dim, d action dim per agent, m rank of L, H attention
heads; log pi comes as (B, k) factors that sum to the joint log pi (k = 1 joint, k = n independent).
Actions inside the algorithm are in [-1, 1]^d (tanh space; with --squash none clipped to it before the
env and the buffer); they are scaled to the env's bounds only when the env is stepped.
"""

import argparse
import math
import os
import signal
import sys

if __name__ == "__main__" and signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # Ctrl-C while
    # torch loads, before training starts: stop quietly (nothing to save yet)
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.distributions import Normal

import envs
import population
import runlib

# default training budget (env steps) per env when --total-steps is not given; README "Reproducing the paper"
DEFAULT_STEPS = {"simple_world": 3_000, "multi_pendulum": 200_000, "predator_prey": 200_000,
                 "po_predator_prey": 200_000}
OWN_ENV_STEPS = 100_000  # a pz: / mamujoco: env's
# The two readings of the method, item by item. authors: where the authors' released algorithm departs from
# the paper (docs/paper-vs-code.md, with file:line; their env's 5-D predator action is not part of the
# algorithm: it stays an env flag, --predator-action mpe5). paper: Algorithm 1 and its equations, and ours
# where the paper is silent (tanh squashing, a learned alpha where the paper has a constant, clipping at 10).
PRESETS = {"authors": dict(critic="attention_shared", cov_diag="fixed", l_bound="tanh", rank=1, mean_noise=0.05,
                           squash="none", alpha=0.1, alpha_decay=1e-6, alpha_min=0.01, mixer_state="obs",
                           actor_objective="mean_q", grad_clip=0.0),
           "paper": dict(critic="attention", cov_diag="learned", l_bound="none", rank=2, mean_noise=0.0,
                         squash="tanh", alpha=None, alpha_decay=0.0, alpha_min=0.0, mixer_state="env",
                         actor_objective="qtot", grad_clip=10.0)}
# The reading `python iac.py` runs: the authors', clearly ahead of the paper's at 200k env steps with 5 seeds
# (README, "Which settings should I use?", gives the rule and the numbers). The baselines keep the paper's.
DEFAULT_READING = "authors"
# what --preset authors sets for the baselines: the settings every method shares (the authors released IAC only)
SHARED_PRESET_KEYS = ("mixer_state", "grad_clip", "alpha", "alpha_decay", "alpha_min")


def parser():
    p = argparse.ArgumentParser(
        description="Train IAC (arXiv 2102.06042) or one of its ablations on a batched env. With no flags "
        "beyond --env, predator_prey trains for 200k env steps (Algorithm 1's IAC: about an hour on one CPU core).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    a = p.add_argument
    R = PRESETS[DEFAULT_READING]  # the defaults of the items the two readings differ in
    a("--env", default="predator_prey", metavar="ENV",
      help=f"environment: one of Section 5.1's ({', '.join(envs.BUILTIN)}; the matrix game of Section 3 is in "
      "baselines.py), or your own: pz:<module>[:<callable>] builds any PettingZoo ParallelEnv with continuous "
      "actions (e.g. pz:mpe2.simple_spread_v3), mamujoco:<Scenario>-<conf> Multi-Agent MuJoCo (e.g. "
      "mamujoco:HalfCheetah-2x3; pip install -r requirements-mamujoco.txt)")
    a("--env-kwargs", nargs="+", default=[], metavar="KEY=VALUE",
      help="pz: / mamujoco: envs only: keyword arguments of the env's callable (values are read as Python "
      "literals where they parse, e.g. N=4 max_cycles=50; not in the paper)")
    a("--team-reward", default="mean", choices=["mean", "sum"],
      help="pz: / mamujoco: envs only: the team reward r of the Dec-POMDP, Section 2, as the mean or the sum "
      "of the agents' rewards")
    a("--n-agents", type=int, default=None, help="multi_pendulum only: number of pendulums n (default 3)")
    a("--graded-reward", action="store_true",
      help="multi_pendulum only: the graded reward of the scalability experiment, Fig. 6")
    a("--predator-action", default="mpe2", choices=["mpe2", "mpe5"],
      help="predator-prey only: mpe2: 2-D force in [-1, 1]^2; mpe5: the authors' 5-D action of the old MPE, "
      "force (a1 - a2, a3 - a4), up to twice as strong (common/utils.py:34-51)")
    a("--exp-name", default="iac", help="name of the run; logs go to runs/<env>__<exp-name>__<seed>")
    a("--seed", type=int, default=1,
      help="seed of the run; each random stream (torch, envs, replay sampling) gets its own seed from it. "
      "--eval-only: without it, the run's own evaluation episodes (the numbers of its eval.csv); with it, "
      "the episodes of this seed")
    a("--seeds", default=None,
      help="train one run per seed in one process, as a population (comma-separated, e.g. 1,2,3): each "
      "writes runs/<env>__<exp-name>__<seed> as a single run does, and one checkpoint holds them all")
    a("--cuda", action=argparse.BooleanOptionalAction, default=None,
      help="put envs, replay buffer and networks on the GPU (default: CPU; with --resume: the checkpoint's device)")
    a("--total-steps", type=int, default=None,
      help=f"env steps to train, counted over all copies (default per env: {DEFAULT_STEPS})")
    a("--num-envs", type=int, default=1, help="B parallel env copies; one step of each counts as one")
    a("--preset", default=None, choices=sorted(PRESETS),
      help="paper: the paper's reading (Algorithm 1 and its equations; where the paper is silent, ours: tanh "
      "squashing, a learned alpha, clipping at 10); authors: every setting of the authors' algorithm that differs "
      "from the paper (not their env's 5-D actions: --predator-action mpe5). Without it: the "
      f"{DEFAULT_READING} reading, the defaults below. Flags given explicitly win")
    # --- the method grid: policy x critic x mixer ---
    a("--policy", default="joint", choices=["joint", "independent", "deterministic"],
      help="joint: Gaussian with collaborative exploration, Eq. (14); independent: per-agent "
      "Gaussians, Eq. (11) and (25); deterministic: mu_i(o_i) plus Gaussian exploration noise (DDPG)")
    a("--critic", default=R["critic"], choices=["attention", "attention_shared", "individual", "centralized"],
      help="per-agent critic Q_i: attention over the other agents, Eq. (19)-(21), per-agent g_i and f_i "
      "(paper); attention_shared: the authors' one g, f and observation-only query encoder for all agents "
      "(IAC/critics.py:57-93); individual Q_i(o_i, u_i); centralized Q_i(o, u) as MADDPG")
    a("--mixer", default="qmix", choices=["qmix", "none"],
      help="qmix: Q_tot = MIX(Q_1..Q_n, s), Eq. (22); none: each Q_i regresses the team reward")
    a("--others-actions", default="policy", choices=["policy", "buffer"],
      help="--mixer none: the other agents' actions in agent i's policy gradient: the current "
      "policies' (MAAC) or the replay buffer's (MADDPG)")
    # --- the joint policy, Section 4.1 ---
    a("--rank", default=R["rank"], type=int,
      help="rank m of the collaborative exploration matrix L (nd x m), Eq. (12) (paper: 2; authors: 1, "
      "common/utils.py:54)")
    a("--cov-diag", default=R["cov_diag"], choices=["learned", "fixed"],
      help="D of Sigma = L L^T + D, Eq. (12): learned: diag sigma_i(o_i)^2, Eq. (14) (paper); fixed: 1e-6 I, "
      "so all exploration goes through L (authors: IAC/actor.py:16,61; joint policy only)")
    a("--l-bound", default=R["l_bound"], choices=["none", "tanh"],
      help="L = f_psi(s), Eq. (13), unbounded (paper), or tanh(f_psi(s)) (authors: IAC/actor.py:30-37)")
    a("--mean-noise", default=R["mean_noise"], type=float,
      help="add c * U[0, 1) to the Gaussian's mean when sampling (paper: 0; authors: c = 0.05, "
      "IAC/actor.py:44-47)")
    a("--squash", default=R["squash"], choices=["tanh", "none"],
      help="tanh: u = tanh(x) with the log-prob correction (paper); none: the Gaussian's mean is tanh(mu), "
      "u = x, clipped to [-1, 1] only at the env and in the buffer (authors: IAC/actor.py:63-65, agent.py:56)")
    a("--mixer-state", default=R["mixer_state"], choices=["env", "obs"],
      help="s given to the mixer, Eq. (22), and to f_psi(s), Eq. (13): the env's global state (paper), or the "
      "concatenated agents' observations (authors: common/utils.py:47)")
    # --- networks ---
    a("--hidden", type=int, default=64, help="width of every hidden layer (policy, critics, f_psi)")
    a("--heads", type=int, default=4, help="attention heads of the critic, Section 4.2")
    a("--mixer-embed", type=int, default=32, help="embedding size of the QMIX mixer, Eq. (22)")
    # --- optimisation ---
    a("--gamma", type=float, default=0.95, help="discount gamma, Eq. (24)")
    a("--actor-lr", type=float, default=1e-4, help="learning rate of theta and psi, Eq. (15)")
    a("--critic-lr", type=float, default=1e-3, help="learning rate of critics and mixer, Eq. (23)")
    a("--batch-size", type=int, default=256, help="minibatch size |b| of Eq. (23)")
    a("--buffer-size", type=int, default=500_000, help="replay buffer D capacity (transitions)")
    a("--learning-starts", type=int, default=0,
      help="env steps of uniform random actions first (Algorithm 1 line 9: none; updates begin once D "
      "holds one minibatch)")
    a("--updates-per-step", type=float, default=1.0, help="gradient updates per env step (UTD ratio)")
    a("--next-action", default="target", choices=["target", "current"],
      help="u' of the TD target, Eq. (24): from the target policy pi^- (Algorithm 1 line 15) or the "
      "current one (SAC's convention)")
    a("--td-entropy", default="soft", choices=["soft", "none"],
      help="soft: y = r + gamma (Q_tot' - alpha log pi'), the maximum-entropy target (authors: agent.py:102); "
      "none: Eq. (24) as printed, no entropy term")
    a("--actor-objective", default=R["actor_objective"], choices=["qtot", "mean_q"],
      help="what Eq. (15) maximises with the mixer: Q_tot (paper) or the mean of the Q_i (authors: agent.py:107)")
    a("--tau", type=float, default=1.0,
      help="target update theta^- <- tau theta + (1 - tau) theta^-; 1 is Algorithm 1's hard copy")
    a("--target-update-interval", type=int, default=200,
      help="updates between target updates, T of Algorithm 1 lines 19-20")
    a("--alpha", default=R["alpha"], type=alpha_flag,
      help="the entropy temperature alpha of Eq. (8): a number fixes it (authors: 0.1, agent.py:12); "
      "'learned' learns it towards entropy -nd (SAC v2; the paper's reading; needs --cov-diag learned)")
    a("--alpha-decay", default=R["alpha_decay"], type=float,
      help="with a fixed --alpha: subtract this from alpha after every update (paper: 0; authors: 1e-6, "
      "agent.py:125)")
    a("--alpha-min", default=R["alpha_min"], type=float, help="with --alpha-decay: alpha's floor (paper: 0; authors: 0.01)")
    a("--alpha-lr", type=float, default=3e-4, help="learning rate of log alpha")
    a("--exploration-noise", type=float, default=0.1,
      help="--policy deterministic: std of the Gaussian noise added to tanh(mu) in [-1, 1] units")
    a("--grad-clip", default=R["grad_clip"], type=float,
      help="max gradient norm of each optimiser step; 0: no clipping (paper's reading: 10, ours; authors: none)")
    # --- evaluation, logging, checkpoints ---
    a("--eval-every", type=int, default=1_000, help="env steps between deterministic evaluations")
    a("--eval-episodes", type=int, default=10, help="episodes per evaluation (run as one batch); --eval-only: "
      "the run's own unless given")
    a("--save-model", action="store_true", help="write runs/<run>/checkpoint.pt (also periodically)")
    a("--checkpoint-every", type=int, default=25_000, help="env steps between checkpoints")
    a("--resume", default=None, metavar="PATH", help="continue the run saved in this checkpoint")
    a("--eval-only", action="store_true", help="only evaluate the policy in --checkpoint")
    a("--checkpoint", default=None, metavar="PATH", help="checkpoint for --eval-only")
    a("--capture-video", action="store_true",
      help="with --eval-only: write a GIF of one deterministic episode (predator-prey, and pz: / "
           "mamujoco: envs that draw with render_mode='rgb_array')")
    a("--runs-dir", default="runs", help="folder of the run folders")
    a("--no-progress", action="store_true", help="no progress line on the terminal")
    return p


def alpha_flag(text):
    """--alpha: a number, or 'learned' (None: the SAC v2 temperature)."""
    if text == "learned":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"give a number or 'learned', got {text!r}") from None


def parse_args(argv=None, preset_keys=None, base=None):
    """Flags -> checked settings (runlib.check_args). baselines.py gives `base`, the reading its defaults
    follow, and `preset_keys`, what a --preset may set."""
    return runlib.parse_args(parser, sys.argv[1:] if argv is None else argv, PRESETS, preset_keys,
                             env_sizes=envs.sizes, check_env=envs.check_args, base=base)


make_env = envs.from_args


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


class Linear(nn.Linear):
    """nn.Linear on the inputs' rows as one 2-D product: the same numbers, but under a population's vmap a
    3-D input would otherwise become a batch of per-row products."""

    def forward(self, x):
        return super().forward(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], self.out_features)


def agent_mlp(n, sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [AgentLinear(n, sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])  # no activation after the last layer


def mlp(sizes, act=nn.ReLU):
    layers = []
    for i in range(len(sizes) - 1):
        layers += [Linear(sizes[i], sizes[i + 1]), act()]
    return nn.Sequential(*layers[:-1])


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0  # CleanRL's SAC bounds on the state-dependent log-std
FIXED_D = 1e-6  # --cov-diag fixed: D = 1e-6 I (authors: epsilon_D, IAC/actor.py:16)


def squash_log_prob(x):
    """log |det d tanh(x)/dx| per element, in the stable form 2 (log 2 - x - softplus(-2x))."""
    return 2 * (math.log(2) - x - F.softplus(-2 * x))


class LowRankGaussian:
    """N(loc, L L^T + diag(D)) over k = nd dims with L of rank m, as torch's LowRankMultivariateNormal
    (the tests check every method against it), but the m x m capacitance matrix C = I + L^T D^-1 L is
    factored by cholesky_ex: torch's class calls linalg.cholesky, which waits for the GPU to report
    success. A factorisation that fails gives NaN, which the training loop's guard then reports."""

    def __init__(self, loc, cov_factor, cov_diag):  # (B, k), (B, k, m), (B, k)
        self.loc, self.L, self.D = loc, cov_factor, cov_diag
        m = cov_factor.shape[-1]
        C = torch.eye(m, dtype=loc.dtype, device=loc.device) + cov_factor.mT @ (cov_factor / cov_diag[..., None])
        self.C_tril, info = torch.linalg.cholesky_ex(C)  # (B, m, m)
        self.C_tril = self.C_tril + torch.where(info > 0, math.nan, 0.0)[..., None, None]

    def rsample(self):
        eps_M = torch.randn(self.L.shape[:-2] + self.L.shape[-1:], dtype=self.loc.dtype, device=self.loc.device)  # (B, m)
        eps_N = torch.randn_like(self.loc)  # (B, nd)
        return self.loc + (self.L @ eps_M[..., None]).squeeze(-1) + self.D.sqrt() * eps_N  # Eq. (14)

    def log_det(self):  # log det Sigma = log det C + sum log D (matrix determinant lemma)
        return 2 * self.C_tril.diagonal(dim1=-2, dim2=-1).log().sum(-1) + self.D.log().sum(-1)

    def log_prob(self, x):
        z = x - self.loc
        # Woodbury: z^T Sigma^-1 z = z^T D^-1 z - |C_tril^-1 L^T D^-1 z|^2
        w = torch.linalg.solve_triangular(self.C_tril, (self.L.mT @ (z / self.D)[..., None]), upper=False)
        maha = (z * z / self.D).sum(-1) - w.squeeze(-1).pow(2).sum(-1)
        k = self.loc.shape[-1]
        return -0.5 * (k * math.log(2 * math.pi) + self.log_det() + maha)

    def entropy(self):
        k = self.loc.shape[-1]
        return 0.5 * k * (1 + math.log(2 * math.pi)) + 0.5 * self.log_det()

    @property
    def covariance_matrix(self):
        return self.L @ self.L.mT + torch.diag_embed(self.D)


class DiagonalGaussian(Normal):
    """torch's Normal with eps drawn by randn_like (Normal.rsample fills a new tensor in place, which a
    population's vmap cannot give a different draw per member)."""

    def rsample(self):
        return self.loc + self.scale * torch.randn_like(self.loc)


# ----------------------------------------------------------------------------------------------------
# Section 4.1: the joint stochastic policy with collaborative exploration.
class Actor(nn.Module):
    """pi(u | o, s). joint: x = mu(o) + sigma(o) eps_N + L(s) eps_M, Eq. (14), u = tanh(x);
    independent: L = 0, the per-agent policies of Eq. (11) and (25); deterministic: u = tanh(mu(o)) (the loop adds exploration noise).
    Execution uses tanh(mu_i(o_i)) only, so agent i needs nothing but its own observation.
    The keyword switches are the authors' variants (--cov-diag, --l-bound, --mean-noise, --squash)."""

    def __init__(self, n, obs_dim, state_dim, d, hidden, policy, rank, cov_diag="learned", l_bound="none",
                 mean_noise=0.0, squash="tanh"):
        super().__init__()
        self.n, self.d, self.policy, self.rank = n, d, policy, rank
        self.cov_diag, self.l_bound, self.mean_noise, self.squash = cov_diag, l_bound, mean_noise, squash
        out = d if policy == "deterministic" else 2 * d  # mu_i and log sigma_i
        self.net = agent_mlp(n, [obs_dim, hidden, hidden, out])  # theta_i, one per agent
        if policy == "joint":
            # f_psi(s) of Eq. (13): the collaborative exploration matrix from the global state
            self.f_psi = mlp([state_dim, hidden, hidden, n * d * rank])

    def mean(self, obs):  # (B, n, o) -> (B, n, d), in tanh space
        return torch.tanh(self.net(obs)[..., : self.d])

    def distribution(self, obs, state):
        """Pre-squash distribution of x: LowRankGaussian over (B, nd) (joint) or Normal (B, n, d)."""
        mu, log_std = self.net(obs).split(self.d, -1)  # (B, n, d) each
        if self.squash == "none":  # the authors' Gaussian is centred on tanh(mu) and never squashed
            mu = torch.tanh(mu)
        if self.mean_noise:  # a one-sided jitter of the mean, c U[0, 1) (authors: IAC/actor.py:44-47)
            mu = mu + self.mean_noise * torch.rand_like(mu)
        # the paper does not bound sigma_i; CleanRL's SAC squashes log sigma into [LOG_STD_MIN, LOG_STD_MAX]
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        var = (2 * log_std).exp() if self.cov_diag == "learned" else torch.full_like(log_std, FIXED_D)
        if self.policy == "independent":
            return DiagonalGaussian(mu, var.sqrt(), validate_args=False)
        L = self.f_psi(state).view(obs.shape[0], self.n * self.d, self.rank)  # (B, nd, m), Eq. (13)
        if self.l_bound == "tanh":
            L = torch.tanh(L)
        # Sigma = L L^T + D, Eq. (12); D = diag(sigma^2) from the agents' own heads
        return LowRankGaussian(mu.flatten(1), L, var.flatten(1))

    def sample(self, obs, state):
        """Reparameterised u (B, n, d) and log pi as (B, k) factors whose sum is the joint log pi(u | o, s):
        k = 1 for the joint Gaussian, k = n for independent agents (Eq. 25), and one zero for a
        deterministic policy, which has no density (its alpha is 0). With --squash tanh, u is in [-1, 1];
        with none it is the raw Gaussian sample."""
        if self.policy == "deterministic":
            u = self.mean(obs)
            return u, u.new_zeros(u.shape[0], 1)
        dist = self.distribution(obs, state)
        x = dist.rsample()  # joint: (B, nd); independent: (B, n, d)
        log_prob = dist.log_prob(x)  # joint: (B,); independent: (B, n, d)
        if self.squash == "tanh":  # log pi(u) = log N(x) - sum over the dims of log(1 - tanh(x)^2)
            log_prob = log_prob - (squash_log_prob(x).sum(-1) if self.policy == "joint" else squash_log_prob(x))
            x = torch.tanh(x)
        if self.policy == "joint":
            return x.view(*obs.shape[:2], self.d), log_prob.unsqueeze(-1)  # (B, 1)
        return x, log_prob.sum(-1)  # (B, n), agent by agent

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
        # Eq. (19) calls g_i an MLP; here it is one layer, as in MAAC's encoders (and the authors' critics.py:62)
        self.g = nn.Sequential(AgentLinear(n, obs_dim + d, hidden), nn.LeakyReLU())  # e_i
        self.W_q = Linear(hidden, hidden, bias=False)
        self.W_k = Linear(hidden, hidden, bias=False)
        self.V = Linear(hidden, hidden, bias=False)
        self.f = agent_mlp(n, [2 * hidden, hidden, 1])
        self.register_buffer("others", ~torch.eye(n, dtype=torch.bool))  # j != i

    def attention(self, e, e_kv=None):
        """x_i (B, n, hidden) and the attention logits (B, heads, n, n) over the other agents.
        Queries come from e, keys and values from e_kv (IAC: both are e_i = g_i(o_i, u_i))."""
        e_kv = e if e_kv is None else e_kv
        B, n, width = e.shape
        by_head = lambda t: t.view(B, n, self.heads, width // self.heads)  # (B, n, H, width/H)
        # Eq. (20)'s h, an MLP in the paper, is one LeakyReLU after V here, as in MAAC
        q, k, v = by_head(self.W_q(e)), by_head(self.W_k(e_kv)), by_head(F.leaky_relu(self.V(e_kv)))
        # Eq. (21) with the logits scaled by 1/sqrt(width/H), as in MAAC and the Transformer; the paper
        # writes no scale. n x n products of tiny vectors: broadcast and sum, 2x faster on a CPU than bmm
        logits = (q.unsqueeze(2) * k.unsqueeze(1)).sum(-1) / math.sqrt(width // self.heads)  # (B, i, j, H)
        logits = logits.masked_fill(~self.others.unsqueeze(-1), float("-inf"))
        # with one agent there is nobody to attend to: the weights of an all-masked row become 0
        weights = torch.nan_to_num(logits.softmax(2)) if n == 1 else logits.softmax(2)  # alpha_j of Eq. (20)
        x = (weights.unsqueeze(-1) * v.unsqueeze(1)).sum(2).reshape(B, n, width)  # Eq. (20)
        return x, logits.permute(0, 3, 1, 2)  # logits as (B, H, i, j)

    def forward(self, obs, act):
        e = self.g(torch.cat([obs, act], -1))  # (B, n, hidden), e_i = g_i(o_i, u_i)
        x, _ = self.attention(e)
        return self.f(torch.cat([e, x], -1)).squeeze(-1)  # (B, n), Eq. (19)


class SharedAttentionCritic(AttentionCritic):
    """The authors' variant (IAC/critics.py:57-93): one set of weights for all agents (their `# share`),
    queries from an observation-only encoder s(o_i), keys and values from e_j = g(o_j, u_j), and the head
    Q_i = f(e_i, x_i). Their structure, our activations: LeakyReLU where their encoders use ReLU."""

    def __init__(self, n, obs_dim, d, hidden, heads):
        super().__init__(n, obs_dim, d, hidden, heads)  # W_q, W_k, V and the mask; g and f replaced below
        self.g = nn.Sequential(Linear(obs_dim + d, hidden), nn.LeakyReLU())  # shared e_j
        self.s = nn.Sequential(Linear(obs_dim, hidden), nn.LeakyReLU())  # shared query input s_i
        self.f = mlp([2 * hidden, hidden, 1])  # shared head

    def forward(self, obs, act):
        e = self.g(torch.cat([obs, act], -1))  # (B, n, hidden)
        x, _ = self.attention(self.s(obs), e)
        return self.f(torch.cat([e, x], -1)).squeeze(-1)  # (B, n)


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
        self.hyper_w1 = Linear(state_dim, n * embed)
        self.hyper_b1 = Linear(state_dim, embed)
        self.hyper_w2 = Linear(state_dim, embed)
        self.hyper_b2 = mlp([state_dim, embed, 1])  # QMIX's state-dependent bias V(s)

    def forward(self, q, state):  # (B, n), (B, S) -> (B, 1)
        w1 = self.hyper_w1(state).abs().view(-1, self.n, self.embed)  # (B, n, E)
        hidden = F.elu(torch.einsum("bn,bne->be", q, w1) + self.hyper_b1(state))  # (B, E)
        return (hidden * self.hyper_w2(state).abs()).sum(-1, keepdim=True) + self.hyper_b2(state)


class Critic(nn.Module):
    """The value side: per-agent critics and, with --mixer qmix, the mixer on top."""

    def __init__(self, args, n, obs_dim, state_dim, d, make_q=None):
        super().__init__()
        if make_q is not None:  # a per-agent critic from elsewhere (baselines.py: MAAC's)
            self.q = make_q(args, n, obs_dim, d)
        elif args.critic == "attention":
            self.q = AttentionCritic(n, obs_dim, d, args.hidden, args.heads)
        elif args.critic == "attention_shared":
            self.q = SharedAttentionCritic(n, obs_dim, d, args.hidden, args.heads)
        elif args.critic == "individual":
            self.q = IndividualCritic(n, obs_dim, d, args.hidden)
        else:
            self.q = CentralizedCritic(n, obs_dim, d, args.hidden)
        self.mixer = QMixer(n, state_dim, args.mixer_embed) if args.mixer == "qmix" else None

    def forward(self, obs, state, act):
        """The values the TD loss regresses: Q_tot (B, 1) with the mixer, else the per-agent Q_i (B, n)."""
        q = self.q(obs, act)
        return q if self.mixer is None else self.mixer(q, state)


# Module names changed on 2026-12-04: checkpoints written before are read with these keys renamed
RENAMED = (("q.V.0.", "q.V."), ("mixer.V.", "mixer.hyper_b2."))


def upgrade_checkpoint(ckpt):
    for net in ("critic", "critic_target"):
        for old, new in RENAMED:
            ckpt[net] = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in ckpt[net].items()}
    return ckpt


# ----------------------------------------------------------------------------------------------------
# The losses, each of one run's networks `nets` (actor, critic, actor_target, critic_target). `batch`
# holds obs (B, n, o), state (B, S), act (B, n, d), rew (B,), next_obs, next_state, term (B,). Values
# are (B, 1) with the mixer, per agent (B, n) without; the reward broadcasts over the agents.
def value_log_prob(log_prob, critic):
    """The log pi to set beside a value: the joint log pi (B, 1) beside Q_tot; without a mixer, beside
    Q_i, agent i's own log pi_i (independent agents) or the joint one (B, 1), broadcast. An independent
    policy's joint log pi is the sum of the agents' (Eq. 25), so SIQ / SIAQ subtract alpha sum_i log pi_i
    after the mixer, not inside each Q_i as Eq. (26) writes it (the same sum, Eq. 11)."""
    return log_prob if critic.mixer is None else log_prob.sum(-1, keepdim=True)


def td_target(nets, batch, alpha, args):
    # Eq. (24) in soft form: y = r + gamma (1 - terminated) (Q_tot'(o', u', s') - alpha log pi(u' | o', s')),
    # u' ~ pi^-(o', s'), the target policy (Algorithm 1 line 15, whose "s_B" we read as s'_B, as Eq. (24)
    # has it); --next-action current takes u' from the current policy (SAC). --td-entropy none drops
    # the entropy term, as Eq. (24) is printed. Time-limit truncation is not termination.
    with torch.no_grad():
        pi = nets["actor_target"] if args.next_action == "target" else nets["actor"]
        next_act, log_prob = pi.sample(batch["next_obs"], batch["next_state"])
        next_q = nets["critic_target"](batch["next_obs"], batch["next_state"], next_act)
        if args.td_entropy == "soft":
            next_q = next_q - alpha * value_log_prob(log_prob, nets["critic_target"])
        return batch["rew"][:, None] + args.gamma * (1.0 - batch["term"][:, None]) * next_q


def critic_loss(nets, batch, alpha, args):
    # Eq. (23): squared TD error of Q_tot (or of each Q_i with --mixer none), the mean over the
    # minibatch where the paper sums (the same minimum, a step size independent of |b|)
    y = td_target(nets, batch, alpha, args)
    critic = nets["critic"]
    loss = F.mse_loss(critic(batch["obs"], batch["state"], batch["act"]), y)
    if hasattr(critic.q, "aux_loss"):  # a regulariser of the critic's own (MAAC's attention logits)
        loss = loss + critic.q.aux_loss()
    return loss


def policy_loss(nets, batch, alpha, args):
    # Eq. (15), scaled by alpha as SAC does: E[alpha log pi(u | o, s) - Q_tot(o, u, s)], u reparameterised
    # through mu, sigma and L. The paper writes E[log pi - Q_tot / alpha]: the same optimum, but a
    # gradient 1/alpha larger, which grows as a learned alpha shrinks.
    # Returns the loss and log pi (B, k), detached, for the temperature's step.
    actor, critic, obs, state = nets["actor"], nets["critic"], batch["obs"], batch["state"]
    act, log_prob = actor.sample(obs, state)
    if critic.mixer is None:
        q = own_action_q(batch, critic, act, args.others_actions)  # (B, n)
    elif args.actor_objective == "mean_q":  # the mean of the Q_i, not Q_tot (authors: agent.py:107)
        q = critic.q(obs, act).mean(-1, keepdim=True)  # (B, 1)
    else:
        q = critic(obs, state, act)  # (B, 1) Q_tot
    return (alpha * value_log_prob(log_prob, critic) - q).mean(), log_prob.detach()


def own_action_q(batch, critic, act, others_actions):
    """No Q_tot (MADDPG, MAAC): agent i follows its own Q_i with its fresh action u_i and the other
    agents' actions held fixed, from the current policies (MAAC) or the buffer (MADDPG). All n variants
    of the joint action go through the critic as one batch of n B. Returns Q_i (B, n)."""
    obs, state = batch["obs"], batch["state"]
    n = act.shape[1]
    others = batch["act"] if others_actions == "buffer" else act.detach()
    eye = torch.eye(n, dtype=torch.bool, device=act.device)[:, None, :, None]  # (n, 1, n, 1)
    mixed = torch.where(eye, act.unsqueeze(0), others.unsqueeze(0))  # (n, B, n, d): row i has agent i's fresh u_i
    q = critic(obs.repeat(n, 1, 1), state.repeat(n, 1), mixed.flatten(0, 1))  # (n B, n)
    return q.view(n, -1, n).diagonal(dim1=0, dim2=2)  # (B, n): Q_i of variant i


def alpha_loss(log_alpha, log_prob, target_entropy):
    # SAC v2's temperature: drive the entropy of the joint policy towards target_entropy (-nd). The mean
    # over the last axis: one loss per run (a population's log_alpha (K, 1) gives one per member)
    return -(log_alpha * (log_prob.sum(-1) + target_entropy)).mean(-1)


def alpha_value(args, log_alpha, n_updates):
    """The temperature after n_updates updates. The paper's alpha is a constant of the objective, Eq. (8);
    --alpha gives it with its linear decay (the defaults: the authors' 0.1, -1e-6 per update, floor 0.01),
    --alpha learned learns it (SAC v2, towards entropy -nd; the paper's reading)."""
    if args.policy == "deterministic":
        return 0.0
    if args.alpha is None:
        return log_alpha.exp().detach()
    return max(args.alpha_min, args.alpha - args.alpha_decay * n_updates)  # authors: agent.py:125


def hard_or_soft_update(target, source, tau):
    # Algorithm 1 lines 19-20: theta^- <- theta every T updates (tau = 1: torch's lerp with weight 1 returns
    # the source exactly); Polyak averaging with tau < 1
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.lerp_(s, tau)


def optimise(nets, opt, params, loss, clip, guard, name, n_update):
    """backward, clip, then the optimiser step, unless the guard finds the loss or the gradient norm
    non-finite. A population's loss is one per member (K,): their sum leaves each member its own gradient."""
    opt.zero_grad(set_to_none=True)
    loss.sum().backward()
    norm = nets.clip_grad_norm_(params, clip)
    if guard is not None:
        guard.check(name, n_update, loss.detach(), norm)
    opt.step()


def update(args, nets, opts, batch, n_update, target_entropy, guard=None):
    """Gradient update number n_update, Algorithm 1 lines 11-20. `nets(loss, ...)` is loss(nets, ...);
    a population (population.py) runs the same loss for each member. Returns the losses, not synced."""
    alpha = alpha_value(args, nets.log_alpha, n_update - 1)
    # lines 11-13: the joint policy's step through Q_tot, Eq. (15); it leaves gradients on the critic too,
    # which the critic's step zeroes before its own backward
    loss_pi, log_prob = nets(policy_loss, batch, alpha, args)
    optimise(nets, opts["actor"], nets["actor"].parameters(), loss_pi, args.grad_clip, guard, "actor_loss", n_update)
    losses = {"actor_loss": loss_pi.detach()}
    if "alpha" in opts:  # the temperature's step (SAC v2), with the same log pi
        loss_alpha = alpha_loss(nets.log_alpha, log_prob, target_entropy)
        optimise(nets, opts["alpha"], [nets.log_alpha], loss_alpha, 0.0, guard, "alpha_loss", n_update)
        losses["alpha_loss"] = loss_alpha.detach()
    # lines 14-17: the critics and the mixer on the TD target, Eq. (23)-(24)
    loss_q = nets(critic_loss, batch, alpha, args)
    optimise(nets, opts["critic"], nets["critic"].parameters(), loss_q, args.grad_clip, guard, "critic_loss", n_update)
    losses["critic_loss"] = loss_q.detach()
    # lines 19-20: the target networks, every T updates
    if n_update % args.target_update_interval == 0:
        hard_or_soft_update(nets["critic_target"], nets["critic"], args.tau)
        hard_or_soft_update(nets["actor_target"], nets["actor"], args.tau)
    return losses


# ----------------------------------------------------------------------------------------------------
class ReplayBuffer:
    """Preallocated tensors on the training device; B transitions go in per env step. A population's
    buffer (members=K) holds one buffer per member: every tensor and every minibatch has K in front."""

    def __init__(self, size, n, obs_dim, state_dim, d, device, seed=None, members=None):
        self.lead = () if members is None else (members,)
        self.rows = () if members is None else (torch.arange(members, device=device)[:, None],)
        z = lambda *shape: torch.zeros(*self.lead, size, *shape, device=device)
        self.data = dict(obs=z(n, obs_dim), state=z(state_dim), act=z(n, d), rew=z(), next_obs=z(n, obs_dim),
                         next_state=z(state_dim), term=z())
        self.size, self.pos, self.full = size, 0, False
        self.gen = torch.Generator(device=device)  # the minibatch indices: a stream of their own
        if seed is not None:
            self.gen.manual_seed(seed)

    def __len__(self):
        return self.size if self.full else self.pos

    def add(self, **tr):  # each (B, ...), or (K, B, ...) for a population
        B = tr["rew"].shape[-1]
        idx = (self.pos + torch.arange(B, device=self.data["rew"].device)) % self.size
        for k, v in tr.items():
            self.data[k][(*self.rows, idx)] = v.to(self.data[k].dtype)
        self.full = self.full or self.pos + B >= self.size
        self.pos = (self.pos + B) % self.size

    def sample(self, batch_size):
        idx = torch.randint(len(self), (*self.lead, batch_size), generator=self.gen, device=self.gen.device)
        return {k: v[(*self.rows, idx)] for k, v in self.data.items()}

    def state_dict(self, with_gen=True):
        n = len(self)  # only the stored transitions, copied: a slice would drag the whole storage along
        sd = dict(data={k: v.narrow(len(self.lead), 0, n).cpu().clone() for k, v in self.data.items()},
                  pos=self.pos, full=self.full)
        if with_gen:
            sd["gen"] = self.gen.get_state()
        return sd

    def load_state_dict(self, sd, restore_gen=True):
        n = next(iter(sd["data"].values())).shape[len(self.lead)]
        if n > self.size:
            raise ValueError(f"the checkpoint's buffer holds {n} transitions, more than this one's {self.size}")
        for k, v in sd["data"].items():
            self.data[k].narrow(len(self.lead), 0, n).copy_(v)
        self.pos, self.full = sd["pos"], sd["full"]
        if restore_gen:
            self.gen.set_state(sd["gen"])


class Networks(nn.ModuleDict):
    """One run's networks: actor pi_theta,psi, critic (Q_i and the mixer) and their targets, plus log alpha.
    nets(loss, *args) is loss(nets, *args); a population runs the same call once per member."""

    def __init__(self, log_alpha, **nets):
        super().__init__(nets)
        self.log_alpha = log_alpha

    def forward(self, fn, *args):
        return fn(self, *args)

    def clip_grad_norm_(self, params, clip):
        return nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)

    def weights(self):  # what a checkpoint holds of them
        return {**{k: m.state_dict() for k, m in self.items()}, "log_alpha": self.log_alpha.detach()}

    def load_weights(self, sd):
        for k, m in self.items():
            m.load_state_dict(sd[k])
        with torch.no_grad():
            self.log_alpha.copy_(sd["log_alpha"])


def state_dim(args, env):
    """The size of s, Eq. (13) and (22): the env's state, or (--mixer-state obs) the observations side by side."""
    return env.n_agents * env.obs_dim if args.mixer_state == "obs" else env.state_dim


def mixer_state(args, obs, state):
    return obs.flatten(1) if args.mixer_state == "obs" else state


def make_actor(args, env):
    return Actor(env.n_agents, env.obs_dim, state_dim(args, env), env.act_dim, args.hidden, args.policy, args.rank,
                 cov_diag=args.cov_diag, l_bound=args.l_bound, mean_noise=args.mean_noise, squash=args.squash)


def build(args, env, device, make_q=None):
    """Networks, their target copies and optimisers for the grid point the flags name. One Adam per
    network (fused: one kernel over all its tensors, 2.5x faster on a CPU), one for a learned temperature."""
    n, o, d, S = env.n_agents, env.obs_dim, env.act_dim, state_dim(args, env)
    actor, critic = make_actor(args, env).to(device), Critic(args, n, o, S, d, make_q).to(device)
    learned_alpha = args.policy != "deterministic" and args.alpha is None
    nets = Networks(torch.zeros(1, device=device, requires_grad=learned_alpha), actor=actor, critic=critic,
                    actor_target=make_actor(args, env).to(device), critic_target=Critic(args, n, o, S, d, make_q).to(device))
    nets["actor_target"].load_state_dict(actor.state_dict())
    nets["critic_target"].load_state_dict(critic.state_dict())
    return nets, optimisers(args, nets)


def optimisers(args, nets):
    adam = lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True)
    opts = dict(actor=adam(nets["actor"].parameters(), args.actor_lr),
                critic=adam(nets["critic"].parameters(), args.critic_lr))
    if nets.log_alpha.requires_grad:
        opts["alpha"] = adam([nets.log_alpha], args.alpha_lr)
    return opts


def to_env(act, env):
    """[-1, 1] actions of the networks -> the env's bounds."""
    return env.act_low + (act + 1) * 0.5 * (env.act_high - env.act_low)


def explore(args, actor, obs, state, step, d):
    """Algorithm 1 line 6: u ~ pi(. | o, s), Eq. (14); uniform random during a --learning-starts warm-up;
    DDPG-style Gaussian noise for a deterministic policy. (B, n, d) in [-1, 1]."""
    if step < args.learning_starts:
        return torch.rand(*obs.shape[:2], d, device=obs.device) * 2 - 1
    if args.policy == "deterministic":
        act = actor.mean(obs)
        return (act + args.exploration_noise * torch.randn_like(act)).clamp(-1, 1)
    # with --squash none the raw sample is clipped for the env and the buffer only; the losses take the
    # unclipped sample, as in the authors' code (agent.py:56-62 against 78-93)
    return actor.sample(obs, state)[0].clamp(-1, 1)


@torch.no_grad()
def evaluate(actor, env, seed, members=None):
    """Deterministic decentralised execution, u_i = tanh(mu_i(o_i)): mean return over env.num_envs
    episodes, run side by side, each copy counted until its first episode ends. For a population
    (members=K, env copies member by member) the list of the K members' mean returns."""
    obs, _ = env.reset(seed=seed)
    ret = torch.zeros(env.num_envs, device=obs.device)
    live = torch.ones(env.num_envs, dtype=torch.bool, device=obs.device)
    for _ in range(env.episode_len):
        obs, _, r, term, trunc, _ = env.step(to_env(actor.mean(obs), env), check=False)
        ret += r * live
        live &= ~(term | trunc)
    return ret.mean().item() if members is None else ret.view(members, -1).mean(1).tolist()


@torch.no_grad()
def evaluation(args, actor, env, seed, K):
    """What an evaluation logs, per member: the mean return, the first deterministic joint action
    (K, n, d) (Fig. 2's trajectory) and Sigma averaged over the start states (K, nd, nd) (Fig. 5)."""
    rets = evaluate(actor, env, seed, members=K if K > 1 else None)
    obs, state = env.reset(seed=seed)
    first = to_env(actor.mean(obs), env).view(K, -1, *obs.shape[1:-1], env.act_dim)[:, 0]
    cov = None
    if args.policy != "deterministic":
        cov = actor.covariance(obs, mixer_state(args, obs, state))
        cov = cov.view(K, -1, *cov.shape[1:]).mean(1).cpu()
    return rets if K > 1 else [rets], first, cov


# ----------------------------------------------------------------------------------------------------
def train(args, make_q=None):
    """Algorithm 1. Returns the run folder (a population's: the list of its members' folders).
    `make_q(args, n, obs_dim, d)` replaces the per-agent critic (baselines.py: MAAC's)."""
    run = runlib.Run(args, parser, DEFAULT_STEPS, OWN_ENV_STEPS, upgrade_checkpoint)
    args, device, K = run.args, run.device, len(run.seeds)
    env = make_env(args, K * args.num_envs, device)
    eval_env = make_env(args, K * args.eval_episodes, device)
    n, d = env.n_agents, env.act_dim
    if K > 1:  # --seeds: K runs in lockstep, member k on env copies k B .. (k + 1) B - 1
        nets, opts = population.build(lambda: build(args, env, device, make_q), run.member_seeds(),
                                      lambda pop: optimisers(args, pop))
        actor = population.MemberActors(nets)
    else:
        nets, opts = build(args, env, device, make_q)
        actor = nets["actor"]
    per_member = (lambda x: x.view(K, -1, *x.shape[1:])) if K > 1 else (lambda x: x)  # (K B, ...) -> (K, B, ...)
    rb = ReplayBuffer(args.buffer_size, n, env.obs_dim, state_dim(args, env), d, device, seed=run.streams["replay"],
                      members=K if K > 1 else None)
    target_entropy = -float(n * d)  # SAC v2's -dim(u), of the joint action
    obs, state = env.reset(seed=run.streams["env"])
    loop = runlib.LoopState(step=0, n_updates=0, updates_owed=0.0, obs=obs, state=mixer_state(args, obs, state))
    log = runlib.Logger(run, n, d, device)
    run.attach(loop, log, nets, opts, rb, env, lambda o, s: (o, mixer_state(args, o, s)))  # --resume: restored
    with run.stopping():
        if not log.evals[0]:  # a fresh run (a resumed one has its evaluations) starts with one
            log.evaluation(0, *evaluation(args, actor, eval_env, run.streams["eval_env"], K))
        while loop.step < args.total_steps:
            run.stop_if_asked()  # Ctrl-C / SIGTERM: between two steps, where the checkpoint resumes exactly
            with torch.no_grad():  # line 6
                act = explore(args, actor, loop.obs, loop.state, loop.step, d)
            next_obs, next_state, rew, term, trunc, info = env.step(to_env(act, env), check=False)
            # lines 7-8; bootstrapping sees the episode's own last observation, not the reset one
            final_state = mixer_state(args, info["final_obs"], info["final_state"])
            rb.add(obs=per_member(loop.obs), state=per_member(loop.state), act=per_member(act), rew=per_member(rew),
                   next_obs=per_member(info["final_obs"]), next_state=per_member(final_state),
                   term=per_member(term.float()))
            log.episodes(rew, term | trunc)
            loop.obs, loop.state = next_obs, mixer_state(args, next_obs, next_state)
            loop.step += args.num_envs
            # lines 9-20: once D holds a minibatch, one update per env step of each copy (x --updates-per-step)
            if loop.step >= args.learning_starts and len(rb) >= args.batch_size:
                loop.updates_owed += args.num_envs * args.updates_per_step
                while loop.updates_owed >= 1:
                    loop.updates_owed -= 1
                    loop.n_updates += 1
                    losses = update(args, nets, opts, rb.sample(args.batch_size), loop.n_updates, target_entropy,
                                    run.guard)
                    if loop.n_updates % runlib.LOG_EVERY == 0:
                        log.losses(loop.step, losses, alpha_value(args, nets.log_alpha, loop.n_updates))
            if runlib.crossed(loop.step, args.eval_every, args.num_envs):
                log.evaluation(loop.step, *evaluation(args, actor, eval_env, run.streams["eval_env"], K))
            if args.save_model and runlib.crossed(loop.step, args.checkpoint_every, args.num_envs):
                run.save()
            log.progress(loop.step)
    return run.finish()


def eval_only(args):
    """Evaluate a checkpoint's policy (a population's: every member); runlib.eval_only says on which episodes."""
    def load_actor(targs, env, ckpt, device, member=None):  # a single run's Actor, or a population's actors
        seeds = targs.seeds if runlib.is_population(targs) else None
        if seeds is None or member is not None:
            actor = make_actor(targs, env).to(device)
            actor.load_state_dict(ckpt["actor"] if seeds is None else {k: v[member] for k, v in ckpt["actor"].items()})
            return actor
        actors = lambda: (Networks(torch.zeros(1, device=device), actor=make_actor(targs, env).to(device)), None)
        pop, _ = population.build(actors, [0] * len(seeds), lambda pop: None)  # acting as in training
        pop.load_weights(ckpt)
        return population.MemberActors(pop)

    def gif(actor, targs, seed, path, device):
        import plots  # matplotlib, only when a GIF is asked for

        plots.episode_gif(actor, make_env, targs, seed, path, device, to_env)

    return runlib.eval_only(args, parser, make_env, load_actor, evaluate, upgrade_checkpoint, gif)


def main(argv=None):
    args = parse_args(argv)
    try:
        with runlib.one_line_errors():
            return eval_only(args) if args.eval_only else train(args)
    except envs.EnvSpecError as e:  # a pz: / mamujoco: env that breaks the wrapper's rules mid-run
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
