"""RWKV-7 model properties: RNN mode, carried state, state layout, generation, checkpoints."""
import pytest
import torch

from conftest import blinkdl_state_dict
from dreamstate.checkpoint import CheckpointError
from dreamstate.rwkv7 import RWKV7, RWKV7Config, RWKVState, blinkdl_keys


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = RWKV7(RWKV7Config(vocab_size=256, n_layer=2, n_embd=64, head_size=16))
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def test_rnn_mode_equals_sequence_mode(model):
    toks = torch.randint(0, 256, (2, 23))
    with torch.no_grad():
        full, s_full = model(toks)
        s, steps = None, []
        for t in range(toks.shape[1]):
            lg, s = model(toks[:, t:t + 1], s); steps.append(lg)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)
    for n in ("wkv", "att_shift", "ffn_shift"):
        assert torch.allclose(getattr(s, n), getattr(s_full, n), atol=1e-5, rtol=1e-4), n


def test_step_equals_one_token_forward(model):
    "`step` is the RNN mode without the sequence machinery: the same numbers, bit for bit, for T steps."
    toks = torch.randint(0, 256, (3, 17))
    with torch.no_grad():
        _, s_fwd = model(toks[:, :4])
        s_step = s_fwd.clone()
        for t in range(4, toks.shape[1]):
            lf, s_fwd = model(toks[:, t:t + 1], s_fwd)
            ls, s_step = model.step(toks[:, t], s_step)
            assert ls.shape == (3, 256) and torch.equal(ls, lf[:, 0]), t
        for n in ("wkv", "att_shift", "ffn_shift"): assert torch.equal(getattr(s_step, n), getattr(s_fwd, n)), n
        s0 = s_step.clone()
        model.step(toks[:, 0], s_step)                                  # the state given is not changed
        for n in ("wkv", "att_shift", "ffn_shift"): assert torch.equal(getattr(s_step, n), getattr(s0, n)), n
        l1, _ = model.step(toks[:1, 0]); l0, _ = model(toks[:1, :1])    # from the zero state
        assert torch.equal(l1, l0[:, 0])
    with pytest.raises(ValueError, match=r"tokens must be a LongTensor \[B\]"): model.step(toks[:, :2])
    with pytest.raises(ValueError, match="out of vocabulary"): model.step(torch.tensor([256]))
    with pytest.raises(ValueError, match="state does not fit"): model.step(toks[:, 0], RWKVState.zeros(RWKV7Config(256, 1, 64, 16), 3))


def test_split_sequence_equals_whole(model):
    toks = torch.randint(0, 256, (1, 50))
    with torch.no_grad():
        full, s_full = model(toks)
        a, s_a = model(toks[:, :19])
        b, s_b = model(toks[:, 19:], s_a)
    assert torch.allclose(torch.cat([a, b], 1), full, atol=1e-5, rtol=1e-4)
    assert torch.allclose(s_b.wkv, s_full.wkv, atol=1e-5, rtol=1e-4)


def test_state_shapes_flatten_roundtrip(model):
    cfg = model.cfg
    with torch.no_grad(): _, st = model(torch.randint(0, 256, (3, 5)))
    assert st.wkv.shape == (2, 3, 4, 16, 16) and st.wkv.dtype == torch.float32
    assert st.att_shift.shape == (2, 3, 64) and st.ffn_shift.shape == (2, 3, 64)
    flat = st.flatten()
    assert flat.shape == (3, cfg.state_numel)
    back = RWKVState.unflatten(flat, cfg)
    for n in ("wkv", "att_shift", "ffn_shift"): assert torch.equal(getattr(back, n), getattr(st, n))
    # row b of flatten is batch element b alone
    assert torch.equal(st[1].flatten()[0], flat[1])


def test_generate_is_seeded(model):
    p = torch.tensor([[1, 2, 3]])
    a, _ = model.generate(p, max_new_tokens=12, temperature=1.0, top_p=0.8, seed=7)
    b, _ = model.generate(p, max_new_tokens=12, temperature=1.0, top_p=0.8, seed=7)
    c, _ = model.generate(p, max_new_tokens=12, temperature=1.0, top_p=0.8, seed=8)
    assert a.shape == (1, 12) and torch.equal(a, b) and not torch.equal(a, c)
    g, _ = model.generate(p, max_new_tokens=4, temperature=0)
    with torch.no_grad(): first = model(p)[0][0, -1].argmax()
    assert g[0, 0] == first


def test_save_load_roundtrip_bitwise(model, tmp_path):
    model.save(tmp_path / "m.pth")
    sd = torch.load(tmp_path / "m.pth")
    assert set(sd) == set(blinkdl_keys(model.cfg)) and sd["blocks.0.att.x_r"].shape == (1, 1, 64)
    m2 = RWKV7.load(tmp_path / "m.pth")
    toks = torch.randint(0, 256, (1, 9))
    with torch.no_grad(): assert torch.equal(m2(toks)[0], model(toks)[0])


def test_state_tuning_file(model, tmp_path):
    cfg = model.cfg
    ts = {f"blocks.{i}.att.time_state": torch.randn(cfg.n_head, 16, 16) for i in range(cfg.n_layer)}
    torch.save(ts, tmp_path / "st.pth")
    st = RWKVState.from_state_tuning(tmp_path / "st.pth", cfg)
    assert torch.equal(st.wkv[1, 0], ts["blocks.1.att.time_state"]) and st.att_shift.abs().sum() == 0
    del ts["blocks.1.att.time_state"]
    torch.save(ts, tmp_path / "st2.pth")
    with pytest.raises(CheckpointError, match="blocks.1.att.time_state"):
        RWKVState.from_state_tuning(tmp_path / "st2.pth", cfg)


def test_config_read_from_published_shapes(tmp_path):
    sd = blinkdl_state_dict(V=300, C=128, L=3, N=32, lora=(64, 32, 32, 96), dim_ffn=448)
    torch.save({k: v.bfloat16() for k, v in sd.items()}, tmp_path / "c.pth")
    cfg = RWKV7.load(tmp_path / "c.pth").cfg
    assert (cfg.vocab_size, cfg.n_embd, cfg.n_layer, cfg.head_size, cfg.n_head, cfg.dim_ffn) == (300, 128, 3, 32, 4, 448)
    assert (cfg.d_decay_lora, cfg.d_aaa_lora, cfg.d_mv_lora, cfg.d_gate_lora) == (64, 32, 32, 96)


def test_saved_files_are_not_private(tmp_path):
    "Checkpoints and state files get the user's umask like any other file, not mkstemp's 0600."
    import os
    from dreamstate.rwkv7 import RWKV7, RWKV7Config
    old = os.umask(0o022)
    try:
        m = RWKV7(RWKV7Config(vocab_size=32, n_layer=1, n_embd=32, head_size=16)).init_weights(seed=0)
        m.save(tmp_path / "m.pth")
        _, st = m(torch.randint(0, 32, (1, 3)))
        st.save(tmp_path / "s.pth")
    finally:
        os.umask(old)
    for f in ("m.pth", "s.pth"):
        assert (tmp_path / f).stat().st_mode & 0o777 == 0o644


def test_next_token_nll_is_the_cross_entropy_it_replaces(model):
    "Bit for bit the expression the training loop, the evaluations and the hybrid wrote out before (mean, masked mean, per target)."
    import torch.nn.functional as F
    from dreamstate.rwkv7 import next_token_nll
    toks = torch.randint(0, 256, (3, 17))
    with torch.no_grad(): logits = model(toks[:, :-1])[0]
    flat, tgt = logits.float().reshape(-1, 256), toks[:, 1:].reshape(-1)
    assert torch.equal(next_token_nll(logits, toks[:, 1:]), F.cross_entropy(flat, tgt))
    per = next_token_nll(logits, toks[:, 1:], reduction="none")
    assert per.shape == (3, 16) and torch.equal(per, F.cross_entropy(flat, tgt, reduction="none").view(3, -1))
    keep = torch.rand(3, 16) < 0.7
    assert torch.equal(next_token_nll(logits, toks[:, 1:], keep), (F.cross_entropy(flat, tgt, reduction="none") * keep.reshape(-1)).sum() / keep.sum())
    assert torch.allclose(next_token_nll(logits, toks[:, 1:], keep), per[keep].mean())
    assert torch.equal(next_token_nll(logits.bfloat16(), toks[:, 1:]), next_token_nll(logits.bfloat16().float(), toks[:, 1:]))
    with pytest.raises(ValueError, match="reduction must be"): next_token_nll(logits, toks[:, 1:], reduction="sum")
    with pytest.raises(ValueError, match="mask applies"): next_token_nll(logits, toks[:, 1:], keep, reduction="none")
