#!/usr/bin/env bash
# The checks that need a GPU, in one go: the CUDA tests (skipped on machines without one) and the
# population bench on the GPU. Writes its logs to $OUT (default /tmp/device_check).
#     bash bench/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout "${TEST_TIMEOUT:-300}" $PY -m pytest -q -rs -p no:cacheprovider -k "cuda or gpu" \
  tests/test_envs.py tests/test_runs.py tests/test_iac.py tests/test_bad_inputs.py 2>&1 | tee "$OUT/cuda_tests.log"
timeout "${BENCH_TIMEOUT:-240}" $PY bench/train.py --cuda --algos iac,ddpg_mix --members "${MEMBERS:-1,5,20}" \
  2>&1 | tee "$OUT/bench_cuda.md"
