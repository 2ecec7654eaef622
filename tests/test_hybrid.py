"""The hybrid: α = 0 is the plain core, the low-rank update is what it claims, masks, the loss terms."""
import pytest
import torch

from dreamstate.diffusion import Diffusion
from dreamstate.hybrid import HybridConfig, HybridRWKV7, hybrid_loss
from dreamstate.rwkv7 import RWKV7Config

CFG = RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)


def test_alpha_zero_is_the_core_and_core_keeps_blinkdl_keys(tmp_path):
    h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=1)
    ctx, x = torch.randint(1, 256, (3, 12)), torch.randint(1, 256, (3, 9))
    with torch.no_grad(): assert torch.equal(h(ctx, None, x), h.core(x)[0])
    h.core.save(tmp_path / "core.pth")
    from dreamstate.rwkv7 import RWKV7
    assert torch.equal(RWKV7.load(tmp_path / "core.pth")(x)[0], h.core(x)[0])


def test_context_changes_logits_once_alpha_is_nonzero():
    h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=2)
    with torch.no_grad():
        for p in h.core.parameters(): p.add_(0.05 * torch.randn_like(p))
        h.alpha.fill_(0.5)
        x = torch.randint(1, 256, (1, 9))
        a = h(torch.randint(1, 256, (1, 12)), None, x)
        b = h(torch.randint(1, 256, (1, 12)), None, x)
    assert not torch.allclose(a, b)


def test_padding_mask_and_first_token_only():
    h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=3)
    ctx = torch.randint(1, 256, (2, 6))
    pad = torch.cat([ctx, torch.randint(1, 256, (2, 4))], 1)
    mask = torch.cat([torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        assert torch.allclose(h.encode(pad, mask), h.encode(ctx), atol=1e-5)
    h1 = HybridRWKV7(CFG, HybridConfig(rank=4, first_token_only=True), seed=3)
    with torch.no_grad():
        assert torch.allclose(h1.encode(ctx), h1.encode(ctx[:, :1]), atol=1e-6)


def test_loss_terms_and_frozen_alpha():
    d = Diffusion("cosine", 100)
    batch = (torch.randint(1, 256, (4, 10)), torch.ones(4, 10, dtype=torch.bool), torch.randint(1, 256, (4, 13)))
    h = HybridRWKV7(CFG, HybridConfig(rank=4, lambda_diff=0.5), seed=4)
    with torch.no_grad():   # BlinkDL's init zeroes the time-mix output, which would hide α's gradient
        for blk in h.core.blocks: blk.att.output.weight.normal_(0, 0.1)
    loss, m = hybrid_loss(h, batch, d, generator=torch.Generator().manual_seed(0))
    assert m["diffusion"] > 0 and m["reg"] == 0.0 and abs(loss.item() - m["ce"] - 0.5 * m["diffusion"]) < 1e-4
    loss.backward()
    assert h.alpha.grad.abs().sum() > 0
    frozen = HybridRWKV7(CFG, HybridConfig(rank=4, freeze_alpha=True), seed=4)
    assert not frozen.alpha.requires_grad


def test_hybrid_with_triton_backend_equals_torch_path():
    "The core of the hybrid through the Triton kernel (interpreter on the CPU) = through the chunked torch path."
    pytest.importorskip("triton", reason="triton is not installed")
    from dreamstate.wkv_triton import interpreted
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu" and not interpreted(): pytest.skip("no GPU and Triton's interpreter is off")
    h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=5).to(dev)
    with torch.no_grad():
        for p in h.core.parameters(): p.add_(0.05 * torch.randn_like(p))
        h.alpha.fill_(0.3)
        ctx, x = torch.randint(1, 256, (2, 7), device=dev), torch.randint(1, 256, (2, 11), device=dev)
        h.core.backend = "chunked"; ref = h(ctx, None, x)
        h.core.backend = "triton"; out = h(ctx, None, x)
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4
