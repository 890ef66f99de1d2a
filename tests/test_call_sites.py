"""Where a helper is called, not only what it computes: the target update inside update() goes from the
online networks to the targets (not back), and every random consumer of a real run holds the stream
meant for it. Helper-level tests cannot see either: a hard copy makes target == online whichever way it
runs, and distinct streams stay distinct when two consumers swap them."""

import copy

import torch

import iac
import runlib
from test_iac import random_batch

NETS = ("actor", "critic")


def _setup(*flags):
    args = iac.parse_args(["--env", "predator_prey", "--hidden", "16", "--heads", "2", "--preset", "paper", *flags])
    env = iac.make_env(args, 1, "cpu")
    torch.manual_seed(0)
    nets, opts = iac.build(args, env, "cpu")
    batch = random_batch(torch.Generator().manual_seed(1))
    return args, nets, opts, batch


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _twin_update(args, nets, opts, batch, n_update, **changed):
    """The same update with other settings, from a copy of the same networks, optimisers and noise."""
    twin_nets, twin_opts = copy.deepcopy((nets, opts))
    twin_args = copy.copy(args)
    vars(twin_args).update(changed)
    torch.manual_seed(7)
    iac.update(twin_args, twin_nets, twin_opts, batch, n_update, -6.0)
    torch.manual_seed(7)
    iac.update(args, nets, opts, batch, n_update, -6.0)
    return twin_nets


def test_the_hard_copy_in_update_copies_the_online_weights_into_the_targets_and_leaves_the_online_ones():
    args, nets, opts, batch = _setup("--target-update-interval", "3")
    for k in (1, 2):
        iac.update(args, nets, opts, batch, k, -6.0)
    before = {name: _params(nets[name + "_target"]) for name in NETS}
    twin = _twin_update(args, nets, opts, batch, 3, target_update_interval=10**9)  # the twin does not copy
    for name in NETS:
        online, twin_online = _params(nets[name]), _params(twin[name])
        # the online networks took their optimiser step and nothing else
        assert all(torch.equal(a, b) for a, b in zip(online, twin_online)), name
        # the targets now hold those online weights (from before the copy), not their own old values
        assert all(torch.equal(t, o) for t, o in zip(_params(nets[name + "_target"]), twin_online)), name
        assert not all(torch.equal(t, o) for t, o in zip(before[name], twin_online)), name  # (so the copy did something)
        assert all(torch.equal(a, b) for a, b in zip(_params(twin[name + "_target"]), before[name])), name


def test_polyak_in_update_moves_the_targets_towards_the_online_networks():
    args, nets, opts, batch = _setup("--tau", "0.3", "--target-update-interval", "1")
    iac.update(args, nets, opts, batch, 1, -6.0)
    before = {name: _params(nets[name + "_target"]) for name in NETS}
    twin = _twin_update(args, nets, opts, batch, 2, target_update_interval=10**9)
    for name in NETS:
        twin_online = _params(twin[name])
        assert all(torch.equal(a, b) for a, b in zip(_params(nets[name]), twin_online)), name
        for t, t0, o in zip(_params(nets[name + "_target"]), before[name], twin_online):
            torch.testing.assert_close(t, t0 + 0.3 * (o - t0))


def test_every_random_consumer_of_a_run_holds_its_own_stream(tmp_path, monkeypatch):
    """A real run, seed 9: the replay sampler is seeded with the 'replay' stream, the training env with
    'env', the evaluation env with 'eval_env', torch's global generator with 'torch' (the initial weights),
    Python and NumPy with theirs."""
    made = {"buffers": [], "envs": []}
    real_buffer, real_env = iac.ReplayBuffer, iac.make_env

    class Buffer(real_buffer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made["buffers"].append(self)

    def make_env(*a, **k):
        env = real_env(*a, **k)
        made["envs"].append(env)
        return env

    monkeypatch.setattr(iac, "ReplayBuffer", Buffer)
    monkeypatch.setattr(iac, "make_env", make_env)
    seen = {}
    real_build = iac.build

    def build(*a, **k):
        seen["torch"] = torch.initial_seed()
        import random

        import numpy as np
        seen["python"], seen["numpy"] = random.getstate(), np.random.get_state()[1][:4].tolist()
        return real_build(*a, **k)

    monkeypatch.setattr(iac, "build", build)
    iac.main(["--env", "predator_prey", "--seed", "9", "--total-steps", "40", "--batch-size", "16", "--hidden", "16",
              "--heads", "2", "--eval-episodes", "2", "--runs-dir", str(tmp_path), "--no-progress"])
    streams = runlib.seed_streams(9)
    (rb,), (train_env, eval_env) = made["buffers"], made["envs"]
    assert train_env.num_envs == 1 and eval_env.num_envs == 2
    assert rb.gen.initial_seed() == streams["replay"]
    assert train_env.gen.initial_seed() == streams["env"]
    assert eval_env.gen.initial_seed() == streams["eval_env"]
    assert seen["torch"] == streams["torch"]
    import random

    import numpy as np
    random.seed(streams["python"])
    np.random.seed(streams["numpy"])
    assert seen["python"] == random.getstate() and seen["numpy"] == np.random.get_state()[1][:4].tolist()
