"""Is the latent state model's held-out likelihood below a full Gaussian's (notebook 09) a training budget, the
weights, or the ODE's grid? On the profile's states (the codes of notebook 08's basis): the latent model of 08's
recipe trained with the profile's seed for 1× and 4× `latent_steps`, each scored with EMA and raw weights, and the
1× model's EMA weights on ODE grids of 48, 96 and 192 points (held-out NLL per code dimension, one probe seed);
beside them the full Gaussian per persona with the covariance floor notebook 09's mixture of one component uses.
Writes experiments/results/latent_likelihood_check.json (notebook 09 shows it).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/latent_likelihood_check.py            # cpu profile, ≈ 25 min on 2 cores
    OMP_NUM_THREADS=1 .venv/bin/python experiments/latent_likelihood_check.py --profile smoke --budgets 1 --grids 8
"""
import copy, time

import numpy as np
import torch

from _common import build_fingerprint, parser, result_path, work_dir, write_result
from dreamstate.config import load_profile
from dreamstate.diffusion import Diffusion
from dreamstate.dit import build_latent_model, profile_layers
from dreamstate.metrics import DensityBaseline, diffusion_log_likelihood
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.train import TrainConfig, train


def main():
    ap = parser(__doc__)
    ap.add_argument("--budgets", default="1,4", help="training budgets, in multiples of the profile's latent_steps")
    ap.add_argument("--grids", default="48,96,192", help="ODE grid points for the 1× model (EMA)")
    ap.add_argument("--per-persona", type=int, default=84, help="held-out states per persona scored")
    a = ap.parse_args()
    P = load_profile(a.profile)
    build = build_fingerprint(P)
    lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth")
    states = StateDataset.load(P.build_dir / "states", lm.cfg)
    tr, te = states.split("train"), states.split("test")
    names = tr.label_names
    layers = profile_layers(P, lm.cfg)
    yte_all = te.label_ids(names).numpy()
    pick = np.concatenate([np.where(yte_all == i)[0][:a.per_persona] for i in range(len(names))])
    labels = [names[i] for i in yte_all[pick]]
    torch.manual_seed(P.seed)
    lat = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, layers, residual=P.latent_residual)
    lat0 = copy.deepcopy(lat)          # the recipe's model before training: every budget starts from it (one SVD, not one per budget)
    Ztr, Zte = lat.encode(tr.wkv), lat.encode(te.wkv[torch.as_tensor(pick)])
    Y, D = tr.label_ids(names), Ztr.shape[1]
    gauss = DensityBaseline("gmm", components=1).fit(Ztr.double().numpy(), Y.numpy())
    rows = [{"method": "full Gaussian per persona (covariance floor 1e-3)", "steps": 0, "weights": "", "grid": 0,
             "nll_per_dim": float(-gauss.log_prob(Zte.double().numpy(), yte_all[pick]).mean() / D), "seconds": 0.0}]
    diff = Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    grids = [int(g) for g in a.grids.split(",")]
    for mult in [int(b) for b in a.budgets.split(",")]:
        steps = P.latent_steps * mult
        m = copy.deepcopy(lat0)
        cfg = TrainConfig(steps=steps, lr=P.latent_lr, warmup=P.dit_warmup, weight_decay=0.0, ckpt_every=max(1, steps // 4), log_every=50,
                          seed=P.seed, min_lr_ratio=0.1)
        def batch_fn(step, g=None):
            g = torch.Generator().manual_seed(P.seed * 1_000_003 + step)
            idx = torch.randint(0, len(Ztr), (P.latent_batch,), generator=g)
            return Ztr[idx], Y[idx], step
        def loss_fn(model, batch):
            x, y, step = batch
            return diff.loss(model, x, y, null_label=len(names), p_uncond=0.1, generator=torch.Generator().manual_seed(P.seed * 7919 + step)), {}
        t0 = time.time()
        hist = train(m, batch_fn, loss_fn, cfg, work_dir(P, "latent_likelihood", build) / str(steps), after_step=m.update_ema)
        m.eval()
        for weights in ("ema", "raw"):
            for grid in (grids if (mult == 1 and weights == "ema") else grids[:1]):
                t1 = time.time()
                lp = diffusion_log_likelihood(m, diff, Zte, labels, grid, 1, seed=P.seed, weights=weights)
                rows.append({"method": "latent diffusion", "steps": steps, "weights": weights, "grid": grid,
                             "final_loss": hist[-1]["loss"], "nll_per_dim": float(-lp.mean() / D), "seconds": round(time.time() - t1, 1)})
                print(rows[-1], flush=True)
        print(f"{steps} steps: trained and scored in {time.time() - t0:.0f} s", flush=True)
    write_result(result_path(a, "latent_likelihood_check"), a.profile,
                 {"build": build, "heldout_states": len(pick), "code_dims": D, "seed": P.seed, "rows": rows})


if __name__ == "__main__":
    main()
