"""torch.compile of the whole gradient update on the CPU, against the eager update, timed in one process.

    OMP_NUM_THREADS=1 python bench/compile_cpu.py [--members 1,5] [--blocks 6] [--mode default] [flags of iac.py ...]

For each population size K (1: a single run), builds two identical copies of the networks and optimisers
and fills one replay buffer; the compiled copy runs torch.compile(update) (forward, backward, clipping,
the fused Adam steps of actor, temperature and critic), the eager copy iac.update itself. Both are timed
in alternating blocks of 50 updates, so a change of machine load hits both alike; compile time is
reported apart. The updates are numbers 1..N with T = 10**9, so no target copy falls inside the timing
(one update in 200 does one; it is the same plain lerp either way) and n_update does not recompile.
Prints ms per update of each and the ratio compiled / eager.
"""

import argparse
import copy
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)
import iac  # noqa: E402
import population  # noqa: E402
import runlib  # noqa: E402


def setup(flags, K):
    args = iac.parse_args([*flags, "--target-update-interval", str(10**9)])
    env = iac.make_env(args, 1, "cpu")
    if K == 1:
        nets, opts = iac.build(args, env, "cpu")
    else:
        nets, opts = population.build(lambda: iac.build(args, env, "cpu"), list(range(K)),
                                      lambda pop: iac.optimisers(args, pop))
    g = torch.Generator().manual_seed(0)
    n, o, S, d, B = env.n_agents, env.obs_dim, iac.state_dim(args, env), env.act_dim, 4096
    rb = iac.ReplayBuffer(B, n, o, S, d, "cpu", seed=0, members=K if K > 1 else None)
    lead = (K,) if K > 1 else ()
    rb.add(obs=torch.randn(*lead, B, n, o, generator=g), state=torch.randn(*lead, B, S, generator=g),
           act=torch.rand(*lead, B, n, d, generator=g) * 2 - 1, rew=torch.randn(*lead, B, generator=g),
           next_obs=torch.randn(*lead, B, n, o, generator=g), next_state=torch.randn(*lead, B, S, generator=g),
           term=torch.zeros(*lead, B))
    return args, nets, opts, rb, -float(n * d)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--members", default="1,5", help="population sizes K to measure (1: a single run)")
    p.add_argument("--blocks", type=int, default=6, help="alternating blocks of 50 updates each")
    p.add_argument("--mode", default="default", choices=["default", "reduce-overhead", "max-autotune-no-cudagraphs"],
                   help="torch.compile mode")
    known, flags = p.parse_known_args()
    runlib.check_number(p, known, "blocks", lo=1)
    try:
        members = [int(k) for k in known.members.split(",")]
    except ValueError:
        p.error(f"--members {known.members!r}: give whole numbers separated by commas, e.g. 1,5")
    if any(k < 1 for k in members):
        p.error(f"--members: every K must be >= 1, got {known.members}")
    flags = flags or ["--env", "predator_prey"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), mode {known.mode}")
    for K in members:
        args, nets, opts, rb, ent = setup(flags, K)
        c_nets, c_opts = copy.deepcopy((nets, opts))
        step = lambda nets_, opts_, batch, n: iac.update(args, nets_, opts_, batch, n, ent)  # noqa: E731
        compiled = torch.compile(step, mode=known.mode)
        t0 = time.perf_counter()
        for n in (1, 2, 3):  # compile (and any recompilation for the first values) before timing
            compiled(c_nets, c_opts, rb.sample(args.batch_size), n)
        t_compile = time.perf_counter() - t0
        spent, count = {"eager": 0.0, "compiled": 0.0}, {"eager": 3, "compiled": 3}
        for _ in range(known.blocks):
            for name, fn, ns, os_ in (("eager", step, nets, opts), ("compiled", compiled, c_nets, c_opts)):
                t0 = time.perf_counter()
                for _ in range(50):
                    count[name] += 1
                    fn(ns, os_, rb.sample(args.batch_size), count[name])
                spent[name] += time.perf_counter() - t0
        ms = {k: 1000 * spent[k] / (count[k] - 3) for k in spent}
        print(f"K = {K}: eager {ms['eager']:.1f} ms, compiled {ms['compiled']:.1f} ms per update "
              f"(compile {t_compile:.0f} s); compiled / eager = {ms['compiled'] / ms['eager']:.2f}", flush=True)


if __name__ == "__main__":
    main()
