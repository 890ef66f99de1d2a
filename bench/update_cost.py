"""Cost of one gradient update now against the update of an earlier commit, timed in one process.

    OMP_NUM_THREADS=1 python bench/update_cost.py [--rev 738c758] [--blocks 6] [flags of iac.py ...]

Loads iac.py as it is and as it was at REV (git show), builds both from the same flags, fills both replay
buffers with the same random transitions and times their `update` in alternating blocks of 50, so that a
change of machine load hits both alike. Prints ms per update of each and the ratio now / REV.
"""

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import iac  # noqa: E402
import runlib  # noqa: E402


def load_rev(rev, folder):
    path = os.path.join(folder, "iac_at_rev.py")
    with open(path, "w") as f:
        f.write(subprocess.run(["git", "show", f"{rev}:iac.py"], cwd=HERE, capture_output=True, text=True,
                               check=True).stdout)
    spec = importlib.util.spec_from_file_location("iac_at_rev", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def setup(mod, flags):
    args = mod.parse_args(flags)
    env = mod.make_env(args, 1, "cpu")
    nets, opts = mod.build(args, env, "cpu")
    g = torch.Generator().manual_seed(0)
    n, o, S, d, B = env.n_agents, env.obs_dim, env.state_dim, env.act_dim, 4096
    rb = mod.ReplayBuffer(B, n, o, S, d, "cpu")
    rb.add(obs=torch.randn(B, n, o, generator=g), state=torch.randn(B, S, generator=g),
           act=torch.rand(B, n, d, generator=g) * 2 - 1, rew=torch.randn(B, generator=g),
           next_obs=torch.randn(B, n, o, generator=g), next_state=torch.randn(B, S, generator=g), term=torch.zeros(B))
    return args, nets, opts, rb, -float(n * d)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rev", default="738c758", help="the commit to compare with")
    p.add_argument("--blocks", type=int, default=6, help="alternating blocks of 50 updates each")
    known, flags = p.parse_known_args()
    runlib.check_number(p, known, "blocks", lo=1)
    flags = flags or ["--env", "predator_prey"]
    with tempfile.TemporaryDirectory() as tmp:
        old = load_rev(known.rev, tmp)
        runs = {"now": (iac, setup(iac, flags)), known.rev: (old, setup(old, flags))}
        guard = runlib.Guard(("actor_loss", "alpha_loss", "critic_loss"), torch.device("cpu"))
        spent, count = {k: 0.0 for k in runs}, {k: 0 for k in runs}
        for _ in range(known.blocks):
            for name, (mod, (args, nets, opts, rb, ent)) in runs.items():
                t0 = time.perf_counter()
                for _ in range(50):
                    count[name] += 1
                    extra = (guard,) if mod is iac else ()
                    mod.update(args, nets, opts, rb.sample(args.batch_size), count[name], ent, *extra)
                spent[name] += time.perf_counter() - t0
    for name in runs:
        print(f"{name:>10}: {1000 * spent[name] / count[name]:.1f} ms per update")
    print(f"now / {known.rev}: {spent['now'] / spent[known.rev]:.2f}")


if __name__ == "__main__":
    main()
