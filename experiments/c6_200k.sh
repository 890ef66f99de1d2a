#!/usr/bin/env bash
# Claims C6 and C7 at 200k env steps with 5 seeds: each cell a 5-seed population (one process, --seeds),
# one update per env step, evaluated every 1,000 steps; read with experiments/rliable_table.py over the
# (190k, 200k] window.
#   bash experiments/c6_200k.sh [CELL ...]     (default: every cell, one after another, on one core)
#   ENV=po_predator_prey bash experiments/c6_200k.sh    (C7's cells)
# Cells (the schedule of SIAQ, MADDPG and MAAC is Algorithm 1's, i.e. baselines.py's defaults):
#   iac-alg1          IAC as the paper writes it (--preset paper; the defaults until 2026-12-06)
#   iac-authors       IAC under the authors' reading, on mpe2's task (--preset authors; the defaults since)
#   ddpg_mix-alg1     DDPG-MIX under Algorithm 1
#   ddpg_mix-warmup   DDPG-MIX under its best reading at 100k (2,000 random warm-up steps: 72.7 +- 22.7)
#   siaq, maddpg, maac
# C7 (po_predator_prey) runs iac-alg1, iac-authors, ddpg_mix-alg1 and maac.
# C3 and C5 (multi_pendulum, STEPS default 60000: one run of the authors' IAC learns the sparse 3-pendulum
# between 30k and 50k, docs/experiments.md "The 3-pendulum's budget"):
#   ENV=multi_pendulum bash experiments/c6_200k.sh            C3: the sparse 3-pendulum, Fig. 4a's five methods
#   ENV=multi_pendulum N=5 GRADED=1 bash experiments/c6_200k.sh iac-authors siaq     C5: Fig. 6, n in {3, 5, 7}
#   N (pendulums, default 3) and GRADED=1 (the graded reward of Fig. 6) name the cell: iac-authors-n5-graded,
#   siaq-graded (n = 3).
# Re-running skips complete cells and resumes interrupted ones from their checkpoint (every 10k steps, and
# on Ctrl-C), so the grid can be stopped at any time and carried on in a later session. RUNS (default
# runs/c6_200k) holds the run folders and logs/. Two lanes on two cores: give each lane its own cells.
# Where runs/ does not outlive a session, a cell must finish within one: split a long one by seed
# (SEEDS=1, then SEEDS=2, ...; each seed is then a one-seed run).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-runs/c6_200k}
ENV=${ENV:-predator_prey}
if [[ "$ENV" == multi_pendulum ]]; then STEPS=${STEPS:-60000}; else STEPS=${STEPS:-200000}; fi
SEEDS=${SEEDS:-1,2,3,4,5}
declare -A CELLS=(
  [iac-alg1]="iac.py --preset paper"
  [iac-authors]="iac.py --preset authors"
  [ddpg_mix-alg1]="baselines.py --algo ddpg_mix"
  [ddpg_mix-warmup]="baselines.py --algo ddpg_mix --learning-starts 2000"
  [siaq]="baselines.py --algo siaq"
  [maddpg]="baselines.py --algo maddpg"
  [maac]="baselines.py --algo maac"
)
case "$ENV" in
  predator_prey) ORDER=(ddpg_mix-alg1 iac-alg1 iac-authors ddpg_mix-warmup siaq maddpg maac) ;;
  po_predator_prey) ORDER=(iac-alg1 iac-authors ddpg_mix-alg1 maac) ;;
  multi_pendulum) ORDER=(iac-authors iac-alg1 siaq ddpg_mix-alg1 maddpg maac) ;;
  *) echo "error: ENV=$ENV: C6 is predator_prey, C7 po_predator_prey, C3 and C5 multi_pendulum" >&2; exit 2 ;;
esac
SUFFIX="" ENV_FLAGS=""  # ENV_FLAGS starts with a space where it is not empty
if [[ -n "${N:-}${GRADED:-}" ]]; then
  [[ "$ENV" == multi_pendulum ]] || { echo "error: N and GRADED are multi_pendulum's (C3, C5); ENV=$ENV" >&2; exit 2; }
  N=${N:-3} GRADED=${GRADED:-0}
  [[ "$N" =~ ^0*[1-9][0-9]*$ ]] || { echo "error: N=$N: give the number of pendulums, e.g. N=5" >&2; exit 2; }
  [[ "$GRADED" =~ ^[01]$ ]] || { echo "error: GRADED=$GRADED: give GRADED=1 for Fig. 6's graded reward" >&2; exit 2; }
  N=$((10#$N))  # 05 -> 5
  if (( N != 3 )); then SUFFIX="-n$N" ENV_FLAGS=" --n-agents $N"; fi  # 3, the default, names no suffix
  if (( GRADED )); then SUFFIX+="-graded" ENV_FLAGS+=" --graded-reward"; fi
fi
[[ "$SEEDS" =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "error: SEEDS=$SEEDS: give seeds as 1,2,3,4,5" >&2; exit 2; }
SEEDS=$(echo "$SEEDS" | awk -F, '{for (i = 1; i <= NF; i++) printf "%s%d", (i > 1 ? "," : ""), $i}')  # 01 -> 1
[[ "$STEPS" =~ ^[1-9][0-9]*$ ]] && (( STEPS % 1000 == 0 )) ||
  { echo "error: STEPS=$STEPS: give a multiple of 1000 (the evaluation interval; a cell is complete at its last one)" >&2; exit 2; }
for cell in "$@"; do
  [[ " ${ORDER[*]} " == *" $cell "* ]] || { echo "error: unknown cell $cell for $ENV (one of ${ORDER[*]})" >&2; exit 2; }
done
mkdir -p "$RUNS/logs"
for base in "${@:-${ORDER[@]}}"; do
  cell=$base$SUFFIX
  pop="${ENV}__${cell}__seeds-${SEEDS//,/-}"
  [[ "$SEEDS" == *,* ]] || pop="${ENV}__${cell}__${SEEDS}"  # one seed: a plain run folder
  last_seed=${SEEDS##*,}
  last=$(tail -n 1 "$RUNS/${ENV}__${cell}__${last_seed}/eval.csv" 2>/dev/null | cut -d, -f1 || true)
  if [[ "$last" =~ ^[0-9]+$ ]] && (( last >= STEPS )); then echo "$cell: complete"; continue; fi
  cmd=${CELLS[$base]}
  if [[ -f "$RUNS/$pop/checkpoint.pt" ]]; then
    cmd="python ${cmd%% *} --resume $RUNS/$pop/checkpoint.pt --total-steps $STEPS --no-progress"
  else
    cmd="python $cmd --env $ENV$ENV_FLAGS --seeds $SEEDS --total-steps $STEPS --exp-name $cell --runs-dir $RUNS \
--save-model --checkpoint-every 10000 --no-progress"
  fi
  echo "$(date -u +%FT%TZ) $cmd"
  log="$RUNS/logs/$pop.log"  # appended: a resumed cell keeps the log of its earlier segments
  if ! OMP_NUM_THREADS=1 $cmd >> "$log" 2>&1; then
    echo "error: $cell stopped; the end of $log:" >&2
    tail -n 3 "$log" >&2
    exit 1
  fi
done
