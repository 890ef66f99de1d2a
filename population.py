"""Populations (--seeds): K runs of one method trained in lockstep in one process.

A single run's networks and losses (iac.py) are written for one run. A population stacks each parameter
of its K members along a new leading dimension and runs a function of one run's networks for all
members at once with torch.func.vmap: `pop(loss, *args)` is `loss(member networks, *member args)` for
every member, with the member dimension first in the tensor arguments and in the results. Everything
else that belongs to a member (replay buffer, env copies, returns) carries the member dimension first.
Member k starts from the weights of the single run of seeds[k], and from the same minibatch and noise it
takes the same update (tests/test_population.py). Its later random draws (env resets, noise, minibatch
indices) come from streams of the whole seed list, so its curve is an equally valid run of seed k, not
the curve of `--seed k` alone.

Nothing here imports the method: `build` is given a function that builds one run's networks.
"""

import copy

import torch


class Stacked:
    """The stacked parameters of one of a population's networks, in that network's order."""

    def __init__(self, tensors):
        self.tensors = tensors

    def parameters(self):
        return iter(self.tensors)


class Population:
    """K members, each built as a single run is, trained in lockstep: member k's parameters are slice k of
    every stacked tensor. pop["actor"].parameters() and pop.log_alpha (K, 1) feed the optimisers."""

    def __init__(self, members):
        self.K = len(members)
        params, buffers = torch.func.stack_module_state(members)
        self.params = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.buffers = buffers
        self.names = list(members[0].keys())
        self.template = copy.deepcopy(members[0]).to("meta")  # the shapes, no storage
        self.template.log_alpha = None
        grad = members[0].log_alpha.requires_grad
        self.log_alpha = torch.stack([m.log_alpha.detach() for m in members]).requires_grad_(grad)  # (K, 1)
        # a module may scale its parameters' gradients (MAAC's shared attention, baselines.py); the hooks a
        # single run registers on its own tensors are registered again on the stacked ones
        for prefix, module in members[0].named_modules():
            scale = getattr(module, "grad_scale", None)
            if scale is not None:
                for name, _ in module.named_parameters():
                    self.params[f"{prefix}.{name}"].register_hook(lambda g, scale=scale: g * scale)

    def __getitem__(self, name):
        return Stacked([v for k, v in self.params.items() if k.startswith(name + ".")])

    def __call__(self, fn, *args):
        def one(p, *a):
            return torch.func.functional_call(self.template, p, (fn, *a))

        in_dims = (0,) + tuple(0 if torch.is_tensor(a) or isinstance(a, dict) else None for a in args)
        return torch.func.vmap(one, in_dims, randomness="different")({**self.params, **self.buffers}, *args)

    def clip_grad_norm_(self, params, clip):
        """clip_grad_norm_ for each member: norms (K,) over each member's slice; clip 0: none."""
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (K,)
        if clip > 0:
            coef = (clip / (norm + 1e-6)).clamp(max=1.0)
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        return norm

    def weights(self):  # each network's state_dict with stacked tensors (K, ...), and log alpha (K, 1)
        out = {k: {} for k in self.names}
        for k, v in {**self.params, **self.buffers}.items():
            net, name = k.split(".", 1)
            out[net][name] = v.detach()
        return {**out, "log_alpha": self.log_alpha.detach()}

    def load_weights(self, sd):
        with torch.no_grad():
            for k, v in {**self.params, **self.buffers}.items():
                net, name = k.split(".", 1)
                v.copy_(sd[net][name])
            self.log_alpha.copy_(sd["log_alpha"])


class MemberActors:
    """A population's actors as one actor over flat env tensors (K B, ...): member k acts on copies
    k B .. (k + 1) B - 1, which are its own."""

    def __init__(self, pop):
        self.pop = pop

    def _call(self, method, *xs):
        per_member = (x.view(self.pop.K, -1, *x.shape[1:]) for x in xs)
        out = self.pop(lambda m, *a: getattr(m["actor"], method)(*a), *per_member)
        return tuple(t.flatten(0, 1) for t in out) if isinstance(out, tuple) else out.flatten(0, 1)

    def mean(self, obs):
        return self._call("mean", obs)

    def sample(self, obs, state):
        return self._call("sample", obs, state)

    def covariance(self, obs, state):
        return self._call("covariance", obs, state)


def build(build_one, torch_seeds, make_optimisers):
    """Member k is initialised as the single run of its seed is (torch seeded with torch_seeds[k], then
    build_one() -> (networks, optimisers)), then the members are stacked; make_optimisers(pop) gives the
    population's optimisers over the stacked parameters."""
    members = []
    for seed in torch_seeds:
        torch.manual_seed(seed)
        members.append(build_one()[0])
    pop = Population(members)
    return pop, make_optimisers(pop)
