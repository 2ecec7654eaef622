"""The chunked WKV-7 against the sequential reference: outputs, final state and every gradient."""
import pytest
import torch

from dreamstate.wkv import wkv7, wkv7_chunked, wkv7_sequential
from dreamstate.wkv_common import rwkv_like_inputs as inputs


def rel(a, b): return float((a - b).detach().abs().max() / b.detach().abs().max().clamp_min(1e-6))


@pytest.mark.parametrize("T", [1, 17, 64, 100])
@pytest.mark.parametrize("B,H,N", [(1, 1, 16), (2, 2, 32), (1, 2, 64)])
@pytest.mark.parametrize("with_s0", [False, True])
def test_chunked_matches_sequential_forward_backward(B, T, H, N, with_s0):
    xs = [t.double().requires_grad_() for t in inputs(B, T, H, N, seed=T + N)]
    s0 = torch.randn(B, H, N, N, dtype=torch.float64, requires_grad=True) if with_s0 else None
    outs = {}
    for name, fn in (("seq", wkv7_sequential), ("chunk", wkv7_chunked)):
        y, s = fn(*xs, s0=s0)
        g = torch.Generator().manual_seed(0)
        gy = torch.randn(y.shape, generator=g, dtype=y.dtype); gs = torch.randn(s.shape, generator=g, dtype=s.dtype)
        grads = torch.autograd.grad((y * gy).sum() + (s * gs).sum(), xs + ([s0] if with_s0 else []))
        outs[name] = (y, s, grads)
    (y1, s1, g1), (y2, s2, g2) = outs["seq"], outs["chunk"]
    assert rel(y2, y1) <= 1e-6 and rel(s2, s1) <= 1e-6
    for name, a, b in zip(["r", "w", "k", "v", "a", "b", "s0"], g2, g1):
        assert rel(a, b) <= 1e-6, name


def test_gradcheck_float64():
    xs = [t.double().requires_grad_() for t in inputs(1, 7, 1, 4, seed=5)]
    s0 = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *x: wkv7_chunked(*x[:6], s0=x[6], chunk_len=4), (*xs, s0))


@pytest.mark.parametrize("decay", [-30.0, -8.0, -1e-6])
def test_extreme_decays(decay):
    "Decays near 0 (w ≪ 0) and near 1 (w → 0) stay finite and agree."
    xs = inputs(2, 50, 2, 16, seed=3, decay=decay)
    y1, s1 = wkv7_sequential(*xs)
    y2, s2 = wkv7_chunked(*xs)
    assert torch.isfinite(y2).all() and torch.isfinite(s2).all()
    assert rel(y2, y1) <= 1e-4 and rel(s2, s1) <= 1e-4


def test_float32_inputs_give_float32_state_and_input_dtype_output():
    xs = inputs(1, 20, 1, 16)
    y, s = wkv7(*xs, backend="chunked")
    assert y.dtype == torch.float32 and s.dtype == torch.float32 and s.shape == (1, 1, 16, 16)
    y16, s16 = wkv7(*[t.to(torch.bfloat16) for t in xs], backend="chunked")
    assert y16.dtype == torch.bfloat16 and s16.dtype == torch.float32


def test_auto_backend_on_cpu_equals_reference():
    xs = inputs(1, 33, 2, 16, seed=9)
    y, s = wkv7(*xs)
    y_ref, s_ref = wkv7(*xs, backend="torch")
    assert rel(y, y_ref) <= 1e-5 and rel(s, s_ref) <= 1e-5


def test_bad_inputs_are_named():
    xs = inputs(1, 8, 1, 16)
    with pytest.raises(ValueError, match="`k` has shape"):
        wkv7(xs[0], xs[1], xs[2][:, :4], *xs[3:])
    with pytest.raises(ValueError, match=r"\[B,T,H,N\]"):
        wkv7(xs[0][0], *xs[1:])
    with pytest.raises(TypeError, match="`v` is torch.float64"):
        wkv7(*xs[:3], xs[3].double(), *xs[4:])
    with pytest.raises(ValueError, match="`s0` must have shape"):
        wkv7(*xs, s0=torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="unknown backend"):
        wkv7(*xs, backend="cuda")
    with pytest.raises(ValueError, match="T = 0"):
        wkv7(*[t[:, :0] for t in xs])
