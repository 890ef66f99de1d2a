#!/usr/bin/env bash
# Issue 9's runs on predator-prey (`--preset authors` set --predator-action mpe5 then; the cells
# below say it by hand, as the preset no longer does), seeds 1-3 (SEEDS), one update per env step.
#   bash experiments/issue9.sh [JOBS]      (default 2 jobs, one core each)
# GRID=main (default): 200k env steps of IAC (Algorithm 1 defaults), IAC --preset authors, DDPG-MIX,
#   DDPG-MIX --preset authors, SQ, Attn-QMIX.
# GRID=factors: 100k env steps of the one-factor runs: each Algorithm-1 default put back to the earlier
#   one alone (Polyak targets, 2,000 random warm-up steps, u' from the current policy), the authors'
#   preset, for IAC and DDPG-MIX, and the preset with mpe2's predator actions (the preset's env change
#   taken out), and DDPG-MIX's preset with gradient clipping or the env's state put back; and IAC with the authors'
#   temperature schedule alone (issue 11 found the learned temperature running away on simple_spread) or
#   the authors' actor objective alone (the mean of the Q_i); and the critic split of the preset with
#   mpe2's actions: the authors' shared critic alone, and the preset with Eq. (19)-(21)'s critic; and the
#   authors' exploration alone: their policy (fixed D, tanh-bounded rank-1 L, mean jitter, no squashing)
#   with their temperature schedule, which it needs (a learned alpha cannot reach entropy -nd when D
#   is fixed at 1e-6 and L is bounded).
# GRID=c4: IAC --preset authors and IAC on the 3-pendulum (ENV=multi_pendulum) at the default tier's
#   pendulum settings (20k env steps, 4 env copies, one update per 4 steps, reproduce.py), so that the
#   default tier's IAC runs are the comparison; for claim C4 (experiments/c4_sigma.py reads their
#   covariance.npz).
# Re-running skips complete runs and resumes interrupted ones from their checkpoints (every 10k steps),
# so it can be stopped at any time and started again in a later session. RUNS (default runs/issue9)
# holds the run folders; `python plots.py $RUNS/* --out figures/issue9/predator_prey_200k.png` draws them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/issue9}
GRID=${GRID:-main}
ENV=${ENV:-predator_prey}
SEEDS=${SEEDS:-1 2 3}
JOBS=${1:-2}
mkdir -p "$RUNS/logs"
if [[ "$GRID" == factors ]]; then
STEPS=${STEPS:-100000}
cells=(
  "iac-alg1|iac.py"
  "ddpg_mix|baselines.py --algo ddpg_mix"
  "ddpg_mix-polyak|baselines.py --algo ddpg_mix --tau 0.01 --target-update-interval 1"
  "ddpg_mix-warmup|baselines.py --algo ddpg_mix --learning-starts 2000"
  "iac-warmup|iac.py --learning-starts 2000"
  "iac-polyak|iac.py --tau 0.01 --target-update-interval 1"
  "iac-authors|iac.py --preset authors --predator-action mpe5"
  "ddpg_mix-authors|baselines.py --algo ddpg_mix --preset authors --predator-action mpe5"
  "iac-authors-mpe2|iac.py --preset authors --predator-action mpe2"
  "iac-alpha_sched|iac.py --alpha 0.1 --alpha-decay 1e-6 --alpha-min 0.01"
  "ddpg_mix-authors-clip|baselines.py --algo ddpg_mix --preset authors --grad-clip 10 --predator-action mpe5"
  "ddpg_mix-authors-state|baselines.py --algo ddpg_mix --preset authors --mixer-state env --predator-action mpe5"
  "iac-mean_q|iac.py --actor-objective mean_q"
  "iac-current|iac.py --next-action current"
  "iac-critic_shared|iac.py --critic attention_shared"
  "iac-authors-mpe2-attention|iac.py --preset authors --predator-action mpe2 --critic attention"
  "iac-authors_policy|iac.py --cov-diag fixed --l-bound tanh --rank 1 --mean-noise 0.05 --squash none --alpha 0.1 --alpha-decay 1e-6 --alpha-min 0.01"
)
elif [[ "$GRID" == c4 ]]; then
STEPS=${STEPS:-20000}
cells=(
  "iac-authors|iac.py --preset authors --num-envs 4 --updates-per-step 0.25"
  "iac-alg1|iac.py --num-envs 4 --updates-per-step 0.25"
)
else
STEPS=${STEPS:-200000}
cells=(
  "iac-alg1|iac.py"
  "iac-authors|iac.py --preset authors --predator-action mpe5"
  "ddpg_mix|baselines.py --algo ddpg_mix"
  "ddpg_mix-authors|baselines.py --algo ddpg_mix --preset authors --predator-action mpe5"
  "sq|baselines.py --algo sq"
  "attn_qmix|baselines.py --algo attn_qmix"
)
fi
# POP=1: the seeds of a cell that are left train as one population (--seeds, one process, README
# "Populations"); POP=0 (default): one process per seed.
POP=${POP:-0}
for cell in "${cells[@]}"; do      # cell by cell, so that each finished cell has all its seeds
  name=${cell%%|*}
  cmd=${cell#*|}
  # these cells ran when Algorithm 1 was iac.py's default; since 2026-12-06 that reading is --preset paper
  [[ "$cmd" == iac.py* && "$cmd" != *--preset* ]] && cmd="iac.py --preset paper${cmd#iac.py}"
  script=${cmd%% *}
  todo=()
  for seed in $SEEDS; do
    last=$(tail -n 1 "$RUNS/${ENV}__${name}__${seed}/eval.csv" 2>/dev/null | cut -d, -f1 || true)
    if [[ "$last" =~ ^[0-9]+$ ]] && (( last >= STEPS )); then continue; fi
    todo+=("$seed")
  done
  if [[ "$POP" == 1 ]] && (( ${#todo[@]} > 1 )); then
    ckpt="$RUNS/${ENV}__${name}__seeds-$(IFS=-; echo "${todo[*]}")/checkpoint.pt"
    log="$RUNS/logs/${ENV}__${name}__seeds-$(IFS=-; echo "${todo[*]}").log"
    if [[ -f "$ckpt" ]]; then
      echo "python $script --resume $ckpt --total-steps $STEPS --no-progress > $log 2>&1"
    else
      echo "python $cmd --env $ENV --seeds $(IFS=,; echo "${todo[*]}") --total-steps $STEPS --exp-name $name \
--runs-dir $RUNS --save-model --checkpoint-every 10000 --no-progress > $log 2>&1"
    fi
    continue
  fi
  for seed in "${todo[@]}"; do
    dir="$RUNS/${ENV}__${name}__${seed}"
    if [[ -f "$dir/checkpoint.pt" ]]; then
      echo "python $script --resume $dir/checkpoint.pt --total-steps $STEPS --no-progress > $RUNS/logs/${ENV}__${name}__${seed}.log 2>&1"
    else
      echo "python $cmd --env $ENV --seed $seed --total-steps $STEPS --exp-name $name --runs-dir $RUNS \
--save-model --checkpoint-every 10000 --no-progress > $RUNS/logs/${ENV}__${name}__${seed}.log 2>&1"
    fi
  done
done | OMP_NUM_THREADS=1 xargs -P "$JOBS" -I{} bash -c '{}'
