#!/usr/bin/env bash
# The one prepared script for a GPU session (H100/H200): kernel correctness on the GPU, then the
# configuration sweep and the benchmark against fla. Run from the repository root:
#   PYTHONPATH=. bash kernels/gpu_check.sh
# fla is not on the GPU image: carry its wheels in .whl/ (kernels/README.md says how) and they
# are installed to /tmp/site first. Writes kernels/results/<device>-<date>.json, and copies it and
# the log to $OUT when set.
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:-.}" PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
LOG="${OUT:-/tmp}/gpu_check.log"
{
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
python3 - <<'PY'
import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.cuda.is_available())
try:
    import fla; print("fla", fla.__version__)
except Exception as e: print("fla not importable:", e)
PY
timeout 240 python3 -m pytest -q -x tests/test_wkv_triton.py -p no:cacheprovider 2>&1 | tail -8
python3 kernels/bench.py "$@"
} 2>&1 | tee "$LOG"
if [ -n "${OUT:-}" ]; then cp kernels/results/*.json "$OUT"/ 2>/dev/null || true; fi
