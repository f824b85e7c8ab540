#!/usr/bin/env bash
# The prepared GPU check (issues 24, 33): run it on a machine with a CUDA GPU, from the repository root, with the
# project's venv built (`make venv`). At most 10 minutes in all (the steps' timeouts sum to 600 s); results under
# ${OUT:-runs/gpu_check}.
#   bash benchmarks/gpu_check.sh
# 1. the card (nvidia-smi and torch.cuda.get_device_name), 2. the CUDA tests (pytest -m cuda: the attack-and-score
# path on the GPU, scoring included), 3. one peer cell on the GPU with timings (fedsim ig, small CNN, batch 8,
# 300 steps, scored on the device), 4. one live demo-sized federation with run.device=cuda (configs/demo.toml,
# 1 round, both attacked clients) whose rows must all be scored: benchmarks/check_run_rows.py refuses the run
# when an inversion row lacks PSNR, SSIM or identifiability, or any row has a score_error (a federation whose
# scoring failed still exits 0). Any failing step fails the script, which says which.
set -euo pipefail
OUT=${OUT:-runs/gpu_check}
PY=${PY:-.venv/bin/python}
FEDSIM=${FEDSIM:-.venv/bin/fedsim}
mkdir -p "$OUT"
export FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1
export FLWR_HOME=${FLWR_HOME:-$PWD/$OUT/flwr_home}
failed=()

step() {  # step NAME TIMEOUT_S COMMAND...: run one step, keep going, remember a failure
    local name=$1 limit=$2
    shift 2
    local start=$(date +%s)
    echo "== $name (timeout ${limit}s)"
    if timeout "$limit" "$@"; then
        echo "== $name: ok ($(( $(date +%s) - start )) s)"
    else
        echo "== $name: FAILED (exit $?, $(( $(date +%s) - start )) s)"
        failed+=("$name")
    fi
}

step card 30 bash -c "set -o pipefail; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee '$OUT/card.csv' \
    && $PY -c 'import torch; assert torch.cuda.is_available(), \"torch sees no CUDA device\"; \
print(\"torch\", torch.__version__, \"on\", torch.cuda.get_device_name(0))' | tee -a '$OUT/card.csv'"
step cuda_tests 150 bash -c "set -o pipefail; $PY -m pytest -q -m cuda tests 2>&1 | tail -15 | tee '$OUT/cuda_tests.txt'"
step peer_cell 90 $PY -m benchmarks.gpu_check --device cuda --json "$OUT/peer_cell.json"
step live_federation 300 bash -c "set -o pipefail; $FEDSIM run configs/demo.toml --out '$OUT/demo_cuda' --overwrite \
    --quiet --set run.device=cuda --set run.num_rounds=1 --set attack.rounds=1 --set attack.inversion_steps=200 \
    2>&1 | tail -8 | tee '$OUT/live_federation.txt'"
step live_rows_scored 30 bash -c "set -o pipefail; $PY -m benchmarks.check_run_rows '$OUT/demo_cuda' 2>&1 \
    | tee -a '$OUT/live_federation.txt'"

if (( ${#failed[@]} )); then
    echo "gpu_check: FAILED steps: ${failed[*]} (outputs under $OUT)"
    exit 1
fi
echo "gpu_check: all steps passed (outputs under $OUT)"
