"""Within what budget does the prefix model converge on notebook 11's persona task? One seed per run, the `cpu`
profile's shapes: row (b), the core reading a persona document's first `hyb_eval_ctx` bytes as a prefix (widened
to the hybrid's parameter count), trained on notebook 11's persona batches (contexts of `hyb_ctx_min`–`hyb_ctx_max`
bytes, a window later in the same document), and its window cross-entropy on notebook 11's held-out persona windows
(`hyb_eval_per_persona` per persona, so a budget chosen from these runs was chosen on them) every 250 steps. The
first run is notebook 11's (b) of seed 1234 at 200 steps, its former `hyb_steps`, and reproduces its window CE
exactly; from these runs `hyb_steps` is now 1000.
Writes experiments/results/hybrid_persona_budget.json after each run (a rerun skips what is there).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_persona_budget.py                # all runs, ≈ 25 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_persona_budget.py --profile smoke --runs "prefix, 500"
"""
import random, tempfile, time

import torch

from _common import run_each
from hybrid_scale_check import prefix_cfg, read
from dreamstate.data import ByteTokenizer, profile_corpus
from dreamstate.rwkv7 import RWKV7, next_token_nll
from dreamstate.train import TrainConfig, train


def persona_data(P):
    "Notebook 11's persona training batches (seed P.seed) and held-out (context, window) pairs."
    tok, W, cmin, cmax = ByteTokenizer(), P.hyb_window, P.hyb_ctx_min, P.hyb_ctx_max
    need = cmax + W + 1
    docs = {split: [(d.label, ids) for d in profile_corpus(P) if d.split == split for ids in [tok.encode(d.text)] if len(ids) >= need]
            for split in ("train", "val")}
    def batches(step):
        r = random.Random(P.seed * 1_000_003 + step)
        tc = r.randint(cmin, cmax)
        ctx, win = [], []
        for _ in range(P.hyb_batch):
            _, ids = docs["train"][r.randrange(len(docs["train"]))]
            s = r.randint(tc, len(ids) - W - 1)
            ctx.append(ids[:tc]); win.append(ids[s:s + W + 1])
        return torch.tensor(ctx), torch.tensor(win)
    r, ev = random.Random("eval/persona"), []
    for p in sorted({l for l, _ in docs["train"]}):
        pool = [ids for l, ids in docs["val"] if l == p]
        for i in range(P.hyb_eval_per_persona):
            ids = pool[i % len(pool)]
            s = r.randint(cmax, len(ids) - W - 1)
            ev.append((ids[:P.hyb_eval_ctx], ids[s:s + W + 1]))
    return batches, torch.tensor([c for c, _ in ev]), torch.tensor([w for _, w in ev])


def run(P, steps, lr, every=250):
    batches, ectx, ewin = persona_data(P)
    torch.manual_seed(P.seed)
    m = RWKV7(prefix_cfg(P)).init_weights(seed=P.seed)
    @torch.no_grad()
    def held_out(model):
        return float(next_token_nll(model(ewin[:, :-1], read(model, ectx))[0], ewin[:, 1:]))
    curve, calls = [], [0]
    def loss_fn(model, b):
        if calls[0] % every == 0: curve.append((calls[0], round(held_out(model), 4)))
        calls[0] += 1
        ctx, win = b
        l = next_token_nll(model(win[:, :-1], read(model, ctx))[0], win[:, 1:]); return l, {"ce": l.item()}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        train(m, batches, loss_fn, TrainConfig(steps=steps, lr=lr, warmup=P.hyb_warmup, ckpt_every=10**9,
                                               log_every=max(1, steps // 20), seed=P.seed), d, progress=False)
    curve.append((steps, round(held_out(m.eval()), 4)))
    return {"heldout_window_ce": curve[-1][1], "heldout_curve": curve, "seconds": round(time.time() - t0, 1)}


RUNS = {
    "prefix, 200 steps, lr 3e-3 (notebook 11)": dict(steps=200, lr=3e-3),
    "prefix, 1000 steps, lr 3e-3": dict(steps=1000, lr=3e-3),
    "prefix, 3000 steps, lr 3e-3": dict(steps=3000, lr=3e-3),
    "prefix, 3000 steps, lr 1e-3": dict(steps=3000, lr=1e-3),
}


def main():
    run_each(__doc__, "hybrid_persona_budget", RUNS, run, lambda P: {"core": str(prefix_cfg(P)), "window": P.hyb_window,
                                                             "eval_ctx": P.hyb_eval_ctx})


if __name__ == "__main__":
    main()
