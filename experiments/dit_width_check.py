"""Train a state DiT variant on the `cpu` profile's state dataset (build/cpu/states) and measure the
mean per-persona Fréchet distance and the within-persona variance of its samples in notebook 09's
PCA space (EMA and raw weights).

    .venv/bin/python experiments/dit_width_check.py NORM STEPS PRESET PRED [EMA_DECAY]
    e.g.  ... channel 800 W3 v      (W3: hidden 256, depth 3, heads 4, patch 4; W2: depth 2)
          ... coordinate 800 DiT-T/4 v
Set RAWONLY=1 to evaluate only the raw weights. Runs go to /tmp/diag/run_* (resumable).
"""
import sys, time, torch, numpy as np
from dreamstate.config import load_profile
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.dit import DIT_PRESETS, build_state_dit, generate_states
DIT_PRESETS["W3"] = dict(hidden=256, depth=3, heads=4, patch_size=4)
DIT_PRESETS["W2"] = dict(hidden=256, depth=2, heads=4, patch_size=4)
from dreamstate.diffusion import Diffusion
from dreamstate.train import TrainConfig, train
from dreamstate.metrics import PCASpace, frechet_distance
torch.set_num_threads(2)
norm, steps, preset, pred = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ema_decay = float(sys.argv[5]) if len(sys.argv) > 5 else 0.999
P = load_profile("cpu")
lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth").eval()
states = StateDataset.load(P.build_dir / "states", lm.cfg)
tr, te = states.split("train"), states.split("test"); names = states.label_names
dit = build_state_dit(tr, preset, norm, ema_decay)
y = tr.label_ids(names)
diffusion = Diffusion("cosine", 1000, pred)
X, Y = dit.to_image(tr.wkv), y
print(norm, preset, pred, steps, sum(p.numel() for p in dit.net.parameters()), "params; clip", float(dit.clip), flush=True)
def bf(step):
    g = torch.Generator().manual_seed(1_000_003 + step); idx = torch.randint(0, len(X), (64,), generator=g)
    return X[idx], Y[idx], step
def lf(model, b):
    x, yy, step = b; g = torch.Generator().manual_seed(7919 + step)
    return diffusion.loss(model, x, yy, len(names), p_uncond=0.1, generator=g), {}
t0 = time.time()
tc = TrainConfig(steps=steps, lr=1e-3, warmup=100, weight_decay=0.0, ckpt_every=10**9, log_every=50, seed=0, min_lr_ratio=0.1)
hist = train(dit, bf, lf, tc, f"/tmp/diag/run_{norm}_{preset.replace('/','')}_{pred}_{steps}_{ema_decay}", after_step=dit.update_ema)
print("train s", round(time.time() - t0), flush=True)
dit.eval()
yte = te.label_ids(names).numpy(); ytr = y.numpy()
Xtr, Xte = tr.wkv.flatten(1).numpy(), te.wkv.flatten(1).numpy()
space = PCASpace(Xtr, 32, 0); Zte = space(Xte)
n = 100; labels = [p for p in names for _ in range(n)]
def ev(tag, g):
    st = generate_states(dit, diffusion, labels, len(labels), 25, g, seed=0)
    Z = space(st.wkv.transpose(0, 1).flatten(1).numpy()); yy = np.repeat(np.arange(len(names)), n)
    fd = np.mean([frechet_distance(Z[yy == i], Zte[yte == i]) for i in range(len(names))])
    wv = np.mean([Z[yy == i].var(0).sum() for i in range(len(names))])
    print(f"{tag} g{g}: FD {fd:.0f}  within-persona var {wv:.0f} (real {np.mean([Zte[yte==i].var(0).sum() for i in range(len(names))]):.0f})", flush=True)
import os
if not os.environ.get("RAWONLY"): ev("ema", 2.0); ev("ema", 1.0)
ema = dit.ema; dit.ema = dit.net; ev("raw", 2.0); dit.ema = ema
