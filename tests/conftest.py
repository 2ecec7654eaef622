"""Shared helpers: random-weight checkpoints in BlinkDL's layout, written here independently of
dreamstate's own `save`, and BlinkDL's `rwkv` package as the reference implementation."""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path: sys.path.insert(0, str(ROOT))   # plain `pytest` without an installed package

from dreamstate.wkv_common import use_interpreter_without_gpu  # noqa: E402

# Without a GPU, Triton runs kernels only in its interpreter, which must be switched on before
# triton is first imported (its library functions are built at import time).
use_interpreter_without_gpu()

# `make test` runs two pytest processes on two cores: one thread each, and one for what they start (the end-to-end runs'
# notebooks, the kernels of the reproduce tests); more would only contend for the same two cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch  # noqa: E402
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# the rwkv package reads these at import time
os.environ["RWKV_V7_ON"] = "1"
os.environ["RWKV_CUDA_ON"] = "0"
os.environ.setdefault("RWKV_JIT_ON", "1")

import pytest
import torch


def blinkdl_state_dict(V, C, L, N, seed=0, dim_ffn=None, lora=(32, 32, 32, 64), layer0_v=False, scale=0.1):
    """Random RWKV-7 weights with the key names and shapes of BlinkDL's published .pth files
    (vectors as [1,1,C], r_k as [H,N]). Written from the checkpoint format, not from dreamstate."""
    g = torch.Generator().manual_seed(seed)
    H, F = C // N, dim_ffn or 4 * C
    dw, da, dv, dg = lora
    rnd = lambda *s, m=0.0, sc=scale: m + sc * torch.randn(*s, generator=g)
    sd = {"emb.weight": rnd(V, C, sc=1.0), "blocks.0.ln0.weight": rnd(C, m=1.0), "blocks.0.ln0.bias": rnd(C)}
    for i in range(L):
        p = f"blocks.{i}."
        sd.update({p + "ln1.weight": rnd(C, m=1.0), p + "ln1.bias": rnd(C),
                   p + "ln2.weight": rnd(C, m=1.0), p + "ln2.bias": rnd(C)})
        a = p + "att."
        for x in ("x_r", "x_w", "x_k", "x_v", "x_a", "x_g"): sd[a + x] = torch.rand(1, 1, C, generator=g)
        sd.update({a + "w0": rnd(1, 1, C, m=-1.0, sc=1.0), a + "w1": rnd(C, dw), a + "w2": rnd(dw, C),
                   a + "a0": rnd(1, 1, C), a + "a1": rnd(C, da), a + "a2": rnd(da, C),
                   a + "g1": rnd(C, dg), a + "g2": rnd(dg, C),
                   a + "k_k": rnd(1, 1, C, m=0.85), a + "k_a": rnd(1, 1, C, m=1.0), a + "r_k": rnd(H, N)})
        if i > 0 or layer0_v:
            sd.update({a + "v0": rnd(1, 1, C, m=1.0), a + "v1": rnd(C, dv), a + "v2": rnd(dv, C)})
        for m in ("receptance", "key", "value", "output"): sd[a + m + ".weight"] = rnd(C, C, sc=C ** -0.5)
        sd.update({a + "ln_x.weight": rnd(C, m=1.0), a + "ln_x.bias": rnd(C)})
        f = p + "ffn."
        sd.update({f + "x_k": torch.rand(1, 1, C, generator=g), f + "key.weight": rnd(F, C, sc=C ** -0.5),
                   f + "value.weight": rnd(C, F, sc=F ** -0.5)})
    sd.update({"ln_out.weight": rnd(C, m=1.0), "ln_out.bias": rnd(C), "head.weight": rnd(V, C, sc=C ** -0.5)})
    return sd


def rwkv_reference(path):
    "BlinkDL's own RWKV-7 (the `rwkv` package) on the CPU in fp32; it appends '.pth' itself."
    import rwkv.model
    assert str(path).endswith(".pth")
    return rwkv.model.RWKV(model=str(path)[:-4], strategy="cpu fp32")


def rel_err(a, b):
    "max |a-b| relative to the scale of b."
    return float((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30))


# two shapes: head size 64 and head size 32; L ≥ 2; vocab ≥ 256; one written in bf16 like the
# published checkpoints, one with layer 0's unused v0/v1/v2 present
SHAPES = [
    dict(V=320, C=128, L=2, N=64, dtype=torch.float32, layer0_v=False),
    dict(V=256, C=96, L=3, N=32, dtype=torch.bfloat16, layer0_v=True),
]


@pytest.fixture(params=SHAPES, ids=lambda s: f"C{s['C']}-N{s['N']}-L{s['L']}-{str(s['dtype'])[6:]}")
def blinkdl_ckpt(request, tmp_path):
    s = request.param
    sd = blinkdl_state_dict(s["V"], s["C"], s["L"], s["N"], seed=s["C"], layer0_v=s["layer0_v"])
    sd = {k: v.to(s["dtype"]) for k, v in sd.items()}
    path = tmp_path / "random.pth"
    torch.save(sd, path)
    return path, s


def pytest_collection_modifyitems(config, items):
    """The end-to-end runs (`end_to_end` marker) first: under `make test`'s `pytest -n 2 --dist loadfile
    --no-loadscope-reorder` their files are the first two scopes, one sent to each worker, so the two longest tests start at
    once and the other files fill whichever worker is free."""
    items.sort(key=lambda it: it.get_closest_marker("end_to_end") is None)


def snapshot(folder: Path) -> dict:
    "Every file under `folder` and its modification time: what an end-to-end run must leave as it was."
    return {str(f.relative_to(folder)): f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()}
