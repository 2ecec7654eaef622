"""The hybrid: α = 0 is the plain core, the low-rank update is what it claims, masks, the loss terms."""
import pytest
import torch

from dreamstate.diffusion import Diffusion
from dreamstate.hybrid import HybridConfig, HybridRWKV7, hybrid_loss
from dreamstate.rwkv7 import RWKV7Config, next_token_nll

CFG = RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)


def test_alpha_zero_is_the_core_and_core_keeps_blinkdl_keys(tmp_path):
    torch.manual_seed(1); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=1)
    ctx, x = torch.randint(1, 256, (3, 12)), torch.randint(1, 256, (3, 9))
    with torch.no_grad(): assert torch.equal(h(ctx, None, x).logits, h.core(x)[0])
    h.core.save(tmp_path / "core.pth")
    from dreamstate.rwkv7 import RWKV7
    assert torch.equal(RWKV7.load(tmp_path / "core.pth")(x)[0], h.core(x)[0])


def test_context_changes_logits_once_alpha_is_nonzero():
    torch.manual_seed(2); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=2)
    with torch.no_grad():
        for p in h.core.parameters(): p.add_(0.05 * torch.randn_like(p))
        h.alpha.fill_(0.5)
        x = torch.randint(1, 256, (1, 9))
        a = h(torch.randint(1, 256, (1, 12)), None, x).logits
        b = h(torch.randint(1, 256, (1, 12)), None, x).logits
    assert not torch.allclose(a, b)


def test_padding_mask_and_first_token_only():
    torch.manual_seed(3); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=3)
    ctx = torch.randint(1, 256, (2, 6))
    pad = torch.cat([ctx, torch.randint(1, 256, (2, 4))], 1)
    mask = torch.cat([torch.ones(2, 6, dtype=torch.bool), torch.zeros(2, 4, dtype=torch.bool)], 1)
    with torch.no_grad():
        assert torch.allclose(h.encode(pad, mask), h.encode(ctx), atol=1e-5)
    torch.manual_seed(3); h1 = HybridRWKV7(CFG, HybridConfig(rank=4, first_token_only=True), seed=3)
    with torch.no_grad():
        assert torch.allclose(h1.encode(ctx), h1.encode(ctx[:, :1]), atol=1e-6)


def test_loss_terms_and_frozen_alpha():
    d = Diffusion("cosine", 100)
    batch = (torch.randint(1, 256, (4, 10)), torch.ones(4, 10, dtype=torch.bool), torch.randint(1, 256, (4, 13)))
    torch.manual_seed(4); h = HybridRWKV7(CFG, HybridConfig(rank=4, lambda_diff=0.5), seed=4)
    with torch.no_grad():   # BlinkDL's init zeroes the time-mix output, which would hide α's gradient
        for blk in h.core.blocks: blk.att.output.weight.normal_(0, 0.1)
    loss, m = hybrid_loss(h, batch, d, generator=torch.Generator().manual_seed(0))
    assert m["diffusion"] > 0 and m["reg"] > 0 and abs(loss.item() - m["ce"] - 0.5 * m["diffusion"] - 1e-3 * m["reg"]) < 1e-4
    loss.backward()
    assert h.alpha.grad.abs().sum() > 0
    torch.manual_seed(4); frozen = HybridRWKV7(CFG, HybridConfig(rank=4, freeze_alpha=True), seed=4)
    assert not frozen.alpha.requires_grad and torch.equal(frozen.alpha, torch.zeros_like(frozen.alpha))


def _with_output(alpha, head_zero=False, head_init=1.0):
    "A hybrid whose time-mix output projection is non-zero (as after the first step), with α and the head set."
    torch.manual_seed(6); h = HybridRWKV7(CFG, HybridConfig(rank=4, ctx_dim=16, head_init=head_init), seed=6)
    with torch.no_grad():
        for blk in h.core.blocks: blk.att.output.weight.normal_(0, 0.1)
        h.alpha.fill_(alpha)
        if head_zero: h.head.weight.zero_()
    return h


def test_initialisation_gives_the_encoder_a_gradient():
    """The derivation in notebook 10: α = 0 or H = 0 give the encoder no gradient; α = α₀ small with H random,
    or α = 1 with H = ε·random (the default), do, and stay near the core."""
    from dreamstate.hybrid import encoder_grad_at_init
    ctx, win = torch.randint(1, 256, (3, 11)), torch.randint(1, 256, (3, 10))
    g0, d0 = encoder_grad_at_init(_with_output(0.0), ctx, win)
    gh, dh = encoder_grad_at_init(_with_output(1.0, head_zero=True), ctx, win)
    ga, da = encoder_grad_at_init(_with_output(0.01), ctx, win)
    ge, de = encoder_grad_at_init(_with_output(1.0, head_init=0.01), ctx, win)
    g1, d1 = encoder_grad_at_init(_with_output(1.0), ctx, win)
    assert g0 == 0 and gh == 0 and d0 == 0 and dh == 0
    assert ga > 0 and 0 < da < 0.1 * d1
    assert ge > 0 and 0 < de < 0.1 * d1
    # every encoder tensor that feeds z gets a gradient, not just the last LayerNorm
    h = _with_output(1.0, head_init=0.01)
    logits = h(ctx, None, win[:, :-1]).logits
    next_token_nll(logits, win[:, 1:]).backward()
    assert h.encoder.emb.weight.grad.abs().sum() > 0 and h.encoder.blocks[0].qkv.weight.grad.abs().sum() > 0
    # and the shipped default starts at the plain core exactly (BlinkDL's zero output projection)
    torch.manual_seed(6); d = HybridRWKV7(CFG, HybridConfig(rank=4), seed=6)
    assert torch.equal(d.alpha, torch.ones_like(d.alpha)) and d.coefficients(d.encode(ctx)).abs().max() < 0.1
    with torch.no_grad(): assert torch.equal(d(ctx, None, win[:, :-1]).logits, d.core(win[:, :-1])[0])


def test_encoder_sees_the_context():
    "Different contexts give different z and different coefficients at initialisation (the old encoder's failure)."
    torch.manual_seed(7); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=7)
    with torch.no_grad():
        s = h.coefficients(h.encode(torch.randint(1, 256, (8, 20))))
    spread = (s - s.mean(0)).pow(2).mean().sqrt()
    assert spread > 0.3 * s.pow(2).mean().sqrt()


def test_kv_example_answers_are_in_the_context():
    import random
    from dreamstate.hybrid import KV_VALUES, kv_example
    rng = random.Random(0)
    for n in range(1, 9):
        ctx, win, ans = kv_example(rng, n, min(n, 4))
        c, w = bytes(ctx).decode(), bytes(win).decode()
        assert len(ctx) == 8 * n and len(win) == 1 + 8 * min(n, 4) and len(ans) == len(win) - 1
        for q in range(min(n, 4)):
            key, val = w[1 + 8 * q:4 + 8 * q], w[5 + 8 * q:8 + 8 * q]
            assert f"{key}={val};" in c and val in KV_VALUES
            assert "".join(t for t, a in zip(w[1:], ans) if a)[3 * q:3 * q + 3] == val
    with pytest.raises(ValueError, match="n_questions"): kv_example(rng, 3, 4)


def test_hybrid_with_triton_backend_equals_torch_path():
    "The core of the hybrid through the Triton kernel (interpreter on the CPU) = through the chunked torch path."
    pytest.importorskip("triton", reason="triton is not installed")
    from dreamstate.wkv_common import interpreted
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu" and not interpreted(): pytest.skip("no GPU and Triton's interpreter is off")
    torch.manual_seed(5); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=5).to(dev)
    with torch.no_grad():
        for p in h.core.parameters(): p.add_(0.05 * torch.randn_like(p))
        h.alpha.fill_(0.3)
        ctx, x = torch.randint(1, 256, (2, 7), device=dev), torch.randint(1, 256, (2, 11), device=dev)
        h.core.backend = "chunked"; ref = h(ctx, None, x).logits
        h.core.backend = "triton"; out = h(ctx, None, x).logits
    assert float((out - ref).abs().max() / ref.abs().max()) < 1e-4


def test_fit_denoiser_learns_the_heads_coefficients():
    """The denoiser works on s/ρ (ρ = rms of the head's s) and, fitted to a frozen head, samples coefficients
    closer to the head's than the unit-scale noise it starts from; the logits do not move."""
    from dreamstate.hybrid import fit_denoiser
    torch.manual_seed(8); h = HybridRWKV7(CFG, HybridConfig(rank=2, ctx_dim=16, head_init=0.05, denoiser_hidden=64, denoiser_depth=2), seed=8)
    ctxs = torch.randint(1, 256, (4, 12))                       # four contexts, each a point mass s(c)
    batch_fn = lambda i: (ctxs, torch.ones_like(ctxs, dtype=torch.bool))
    x = torch.randint(1, 256, (4, 6))
    with torch.no_grad(): before = h(ctxs, None, x).logits
    d = Diffusion(prediction="v")
    losses = fit_denoiser(h, batch_fn, d, steps=1500, lr=3e-3)
    with torch.no_grad():
        s = h.coefficients(h.encode(ctxs))
        assert abs(float(h.coef_rms) - float(s.pow(2).mean().sqrt())) < 1e-6 and float(h.coef_rms) < 0.2
        assert torch.equal(h(ctxs, None, x).logits, before)
        samp = h.sample_coefficients(h.encode(ctxs), d, steps=10, seed=1)
    assert samp.shape == s.shape and len(losses) == 1500
    assert float((samp - s).pow(2).mean().sqrt()) < 0.5 * float(s.pow(2).mean().sqrt())


def test_tokenize_kv_marks_each_questions_answer_tokens():
    """Bytes: the example itself, question numbers exactly on the value bytes. World tokens: every question's answer
    tokens are contiguous, cover its value, and nothing else is marked."""
    import random
    from dreamstate.data import ByteTokenizer, WorldTokenizer
    from dreamstate.hybrid import kv_example, tokenize_kv
    rng, world = random.Random(3), WorldTokenizer()
    for _ in range(100):
        c, w, a = kv_example(rng, rng.randint(2, 6), 2)
        assert tokenize_kv(c, w, a, ByteTokenizer()) == (c, w, [(j // 8 + 1) if f else 0 for j, f in enumerate(a)])
        ci, wi, q = tokenize_kv(c, w, a, world)
        assert world.decode(ci) == bytes(c).decode() and world.decode(wi) == bytes(w).decode() and len(q) == len(wi) - 1
        text = bytes(w).decode()
        for n in (1, 2):
            pos = [j for j, x in enumerate(q) if x == n]
            assert pos and pos == list(range(pos[0], pos[-1] + 1))
            value = text.split(";")[n].split("?")[1]
            assert value in b"".join(world.id2bytes[i] for i in wi[1 + pos[0]:2 + pos[-1]]).decode()


def test_load_core_and_widen_ffn_start_from_a_trained_model():
    from dreamstate.hybrid import widen_ffn
    from dreamstate.rwkv7 import RWKV7
    core = RWKV7(CFG).init_weights(seed=0)
    with torch.no_grad():
        for p in core.parameters(): p.add_(0.02 * torch.randn_like(p))
    torch.manual_seed(1); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=1).load_core(core)
    assert all(torch.equal(a, b) for a, b in zip(h.core.state_dict().values(), core.state_dict().values()))
    with pytest.raises(ValueError, match="core config"):
        HybridRWKV7(RWKV7Config(vocab_size=256, n_layer=1, n_embd=32, head_size=16), HybridConfig(rank=4)).load_core(core)
    x = torch.randint(1, 256, (2, 11))
    wide = widen_ffn(core, CFG.dim_ffn + 24, seed=0)
    assert wide.cfg.dim_ffn == CFG.dim_ffn + 24 and torch.allclose(wide(x)[0], core(x)[0], atol=1e-5)
    loss = wide(x)[0].square().mean(); loss.backward()
    assert wide.blocks[0].ffn.value.weight.grad[:, CFG.dim_ffn:].abs().sum() > 0      # the new units learn
    with pytest.raises(ValueError, match="smaller"): widen_ffn(core, 8)


def test_padded_window_targets_are_left_out_of_the_loss():
    "A target mask that is all True gives the unmasked loss; masked targets do not change it."
    d = Diffusion("cosine", 100)
    torch.manual_seed(5); h = HybridRWKV7(CFG, HybridConfig(rank=4, lambda_diff=0.0), seed=5)
    ctx, win = torch.randint(1, 256, (2, 8)), torch.randint(1, 256, (2, 10))
    cm, full = torch.ones(2, 8, dtype=torch.bool), torch.ones(2, 9, dtype=torch.bool)
    l0, _ = hybrid_loss(h, (ctx, cm, win), d)
    l1, _ = hybrid_loss(h, (ctx, cm, win, full), d)
    assert torch.equal(l0, l1)
    mask = full.clone(); mask[:, 6:] = False
    other = win.clone(); other[:, 7:] = torch.randint(1, 256, (2, 3))
    la, _ = hybrid_loss(h, (ctx, cm, win, mask), d)
    lb, _ = hybrid_loss(h, (ctx, cm, other, mask), d)
    assert torch.allclose(la, lb)


def test_forward_returns_one_type_and_construction_leaves_the_global_rng_alone():
    "`forward` gives a `HybridOutput` (loss and terms only with `diffusion`); `seed` decides every weight, and building a hybrid leaves torch's RNG as it was."
    from dreamstate.hybrid import HybridOutput
    def after_building(global_seed, seed=0):
        torch.manual_seed(global_seed); h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=seed)
        return h, torch.randn(4)
    (h0, x0), (h5, x5), (h0s1, _) = after_building(0), after_building(5), after_building(0, seed=1)
    torch.manual_seed(0); assert torch.equal(x0, torch.randn(4))            # the caller's RNG: as if nothing were built
    for (a, b) in zip(h0.state_dict().values(), h5.state_dict().values()): assert torch.equal(a, b)   # `seed` decides, not the caller's RNG
    assert not torch.equal(h0.U, h0s1.U) and not torch.equal(h0.encoder.emb.weight, h0s1.encoder.emb.weight)
    h = HybridRWKV7(CFG, HybridConfig(rank=4), seed=0)
    ctx, win = torch.randint(1, 256, (2, 6)), torch.randint(1, 256, (2, 8))
    out = h(ctx, None, win[:, :-1])
    assert isinstance(out, HybridOutput) and out.logits.shape == (2, 7, 256) and out.loss is None and out.terms is None
    full = h(ctx, None, win, diffusion=Diffusion("cosine", 100))
    assert full.loss.dim() == 0 and set(full.terms) == {"ce", "diffusion", "reg"} and torch.equal(full.logits, out.logits)


def test_context_to_state_is_what_the_core_starts_from():
    """generate = "state": the window is read from S₀(c) = β P Σ(c) Qᵀ (and, for "both", with ΔW(c) too); β = 0 is the
    core; the encoder gets a gradient through the state alone; the loss has no diffusion term; "both" holds the
    "weights" model of its seed; ΔW calls on a state-only model fail in one line."""
    ctx, x = torch.randint(1, 256, (3, 12)), torch.randint(1, 256, (3, 9))
    for gen in ("state", "both"):
        h = HybridRWKV7(CFG, HybridConfig(rank=4, ctx_dim=16, state_rank=4, generate=gen), seed=9)
        with torch.no_grad():
            assert torch.equal(h(ctx, None, x).logits, h.core(x)[0])            # zero output projection at step 0
            for blk in h.core.blocks: blk.att.output.weight.normal_(0, 0.1)
            z = h.encode(ctx)
            st = h.initial_state(h.state_coefficients(z))
            delta = h.delta(h.coefficients(z)) if gen == "both" else None
            assert torch.equal(h(ctx, None, x).logits, h.core(x, st, delta=delta)[0])
            assert not torch.allclose(h(ctx, None, x).logits, h.core(x, None, delta=delta)[0])   # the state matters
        h.zero_grad(); next_token_nll(h(ctx, None, x[:, :-1]).logits, x[:, 1:]).backward()
        assert h.encoder.emb.weight.grad.abs().sum() > 0 and h.P.grad.abs().sum() > 0 and h.beta.grad.abs().sum() > 0
        loss, m = hybrid_loss(h, (ctx, torch.ones_like(ctx, dtype=torch.bool), x), Diffusion("cosine", 100))
        assert (m["diffusion"] == 0) == (gen == "state") and m["reg"] > 0 and "beta_1" in m
    s = HybridRWKV7(CFG, HybridConfig(rank=4, generate="state"), seed=9)
    with torch.no_grad():
        for blk in s.core.blocks: blk.att.output.weight.normal_(0, 0.1)
        s.beta.zero_()
        assert torch.equal(s(ctx, None, x).logits, s.core(x)[0])
    assert s.head is None and s.denoiser is None and not s.ddp_find_unused_parameters
    with pytest.raises(ValueError, match="generates no ΔW"): s.coefficients(s.encode(ctx))
    w, b = (HybridRWKV7(CFG, HybridConfig(rank=4, generate=g), seed=9) for g in ("weights", "both"))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in w.state_dict().items()) and len(b.state_dict()) == len(w.state_dict()) + 5
    with pytest.raises(ValueError, match="generate must be"): HybridConfig(generate="bias")


def test_distilled_state_learns_the_state_a_core_reaches():
    """`state_distill_loss` trains the generator towards the frozen core's own state after each context: on four fixed contexts
    the regression error falls to a tenth of its start, and the core's logits from the generated state approach those from
    reading the context; the core's weights do not move."""
    from dreamstate.hybrid import DistilledState, StateGenerator, state_distill_loss
    from dreamstate.rwkv7 import RWKV7
    core = RWKV7(CFG).init_weights(seed=4)
    with torch.no_grad():
        for blk in core.blocks: blk.att.output.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(5))
    before = {k: v.clone() for k, v in core.state_dict().items()}
    read = lambda m, c: m(torch.cat([c, torch.zeros_like(c[:, :1])], 1))[1]
    ds = DistilledState(StateGenerator(CFG, d=32, depth=1, heads=2, seed=0), core, read)
    g = torch.Generator().manual_seed(6)
    ctx, win = torch.randint(1, 256, (4, 12), generator=g), torch.randint(1, 256, (4, 9), generator=g)
    batch = (ctx, torch.ones_like(ctx, dtype=torch.bool), win)
    opt = torch.optim.Adam(ds.gen.parameters(), lr=3e-3)
    errs = []
    for _ in range(300):
        loss, met = state_distill_loss(ds, batch, ce=0.0)
        opt.zero_grad(); loss.backward(); opt.step(); errs.append(met["state_err"])
    assert errs[-1] < 0.1 * errs[0]
    with torch.no_grad():
        want = core(win, read(core, ctx))[0]
        got, zero = ds(ctx, None, win).logits, core(win)[0]
    assert (got - want).abs().mean() < 0.25 * (zero - want).abs().mean()       # much nearer reading the context than no context
    assert all(torch.equal(v, before[k]) for k, v in core.state_dict().items())
