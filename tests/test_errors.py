"""Bad input fails with a message that names the problem."""
import pytest
import torch

from conftest import blinkdl_state_dict
from dreamstate.checkpoint import CheckpointError
from dreamstate.rwkv7 import RWKV7, RWKV7Config, RWKVState


@pytest.fixture
def ckpt(tmp_path):
    sd = blinkdl_state_dict(V=256, C=64, L=2, N=16)
    path = tmp_path / "ok.pth"
    torch.save(sd, path)
    return path, sd


def test_truncated_file(ckpt, tmp_path):
    path, _ = ckpt
    data = path.read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        RWKV7.load(bad)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        RWKV7.load(tmp_path / "nope.pth")


def test_missing_key(ckpt, tmp_path):
    _, sd = ckpt
    del sd["blocks.1.att.k_a"]
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"missing \['blocks.1.att.k_a'\]"):
        RWKV7.load(tmp_path / "m.pth")


def test_extra_key(ckpt, tmp_path):
    _, sd = ckpt
    sd["blocks.0.att.bogus"] = torch.zeros(3)
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="unexpected.*bogus"):
        RWKV7.load(tmp_path / "m.pth")


def test_wrong_shape(ckpt, tmp_path):
    _, sd = ckpt
    sd["blocks.1.ffn.value.weight"] = torch.zeros(64, 100)
    torch.save(sd, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match=r"blocks.1.ffn.value.weight has shape \(64, 100\)"):
        RWKV7.load(tmp_path / "m.pth")


def test_not_an_rwkv_checkpoint(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "m.pth")
    with pytest.raises(CheckpointError, match="emb.weight"):
        RWKV7.load(tmp_path / "m.pth")


def test_state_from_other_model_size(ckpt):
    path, _ = ckpt
    model = RWKV7.load(path)
    other = RWKVState.zeros(RWKV7Config(vocab_size=256, n_layer=2, n_embd=128, head_size=32))
    with pytest.raises(ValueError, match="model of another size"):
        model(torch.zeros(1, 3, dtype=torch.long), other)
    with pytest.raises(ValueError, match=r"expected \[B, 6912\]|expected \[B, "):
        RWKVState.unflatten(torch.zeros(1, 10), model.cfg)


def test_state_batch_mismatch(ckpt):
    model = RWKV7.load(ckpt[0])
    st = RWKVState.zeros(model.cfg, batch_size=2)
    with pytest.raises(ValueError, match="batch size 2"):
        model(torch.zeros(3, 4, dtype=torch.long), st)


def test_tokens_out_of_vocab(ckpt):
    model = RWKV7.load(ckpt[0])
    with pytest.raises(ValueError, match="out of vocabulary.*256"):
        model(torch.tensor([[1, 2, 300]]))
    with pytest.raises(ValueError, match="out of vocabulary"):
        model(torch.tensor([[-1]]))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match=r"\[B,T\]"):
        model(torch.zeros(3, dtype=torch.long))


def test_bad_config():
    with pytest.raises(ValueError, match="not a multiple of head_size"):
        RWKV7Config(n_embd=100, head_size=64)
