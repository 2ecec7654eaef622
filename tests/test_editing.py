"""`dreamstate.editing`: the closed-form rewrite is exact where the derivation says it must be, the editors keep the
state's layout, and bad input fails with a clear error."""
import random

import pytest
import torch

from dreamstate.data import ByteTokenizer
from dreamstate.editing import (capture_wkv, edit_arithmetic, edit_none, edit_random, edit_rank_one, edit_reread,
                                edit_metrics, effective_key, facts_batches, facts_context, prefix_loss, rank_one_rewrite, read)
from dreamstate.rwkv7 import RWKV7, RWKV7Config
from dreamstate.wkv import wkv7_sequential


@pytest.fixture(scope="module")
def core():
    return RWKV7(RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)).init_weights(seed=0).eval()


def _sequence(seed=0, B=2, T=6, H=2, N=8):
    g = torch.Generator().manual_seed(seed)
    r, k, v = (torch.randn(B, T, H, N, generator=g, dtype=torch.float64) for _ in range(3))
    w = -torch.rand(B, T, H, N, generator=g, dtype=torch.float64) * 2
    kk = torch.nn.functional.normalize(torch.randn(B, T, H, N, generator=g, dtype=torch.float64), dim=-1)
    return r, w, k, v, -kk, kk * torch.rand(B, T, H, N, generator=g, dtype=torch.float64), g


@pytest.mark.parametrize("t", [0, 3, -1])
def test_effective_key_is_what_the_readout_addresses(t):
    r, w, k, v, a, b, g = _sequence()
    S0 = torch.randn(2, 2, 8, 8, generator=g, dtype=torch.float64)
    d = torch.randn(2, 2, 8, generator=g, dtype=torch.float64)
    y = lambda S: wkv7_sequential(r, w, k, v, a, b, S)[0][:, t]
    moved = y(rank_one_rewrite(S0, effective_key(w, a, b, r, t), d)) - y(S0)
    assert (moved - d).abs().max() < 1e-10
    assert (y(rank_one_rewrite(S0, r[:, t], d)) - y(S0) - d).abs().max() > 1e-3     # the receptance alone is not the key


def test_covariance_rewrite_leaves_the_other_keys_alone():
    "With C the second moment of keys spanning the space (ridge → 0), the edit moves their readouts by ≈ 0."
    g = torch.Generator().manual_seed(1)
    N = 6
    keys = torch.randn(N, N, generator=g, dtype=torch.float64)
    S = torch.randn(N, N, generator=g, dtype=torch.float64)
    C = keys.T @ keys / N
    S2 = rank_one_rewrite(S, keys[0], torch.ones(N, dtype=torch.float64), C)
    assert torch.allclose(S2 @ keys[0], S @ keys[0] + 1)
    assert (S2 @ keys[1:].T - S @ keys[1:].T).abs().max() < 1e-8


def test_editors_keep_layout_and_fail_clearly(core):
    tok = ByteTokenizer()
    ctx = ["fox=red;owl=tan;", "elk=ash;fox=jet;"]
    st = read(core, tok, ctx, sep=True)
    old, new = [("fox", "red"), ("fox", "jet")], [("fox", "oak"), ("fox", "ivy")]
    for ed in (edit_none, edit_arithmetic, edit_rank_one, edit_random):
        out = ed(core, tok, st, old, new)
        assert out.wkv.shape == st.wkv.shape and torch.equal(out.att_shift, st.att_shift)
    with pytest.raises(ValueError, match="keeps its key"): edit_rank_one(core, tok, st, old, [("owl", "oak"), ("fox", "ivy")])
    with pytest.raises(ValueError, match="one \\(key, value\\) pair per batch row"): edit_arithmetic(core, tok, st, old[:1], new[:1])
    with pytest.raises(ValueError, match="not in its context"): edit_reread(core, tok, ctx, [("fox", "tan"), ("fox", "jet")], new)
    with pytest.raises(ValueError, match="same number of tokens"): read(core, tok, ["fox=red;", "fox=red;owl=tan;"])
    with pytest.raises(ValueError, match="n_facts"): facts_context(random.Random(0), 9)


def test_capture_restores_the_op_even_on_error(core):
    import dreamstate.rwkv7 as m
    orig = m.wkv7
    with pytest.raises(RuntimeError):
        with capture_wkv() as calls:
            core(torch.tensor([[1, 2, 3]]))
            raise RuntimeError
    assert m.wkv7 is orig and len(calls) == 2


def test_prefix_loss_trains_on_the_answers_only(core):
    tok = ByteTokenizer()
    ctx, win, ans = facts_batches(tok, 4, 2, 3, seed=0)(0)
    assert ans.shape == (4, win.shape[1] - 1) and int(ans.sum()) == 4 * 2 * 3        # two questions of three value bytes
    loss, logs = prefix_loss(core, (ctx, win, ans))
    assert loss.requires_grad and abs(loss.item() - logs["ce"]) < 1e-6


def test_metrics_of_the_unedited_state(core):
    tok = ByteTokenizer()
    st = read(core, tok, ["fox=red;owl=tan;"], sep=True)
    m = edit_metrics(core, tok, st, st, [{"fox": "red"}], [{"fox": "red"}], [["owl"]])
    assert m["locality"] == 1.0 and m["margin"] == 0.0
    with pytest.raises(ValueError, match="as many keys"):
        edit_metrics(core, tok, st.expand(2), st.expand(2), [{"fox": "red"}, {}], [{"fox": "red"}, {}], [["owl"], ["owl"]])
