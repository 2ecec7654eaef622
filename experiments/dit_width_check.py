"""Train a state DiT variant on the `cpu` profile's state dataset (build/cpu/states) and measure the
mean per-persona Fréchet distance and the within-persona variance ratio of its samples in notebook 09's
PCA space (EMA and raw weights).

    .venv/bin/python experiments/dit_width_check.py NORM STEPS PRESET PRED [EMA_DECAY]
    e.g.  ... channel 800 W3 v      (W3: hidden 256, depth 3, heads 4, patch 4; W2: depth 2)
          ... coordinate 800 DiT-T/4 v
Set RAWONLY=1 to evaluate only the raw weights. Runs go to /tmp/diag/run_* (resumable).
"""
import os, sys, time

import torch

from _common import Setup
from dreamstate.dit import DIT_PRESETS, build_state_dit
from dreamstate.diffusion import Diffusion
from dreamstate.train import TrainConfig, train

DIT_PRESETS["W3"] = dict(hidden=256, depth=3, heads=4, patch_size=4)
DIT_PRESETS["W2"] = dict(hidden=256, depth=2, heads=4, patch_size=4)
norm, steps, preset, pred = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ema_decay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.999
S = Setup()
dit = build_state_dit(S.tr, preset, norm, ema_decay)
diffusion = Diffusion(S.P.dit_schedule, 1000, pred)
X, Y = dit.to_image(S.tr.wkv), S.tr.label_ids(S.names)
print(norm, preset, pred, steps, sum(p.numel() for p in dit.net.parameters()), "params; clip", float(dit.clip), flush=True)


def batch_fn(step):
    g = torch.Generator().manual_seed(1_000_003 + step)
    idx = torch.randint(0, len(X), (64,), generator=g)
    return X[idx], Y[idx], step


def loss_fn(model, b):
    x, yy, step = b
    return diffusion.loss(model, x, yy, null_label=len(S.names), p_uncond=0.1, generator=torch.Generator().manual_seed(7919 + step)), {}


t0 = time.time()
tc = TrainConfig(steps=steps, lr=1e-3, warmup=100, weight_decay=0.0, ckpt_every=10**9, log_every=50, seed=0, min_lr_ratio=0.1)
train(dit, batch_fn, loss_fn, tc, f"/tmp/diag/run_{norm}_{preset.replace('/', '')}_{pred}_{steps}_{ema_decay}", after_step=dit.update_ema)
print("train s", round(time.time() - t0), flush=True)
dit.eval()
y = torch.tensor([S.names.index(p) for p in S.labels])


def ev(tag, guidance):
    g = torch.Generator().manual_seed(0)
    c = dit.net.cfg
    x = torch.randn(len(y), c.in_channels, c.input_size, c.input_size, generator=g)
    img = diffusion.ddim(dit.ema, x, y, steps=25, guidance=guidance, null_label=dit.null_label, generator=g, clip=float(dit.clip))
    m = S.measure(dit.from_image(img).flatten(1).numpy())
    print(f"{tag} g{guidance}: FD {m['fd']:.0f}  variance ratio {m['variance_ratio']:.3f}", flush=True)


if not os.environ.get("RAWONLY"):
    ev("ema", 2.0); ev("ema", 1.0)
ema = dit.ema; dit.ema = dit.net; ev("raw", 2.0); dit.ema = ema
