#!/usr/bin/env bash
# The one prepared script for a GPU session (H100/H200): kernel correctness on the GPU, then the
# benchmark. Run from the repository root with the package on the path:
#   PYTHONPATH=. bash kernels/gpu_check.sh
# Writes kernels/results/<device>-<date>.json (and copies it to $OUT when set).
set -uo pipefail
export PYTHONPATH="${PYTHONPATH:-.}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python - <<'PY'
import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, "cuda", torch.cuda.is_available())
PY
python -m pytest -q -x tests/test_wkv_triton.py tests/test_wkv.py -p no:cacheprovider
python kernels/bench.py "$@"
if [ -n "${OUT:-}" ]; then cp kernels/results/*.json "$OUT"/ 2>/dev/null || true; fi
