#!/usr/bin/env bash
# The one prepared script for a GPU session (H100/H200): the benchmark against fla (timings at the
# four shapes, bf16 errors at T=4096), the kernel tests on the GPU, then the chunked form's
# configuration sweep — most important first, so a time limit cuts the least. From the repository root:
#   PYTHONPATH=. bash kernels/gpu_check.sh
# fla is not on the GPU image: carry its wheels in .whl/ (kernels/README.md says how) and they
# are installed to /tmp/site first. Results: kernels/results/<device>-<date>.json, or directly in
# $OUT when it is set (the JSON is rewritten after each phase, so a run stopped by its time limit
# still returns what it measured); the log goes next to it.
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:-.}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
RESULTS="${OUT:-kernels/results}"
LOG="$RESULTS/gpu_check.log"
mkdir -p "$RESULTS"
{
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 - <<'PY'
import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.cuda.is_available())
try:
    import fla; print("fla", fla.__version__)
except Exception as e: print("fla not importable:", e)
PY
# 1. timings at the four shapes and bf16 errors at T=4096 (every implementation; the errors phase
#    is also the first check of both Triton forms on the GPU against the float32 reference)
python3 kernels/bench.py --out "$RESULTS" --phases timings,errors "$@"
# 2. the kernel tests on the GPU (both forms against the sequential reference; many compilations)
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest -q --tb=line tests/test_wkv_triton.py -p no:cacheprovider 2>&1 | tail -15
# 3. the chunked form's configuration sweep, merged into the same JSON
python3 kernels/bench.py --out "$RESULTS" --phases sweep "$@"
date -u
} 2>&1 | tee "$LOG"
