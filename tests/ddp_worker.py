"""Train a tiny RWKV-7 for a few steps and write the loss trajectory (rank 0) to argv[1].
Run directly (one process) or under torchrun (K processes, same global batch)."""
import json, sys, tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch  # noqa: E402
torch.set_num_threads(1)
from dreamstate.rwkv7 import RWKV7, RWKV7Config  # noqa: E402
from dreamstate.train import TrainConfig, lm_batches, lm_loss, train, dist_info  # noqa: E402

torch.manual_seed(0)
model = RWKV7(RWKV7Config(vocab_size=64, n_layer=2, n_embd=32, head_size=16))
stream = torch.randint(1, 64, (4000,), generator=torch.Generator().manual_seed(0))
cfg = TrainConfig(steps=6, lr=1e-2, warmup=2, log_every=1, ckpt_every=1000)
with tempfile.TemporaryDirectory() as d:
    hist = train(model, lm_batches(stream, 8, 24, seed=0), lm_loss, cfg, d, progress=False)
rank, world = dist_info()
if rank == 0:
    Path(sys.argv[1]).write_text(json.dumps({"world": world, "loss": [r["loss"] for r in hist],
                                             "param_sum": float(sum(p.double().sum() for p in model.parameters()))}))
