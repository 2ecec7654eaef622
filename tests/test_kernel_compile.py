"""The Triton kernels compile for an H100/H200 (sm_90) on a machine without a GPU (ahead-of-time
compilation with the ptxas that Triton's wheel ships; nothing runs on a GPU)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="triton is not installed")
ROOT = Path(__file__).resolve().parents[1]
PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"


@pytest.mark.skipif(not PTXAS.exists(), reason="this triton install has no NVIDIA backend (ptxas)")
def test_kernels_compile_for_sm90():
    env = {**os.environ, "TRITON_INTERPRET": "0", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "kernels/compile_check.py", "--quick"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^(\w+)\s+N=64.*$", r.stdout, re.M)}
    assert set(lines) == {"recurrent_fwd", "recurrent_bwd", "chunked_fwd_intra", "chunked_fwd_scan",
                          "chunked_bwd_scan", "chunked_bwd_intra"}, r.stdout
    for name, line in lines.items():
        mma = int(re.search(r"mma=(\d+)", line).group(1))
        rna = int(re.search(r"cvt.rna=(\d+)", line).group(1))
        if name.startswith("chunked"):   # tl.dot became tensor-core MMAs, with TF32x3's operand splits
            assert mma > 0 and rna > 0, line
        else:                            # the recurrent kernels use no matrix products
            assert mma == 0, line
