"""dreamstate's RWKV-7 against BlinkDL's `rwkv` package on the same checkpoint and tokens."""
import torch

from conftest import rwkv_reference, rel_err
from dreamstate.rwkv7 import RWKV7, RWKVState

TOL = 1e-4
T = 64


def _tokens(V, n=T, seed=0):
    return torch.randint(0, V, (n,), generator=torch.Generator().manual_seed(seed))


def _compare(ours_model, ref, ids):
    with torch.no_grad():
        ref_logits, ref_state = ref.forward(ids.tolist(), None, full_output=True)
        logits, state = ours_model(ids[None])
    ref_st = RWKVState.from_rwkv_list(ref_state)
    errs = {"logits": rel_err(logits[0], ref_logits), "wkv": rel_err(state.wkv, ref_st.wkv),
            "att_shift": rel_err(state.att_shift, ref_st.att_shift), "ffn_shift": rel_err(state.ffn_shift, ref_st.ffn_shift)}
    return errs, state, ref_state


def test_logits_and_state_match_rwkv_package(blinkdl_ckpt):
    path, s = blinkdl_ckpt
    model = RWKV7.load(path)
    assert (model.cfg.n_layer, model.cfg.n_embd, model.cfg.head_size, model.cfg.vocab_size) == (s["L"], s["C"], s["N"], s["V"])
    errs, _, _ = _compare(model, rwkv_reference(path), _tokens(s["V"]))
    assert max(errs.values()) <= TOL, errs


def test_saved_checkpoint_loads_in_rwkv_package(blinkdl_ckpt, tmp_path):
    path, s = blinkdl_ckpt
    model = RWKV7.load(path)
    out = tmp_path / "resaved.pth"
    model.save(out)
    errs, _, _ = _compare(model, rwkv_reference(out), _tokens(s["V"], seed=1))
    assert max(errs.values()) <= TOL, errs


def test_state_carries_between_implementations(blinkdl_ckpt):
    "A state produced by the rwkv package, continued by dreamstate, equals the package continuing."
    path, s = blinkdl_ckpt
    ref, model = rwkv_reference(path), RWKV7.load(path)
    ids = _tokens(s["V"], 40, seed=2)
    with torch.no_grad():
        _, ref_state = ref.forward(ids[:25].tolist(), None)
        ref_state_copy = [t.clone() for t in ref_state]
        ref_logits, _ = ref.forward(ids[25:].tolist(), ref_state, full_output=True)
        logits, _ = model(ids[None, 25:], RWKVState.from_rwkv_list(ref_state_copy))
    assert rel_err(logits[0], ref_logits) <= TOL


def test_state_file_is_rwkv_package_layout(blinkdl_ckpt, tmp_path):
    "`RWKVState.save` writes the package's list; the package can continue from it directly."
    path, s = blinkdl_ckpt
    ref, model = rwkv_reference(path), RWKV7.load(path)
    ids = _tokens(s["V"], 30, seed=3)
    with torch.no_grad():
        _, st = model(ids[None, :20])
        st.save(tmp_path / "state.pth")
        parts = torch.load(tmp_path / "state.pth")
        assert len(parts) == 3 * s["L"] and parts[1].shape == (s["C"] // s["N"], s["N"], s["N"]) and parts[0].shape == (s["C"],)
        ref_logits, _ = ref.forward(ids[20:].tolist(), parts, full_output=True)
        logits, _ = model(ids[None, 20:], RWKVState.load(tmp_path / "state.pth", model.cfg))
    assert rel_err(logits[0], ref_logits) <= TOL
