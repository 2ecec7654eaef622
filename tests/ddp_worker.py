"""Train a tiny RWKV-7 (mode `lm`) or a tiny HybridRWKV7 on context/window batches without / with the
diffusion loss (`hybrid` / `hybrid_diff`) for a few steps, for each mode named after argv[1], and write each
loss trajectory (rank 0) to argv[1]/<mode>.json. Run directly (one process) or under torchrun (K processes,
same global batch). Each mode starts from the same seeds as in a process of its own (`train` reseeds too),
so running several in one process, one after the other, only saves their start-up (importing torch)."""
import json, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
torch.set_num_threads(1)
from dreamstate.rwkv7 import RWKV7, RWKV7Config  # noqa: E402
from dreamstate.train import TrainConfig, lm_batches, lm_loss, train, dist_info  # noqa: E402


def run(mode: str, out: Path):
    torch.manual_seed(0)
    cfg = TrainConfig(steps=6, lr=1e-2, warmup=2, log_every=1, ckpt_every=1000)
    if mode.startswith("hybrid"):
        from dreamstate.diffusion import Diffusion
        from dreamstate.hybrid import HybridConfig, HybridRWKV7, hybrid_loss
        torch.manual_seed(0)
        model = HybridRWKV7(RWKV7Config(vocab_size=64, n_layer=2, n_embd=32, head_size=16), HybridConfig(rank=4, lambda_diff=0.1 if mode == "hybrid_diff" else 0.0), seed=0)
        with torch.no_grad():   # BlinkDL's init zeroes the time-mix output, which would hide α's gradient
            for blk in model.core.blocks: blk.att.output.weight.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
        diffusion = Diffusion("cosine", 100)

        def batch_fn(step):
            g = torch.Generator().manual_seed(1000 + step)
            ctx = torch.randint(1, 64, (8, 10), generator=g)
            return ctx, torch.ones_like(ctx, dtype=torch.bool), torch.randint(1, 64, (8, 13), generator=g)

        def loss_fn(m, batch):
            return hybrid_loss(m, batch, diffusion, generator=torch.Generator().manual_seed(int(batch[0].sum())))
    elif mode == "lm":
        model = RWKV7(RWKV7Config(vocab_size=64, n_layer=2, n_embd=32, head_size=16))
        stream = torch.randint(1, 64, (4000,), generator=torch.Generator().manual_seed(0))
        batch_fn, loss_fn = lm_batches(stream, 8, 24, seed=0), lm_loss
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    with tempfile.TemporaryDirectory() as d:
        hist = train(model, batch_fn, loss_fn, cfg, d, progress=False)
    rank, world = dist_info()
    if rank == 0:
        out.write_text(json.dumps({"world": world, "loss": [r["loss"] for r in hist],
                                   "param_sum": float(sum(p.detach().double().sum() for p in model.parameters()))}))


for mode in sys.argv[2:] or ["lm"]:
    run(mode, Path(sys.argv[1]) / f"{mode}.json")
