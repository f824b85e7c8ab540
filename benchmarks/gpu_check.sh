#!/usr/bin/env bash
# The prepared GPU check (issue 24): run it on a machine with a CUDA GPU, from the repository root, with the
# project's venv built (`make venv`). At most ~8 minutes in all; results under ${OUT:-runs/gpu_check}.
#   bash benchmarks/gpu_check.sh
# 1. the CUDA tests (pytest -m cuda), 2. one peer cell on the GPU (fedsim ig, small CNN, batch 8, 300 steps;
# breaching is not run here), 3. one live attack: the smoke federation with run.device=cuda, 1 round.
set -uo pipefail
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=.venv/bin/python
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/card.csv" 2>&1 || status=1
cat "$OUT/card.csv"
timeout 240 $PY -m pytest -q -m cuda tests 2>&1 | tail -15 | tee "$OUT/cuda_tests.txt" || status=1
timeout 120 $PY benchmarks/gpu_check.py --device cuda --json "$OUT/peer_cell.json" || status=1
start=$(date +%s)
timeout 150 .venv/bin/fedsim run configs/smoke.toml --out "$OUT/smoke_cuda" --overwrite --quiet \
    --set run.device=cuda --set run.num_rounds=1 2>&1 | tail -8 | tee "$OUT/live_attack.txt" || status=1
echo "live attack run: $(( $(date +%s) - start )) s" | tee -a "$OUT/live_attack.txt"
exit $status
