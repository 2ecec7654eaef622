"""The training loop: exact resume, atomic checkpoints, DDP equivalence, and the LM pieces."""
import json, math, socket, subprocess, sys
from pathlib import Path

import pytest
import torch

from dreamstate.data import ByteTokenizer, persona_corpus
from dreamstate.rwkv7 import RWKV7, RWKV7Config
from dreamstate.train import BigramModel, TrainConfig, check_tokenizer, lm_batches, lm_loss, lr_at, run_in_processes, token_stream, train

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


def test_runs_in_worker_processes_then_resume_to_the_same_weights(tmp_path):
    """Runs trained in forked workers leave finished checkpoints: the same calls in this process then train no step and
    return the runs' history and weights, equal to runs done here (one thread in both); a failing job raises with its
    traceback; on another device, nothing runs in workers."""
    stream = torch.randint(1, 64, (5000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=6, lr=1e-2, warmup=2, ckpt_every=6, log_every=1)
    def run(seed, out):
        m = _tiny()
        return m, train(m, lm_batches(stream, 4, 32, seed=seed), lm_loss, TrainConfig(**{**cfg.__dict__, "seed": seed}), out, progress=False)
    threads = torch.get_num_threads()
    assert run_in_processes([lambda s=s: run(s, tmp_path / f"w{s}") for s in (1, 2, 3)], processes=2) == 3
    torch.set_num_threads(1)
    try:
        for s in (1, 2, 3):
            mw, hw = run(s, tmp_path / f"w{s}")                      # resumed at its last step: trains nothing
            mh, hh = run(s, tmp_path / f"h{s}")                      # trained here
            assert [r["loss"] for r in hw] == [r["loss"] for r in hh] and len(hw) == 6
            for p, q in zip(mw.parameters(), mh.parameters()): assert torch.equal(p, q)
    finally:
        torch.set_num_threads(threads)
    def fails(): raise KeyError("no such fact")
    with pytest.raises(RuntimeError, match="KeyError: 'no such fact'"):
        run_in_processes([lambda: None, fails], processes=2)
    assert run_in_processes([fails, fails], device="meta") == 0 and run_in_processes([fails, fails], processes=1) == 0


def test_workers_reading_back_one_finished_run_at_once(tmp_path):
    """Several workers that read back the same finished run (notebook 11's distilled rows share a teacher) each rewrite
    its `metrics.csv`: no worker's rename may take another's temporary file (a race that failed CI)."""
    stream = torch.randint(1, 64, (5000,), generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(steps=3, lr=1e-2, warmup=1, ckpt_every=3, log_every=1)
    out = tmp_path / "teacher"
    train(_tiny(), lm_batches(stream, 4, 32, seed=0), lm_loss, cfg, out, progress=False)
    def read_back():
        for _ in range(40): train(_tiny(), lm_batches(stream, 4, 32, seed=0), lm_loss, cfg, out, progress=False)
    assert run_in_processes([read_back] * 4, processes=4) == 4
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 4 and rows[0].startswith("step,loss") and not list(out.glob(".*tmp"))


def test_lr_schedule():
    c = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, c) == pytest.approx(0.1) and lr_at(9, c) == pytest.approx(1.0)
    assert lr_at(99, c) == pytest.approx(0.1, abs=1e-3) and lr_at(55, c) < lr_at(20, c)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


# what tests/ddp_worker.py trains, by world size (the diffusion term is only run under DDP)
MODES = {1: ("lm", "hybrid"), 2: ("lm", "hybrid", "hybrid_diff")}


def _worker_cmd(out, world):
    "tests/ddp_worker.py training MODES[world] in turn, as one process or under torchrun with `world` gloo processes."
    cmd = [sys.executable, str(HERE / "ddp_worker.py"), str(out), *MODES[world]]
    if world > 1:
        cmd[1:2] = ["-m", "torch.distributed.run", f"--nproc_per_node={world}", "--master_addr=127.0.0.1",
                    f"--master_port={_free_port()}", str(HERE / "ddp_worker.py")]
    return cmd


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """{(mode, world): the worker's output} for world 1 and 2: two launches (one process, one torchrun), each
    training its modes in turn, instead of one launch per mode and world (a launch is mostly importing torch); the
    two launches run side by side."""
    outs = {w: tmp_path_factory.mktemp(f"ddp{w}") for w in MODES}
    procs = {w: subprocess.Popen(_worker_cmd(outs[w], w)) for w in outs}
    try:
        for w, p in procs.items():
            assert p.wait(timeout=300) == 0, f"ddp_worker.py (world {w}) exited with {p.returncode}"
    finally:
        for p in procs.values():
            if p.poll() is None: p.kill(); p.wait()
    return {(m, w): json.loads((outs[w] / f"{m}.json").read_text()) for w in MODES for m in MODES[w]}


def test_two_gloo_processes_match_single_process(ddp_runs):
    a, b = ddp_runs["lm", 1], ddp_runs["lm", 2]
    assert a["world"] == 1 and b["world"] == 2
    assert len(a["loss"]) == len(b["loss"]) == 6
    for x, y in zip(a["loss"], b["loss"]): assert abs(x - y) <= 1e-5, (a["loss"], b["loss"])
    assert abs(a["param_sum"] - b["param_sum"]) <= 1e-4 * max(1.0, abs(a["param_sum"]))


def test_hybrid_under_torchrun(ddp_runs):
    "The hybrid trains under DDP: without the diffusion term, 2 processes = 1 (its noise is drawn per process-local batch, so with it only finiteness is checked)."
    a, b = ddp_runs["hybrid", 1], ddp_runs["hybrid", 2]
    assert a["world"] == 1 and b["world"] == 2
    for x, y in zip(a["loss"], b["loss"]): assert abs(x - y) <= 1e-5, (a["loss"], b["loss"])
    assert abs(a["param_sum"] - b["param_sum"]) <= 1e-4 * max(1.0, abs(a["param_sum"]))
    c = ddp_runs["hybrid_diff", 2]
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
