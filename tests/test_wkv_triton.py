"""The Triton WKV-7 kernels against the sequential reference (under TRITON_INTERPRET=1 on the CPU)."""
import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed")
from dreamstate.wkv import wkv7, wkv7_sequential  # noqa: E402
from dreamstate.wkv_common import interpreted  # noqa: E402
from dreamstate.wkv_triton import wkv7_triton, max_chunk_decay  # noqa: E402
import dreamstate.wkv_triton as wt  # noqa: E402
from dreamstate.wkv_common import KERNEL_LAB_ORDER, rwkv_like_inputs  # noqa: E402
from dreamstate.rwkv7 import RWKV7, RWKV7Config  # noqa: E402

DEV = "cuda" if torch.cuda.is_available() else "cpu"
if DEV == "cpu" and not interpreted():
    pytest.skip("no GPU and Triton's interpreter is off", allow_module_level=True)


def inputs(B, T, H, N, seed=0, decay=None):
    "The shared factory in notebook 02's draw order (this file once drew w before r)."
    return rwkv_like_inputs(B, T, H, N, seed=seed, decay=decay, order=KERNEL_LAB_ORDER)


def run_both(xs, s0, **kw):
    "(outputs, grads) of the Triton kernel (float32) and of the float64 reference, same cotangents."
    xt = [x.to(DEV).requires_grad_() for x in xs]
    st = s0.to(DEV).requires_grad_() if s0 is not None else None
    y, sT = wkv7_triton(*xt, s0=st, **kw)
    g = torch.Generator().manual_seed(1)
    gy, gs = torch.randn(y.shape, generator=g), torch.randn(sT.shape, generator=g)
    params = xt + ([st] if st is not None else [])
    grads = torch.autograd.grad((y * gy.to(DEV)).sum() + (sT * gs.to(DEV)).sum(), params)
    x64 = [x.double().requires_grad_() for x in xs]
    s64 = s0.double().requires_grad_() if s0 is not None else None
    y_r, s_r = wkv7_sequential(*x64, s0=s64)
    p64 = x64 + ([s64] if s64 is not None else [])
    g_r = torch.autograd.grad((y_r * gy.double()).sum() + (s_r * gs.double()).sum(), p64)
    return [y, sT, *grads], [y_r, s_r, *g_r]


def rel(a, b):
    """Largest error relative to the reference's largest entry. Where the reference is exactly zero
    (dw at T = 1 without s0: the decay meets a zero state) the chunked form's terms cancel only to
    float32 rounding, so the error is taken against the inputs' unit scale instead."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    scale = b.abs().max()
    return float((a - b).abs().max() / (scale if scale > 0 else 1.0))


NAMES = ["y", "s_T", "dr", "dw", "dk", "dv", "da", "db", "ds0"]


# Lengths per form. The recurrent kernels meet T only in their loop bounds and in the backward pass's
# checkpoints every CHUNK = 16 steps: T = 1 (one partial chunk), 17 (a whole chunk, then a partial one),
# 64 (whole chunks only: first, middle and last) reach every path; T = 100 (whole chunks, then a partial
# one; so is T = 40 in test_triton_extreme_decays) adds none and was the slowest case under the
# interpreter. The chunked form, whose tiles mask the steps past T, keeps all four.
LENGTHS = {"recurrent": [1, 17, 64], "chunked": [1, 17, 64, 100]}


@pytest.mark.parametrize("N", [16, 32, 64])
@pytest.mark.parametrize("B,H", [(1, 1), (2, 2)])
@pytest.mark.parametrize("with_s0", [False, True])
@pytest.mark.parametrize("form,T", [(f, T) for f, Ts in LENGTHS.items() for T in Ts])
def test_triton_matches_reference(B, T, H, N, with_s0, form):
    xs = inputs(B, T, H, N, seed=B * 1000 + T + N)
    s0 = torch.randn(B, H, N, N, generator=torch.Generator().manual_seed(7)) if with_s0 else None
    ours, ref = run_both(xs, s0, form=form)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) <= 1e-4, (name, form, rel(a, b))


@pytest.mark.parametrize("chunk,bv_fwd,bv_bwd", [(32, 16, 32), (64, 32, 16), (16, 16, 16)])
def test_chunked_lengths_and_row_blocks(chunk, bv_fwd, bv_bwd):
    "Chunks of 16/32/64 steps and the scans split into blocks of value rows = the reference."
    xs = inputs(2, 70, 2, 32, seed=12)
    s0 = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(5))
    ours, ref = run_both(xs, s0, form="chunked", chunk=chunk, bv_fwd=bv_fwd, bv_bwd=bv_bwd)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) <= 1e-4, (name, chunk, rel(a, b))


def test_chunked_rejects_bad_settings():
    xs = [x.to(DEV) for x in inputs(1, 20, 1, 32)]
    for kw, msg in [(dict(chunk=8), "chunk length"), (dict(precision="fp8"), "precision"),
                    (dict(bv_fwd=8), ">= 16"), (dict(form="blocked"), "unknown form")]:
        with pytest.raises(ValueError, match=msg):
            wkv7_triton(*xs, **{"form": "chunked", **kw})


def test_max_chunk_decay():
    w = -torch.rand(2, 37, 3, 16, generator=torch.Generator().manual_seed(0))
    brute = max(float(-w[:, s:s + 16].sum(1).min()) for s in range(0, 37, 16))
    assert abs(max_chunk_decay(w, 16) - brute) < 1e-5
    assert abs(max_chunk_decay(w, 64) - float(-w.sum(1).min())) < 1e-5


@pytest.mark.parametrize("bv_fwd,bv_bwd", [(8, 8), (16, 32), (32, 16)])
def test_triton_row_blocks(bv_fwd, bv_bwd):
    "The state split into blocks of value rows (forward and backward, float32 partials) = whole state."
    xs = inputs(2, 19, 2, 32, seed=11)
    s0 = torch.randn(2, 2, 32, 32, generator=torch.Generator().manual_seed(5))
    ours, ref = run_both(xs, s0, bv_fwd=bv_fwd, bv_bwd=bv_bwd)
    for name, a, b in zip(NAMES, ours, ref):
        assert rel(a, b) <= 1e-4, (name, bv_fwd, bv_bwd, rel(a, b))


def test_triton_rejects_bad_row_block():
    xs = inputs(1, 4, 1, 16)
    with pytest.raises(ValueError, match="rows per program"):
        wkv7_triton(*[x.to(DEV) for x in xs], bv_fwd=32)


@pytest.mark.parametrize("decay", [-20.0, -1e-5])
@pytest.mark.parametrize("form", ["recurrent", "auto"])
def test_triton_extreme_decays(decay, form):
    "Decays near 0 (w = -20: `auto` falls back to the recurrent kernels) and near 1 (w = -1e-5: chunked)."
    xs = inputs(1, 40, 1, 16, seed=3, decay=decay)
    s0 = torch.randn(1, 1, 16, 16)
    ours, ref = run_both(xs, s0, form=form)
    for name, a, b in zip(NAMES, ours, ref):
        assert torch.isfinite(a).all(), name
        assert rel(a, b) <= 1e-4, (name, rel(a, b))


def test_chunked_refuses_decays_beyond_its_limit():
    xs = [x.to(DEV) for x in inputs(1, 40, 1, 16, seed=3, decay=-20.0)]
    with pytest.raises(ValueError, match="total log decay"):
        wkv7_triton(*xs, form="chunked")


@pytest.mark.parametrize("form", ["recurrent", "chunked"])
def test_triton_half_precision_inputs(form):
    "bf16 inputs: output in bf16, state float32, close to the float32 reference."
    xs = inputs(1, 24, 1, 16, seed=4)
    y, sT = wkv7_triton(*[x.to(DEV, torch.bfloat16) for x in xs], form=form)
    y_r, s_r = wkv7_sequential(*[x.to(torch.bfloat16).double() for x in xs])
    assert y.dtype == torch.bfloat16 and sT.dtype == torch.float32
    assert rel(y.float(), y_r) < 2e-2 and rel(sT, s_r) < 1e-4


@pytest.mark.parametrize("form", ["recurrent", "chunked"])
def test_model_with_triton_backend_equals_torch_path(form, monkeypatch):
    monkeypatch.setattr(wt, "DEFAULT_FORM", form)     # what `wkv7(backend="triton")` uses
    torch.manual_seed(0)
    m = RWKV7(RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16))
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.1 * torch.randn_like(p))
    m = m.to(DEV)
    toks = torch.randint(0, 256, (2, 19), device=DEV)
    with torch.no_grad():
        m.backend = "chunked"; ref, s_ref = m(toks)
        m.backend = "triton"; out, s_out = m(toks)
    assert rel(out, ref.double()) < 1e-4 and rel(s_out.wkv, s_ref.wkv.double()) < 1e-4


def test_cpu_tensors_without_interpreter_fail_clearly(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="needs CUDA tensors"):
        wt._check_device(torch.zeros(1))
