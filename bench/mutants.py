"""Mutation battery (issue 15): plant one plausible bug at a time in a copy of the repository and check
that the tests chosen to catch it fail.

    python bench/mutants.py [--jobs 2] [--only ID ...] [--list] [--timeout 300]

A mutant is an id, a file, a snippet that occurs exactly once in that file, its replacement, a one-line
description and the pytest node ids that should catch it (a parametrized test named without [param] runs
every case). Nothing touches the working tree: the files `git ls-files -co --exclude-standard` lists, plus
tests/data, are copied to a temporary folder, and every mutant gets its own copy of that.

  1. Every snippet must occur exactly once, or the battery stops before running anything: when the code
     changes, the battery fails loudly instead of rotting silently.
  2. The selected tests (all mutants' together) must pass on the unmutated copy: a battery over failing
     tests proves nothing.
  3. Each mutant runs `python -m pytest -q -x -p no:cacheprovider <its tests>` (OMP_NUM_THREADS=1, --jobs
     mutants at a time). KILLED: a test failed; TIMEOUT: it ran past --timeout (counted as killed);
     UNCHECKED: none failed but some skip on this machine (the golden runs where no data for its kind are
     committed), reported apart; SURVIVED: every test passed.

Exit status 0 only if no mutant survives, except those listed in EQUIVALENT with the reason no test can
tell them from the original. tests/test_mutant_kills.py holds the tests written for the holes this battery
found. The whole battery takes about 6 minutes with --jobs 2 on 2 cores (the baseline about 1).
"""

import argparse
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutant(NamedTuple):
    id: str
    file: str
    old: str  # occurs exactly once in `file`
    new: str
    what: str
    tests: tuple  # pytest node ids, relative to the repository root


def m(id, file, old, new, what, *tests):
    return Mutant(id, file, old, new, what, tests)


EQ, ENVS, RUNS, IAC = "tests/test_equations.py::", "tests/test_envs.py::", "tests/test_runs.py::", "tests/test_iac.py::"
BASE, BAD, KILL = "tests/test_baselines.py::", "tests/test_bad_inputs.py::", "tests/test_mutant_kills.py::"
POP = "tests/test_population.py::"
CALLS, GOLD, FAIL = "tests/test_call_sites.py::", "tests/test_golden.py::test_golden_run_straight_and_resumed_is_bit_for_bit_the_committed_one", "tests/test_env_failures.py::"
TD_EQ24 = EQ + "test_td_target_eq24_every_variant"
OWN_Q = EQ + "test_policy_loss_without_mixer_takes_agent_i_fresh_action_and_the_others_actions"

MUTANTS = [
    # ---------------------------------------------------------------- iac.py: Eq. (23)-(24), the TD target
    m("td-online-critic", "iac.py",
      'next_q = nets["critic_target"](batch["next_obs"], batch["next_state"], next_act)',
      'next_q = nets["critic"](batch["next_obs"], batch["next_state"], next_act)',
      "update() bootstraps y from the online critic instead of the target critic",
      EQ + "test_update_regresses_the_online_critic_on_the_target_critic"),
    m("next-action-always-current", "iac.py",
      'pi = nets["actor_target"] if args.next_action == "target" else nets["actor"]',
      'pi = nets["actor"]',
      "u' from the current policy even with --next-action target",
      TD_EQ24 + "[soft-target]", TD_EQ24 + "[none-target]"),
    m("td-entropy-sign", "iac.py",
      'next_q = next_q - alpha * value_log_prob(log_prob, nets["critic_target"])',
      'next_q = next_q + alpha * value_log_prob(log_prob, nets["critic_target"])',
      "entropy term of the soft TD target added instead of subtracted",
      TD_EQ24),
    m("td-no-terminal-mask", "iac.py",
      '(1.0 - batch["term"][:, None])',
      '1.0',
      "TD target bootstraps through terminal transitions",
      TD_EQ24),
    m("buffer-term-includes-truncation", "iac.py",
      "term=per_member(term.float()))",
      "term=per_member((term | trunc).float()))",
      "time-limit truncation stored as termination in the replay buffer",
      EQ + "test_training_bootstraps_from_the_ended_episodes_last_observation"),
    m("td-gamma-twice", "iac.py",
      'return batch["rew"][:, None] + args.gamma * (1.0',
      'return batch["rew"][:, None] + args.gamma * args.gamma * (1.0',
      "gamma applied twice in the TD target",
      TD_EQ24),
    m("td-gamma-missing-per-agent", "iac.py",
      'return batch["rew"][:, None] + args.gamma * (1.0',
      'return batch["rew"][:, None] + (1.0',
      "no discount in the TD target (the per-agent one of --mixer none included: one formula now)",
      TD_EQ24, EQ + "test_td_target_per_agent_critics_and_deterministic_policy"),
    m("final-obs-unused", "iac.py",
      'next_obs=per_member(info["final_obs"]),',
      "next_obs=per_member(next_obs),",
      "buffer bootstraps from the reset observation, not the ended episode's last one",
      EQ + "test_training_bootstraps_from_the_ended_episodes_last_observation"),
    m("final-state-unused", "iac.py",
      'final_state = mixer_state(args, info["final_obs"], info["final_state"])',
      "final_state = mixer_state(args, next_obs, next_state)",
      "buffer's next state is the reset state, not the ended episode's last one",
      KILL + "test_buffer_next_state_is_the_state_of_the_same_step_as_next_obs"),
    # ---------------------------------------------------------------- iac.py: targets, temperature, optimiser
    m("hard-copy-off-by-one", "iac.py",
      "if n_update % args.target_update_interval == 0:",
      "if n_update % args.target_update_interval == 1:",
      "target networks copied one update after every T-th",
      EQ + "test_hard_copy_happens_exactly_every_T_updates"),
    m("polyak-reversed", "iac.py",
      "t.lerp_(s, tau)",
      "t.lerp_(s, 1 - tau)",
      "Polyak average moves the target by 1 - tau instead of tau",
      EQ + "test_polyak_moves_the_target_towards_the_online_weights"),
    m("alpha-decay-not-applied", "iac.py",
      "return max(args.alpha_min, args.alpha - args.alpha_decay * n_updates)",
      "return max(args.alpha_min, args.alpha)",
      "--alpha-decay ignored: alpha stays at --alpha",
      EQ + "test_alpha_schedule_of_the_authors_preset"),
    m("alpha-floor-ignored", "iac.py",
      "return max(args.alpha_min, args.alpha - args.alpha_decay * n_updates)",
      "return args.alpha - args.alpha_decay * n_updates",
      "--alpha-min ignored: alpha decays below its floor",
      EQ + "test_alpha_schedule_of_the_authors_preset"),
    m("alpha-loss-sign", "iac.py",
      "return -(log_alpha * (log_prob.sum(-1) + target_entropy)).mean(-1)",
      "return (log_alpha * (log_prob.sum(-1) + target_entropy)).mean(-1)",
      "temperature loss with the wrong sign: alpha moves away from the target entropy",
      EQ + "test_alpha_loss_value_sign_and_direction"),
    m("grad-clip-zero-clips", "iac.py",
      "return nn.utils.clip_grad_norm_(params, clip if clip > 0 else math.inf)",
      "return nn.utils.clip_grad_norm_(params, clip)",
      "--grad-clip 0 clips every gradient to norm 0 instead of not clipping",
      EQ + "test_grad_clip_zero_means_no_clipping"),
    m("updates-ignore-num-envs", "iac.py",
      "updates_owed += args.num_envs * args.updates_per_step",
      "updates_owed += args.updates_per_step",
      "one update per loop iteration instead of per env step of each copy",
      KILL + "test_updates_per_env_step_count_every_copy"),
    # ---------------------------------------------------------------- iac.py: the joint policy, Eq. (12)-(15)
    m("fixed-diag-learned", "iac.py",
      'var = (2 * log_std).exp() if self.cov_diag == "learned" else torch.full_like(log_std, FIXED_D)',
      "var = (2 * log_std).exp()",
      "--cov-diag fixed still uses the learned sigma_i^2",
      EQ + "test_fixed_diagonal_gives_sigma_LLT_plus_1e6"),
    m("l-bound-ignored", "iac.py",
      "L = torch.tanh(L)",
      "L = L",
      "--l-bound tanh leaves L unbounded",
      EQ + "test_tanh_bounded_L"),
    m("mean-noise-symmetric", "iac.py",
      "mu = mu + self.mean_noise * torch.rand_like(mu)",
      "mu = mu + self.mean_noise * (2 * torch.rand_like(mu) - 1)",
      "mean noise drawn from c U[-1, 1) instead of c U[0, 1)",
      EQ + "test_mean_noise_is_c_times_uniform_0_1"),
    m("mean-noise-dropped", "iac.py",
      "mu = mu + self.mean_noise * torch.rand_like(mu)",
      "mu = mu + 0.0 * torch.rand_like(mu)",
      "--mean-noise not applied",
      EQ + "test_mean_noise_is_c_times_uniform_0_1"),
    m("squash-none-squashes", "iac.py",
      'if self.squash == "tanh":  # log pi(u)',
      "if True:  # log pi(u)",
      "--squash none still squashes u with tanh and corrects log pi",
      EQ + "test_squash_none_returns_the_raw_gaussian_sample_and_its_density"),
    m("squash-none-mean-not-tanh", "iac.py",
      'if self.squash == "none":  # the authors',
      "if False:  # the authors",
      "--squash none centres the Gaussian on mu instead of tanh(mu)",
      EQ + "test_squash_none_returns_the_raw_gaussian_sample_and_its_density"),
    m("tanh-correction-dropped", "iac.py",
      'log_prob = log_prob - (squash_log_prob(x).sum(-1) if self.policy == "joint" else squash_log_prob(x))',
      "log_prob = log_prob",
      "log pi of the squashed action without the tanh change-of-variables term",
      IAC + "test_joint_log_prob_and_entropy_match_dense_gaussian_with_tanh_jacobian"),
    m("tanh-correction-formula", "iac.py",
      "return 2 * (math.log(2) - x - F.softplus(-2 * x))",
      "return 2 * (math.log(2) - x + F.softplus(-2 * x))",
      "log |d tanh(x)/dx| with a wrong sign on the softplus",
      IAC + "test_joint_log_prob_and_entropy_match_dense_gaussian_with_tanh_jacobian",
      IAC + "test_independent_log_prob_is_per_agent_and_tanh_corrected"),
    m("mean-q-uses-qtot", "iac.py",
      "q = critic.q(obs, act).mean(-1, keepdim=True)  # (B, 1)",
      "q = critic(obs, state, act)  # (B, 1)",
      "--actor-objective mean_q still maximises Q_tot",
      EQ + "test_policy_loss_eq15_with_the_mixer_and_mean_q"),
    m("mixer-state-obs-ignored", "iac.py",
      'return obs.flatten(1) if args.mixer_state == "obs" else state',
      "return state",
      "--mixer-state obs still feeds the env's state to the mixer and f_psi",
      EQ + "test_mixer_state_obs_feeds_the_concatenated_observations"),
    m("preset-authors-missing-item", "iac.py",
      'actor_objective="mean_q", grad_clip=0.0),',
      'actor_objective="mean_q"),',
      "--preset authors forgets grad_clip=0",
      EQ + "test_preset_authors_sets_every_item_and_explicit_flags_win"),
    # ---------------------------------------------------------------- iac.py: MADDPG / MAAC policy gradient
    m("maddpg-others-from-policy", "iac.py",
      'others = batch["act"] if others_actions == "buffer" else act.detach()',
      "others = act.detach()",
      "MADDPG takes the other agents' actions from the current policies, not the buffer",
      OWN_Q + "[buffer]"),
    m("maac-others-not-detached", "iac.py",
      'others = batch["act"] if others_actions == "buffer" else act.detach()',
      'others = batch["act"] if others_actions == "buffer" else act',
      "MAAC: agent i's gradient also flows into the other agents' actions",
      OWN_Q + "[policy]"),
    m("own-q-wrong-diagonal", "iac.py",
      "return q.view(n, -1, n).diagonal(dim1=0, dim2=2)",
      "return q.view(n, -1, n).diagonal(dim1=0, dim2=1)",
      "own-action Q_i: the diagonal over the wrong dimensions",
      OWN_Q),
    m("own-q-row-zero", "iac.py",
      "return q.view(n, -1, n).diagonal(dim1=0, dim2=2)",
      "return q.view(n, -1, n)[0]",
      "own-action Q_i: every agent reads variant 0 (only agent 0's action fresh)",
      OWN_Q),
    # ---------------------------------------------------------------- iac.py: critics and mixer, Eq. (19)-(22)
    m("attention-self-not-masked", "iac.py",
      'logits = logits.masked_fill(~self.others.unsqueeze(-1), float("-inf"))',
      "logits = logits",
      "attention of agent i includes itself (Eq. 20 sums over j != i)",
      KILL + "test_attention_critic_by_hand_each_agent_attends_to_the_others_only"),
    m("shared-attention-query-sees-action", "iac.py",
      "x, _ = self.attention(self.s(obs), e)",
      "x, _ = self.attention(e)",
      "--critic attention_shared: queries from e_i = g(o_i, u_i), not the observation-only s(o_i)",
      EQ + "test_shared_attention_critic_by_hand"),
    m("mixer-w1-no-abs", "iac.py",
      "w1 = self.hyper_w1(state).abs().view(-1, self.n, self.embed)",
      "w1 = self.hyper_w1(state).view(-1, self.n, self.embed)",
      "mixer's first-layer weights may be negative: Q_tot not monotone",
      IAC + "test_mixer_is_monotone_in_every_q_i"),
    m("mixer-w2-no-abs", "iac.py",
      "(hidden * self.hyper_w2(state).abs()).sum(-1, keepdim=True)",
      "(hidden * self.hyper_w2(state)).sum(-1, keepdim=True)",
      "mixer's second-layer weights may be negative: Q_tot not monotone",
      IAC + "test_mixer_is_monotone_in_every_q_i"),
    m("maac-aux-loss-dropped", "iac.py",
      'if hasattr(critic.q, "aux_loss"):',
      "if False:",
      "MAAC's attention-logit penalty never joins the critic loss",
      KILL + "test_maac_critic_loss_adds_the_logit_penalty_over_the_other_agents"),
    # ---------------------------------------------------------------- iac.py: replay, evaluation, actions, flags
    m("replay-not-seeded", "iac.py",
      "            self.gen.manual_seed(seed)",
      "            pass",
      "replay sampler not seeded from --seed",
      RUNS + "test_every_generator_a_run_creates_is_seeded_and_no_two_share_a_seed"),
    m("replay-state-dict-not-cloned", "iac.py",
      "v.narrow(len(self.lead), 0, n).cpu().clone()",
      "v.narrow(len(self.lead), 0, n).cpu()",
      "buffer's state_dict keeps a slice, so a checkpoint saves the whole preallocated storage",
      RUNS + "test_checkpoint_holds_only_the_stored_transitions"),
    m("eval-counts-later-episodes", "iac.py",
      "live &= ~(term | trunc)",
      "live = live",
      "evaluation also counts the episodes after each copy's first",
      EQ + "test_evaluation_counts_only_each_copys_first_episode"),
    m("to-env-scale", "iac.py",
      "return env.act_low + (act + 1) * 0.5 * (env.act_high - env.act_low)",
      "return env.act_low + (act + 1) * (env.act_high - env.act_low)",
      "actions mapped to [low, 2 high - low] instead of [low, high]",
      EQ + "test_to_env_maps_minus_one_one_onto_the_env_bounds"),
    m("seed-upper-bound-unchecked", "runlib.py",
      "if not 0 <= args.seed <= SEED_MAX:",
      "if not 0 <= args.seed:",
      "--seed above 2^32 - 1 accepted",
      BAD + "test_bad_input_exits_naming_the_flag[iac.py --seed 4294967296]"),
    m("episode-return-not-reset", "runlib.py",
      "self.ep_ret *= ~done",
      "self.ep_ret = self.ep_ret",
      "the logged training return keeps adding up across episodes",
      KILL + "test_logged_training_return_is_the_mean_return_of_the_episodes_since_the_last_log"),
    m("updates-owed-not-restored", "runlib.py",
      'ck["n_updates"], ck.get("updates_owed", 0.0)',
      'ck["n_updates"], 0.0',
      "--resume drops the fractional update owed (UTD != 1)",
      RUNS + "test_resume_equals_the_uninterrupted_run[iac-fractional-utd]"),
    # ---------------------------------------------------------------- baselines.py
    m("preset-maddpg-others-policy", "baselines.py",
      'mixer="none", others_actions="buffer")',
      'mixer="none", others_actions="policy")',
      "the maddpg preset takes the other agents' actions from the current policies",
      BASE + "test_maddpg_critic_sees_every_action_and_takes_others_from_the_buffer"),
    m("preset-siaq-individual-critic", "baselines.py",
      '"siaq": dict(policy="independent", critic="attention", mixer="qmix")',
      '"siaq": dict(policy="independent", critic="individual", mixer="qmix")',
      "the siaq preset builds SIQ (no attention critic)",
      BASE + "test_each_preset_builds_its_grid_point[siaq]"),
    m("preset-maac-others-buffer", "baselines.py",
      'mixer="none", others_actions="policy")',
      'mixer="none", others_actions="buffer")',
      "the maac preset takes the other agents' actions from the buffer (MADDPG's rule)",
      KILL + "test_maac_policy_loss_ignores_the_buffers_actions_and_maddpg_uses_them"),
    m("baselines-take-iac-preset-items", "baselines.py",
      "args = iac.parse_args([*argv, *flags], preset_keys=iac.SHARED_PRESET_KEYS, base=",
      "args = iac.parse_args([*argv, *flags], base=",
      "--preset authors also gives the baselines IAC's own policy and critic items",
      EQ + "test_preset_authors_sets_every_item_and_explicit_flags_win"),
    m("baselines-follow-iac-defaults", "baselines.py",
      'preset_keys=iac.SHARED_PRESET_KEYS, base=iac.PRESETS["paper"])',
      "preset_keys=iac.SHARED_PRESET_KEYS)",
      "the baselines take iac.py's defaults (the authors' reading) instead of the paper's",
      EQ + "test_preset_paper_is_algorithm_1_item_by_item_and_undoes_nothing_given_by_hand"),
    m("base-reading-overrides-flags-by-hand", "runlib.py",
      """    for k, v in (base or {}).items():
        if k not in args.explicit:
            setattr(args, k, v)""",
      """    for k, v in (base or {}).items():
        setattr(args, k, v)""",
      "the baselines' reading overwrites a flag given by hand (--grad-clip 5 would be 10)",
      EQ + "test_a_baseline_keeps_a_flag_given_by_hand_over_the_papers_reading"),
    m("learned-alpha-keeps-the-schedule", "runlib.py",
      """            if name not in args.explicit:
                setattr(args, name, 0.0)""",
      """            pass""",
      "--alpha learned keeps the default's decay and floor, and is refused as a schedule without --alpha",
      EQ + "test_a_learned_alpha_drops_the_default_schedule_and_an_independent_policy_refuses_a_fixed_d"),
    m("learned-alpha-with-fixed-d-runs", "runlib.py",
      'if args.alpha is None and args.policy == "joint" and args.cov_diag == "fixed":',
      'if False:',
      "a learned alpha with D = 1e-6 I trains (and its alpha grows without end), silently",
      EQ + "test_a_learned_alpha_drops_the_default_schedule_and_an_independent_policy_refuses_a_fixed_d"),
    m("independent-fixed-d-runs", "runlib.py",
      'if args.policy == "independent" and args.cov_diag == "fixed":',
      'if False:',
      "independent Gaussians with D = 1e-6 I (no L) train without exploring, silently",
      EQ + "test_a_learned_alpha_drops_the_default_schedule_and_an_independent_policy_refuses_a_fixed_d"),
    m("maac-grad-not-scaled", "baselines.py",
      "module.grad_scale = 1.0 / n",
      "module.grad_scale = 1.0",
      "MAAC's shared attention modules get the full gradient, not 1/n",
      BASE + "test_maac_query_ignores_own_action_and_regulariser_and_grad_scaling"),
    m("maac-aux-diagonal-included", "baselines.py",
      "logits = torch.where(self.others, self._logits, 0.0) * math.sqrt",
      "logits = self._logits * math.sqrt",
      "MAAC's logit penalty includes the (masked, -inf) self logits",
      RUNS + "test_resume_equals_the_uninterrupted_run[maac]"),
    m("maac-aux-normaliser", "baselines.py",
      "/ (self._logits.numel() * (n - 1) / n)",
      "/ self._logits.numel()",
      "MAAC's logit penalty averaged over all n^2 pairs, not the n(n-1) others",
      KILL + "test_maac_critic_loss_adds_the_logit_penalty_over_the_other_agents"),
    m("boltzmann-temperature", "baselines.py",
      ".flatten() / temperature, 0)",
      ".flatten() * temperature, 0)",
      "Eq. (7) multiplies Q_tot by alpha instead of dividing",
      BASE + "test_paper_temperature_is_about_three"),
    m("matrix-seed-unchecked", "baselines.py",
      "if not 0 <= qa.seed <= runlib.SEED_MAX:",
      "if not qa.seed <= runlib.SEED_MAX:",
      "matrix game accepts a negative --seed",
      BAD + "test_bad_input_exits_naming_the_flag[baselines.py --algo qmix --seed -1]"),
    # ---------------------------------------------------------------- envs.py
    m("pp-episode-101", "envs.py",
      "n_agents, act_dim, episode_len = 3, 2, 100",
      "n_agents, act_dim, episode_len = 3, 2, 101",
      "predator-prey episodes of 101 steps instead of 100",
      ENVS + "test_episode_length_and_truncation_match_the_references"),
    m("reset-ignores-seed", "envs.py",
      "self.gen.manual_seed(int(seed))\n        self.t.zero_()",
      "pass\n        self.t.zero_()",
      "reset(seed) does not seed the env's generator",
      ENVS + "test_reset_seed_sets_the_start_and_none_continues"),
    m("pz-reset-ignores-seed", "envs.py",
      "self.gen.manual_seed(int(seed))\n        firsts =",
      "pass\n        firsts =",
      "the PettingZoo wrapper's reset(seed) does not seed the copies' reset seeds",
      "tests/test_own_env.py::test_batched_simple_spread_equals_its_copies_stepped_one_by_one"),
    m("pz-reward-not-averaged", "envs.py",
      'rew.append(sum(rewards) / (n if self.team_reward == "mean" else 1))',
      "rew.append(sum(rewards))",
      "the wrapper's team reward is the agents' sum under the default mean",
      "tests/test_own_env.py::test_batched_simple_spread_equals_its_copies_stepped_one_by_one"),
    m("env-load-aliases", "envs.py",
      "setattr(self, k, v.to(self.device, copy=True))",
      "setattr(self, k, v.to(self.device))",
      "load_state_dict keeps the snapshot's tensors, so stepping writes into it",
      ENVS + "test_state_dict_snapshots_are_copies"),
    m("t-not-zeroed-on-done", "envs.py",
      "self.t.masked_fill_(done, 0)",
      "self.t = self.t",
      "the step counter is not reset when an episode ends",
      ENVS + "test_episode_length_and_truncation_match_the_references"),
    m("truncated-and-terminated", "envs.py",
      "truncated = (self.t >= self.episode_len) & ~terminated",
      "truncated = self.t >= self.episode_len",
      "a step can be both terminated and truncated",
      ENVS + "test_episode_length_and_truncation_match_the_references"),
    m("truncation-no-reset", "envs.py",
      "self._reset_state(done)",
      "self._reset_state(terminated)",
      "truncated copies restart their clock but keep their state",
      ENVS + "test_copies_are_independent_and_auto_reset"),
    m("graded-levels-swapped", "envs.py",
      "[0.0, 0.1, 0.2, 0.5] if graded",
      "[0.0, 0.2, 0.1, 0.5] if graded",
      "graded pendulum reward: levels 'at least 1' and 'at least 3' swapped",
      ENVS + "test_pendulum_graded_and_sparse_reward_at_every_level"),
    m("upright-threshold", "envs.py",
      "UPRIGHT = 0.2",
      "UPRIGHT = 0.25",
      "pendulum counts as upright below 0.25 instead of 0.2",
      ENVS + "test_pendulum_upright_threshold_is_0_2_of_the_normalised_angle"),
    m("pendulum-gravity-sign", "envs.py",
      "(3 * g / (2 * l) * torch.sin(self.th)",
      "(-3 * g / (2 * l) * torch.sin(self.th)",
      "pendulum gravity term with the wrong sign (upright becomes stable)",
      ENVS + "test_pendulum_matches_gymnasium"),
    m("pp-damping", "envs.py",
      "vel = self.vel * (1 - self.DAMPING) + force * self.DT",
      "vel = self.vel * self.DAMPING + force * self.DT",
      "predator-prey keeps 25% of the velocity instead of 75%",
      ENVS + "test_predator_prey_matches_mpe2_random_start"),
    m("po-sight", "envs.py",
      "SIGHT = 0.8",
      "SIGHT = 1.0",
      "partially observed predator-prey sees up to 1.0 instead of 0.8",
      ENVS + "test_predator_prey_matches_mpe2_with_contacts[True]"),
    # ---------------------------------------------------------------- runlib.py
    m("checkpoint-not-atomic", "runlib.py",
      'tmp = path + ".tmp"\n    try:\n        with open(tmp, "wb") as f:\n            torch.save(',
      'tmp = path\n    try:\n        with open(tmp, "wb") as f:\n            torch.save(',
      "checkpoint written straight to its path: a crash mid-write destroys the previous one",
      RUNS + "test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_loadable"),
    m("fresh-run-deletes-earlier-run", "runlib.py",
      "os.replace(os.path.join(folder, f), os.path.join(aside, f))",
      "os.remove(os.path.join(folder, f))",
      "a fresh run in an earlier run's folder deletes the earlier files instead of setting them aside",
      RUNS + "test_a_fresh_run_in_an_earlier_runs_folder_sets_the_earlier_files_aside"),
    m("fresh-run-mixes-with-earlier-run", "runlib.py",
      "names = sorted(f for f in os.listdir(folder) if is_run_file(f))",
      "names = []",
      "a fresh run writes beside the earlier run's TensorBoard events and checkpoint",
      RUNS + "test_a_fresh_run_in_an_earlier_runs_folder_sets_the_earlier_files_aside"),
    m("gif-not-atomic", "plots.py",
      'tmp = path + ".tmp"\n    try:\n        imgs[0].save(tmp,',
      'tmp = path\n    try:\n        imgs[0].save(tmp,',
      "GIFs written straight to their path: an interrupted write leaves half a GIF",
      IAC + "test_an_interrupted_gif_write_keeps_the_previous_gif"),
    m("interrupt-mid-step", "runlib.py",
      "if self.requested:\n            raise HardInterrupt(name)",
      "if True:\n            raise KeyboardInterrupt",
      "Ctrl-C stops the loop wherever it lands, and the checkpoint holds a half-done update",
      RUNS + "test_a_signal_mid_update_finishes_the_step_and_resumes_exactly[sigint]"),
    m("csv-write-leaves-temp", "runlib.py",
      "        if os.path.exists(tmp):\n            os.remove(tmp)\n        if isinstance(e, OSError):\n            sys.exit(f\"error: cannot write {path}",
      "        if isinstance(e, OSError):\n            sys.exit(f\"error: cannot write {path}",
      "a failed eval.csv write leaves its temp file behind",
      RUNS + "test_a_full_disk_while_writing_eval_csv_stops_with_a_message"),
    m("load-weights-only-false", "runlib.py",
      'return torch.load(path, weights_only=True, map_location="cpu", mmap=mmap)',
      'return torch.load(path, weights_only=False, map_location="cpu", mmap=mmap)',
      "checkpoints loaded with the full unpickler: a crafted file runs code",
      RUNS + "test_a_crafted_pickle_is_refused_and_nothing_runs"),
    m("guard-lazy-on-cpu", "runlib.py",
      'self.eager = device.type == "cpu" if eager is None else eager',
      "self.eager = False if eager is None else eager",
      "the non-finite guard defers on the CPU too, so the weights are poisoned before it stops",
      RUNS + "test_extreme_learning_rates_stop_with_the_step_the_quantity_and_a_finite_checkpoint[None]"),
    m("guard-never-raises", "runlib.py",
      "if first >= 0:",
      "if first < -1:",
      "raise_if_bad never raises: a deferred guard never stops the run",
      RUNS + "test_on_a_gpu_the_guard_is_read_at_logging_time_and_keeps_the_checkpoint_before"),
    m("seed-streams-shared", "runlib.py",
      "for name, c in zip(STREAMS, children)}",
      "for name, c in zip(STREAMS, [children[0]] * len(STREAMS))}",
      "every random stream of a run gets the same seed",
      RUNS + "test_seed_streams_are_distinct_reproducible_and_in_range"),
    m("global-rng-not-restored", "runlib.py",
      'torch.set_rng_state(state["torch_cpu"])',
      "pass",
      "--resume does not restore torch's CPU generator",
      RUNS + "test_resume_equals_the_uninterrupted_run[iac]"),
    # ---------------------------------------------------------------- populations (--seeds): iac.py, population.py, runlib.py
    m("population-loss-averaged", "iac.py",
      "loss.sum().backward()",
      "loss.mean().backward()",
      "a population's losses averaged over members instead of summed: each member's gradient 1/K as large",
      POP + "test_one_population_update_equals_K_single_run_updates[iac-sgd]"),
    m("population-global-clip", "population.py",
      "norm = torch.stack([g.flatten(1).norm(dim=1) for g in grads], 1).norm(dim=1)  # (K,)",
      "norm = torch.stack([g.norm() for g in grads]).norm().expand(grads[0].shape[0])",
      "one gradient norm over the whole population couples the members' clipping",
      POP + "test_gradient_clipping_is_per_member"),
    m("population-shared-indices", "iac.py",
      "idx = torch.randint(len(self), (*self.lead, batch_size),",
      "idx = torch.randint(len(self), (batch_size,),",
      "every member samples the same minibatch indices",
      POP + "test_population_replay_gives_each_member_its_own_transitions_and_indices"),
    m("population-members-same-init", "runlib.py",
      "return [seed_streams(seed)[\"torch\"] for seed in self.seeds]",
      "return [seed_streams(self.seeds[0])[\"torch\"] for seed in self.seeds]",
      "every member starts from the first seed's weights",
      POP + "test_member_starts_from_its_single_runs_weights"),
    m("population-target-not-updated", "population.py",
      "        return Stacked([v for k, v in self.params.items() if k.startswith(name + \".\")])",
      "        return Stacked([v.detach().clone() for k, v in self.params.items() if k.startswith(name + \".\")])",
      "pop[name] hands out copies: neither the optimisers nor the target updates reach the weights",
      POP + "test_one_population_update_equals_K_single_run_updates[ddpg_mix-adam]"),
    m("seed-max-64-bit", "runlib.py",
      "SEED_MAX = 2**32 - 1",
      "SEED_MAX = 2**64 - 1",
      "--seed accepts values beyond numpy's 32-bit legacy seed",
      BAD + "test_bad_input_exits_naming_the_flag[iac.py --seed 4294967296]"),
    # ---------------------------------------------------------------- call sites: what helper-level tests cannot see
    m("critic-target-copy-reversed", "iac.py",
      'hard_or_soft_update(nets["critic_target"], nets["critic"], args.tau)',
      'hard_or_soft_update(nets["critic"], nets["critic_target"], args.tau)',
      "update() copies the critic's targets into the online critic every T updates",
      CALLS + "test_the_hard_copy_in_update_copies_the_online_weights_into_the_targets_and_leaves_the_online_ones"),
    m("actor-target-copy-reversed", "iac.py",
      'hard_or_soft_update(nets["actor_target"], nets["actor"], args.tau)',
      'hard_or_soft_update(nets["actor"], nets["actor_target"], args.tau)',
      "update() copies the target policy into the online policy every T updates",
      CALLS + "test_the_hard_copy_in_update_copies_the_online_weights_into_the_targets_and_leaves_the_online_ones",
      CALLS + "test_polyak_in_update_moves_the_targets_towards_the_online_networks"),
    m("replay-fed-env-stream", "iac.py",
      'seed=run.streams["replay"]',
      'seed=run.streams["env"]',
      "the replay sampler is seeded with the training env's stream",
      CALLS + "test_every_random_consumer_of_a_run_holds_its_own_stream"),
    m("train-env-fed-eval-stream", "iac.py",
      'obs, state = env.reset(seed=run.streams["env"])',
      'obs, state = env.reset(seed=run.streams["eval_env"])',
      "the training env is seeded with the evaluation env's stream",
      CALLS + "test_every_random_consumer_of_a_run_holds_its_own_stream"),
    m("first-eval-fed-env-stream", "iac.py",
      'log.evaluation(0, *evaluation(args, actor, eval_env, run.streams["eval_env"], K))',
      'log.evaluation(0, *evaluation(args, actor, eval_env, run.streams["env"], K))',
      "the first evaluation's episodes come from the training env's stream",
      CALLS + "test_every_random_consumer_of_a_run_holds_its_own_stream"),
    m("loop-eval-fed-env-stream", "iac.py",
      'log.evaluation(loop.step, *evaluation(args, actor, eval_env, run.streams["eval_env"], K))',
      'log.evaluation(loop.step, *evaluation(args, actor, eval_env, run.streams["env"], K))',
      "the loop's evaluations use the training env's stream",
      GOLD + "[iac]", "tests/test_eval_only.py::test_eval_only_of_a_mid_run_checkpoint_equals_that_steps_rows"),
    m("eval-on-the-training-env", "iac.py",
      'log.evaluation(loop.step, *evaluation(args, actor, eval_env,',
      'log.evaluation(loop.step, *evaluation(args, actor, env,',
      "evaluations reset and step the training env (the authors' code does), corrupting its episodes",
      GOLD + "[iac]"),
    m("torch-fed-env-stream", "runlib.py",
      'torch.manual_seed(streams["torch"])  # also seeds every CUDA device\'s generator',
      'torch.manual_seed(streams["env"])  # also seeds every CUDA device\'s generator',
      "torch's global generator (the initial weights, the policy's noise) gets the env's stream",
      CALLS + "test_every_random_consumer_of_a_run_holds_its_own_stream"),
    m("policy-loss-through-target-critic", "iac.py",
      'actor, critic, obs, state = nets["actor"], nets["critic"], batch["obs"], batch["state"]',
      'actor, critic, obs, state = nets["actor"], nets["critic_target"], batch["obs"], batch["state"]',
      "Eq. (15) differentiates through the target critic instead of the online one",
      GOLD + "[iac]", GOLD + "[ddpg_mix]"),
    m("alpha-of-the-next-update", "iac.py",
      "alpha = alpha_value(args, nets.log_alpha, n_update - 1)",
      "alpha = alpha_value(args, nets.log_alpha, n_update)",
      "the authors' decaying alpha runs one update ahead",
      GOLD + "[iac-preset-authors]"),
    m("eval-only-prints-another-seeds-episodes", "runlib.py",
      'rets = evaluate(load_actor(targs, env, ckpt, device), env, seed_streams(*seeds)["eval_env"],',
      'rets = evaluate(load_actor(targs, env, ckpt, device), env, args.seed,',
      "--eval-only without --seed evaluates on the episodes of the default --seed, not the run's own",
      "tests/test_eval_only.py::test_eval_only_of_a_mid_run_checkpoint_equals_that_steps_rows"),
    m("stand-in-state-for-truncation-too", "envs.py",
      'if when == "terminated" and self.last_state[i] is not None:',
      'if when in ("terminated", "truncated") and self.last_state[i] is not None:',
      "a failing state() on a truncated step (whose next state is bootstrapped from) gets a stand-in too",
      FAIL + "test_a_state_that_fails_where_it_is_bootstrapped_from_stops_with_one_line"),
    m("mixer-state-obs-still-calls-state", "envs.py",
      'use_state=getattr(args, "mixer_state", "env") != "obs")',
      'use_state=True)',
      "--mixer-state obs still calls the env's state()",
      FAIL + "test_with_mixer_state_obs_the_wrapper_never_calls_state_and_the_run_trains"),
    m("env-failure-not-saved", "runlib.py",
      "            if self.args.save_model:\n                self.save()\n                saved =",
      "            if False:\n                self.save()\n                saved =",
      "a run stopped by its env's failure does not write its checkpoint first",
      FAIL + "test_a_reset_or_step_that_raises_stops_naming_the_call_after_saving_the_checkpoint"),
    m("tensorboard-failure-stops-the-run", "runlib.py",
      "        except OSError as e:\n            if self.writer is not False:",
      "        except ZeroDivisionError as e:\n            if self.writer is not False:",
      "a failing TensorBoard writer stops the run with a traceback instead of a warning",
      "tests/test_outside_failures.py::test_a_failing_tensorboard_writer_warns_once_and_the_run_goes_on"),
    m("gif-failure-traceback", "plots.py",
      "    except OSError as e:  # Pillow or the disk",
      "    except ZeroDivisionError as e:  # Pillow or the disk",
      "Pillow failing to write a GIF gives a traceback instead of one line",
      "tests/test_outside_failures.py::test_a_gif_that_pillow_cannot_write_stops_with_one_line_and_keeps_the_previous_gif"),
]

# id -> why no test can tell the mutant from the original (a survivor listed here does not fail the battery)
EQUIVALENT = {}


# ----------------------------------------------------------------------------------------------------
def repo_files():
    """The files a copy holds: tracked and untracked-not-ignored (as they are now), plus tests/data."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, check=True,
                         capture_output=True).stdout.decode()
    files = {f for f in out.split("\0") if f and os.path.isfile(os.path.join(REPO, f))}  # not deleted ones
    for folder, _, names in os.walk(os.path.join(REPO, "tests", "data")):
        files.update(os.path.relpath(os.path.join(folder, n), REPO) for n in names)
    return sorted(files)


def copy_repo(dest):
    for f in repo_files():
        os.makedirs(os.path.dirname(os.path.join(dest, f)), exist_ok=True)
        shutil.copy2(os.path.join(REPO, f), os.path.join(dest, f))


def count(root, mutant):
    path = os.path.join(root, mutant.file)
    return open(path).read().count(mutant.old) if os.path.isfile(path) else 0


def apply(root, mutant):
    path = os.path.join(root, mutant.file)
    text = open(path).read()
    if text.count(mutant.old) != 1:
        raise RuntimeError(f"mutant {mutant.id}: snippet found {text.count(mutant.old)} times in {mutant.file}")
    with open(path, "w") as f:
        f.write(text.replace(mutant.old, mutant.new))


def pytest(root, ids, timeout, stop_first):
    """Run pytest on node ids in `root`; (exit code, or None on timeout, and the output)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *(["-x"] if stop_first else []), *ids]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    # its own process group, so that a timeout also ends the processes the tests start
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return None, proc.communicate()[0]


def first_failure(output):
    """The first test pytest's summary reports FAILED or ERROR (node id without the message)."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            return line.split(" ", 1)[1].split(" - ")[0]
    return None


def skipped(output):
    """How many tests pytest's last summary line reports skipped (0 when none)."""
    tail = (output.strip().splitlines() or [""])[-1]
    words = tail.replace(",", " ").split()
    return next((int(words[i - 1]) for i, w in enumerate(words) if w == "skipped" and words[i - 1].isdigit()), 0)


def run_mutant(mutant, pristine, scratch, timeout):
    root = os.path.join(scratch, mutant.id)
    shutil.copytree(pristine, root)
    try:
        apply(root, mutant)
        t0 = time.time()
        code, out = pytest(root, mutant.tests, timeout, stop_first=True)
        seconds = time.time() - t0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if code is None:
        return "TIMEOUT", f"TIMEOUT after {timeout:g} s", seconds
    n_skipped = skipped(out) if code == 0 else 0
    if n_skipped:  # e.g. the golden runs, on a machine kind without committed data
        return "UNCHECKED", f"UNCHECKED: {n_skipped} of its tests skip here, the others pass", seconds
    if code == 0:
        return "SURVIVED", "SURVIVED", seconds
    return "KILLED", f"KILLED by {first_failure(out) or f'pytest exit {code}'}", seconds


def baseline(pristine, mutants, jobs, timeout):
    """All selected tests on the unmutated copy, split over `jobs` pytest processes; stop if any fails."""
    ids = sorted({t for mu in mutants for t in mu.tests})
    chunks = [ids[i::jobs] for i in range(jobs) if ids[i::jobs]]
    print(f"baseline: {len(ids)} test ids on the unmutated copy ...", flush=True)
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        # a limit of `timeout` per test id: a hanging test stops the baseline, a slow chunk does not
        results = list(pool.map(lambda c: pytest(pristine, c, timeout * len(c), stop_first=False), chunks))
    for code, out in results:
        if code != 0:
            sys.exit(f"{out[-6000:]}\nerror: the selected tests do not pass on the unmutated code "
                     f"({'timeout' if code is None else f'pytest exit {code}'}; output above): fix them first, "
                     "a battery over failing tests proves nothing")
    print(f"baseline: passed in {time.time() - t0:.0f} s", flush=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=2, help="mutants run at the same time (one pytest each)")
    p.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    p.add_argument("--list", action="store_true", help="list the mutants and check their snippets in the "
                   "working tree; run nothing")
    p.add_argument("--timeout", type=float, default=300, help="seconds per mutant; past it counts as killed")
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    ids = [mu.id for mu in MUTANTS]
    for what, bad in (("duplicate mutant ids", {i for i in ids if ids.count(i) > 1}),
                      ("unknown --only ids", set(args.only or []) - set(ids)),
                      ("EQUIVALENT names no mutant", set(EQUIVALENT) - set(ids))):
        if bad:
            p.error(f"{what}: {' '.join(sorted(bad))}")
    chosen = [mu for mu in MUTANTS if not args.only or mu.id in args.only]

    if args.list:
        for mu in chosen:
            n = count(REPO, mu)
            print(f"{mu.id:32} {mu.file:12} {mu.what}" + ("" if n == 1 else f"   <-- snippet found {n} times"))
            for t in mu.tests:
                print(f"{'':45} {t}")
        print(f"{len(chosen)} mutants")
        return 0

    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        pristine = os.path.join(scratch, "_pristine")
        copy_repo(pristine)
        rotted = [f"  {mu.id}: found {count(pristine, mu)} times in {mu.file}: {mu.old!r}"
                  for mu in chosen if count(pristine, mu) != 1]
        if rotted:
            sys.exit("error: these snippets no longer occur exactly once; update the battery:\n" + "\n".join(rotted))
        baseline(pristine, chosen, args.jobs, args.timeout)
        results = {}
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            futures = {pool.submit(run_mutant, mu, pristine, scratch, args.timeout): mu for mu in chosen}
            for k, fut in enumerate(concurrent.futures.as_completed(futures), 1):
                mu = futures[fut]
                results[mu.id] = fut.result()
                print(f"[{k}/{len(chosen)}] {mu.id}: {results[mu.id][1]} ({results[mu.id][2]:.1f} s)", flush=True)

    print(f"\n| mutant | file | description | result | s |\n|---|---|---|---|---|")
    for mu in chosen:
        status, text, seconds = results[mu.id]
        if status == "SURVIVED" and mu.id in EQUIVALENT:
            text = f"SURVIVED, equivalent: {EQUIVALENT[mu.id]}"
        elif status in ("KILLED", "TIMEOUT") and mu.id in EQUIVALENT:
            text += " (listed in EQUIVALENT but killed: remove it there)"
        print(f"| {mu.id} | {mu.file} | {mu.what} | {text} | {seconds:.0f} |")
    statuses = [results[mu.id][0] for mu in chosen]
    survivors = [mu.id for mu in chosen if results[mu.id][0] == "SURVIVED" and mu.id not in EQUIVALENT]
    print(f"\n{len(chosen)} mutants: {statuses.count('KILLED')} killed, {statuses.count('TIMEOUT')} timed out "
          f"(counted as killed), {statuses.count('SURVIVED') - len(survivors)} equivalent, "
          f"{statuses.count('UNCHECKED')} unchecked (tests that skip on this machine), {len(survivors)} "
          f"survived; {time.time() - t_start:.0f} s with --jobs {args.jobs}")
    if survivors:
        print("survivors: " + " ".join(survivors))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
