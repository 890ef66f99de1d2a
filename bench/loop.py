"""Cost of the training loop around the gradient updates, measured in one run.

    python bench/loop.py [--env predator_prey] [--updates 1000] [flags of iac.py ...]

Times `iac.train` (env stepping, action sampling, replay, logging, evaluation at the start only) and
a bare loop that calls the same `iac.update` on minibatches of the same shapes, for the same number of
updates, and prints updates per second of each and the loop's overhead over the bare updates. Imports
that `iac.train` triggers once (tensorboard, torch's inductor) are loaded before timing.
"""

import argparse
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import iac  # noqa: E402
import runlib  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=1000, help="gradient updates timed in each loop")
    p.add_argument("--env", default="predator_prey", help="environment, as in iac.py")
    known, rest = p.parse_known_args()
    runlib.check_number(p, known, "updates", lo=1)
    starts = 256
    with tempfile.TemporaryDirectory() as tmp:
        flags = ["--env", known.env, "--total-steps", str(starts + known.updates), "--learning-starts",
                 str(starts), "--eval-every", str(10**9), "--runs-dir", tmp, "--no-progress", *rest]
        args = iac.parse_args(flags)
        device = "cuda" if args.cuda else "cpu"
        # one-off imports iac.train triggers (tensorboard; torch._inductor, which
        # use_deterministic_algorithms loads) take seconds: start-up, not loop, so load them first
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

        torch.use_deterministic_algorithms(False)
        # the real loop
        t0 = time.perf_counter()
        iac.train(args)
        if args.cuda:
            torch.cuda.synchronize()
        t_loop = time.perf_counter() - t0
        # the bare updates: same networks, optimisers and minibatch shapes, data already in memory
        args = iac.parse_args(flags)
        args.total_steps = starts + known.updates
        env = iac.make_env(args, 1, device)
        nets, opts = iac.build(args, env, device)
        rb = iac.ReplayBuffer(args.buffer_size, env.n_agents, env.obs_dim, env.state_dim, env.act_dim, device)
        B = 4096
        rb.add(obs=torch.randn(B, env.n_agents, env.obs_dim, device=device),
               state=torch.randn(B, env.state_dim, device=device),
               act=torch.rand(B, env.n_agents, env.act_dim, device=device) * 2 - 1,
               rew=torch.randn(B, device=device), next_obs=torch.randn(B, env.n_agents, env.obs_dim, device=device),
               next_state=torch.randn(B, env.state_dim, device=device), term=torch.zeros(B, device=device))
        ent = -float(env.n_agents * env.act_dim)
        t0 = time.perf_counter()
        for i in range(known.updates):
            iac.update(args, nets, opts, rb.sample(args.batch_size), i + 1, ent)
        if args.cuda:
            torch.cuda.synchronize()
        t_bare = time.perf_counter() - t0
    n = known.updates
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {device}, env {known.env}, "
          f"{' '.join(rest) or 'default flags'}")
    print(f"| loop                         | updates/s |\n|------------------------------|-----------|")
    print(f"| iac.train (whole loop)       | {n / t_loop:9.1f} |")
    print(f"| bare iac.update calls        | {n / t_bare:9.1f} |")
    print(f"loop overhead over the bare updates: {100 * (t_loop / t_bare - 1):+.1f}% "
          f"(includes building the networks, the first evaluation and {starts} random-action steps)")


if __name__ == "__main__":
    main()
