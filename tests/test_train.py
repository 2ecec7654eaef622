"""The training loop: exact resume, atomic checkpoints, DDP equivalence, and the LM pieces."""
import json, math, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

from dreamstate.data import ByteTokenizer, persona_corpus
from dreamstate.rwkv7 import RWKV7, RWKV7Config
from dreamstate.train import BigramModel, TrainConfig, check_tokenizer, lm_batches, lm_loss, lr_at, token_stream, train

HERE = Path(__file__).resolve().parent


def _tiny():
    torch.manual_seed(0)
    return RWKV7(RWKV7Config(vocab_size=64, n_layer=1, n_embd=32, head_size=16))


def test_interrupted_run_resumes_bit_for_bit(tmp_path):
    stream = torch.randint(1, 64, (5000,), generator=torch.Generator().manual_seed(0))
    bf = lm_batches(stream, 4, 32, seed=0)
    cfg = TrainConfig(steps=10, lr=1e-2, warmup=2, ckpt_every=3, log_every=1)
    full_model = _tiny()
    full = train(full_model, bf, lm_loss, cfg, tmp_path / "a", progress=False)
    train(_tiny(), bf, lm_loss, cfg, tmp_path / "b", progress=False, stop_after=7)   # dies after step 7
    resumed_model = _tiny()
    resumed = train(resumed_model, bf, lm_loss, cfg, tmp_path / "b", progress=False)  # restarts at step 6
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]
    for p, q in zip(full_model.parameters(), resumed_model.parameters()): assert torch.equal(p, q)
    assert not list((tmp_path / "b").glob(".*tmp"))
    rows = (tmp_path / "b" / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 11 and rows[0].startswith("step,loss")


def test_lr_schedule():
    c = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(99, c) == pytest.approx(0.1, abs=1e-3) and lr_at(55, c) < lr_at(20, c)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _run_worker(mode, out, world):
    "Run tests/ddp_worker.py in `mode` as one process or under torchrun with `world` gloo processes."
    cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(out), mode]
    if world > 1:
        cmd[1:2] = ["-m", "torch.distributed.run", f"--nproc_per_node={world}", "--master_addr=127.0.0.1",
                    f"--master_port={_free_port()}", str(HERE / "ddp_worker.py")]
    subprocess.run(cmd, check=True, timeout=300)
    return json.loads(out.read_text())


def test_two_gloo_processes_match_single_process(tmp_path):
    a, b = _run_worker("lm", tmp_path / "single.json", 1), _run_worker("lm", tmp_path / "ddp.json", 2)
    assert a["world"] == 1 and b["world"] == 2
    assert len(a["loss"]) == len(b["loss"]) == 6
    for x, y in zip(a["loss"], b["loss"]): assert abs(x - y) <= 1e-5, (a["loss"], b["loss"])
    assert abs(a["param_sum"] - b["param_sum"]) <= 1e-4 * max(1.0, abs(a["param_sum"]))


def test_hybrid_under_torchrun(tmp_path):
    "The hybrid trains under DDP: without the diffusion term, 2 processes = 1 (its noise is drawn per process-local batch, so with it only finiteness is checked)."
    a, b = _run_worker("hybrid", tmp_path / "h1.json", 1), _run_worker("hybrid", tmp_path / "h2.json", 2)
    assert a["world"] == 1 and b["world"] == 2
    for x, y in zip(a["loss"], b["loss"]): assert abs(x - y) <= 1e-5, (a["loss"], b["loss"])
    assert abs(a["param_sum"] - b["param_sum"]) <= 1e-4 * max(1.0, abs(a["param_sum"]))
    c = _run_worker("hybrid_diff", tmp_path / "h3.json", 2)
    assert c["world"] == 2 and len(c["loss"]) == 6 and all(math.isfinite(x) for x in c["loss"])


def test_bigram_baseline_and_stream():
    docs = persona_corpus(12, seed=0)
    tok = ByteTokenizer()
    s = token_stream(docs, tok, "train")
    assert (s == 0).sum() == sum(d.split == "train" for d in docs)
    bg = BigramModel(s, 256)
    v = token_stream(docs, tok, "val")
    lam = bg.fit_lambda(v[:-1], v[1:])
    nll = bg.nll(v[:-1], v[1:]).mean()
    uni = -torch.log(bg.unigram[v[1:]]).mean()
    assert 0 < lam < 1 and nll < uni       # the bigram beats the unigram on held-out text
    with pytest.raises(ValueError, match="no documents"):
        token_stream(docs, tok, "val", label="poetry")


def test_checkpoint_tokenizer_mismatch():
    with pytest.raises(ValueError, match="vocab_size=64.*256"):
        check_tokenizer(_tiny(), ByteTokenizer())
