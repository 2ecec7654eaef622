"""Is the state DiT's low diversity a sampler setting? Samples 100 states per persona from the trained
DiT of the `cpu` profile (the raw-state DiT listed in build/cpu/state_models.json by `make reproduce`) under several
sampler settings — x̂0 clipping, DDIM steps, guidance, stochastic DDIM (η = 1), EMA or raw weights —
and prints the mean per-persona Fréchet distance to the held-out states in the 32-dim PCA space of
notebook 09 and the generated/real within-persona variance ratio.

    .venv/bin/python experiments/dit_sampler_check.py        # ≈ 30 min on 2 CPU cores
"""
import json
import time

import torch

from _common import Setup
from dreamstate.diffusion import Diffusion
from dreamstate.dit import StateDiT

S = Setup()
dit = StateDiT.load(S.P.build_dir / json.loads((S.P.build_dir / "state_models.json").read_text())["dit"]).eval()   # listed by notebook 08
diffusion = Diffusion(S.P.dit_schedule, 1000, S.P.dit_prediction)
y = torch.tensor([S.names.index(p) for p in S.labels])


def run(tag, steps=25, guidance=2.0, eta=0.0, clip=None, net=None):
    t0 = time.time()
    g = torch.Generator().manual_seed(0)
    c = dit.net.cfg
    x = torch.randn(len(y), c.in_channels, c.input_size, c.input_size, generator=g)
    img = diffusion.ddim(net or dit.ema, x, y, steps=steps, guidance=guidance, null_label=dit.null_label, eta=eta, generator=g,
                         clip=float(dit.clip) if clip is None else clip)
    m = S.measure(dit.from_image(img).flatten(1).numpy())
    print(f"{tag:28s} FD {m['fd']:7.0f}  variance ratio {m['variance_ratio']:.3f}  {time.time() - t0:.0f}s", flush=True)


run("default (25 steps, g 2)")
run("no x0 clipping", clip=1e9)
run("100 DDIM steps", steps=100)
run("guidance 1", guidance=1.0)
run("guidance 4", guidance=4.0)
run("raw (non-EMA) weights", net=dit.net)
run("DDIM eta 1, 25 steps", eta=1.0)
run("DDIM eta 1, 100 steps", eta=1.0, steps=100)
run("raw weights, eta 1", eta=1.0, net=dit.net)
