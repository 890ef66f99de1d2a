"""The baselines of IAC (arXiv 2102.06042), Section 3 and 5.2.

Continuous-action methods are points of iac.py's method grid (../shared/DESIGN.md section 1), trained
by iac.py's one loop; this file names them and adds what is specific to MADDPG and MAAC:

    python baselines.py --algo {ddpg_mix,attn_qmix,sq,siq,siaq,maddpg,maac} --env ENV [iac.py flags]

The matrix game of Section 3 (Tables 1-4) has its own small discrete QMIX / QMIXs here:

    python baselines.py --algo qmix --env matrix_game     # Tables 2-3
    python baselines.py --algo qmixs --env matrix_game    # Table 4
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

import envs
import iac
import runlib

# Every continuous method is three switches of iac.py (plus, for MADDPG and MAAC, how agent i's policy
# gradient treats the other agents' actions).
PRESETS = {
    "ddpg_mix": dict(policy="deterministic", critic="individual", mixer="qmix"),
    "attn_qmix": dict(policy="deterministic", critic="attention", mixer="qmix"),
    "sq": dict(policy="joint", critic="individual", mixer="qmix"),
    "siq": dict(policy="independent", critic="individual", mixer="qmix"),
    "siaq": dict(policy="independent", critic="attention", mixer="qmix"),
    # MADDPG (Lowe et al. 2017, openai/maddpg) in continuous form: tanh-deterministic policies with
    # Gaussian noise in place of Gumbel-softmax; Q_i(o, u) per agent on the team reward; agent i's
    # gradient takes the other agents' actions from the replay buffer, as openai/maddpg's p_train does
    "maddpg": dict(policy="deterministic", critic="centralized", mixer="none", others_actions="buffer"),
    # MAAC (Iqbal & Sha 2019, shariqiqbal2810/MAAC) in continuous form: per-agent tanh-Gaussian SAC
    # policies and MAACCritic below; the other agents' actions come from their current policies
    "maac": dict(policy="independent", critic="attention", mixer="none", others_actions="policy"),
}
MATRIX_ALGOS = ("qmix", "qmixs")


class MAACCritic(iac.AttentionCritic):
    """MAAC's attention critic, continuous form. What differs from IAC's Eq. (19)-(21):
      * the query of agent i comes from an observation-only encoder s_i = s_enc_i(o_i); keys and values
        from observation-action encoders e_j = sa_enc_j(o_j, u_j);
      * discrete MAAC outputs Q_i for every action of agent i and picks a_i; with continuous actions
        there is no such output, so u_i enters f_i directly: Q_i = f_i(s_i, x_i, u_i);
      * an L2 penalty 1e-3 mean(logit^2) on the (unscaled) attention logits joins the critic loss;
      * gradients of the shared modules (W_q, W_k, V) are scaled by 1/n, as they serve all n agents (their
        `grad_scale`, which a population's stacked parameters honour too, population.py).
    MAAC's counterfactual baseline is for its discrete policy-gradient estimator; with reparameterised
    continuous actions the gradient goes through Q_i directly, so there is none here."""

    LOGIT_REG = 1e-3
    SHARED = ("W_q", "W_k", "V")  # the modules whose gradients are scaled by 1/n

    def __init__(self, args, n, obs_dim, d):
        h = args.hidden
        super().__init__(n, obs_dim, d, h, args.heads)  # W_q, W_k, V and sa_enc (= g)
        self.s_enc = nn.Sequential(iac.AgentLinear(n, obs_dim, h), nn.LeakyReLU())
        self.f = iac.agent_mlp(n, [2 * h + d, h, 1], act=nn.LeakyReLU)
        for module in (getattr(self, name) for name in self.SHARED):
            module.grad_scale = 1.0 / n
            for p in module.parameters():
                p.register_hook(lambda g, module=module: g * module.grad_scale)
        self._logits = None

    def forward(self, obs, act):
        s = self.s_enc(obs)  # (B, n, h), the query side sees no action
        e = self.g(torch.cat([obs, act], -1))  # (B, n, h), keys and values
        x, self._logits = self.attention(s, e)
        return self.f(torch.cat([s, x, act], -1)).squeeze(-1)  # (B, n)

    def aux_loss(self):
        n = self._logits.shape[-1]
        if n == 1:
            return self._logits.new_zeros(())
        # the mean over the off-diagonal logits, by a mask product rather than a boolean index (which
        # would wait for the GPU to count the entries)
        logits = torch.where(self.others, self._logits, 0.0) * math.sqrt(self.W_q.out_features // self.heads)
        return self.LOGIT_REG * (logits**2).sum() / (self._logits.numel() * (n - 1) / n)


def continuous_args(algo, argv):
    """iac.py's arguments for a preset; the switches it sets may not be given by hand."""
    preset = PRESETS[algo]
    for key in preset:
        flag = "--" + key.replace("_", "-")
        if any(a == flag or a.startswith(flag + "=") for a in argv):
            sys.exit(f"error: --algo {algo} sets {flag} {preset[key]}; do not pass {flag}")
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in preset.items()]
    if any(a in ("--resume", "--eval-only") or a.startswith("--resume=") for a in argv):
        flags = []  # the checkpoint holds the run's settings (main() checks a resumed run's method)
    elif not any(a == "--exp-name" or a.startswith("--exp-name=") for a in argv):
        flags.append(f"--exp-name={algo}")
    # the baselines follow the paper's reading where the two differ, whatever iac.py's defaults are
    args = iac.parse_args([*argv, *flags], preset_keys=iac.SHARED_PRESET_KEYS, base=iac.PRESETS["paper"])
    args.algo = algo
    return args


# ----------------------------------------------------------------------------------------------------
# Section 3: the matrix game. QMIX trained under uniform visitation, and QMIXs, whose agents also see
# the other agent's action (as part of their input and of the mixer's state).
PAPER_TABLE2_Q1, PAPER_TABLE2_Q2 = (-8.0, 0.1, 0.2), (-8.9, -0.6, -0.5)
PAPER_TABLE2_QTOT = ((-8.06, -8.05, -8.05), (-8.05, -0.01, -0.01), (-8.05, -0.02, -0.01))
PAPER_TABLE3 = ((0.01, 0.02, 0.02), (0.02, 0.23, 0.23), (0.01, 0.23, 0.23))
PAPER_TABLE4 = ((0.76, 0.01, 0.01), (0.01, 0.05, 0.05), (0.01, 0.05, 0.05))
NAMES = "ABC"


def boltzmann(q_tot, temperature):
    """Eq. (7): P(u_1, u_2) proportional to exp(Q_tot(u_1, u_2) / alpha), over all 9 joint actions."""
    return torch.softmax(torch.as_tensor(q_tot, dtype=torch.float64).flatten() / temperature, 0).view(3, 3)


def paper_temperature():
    """The alpha of Eq. (7) that turns the paper's Table 2 Q_tot into its Table 3 (least squares)."""
    alphas = torch.linspace(0.5, 10, 9501, dtype=torch.float64)
    target = torch.tensor(PAPER_TABLE3, dtype=torch.float64)
    err = torch.stack([((boltzmann(PAPER_TABLE2_QTOT, a) - target) ** 2).sum() for a in alphas])
    return round(alphas[err.argmin()].item(), 2)


def train_matrix_game(algo, seed=1, steps=3000, batch=64, lr=5e-3, hidden=32, embed=32):
    """Fit Q_tot(u_1, u_2) to the payoff on uniformly drawn joint actions. Returns (agents, mixer, inputs)
    where inputs(a) gives the agents' inputs and the mixer's state for joint actions a (B, 2)."""
    torch.manual_seed(seed)
    env = envs.make_env("matrix_game", num_envs=batch)
    env.reset(seed=seed)
    see_other = algo == "qmixs"
    in_dim, state_dim = (3, 6) if see_other else (1, 1)

    def inputs(a):  # (B, 2) -> agents' inputs (B, 2, in_dim), state (B, state_dim)
        if not see_other:
            ones = torch.ones(a.shape[0], 2, 1)
            return ones, ones[:, 0]
        onehot = F.one_hot(a, 3).float()  # (B, 2, 3)
        return onehot.flip(1), onehot.flatten(1)  # agent i sees the other's action; s = both

    agents = iac.agent_mlp(2, [in_dim, hidden, 3])  # Q_i(. | input), one output per own action
    mixer = iac.QMixer(2, state_dim, embed)
    opt = torch.optim.Adam([*agents.parameters(), *mixer.parameters()], lr=lr)
    for _ in range(steps):
        a = torch.randint(0, 3, (batch, 2))  # uniform visitation
        _, _, r, *_ = env.step(a)
        x, s = inputs(a)
        q = agents(x).gather(-1, a.unsqueeze(-1)).squeeze(-1)  # (B, 2): Q_i(u_i)
        loss = F.mse_loss(mixer(q, s).squeeze(-1), r)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return agents, mixer, inputs


@torch.no_grad()
def matrix_tables(agents, mixer, inputs):
    """Q_1, Q_2 (for QMIX, with constant inputs; for QMIXs, per action of the other) and Q_tot (3, 3)."""
    a = torch.tensor([[i, j] for i in range(3) for j in range(3)])
    x, s = inputs(a)
    q_all = agents(x)  # (9, 2, 3)
    q = q_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
    return q_all, mixer(q, s).view(3, 3)


def markdown(rows, header, fmt="{:.2f}"):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, vals in rows:
        lines.append("| " + " | ".join([name] + [fmt.format(v) for v in vals]) + " |")
    return "\n".join(lines)


def matrix_game_report(algo, seed=1):
    agents, mixer, inputs = train_matrix_game(algo, seed)
    q_all, q_tot = matrix_tables(agents, mixer, inputs)
    alpha = paper_temperature()
    policy = boltzmann(q_tot, alpha)
    greedy = divmod(int(q_tot.flatten().argmax()), 3)
    head = ["u1 \\ u2", "A", "B", "C"]
    out = [f"## {algo.upper()} on the matrix game (seed {seed}, uniform visitation)", "",
           "Table 1, payoff:", "", markdown([(NAMES[i], r) for i, r in enumerate(envs.MatrixGame.PAYOFF)], head,
                                           "{:.0f}"), ""]
    if algo == "qmix":
        q1, q2 = q_all[0, 0], q_all[0, 1]  # constant inputs: the same for every joint action
        out += ["Table 2, individual values, ours (paper):", "",
                markdown([("Q_1", [f"{a:.2f} ({b})" for a, b in zip(q1.tolist(), PAPER_TABLE2_Q1)]),
                          ("Q_2", [f"{a:.2f} ({b})" for a, b in zip(q2.tolist(), PAPER_TABLE2_Q2)])],
                         ["", "A", "B", "C"], "{}"), "",
                "Table 2, Q_tot, ours (paper):", "",
                markdown([(NAMES[i], [f"{q_tot[i, j]:.2f} ({PAPER_TABLE2_QTOT[i][j]})" for j in range(3)])
                          for i in range(3)], head, "{}"), ""]
        paper = PAPER_TABLE3
        title = "Table 3, Boltzmann policy of QMIX"
    else:
        out += ["Q_tot, ours (exact payoff would be Table 1):", "",
                markdown([(NAMES[i], q_tot[i].tolist()) for i in range(3)], head), ""]
        paper = PAPER_TABLE4
        title = "Table 4, Boltzmann policy of QMIXs"
    out += [f"{title}, Eq. (7) with alpha = {alpha} (fitted so that the paper's Table 2 Q_tot gives its "
            "Table 3), ours (paper):", "",
            markdown([(NAMES[i], [f"{policy[i, j]:.2f} ({paper[i][j]})" for j in range(3)]) for i in range(3)],
                     head, "{}"), "",
            f"Greedy joint action: ({NAMES[greedy[0]]}, {NAMES[greedy[1]]}); the optimum is (A, A)."]
    return "\n".join(out), dict(q_all=q_all, q_tot=q_tot, policy=policy, greedy=greedy, alpha=alpha)


def matrix_parser(algo):
    q = argparse.ArgumentParser(prog=f"baselines.py --algo {algo}", allow_abbrev=False,
                                description="QMIX / QMIXs on the matrix game of Section 3 (Tables 1-4), in seconds.")
    q.add_argument("--env", default="matrix_game", choices=["matrix_game"],
                   help="qmix / qmixs run on the matrix game of Section 3 only")
    q.add_argument("--seed", type=int, default=1, help="seed of torch and the sampled joint actions")
    q.add_argument("--out", default=None, help="also write the tables to this markdown file")
    q.add_argument("--cuda", action="store_true", help="refused: the matrix game trains on the CPU in seconds")
    return q


def main(argv=None):
    with runlib.one_line_errors():
        return _main(argv)


def _main(argv):
    argv = sys.argv[1:] if argv is None else list(argv)
    p = argparse.ArgumentParser(
        description="Baselines of IAC. Continuous methods take every flag of iac.py (see python iac.py "
        "--help) except the switches their preset sets; where the paper's and the authors' readings differ, "
        "their defaults are the paper's (iac.py --preset paper).", add_help=False, allow_abbrev=False)
    p.add_argument("--algo", choices=[*PRESETS, *MATRIX_ALGOS],
                   help="method: a continuous preset of iac.py's grid, or the matrix game's qmix / qmixs")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    known, rest = p.parse_known_args(argv)
    if known.help and known.algo in MATRIX_ALGOS:
        return matrix_parser(known.algo).print_help()
    if known.help:
        p.print_help()
        print("\npresets:\n" + "\n".join(f"  {k:10} {v}" for k, v in PRESETS.items()))
        return None
    if "--resume" in rest or any(a.startswith("--resume=") for a in rest):  # the checkpoint knows its method
        if known.algo in MATRIX_ALGOS:
            p.error(f"--algo {known.algo} trains in seconds and has no checkpoints to --resume")
        args = iac.parse_args(rest)  # checks that the file exists
        saved = getattr(runlib.load_checkpoint(args.resume)["args"], "algo", None)
        if saved is None:
            p.error(f"--resume {args.resume}: this checkpoint names no --algo (an iac.py run?): resume it with iac.py")
        if known.algo is not None and known.algo != saved:
            p.error(f"--resume {args.resume} is a {saved} run, not --algo {known.algo}: resume it with --algo "
                    f"{saved}, or without --algo")
        args.algo = saved
        return iac.train(args, MAACCritic if saved == "maac" else None)
    if known.algo is None and "--eval-only" in rest:  # as for --resume: the checkpoint knows its method
        ckpt = iac.parse_args(rest).checkpoint  # checks that --checkpoint is given and exists
        known.algo = getattr(runlib.load_checkpoint(ckpt)["args"], "algo", None)
        if known.algo is None:
            p.error(f"--checkpoint {ckpt}: this checkpoint names no --algo (an iac.py run?): evaluate it with iac.py")
    if known.algo is None:
        p.error("--algo is required")
    if known.algo in MATRIX_ALGOS:
        q = matrix_parser(known.algo)
        qa = q.parse_args(rest)
        if qa.cuda:
            q.error("--cuda: the matrix game's QMIX / QMIXs train on the CPU (a few seconds); drop --cuda")
        if not 0 <= qa.seed <= runlib.SEED_MAX:
            q.error(f"--seed must be in [0, {runlib.SEED_MAX}], got {qa.seed}")
        if qa.out is not None:
            runlib.check_out_file(q, "out", qa.out)
        text, _ = matrix_game_report(known.algo, qa.seed)
        print(text)
        if qa.out is not None:
            os.makedirs(os.path.dirname(os.path.abspath(qa.out)), exist_ok=True)
            runlib.write_text(qa.out, text + "\n")
        return text
    if "--env=matrix_game" in rest or ("--env" in rest and rest[rest.index("--env") + 1:][:1] == ["matrix_game"]):
        p.error(f"--algo {known.algo} is continuous; the matrix game takes --algo qmix or qmixs")
    args = continuous_args(known.algo, rest)
    try:
        if args.eval_only:
            return iac.eval_only(args)
        return iac.train(args, MAACCritic if known.algo == "maac" else None)
    except envs.EnvSpecError as e:  # a pz: / mamujoco: env that breaks the wrapper's rules mid-run
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
