#!/usr/bin/env bash
# Issue 11's learning curves on your-own-task envs: copy the runs' eval.csv into figures/issue11/data,
# draw one figure per env and write the final-return tables (experiments/final_table.py).
#   bash experiments/issue11_summary.sh [RUNS]      (RUNS: the --runs-dir of the runs, default runs)
# The runs (README "Your own task"):
#   python iac.py --preset paper --env pz:mpe2.simple_spread_v3 --seeds 1,2,3 --total-steps 100000 --save-model
#   python iac.py --preset paper --env pz:mpe2.simple_spread_v3 --alpha 0.1 --alpha-decay 1e-6 --alpha-min 0.01 \
#     --exp-name iac-alpha_sched --seeds 1,2,3 --total-steps 100000 --save-model
#   python baselines.py --algo ddpg_mix --env pz:mpe2.simple_spread_v3 --seeds 1,2,3 --total-steps 100000 --save-model
#   python {iac.py --preset paper,baselines.py --algo ddpg_mix} --env mamujoco:HalfCheetah-2x3 --seeds 1,2,3 --total-steps 50000 \
#     --eval-every 5000 --eval-episodes 5 --save-model
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-runs}
OUT=figures/issue11
for d in "$RUNS"/pz-mpe2.simple_spread_v3__*__[0-9]* "$RUNS"/mamujoco-HalfCheetah-2x3__*__[0-9]*; do
  [[ -f "$d/eval.csv" ]] || continue
  mkdir -p "$OUT/data/$(basename "$d")"
  cp "$d/eval.csv" "$OUT/data/$(basename "$d")/eval.csv"
done
python plots.py "$OUT"/data/pz-mpe2.simple_spread_v3__* --out "$OUT/simple_spread_100k.png" \
  --title "simple_spread_v3 (mpe2, continuous): IAC vs DDPG-MIX, 3 seeds"
python plots.py "$OUT"/data/mamujoco-HalfCheetah-2x3__* --out "$OUT/halfcheetah_2x3_50k.png" \
  --title "Multi-Agent MuJoCo HalfCheetah 2x3: IAC vs DDPG-MIX, 3 seeds"
python experiments/final_table.py "$OUT"/data/pz-mpe2.simple_spread_v3__* --last 10 --csv "$OUT/simple_spread_final.csv"
python experiments/final_table.py "$OUT"/data/mamujoco-HalfCheetah-2x3__* --last 3 --csv "$OUT/halfcheetah_final.csv"
