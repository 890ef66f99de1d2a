#!/usr/bin/env bash
# Issue 9's main runs on predator-prey, 200k env steps, seeds 1-3, one update per env step:
# IAC (Algorithm 1 defaults), IAC --preset authors, DDPG-MIX, DDPG-MIX --preset authors, SQ, Attn-QMIX.
#   bash experiments/issue9.sh [JOBS]      (default 2 jobs, one core each)
# Re-running skips complete runs and resumes interrupted ones from their checkpoints (every 10k steps),
# so it can be stopped at any time and started again in a later session. RUNS (default runs/issue9)
# holds the run folders; `python plots.py $RUNS/* --out figures/issue9/predator_prey_200k.png` draws them.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/issue9}
STEPS=${STEPS:-200000}
JOBS=${1:-2}
mkdir -p "$RUNS/logs"
cells=(
  "iac-alg1|iac.py"
  "iac-authors|iac.py --preset authors"
  "ddpg_mix|baselines.py --algo ddpg_mix"
  "ddpg_mix-authors|baselines.py --algo ddpg_mix --preset authors"
  "sq|baselines.py --algo sq"
  "attn_qmix|baselines.py --algo attn_qmix"
)
for seed in 1 2 3; do
  for cell in "${cells[@]}"; do
    name=${cell%%|*}
    cmd=${cell#*|}
    dir="$RUNS/predator_prey__${name}__${seed}"
    last=$(tail -n 1 "$dir/eval.csv" 2>/dev/null | cut -d, -f1 || true)
    if [[ "$last" =~ ^[0-9]+$ ]] && (( last >= STEPS )); then continue; fi
    if [[ -f "$dir/checkpoint.pt" ]]; then
      script=${cmd%% *}
      echo "python $script --resume $dir/checkpoint.pt --total-steps $STEPS --no-progress > $RUNS/logs/${name}__${seed}.log 2>&1"
    else
      echo "python $cmd --env predator_prey --seed $seed --total-steps $STEPS --exp-name $name --runs-dir $RUNS \
--save-model --checkpoint-every 10000 --no-progress > $RUNS/logs/${name}__${seed}.log 2>&1"
    fi
  done
done | OMP_NUM_THREADS=1 xargs -P "$JOBS" -I{} bash -c '{}'
