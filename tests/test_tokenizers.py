"""Tokenizers: round trips and the same ids as the rwkv package's own World tokenizer."""
import pytest

from dreamstate.data import ByteTokenizer, WorldTokenizer, world_vocab_path

TEXTS = [
    "The quick brown fox jumps over the lazy dog.\n\tdef f(x): return x**2",
    "你好，世界！RWKV 是一种循环神经网络。日本語のテキストも。",
    "emoji 🦢🐦‍🔥👩‍👩‍👧 mixed with ASCII and ünïcödé",
    "  leading spaces, trailing\n\n\n",
    "\x01\x7f binary-ish",
]


@pytest.fixture(scope="module")
def tok(): return WorldTokenizer()


@pytest.mark.parametrize("text", TEXTS)
def test_world_roundtrip(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_world_ids_match_rwkv_package(tok):
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER
    ref = TRIE_TOKENIZER(str(world_vocab_path()))
    for t in TEXTS:
        assert tok.encode(t) == ref.encode(t), t
    assert 0 not in tok.id2bytes and max(tok.id2bytes) < tok.vocab_size


def test_byte_tokenizer():
    bt = ByteTokenizer()
    for t in TEXTS: assert bt.decode(bt.encode(t)) == t
    with pytest.raises(ValueError, match="NUL"): bt.encode("a\x00b")
    with pytest.raises(ValueError, match="out of the byte vocabulary"): bt.decode([300])
