"""The state dataset: collection, storage, normalisation, and mismatch errors."""
import pytest
import torch

from dreamstate.data import ByteTokenizer, persona_corpus
from dreamstate.rwkv7 import RWKV7, RWKV7Config
from dreamstate.states import StateDataset, StateStats, collect_states


@pytest.fixture(scope="module")
def setup():
    m = RWKV7(RWKV7Config(vocab_size=256, n_layer=2, n_embd=32, head_size=16)).init_weights(seed=0)
    with torch.no_grad():
        for p in m.parameters(): p.add_(0.05 * torch.randn_like(p))
    docs = persona_corpus(8, seed=0)
    ds = collect_states(m, docs, ByteTokenizer(), 4, "train", seed=0, min_len=8, max_len=56, progress=False)
    return m, docs, ds


def test_collected_states_are_the_models_states(setup):
    m, _, ds = setup
    assert ds.wkv.shape == (24, 2, 2, 16, 16) and ds.att_shift.shape == (24, 2, 32)
    assert sorted(set(ds.labels)) == ds.label_names and all(ds.labels.count(l) == 4 for l in ds.label_names)
    for i in (0, 7, 23):
        ids = torch.tensor([ByteTokenizer().encode(ds.meta[i]["text"])])
        assert ids.shape[1] == ds.meta[i]["prompt_len"]
        with torch.no_grad(): _, st = m(ids)
        assert torch.allclose(st.wkv[:, 0], ds.wkv[i], atol=1e-5)
        assert torch.allclose(st.ffn_shift[:, 0], ds.ffn_shift[i], atol=1e-6)


def test_save_load_and_model_check(setup, tmp_path):
    m, _, ds = setup
    ds.stats = StateStats.fit(ds.flat())
    ds.save(tmp_path / "s")
    back = StateDataset.load(tmp_path / "s", m.cfg)
    assert torch.equal(back.wkv, ds.wkv) and back.meta == ds.meta and torch.equal(back.stats.std, ds.stats.std)
    with pytest.raises(ValueError, match="does not match the model"):
        StateDataset.load(tmp_path / "s", RWKV7Config(vocab_size=256, n_layer=2, n_embd=64, head_size=16))
    with pytest.raises(FileNotFoundError, match="not a state dataset"):
        StateDataset.load(tmp_path)


def test_normalisation_inverts(setup):
    _, _, ds = setup
    st = StateStats.fit(ds.flat())
    z = st.normalize(ds.flat())
    assert torch.allclose(z.mean(0), torch.zeros(z.shape[1]), atol=1e-4)
    assert torch.allclose(st.denormalize(z), ds.flat(), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="different model"):
        st.normalize(torch.zeros(3, 10))


def test_collect_errors(setup):
    m, docs, _ = setup
    with pytest.raises(ValueError, match="no 'holdout' documents"):
        collect_states(m, docs, ByteTokenizer(), 2, "holdout", seed=0, progress=False)


def test_states_cut_before_a_space_keep_their_next_tokens(setup):
    m, docs, _ = setup
    tok = ByteTokenizer()
    ds = collect_states(m, docs, tok, 4, "train", seed=0, min_len=8, max_len=56, cut="space", next_tokens=12, progress=False)
    full = {d.doc_id: tok.encode(d.text) for d in docs}
    for meta in ds.meta:
        ids, n = full[meta["doc_id"]], meta["prompt_len"]
        assert meta["text"] == tok.decode(ids[:n]) and meta["next_ids"] == ids[n:n + 12]
        assert ids[n:n + 1] in ([32], [])                 # the token fed after the state is a space (or the document ended)
    assert sum(len(m_["next_ids"]) == 12 for m_ in ds.meta) >= 20     # the cut leaves room for the next tokens
    with pytest.raises(ValueError, match="state_cut must be one of"):
        collect_states(m, docs, tok, 1, "train", seed=0, cut="comma", progress=False)
