"""Is the state DiT's low diversity a sampler setting? Samples 100 states per persona from the trained
DiT of a profile (the raw-state DiT listed in build/<profile>/state_models.json by `make reproduce`) under
several sampler settings — x̂0 clipping, DDIM steps, guidance, stochastic DDIM (η = 1), EMA or raw
weights — and reports the mean per-persona Fréchet distance to the held-out states in the 32-dim PCA
space of notebook 09 and the generated/real within-persona variance ratio
(experiments/results/dit_sampler_check.json).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/dit_sampler_check.py          # cpu profile, ≈ 30 min on 2 CPU cores
    OMP_NUM_THREADS=1 .venv/bin/python experiments/dit_sampler_check.py --profile smoke --settings default
"""
import json
import time

import torch

from _common import Setup, parse_with_subset, parser, result_path, write_result
from dreamstate.diffusion import Diffusion
from dreamstate.dit import StateDiT

SETTINGS = {   # name: keyword arguments of `sample` (net "raw": the non-EMA weights)
    "default (25 steps, g 2)": {},
    "no x0 clipping": dict(clip=1e9),
    "100 DDIM steps": dict(steps=100),
    "guidance 1": dict(guidance=1.0),
    "guidance 4": dict(guidance=4.0),
    "raw (non-EMA) weights": dict(net="raw"),
    "DDIM eta 1, 25 steps": dict(eta=1.0),
    "DDIM eta 1, 100 steps": dict(eta=1.0, steps=100),
    "raw weights, eta 1": dict(eta=1.0, net="raw"),
}


def sample(S, dit, diffusion, steps=25, guidance=2.0, eta=0.0, clip=None, net="ema") -> dict:
    "Fréchet distance and variance ratio of `N_PER_PERSONA` DDIM samples per persona under one sampler setting."
    y = torch.tensor([S.names.index(p) for p in S.labels])
    g = torch.Generator().manual_seed(0)
    c = dit.net.cfg
    x = torch.randn(len(y), c.in_channels, c.input_size, c.input_size, generator=g)
    img = diffusion.ddim(dit.net if net == "raw" else dit.ema, x, y, steps=steps, guidance=guidance, null_label=dit.null_label, eta=eta, generator=g,
                         clip=float(dit.clip) if clip is None else clip)
    return S.measure(dit.from_image(img).flatten(1).numpy())


def main():
    a, chosen = parse_with_subset(parser(__doc__), "--settings", SETTINGS)
    S = Setup(a.profile)
    dit = StateDiT.load(S.P.build_dir / json.loads((S.P.build_dir / "state_models.json").read_text())["dit"]).eval()   # listed by notebook 08
    diffusion = Diffusion(S.P.dit_schedule, 1000, S.P.dit_prediction)
    rows = []
    for name in chosen:
        t0 = time.time()
        m = sample(S, dit, diffusion, **SETTINGS[name])
        rows.append({"setting": name, **SETTINGS[name], **m, "seconds": round(time.time() - t0, 1)})
        print(f"{name:28s} FD {m['fd']:7.0f}  variance ratio {m['variance_ratio']:.3f}  {rows[-1]['seconds']:.0f}s", flush=True)
    write_result(result_path(a, "dit_sampler_check"), a.profile, {"build": S.build, "per_persona": len(S.labels) // len(S.names), "rows": rows})


if __name__ == "__main__":
    main()
