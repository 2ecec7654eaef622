"""Does the prefix model learn notebook 11's larger key–value task at a longer budget or a higher rate? One seed per
run, the `cpu` profile's shapes: the core reading the context as a prefix (row (b), widened to the hybrid's
parameter count), trained on notebook 11's mix of 2–32 facts of 64 keys and values (`hyb_scale_*`), and its answer
accuracy at every number of facts on notebook 11's evaluation examples (so a budget chosen from these runs was
chosen on them). The first run is notebook 11's (b) of seed 1234 at 1500 steps, its former `hyb_scale_steps`, and
reproduces it exactly (its training CE and accuracies); from these runs `hyb_scale_steps` is now 6000.
Writes experiments/results/hybrid_scale_check.json after each run (a rerun skips what is there).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_scale_check.py                      # all runs, ≈ 20 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_scale_check.py --profile smoke --runs "prefix, 1500"
"""
import random, tempfile, time
from dataclasses import asdict

import torch

from _common import run_each
from dreamstate.data import ByteTokenizer
from dreamstate.hybrid import HybridConfig, HybridRWKV7, kv_example, kv_vocab, tokenize_kv
from dreamstate.rwkv7 import RWKV7, RWKV7Config, next_token_nll
from dreamstate.train import TrainConfig, train

SEP = 0


def prefix_cfg(P) -> RWKV7Config:
    "Row (b)'s core: the hybrid's core with its channel-mix widened to the hybrid's parameter count (notebook 11's `wide_cfg`)."
    core = RWKV7Config(vocab_size=256, n_layer=P.hyb_n_layer, n_embd=P.hyb_n_embd, head_size=P.hyb_head_size)
    W_KV = 8 * P.hyb_kv_questions
    hc = HybridConfig(rank=P.hyb_rank, ctx_dim=P.hyb_ctx_dim, ctx_depth=P.hyb_ctx_depth, ctx_heads=P.hyb_ctx_heads,
                      max_ctx=max(16 * max(P.hyb_window, W_KV), P.hyb_ctx_max) + 1, alpha0=P.hyb_alpha0, head_init=P.hyb_head_init,
                      lambda_diff=P.hyb_lambda_diff, lambda_reg=P.hyb_lambda_reg)
    torch.manual_seed(0)
    hyb = sum(p.numel() for n, p in HybridRWKV7(core, hc).named_parameters() if not n.startswith("denoiser"))
    extra = round((hyb - RWKV7(core).num_params()) / (2 * core.n_layer * core.n_embd))
    return RWKV7Config(**{**asdict(core), "dim_ffn": core.dim_ffn + extra})


def read(model, ctx):
    "The prefix model's state after the context and the separator."
    return model(torch.cat([ctx, torch.full_like(ctx[:, :1], SEP)], 1))[1]


def run(P, steps, lr, facts=None):
    SK = kv_vocab(P.hyb_scale_keys, seed=1); SV = kv_vocab(P.hyb_scale_keys, seed=2, exclude=SK)
    KQ = P.hyb_kv_questions
    SF = [n for n in P.hyb_scale_facts if KQ <= n <= len(SK)]
    train_facts = facts or SF
    tok = ByteTokenizer()
    def batches(step):      # notebook 11's kv64 batches (stream kv64-train, one number of facts per batch)
        r = random.Random(f"kv64-train/{P.seed}/{step}")
        n = r.choice(train_facts)
        ex = [tokenize_kv(*kv_example(r, n, KQ, SK, SV), tok) for _ in range(P.hyb_batch)]
        return torch.tensor([c for c, _, _ in ex]), torch.tensor([w for _, w, _ in ex])
    torch.manual_seed(P.seed)
    m = RWKV7(prefix_cfg(P)).init_weights(seed=P.seed)
    def loss_fn(model, b):
        ctx, win = b
        l = next_token_nll(model(win[:, :-1], read(model, ctx))[0], win[:, 1:]); return l, {"ce": l.item()}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        hist = train(m, batches, loss_fn, TrainConfig(steps=steps, lr=lr, warmup=P.hyb_warmup, ckpt_every=10**9,
                                                      log_every=max(1, steps // 20), seed=P.seed), d, progress=False)
    m.eval()
    acc = {}
    for n in SF:            # notebook 11's held-out examples (kv_eval(n, "eval-large", SK, SV))
        r = random.Random(f"kv-eval-large/{n}")
        ex = [tokenize_kv(*kv_example(r, n, KQ, SK, SV), tok) for _ in range(P.hyb_kv_eval)]
        ctx, win = torch.tensor([e[0] for e in ex]), torch.tensor([e[1] for e in ex])
        with torch.no_grad(): hit = m(win[:, :-1], read(m, ctx))[0].argmax(-1) == win[:, 1:]
        acc[n] = float(hit.view(len(ex), -1, 8)[:, :, 4:7].all(-1).float().mean())
    return {"acc_by_facts": acc, "train_facts": train_facts, "params": m.num_params(),
            "curve": [(h["step"], round(h["ce"], 4)) for h in hist], "seconds": round(time.time() - t0, 1)}


RUNS = {
    "prefix, 1500 steps, lr 1e-3 (notebook 11)": dict(steps=1500, lr=1e-3),
    "prefix, 1500 steps, lr 3e-3": dict(steps=1500, lr=3e-3),
    "prefix, 6000 steps, lr 1e-3": dict(steps=6000, lr=1e-3),
}


def main():
    run_each(__doc__, "hybrid_scale_check", RUNS, run, lambda P: {"core": str(prefix_cfg(P)), "eval_examples": P.hyb_kv_eval,
                                                          "keys": P.hyb_scale_keys, "chance": 1 / P.hyb_scale_keys})


if __name__ == "__main__":
    main()
