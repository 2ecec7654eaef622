"""Can a diffusion model beat the closed-form Gaussian on held-out likelihood if it starts from it? Notebook 09 finds a
full Gaussian per persona (in the latent model's code space) describes held-out states better than the latent diffusion
model at every data size and budget measured. Here the latent model's denoiser is the sum of the *exact* denoiser of
that Gaussian (per persona; for the null label, the mixture of the personas' Gaussians) and notebook 08's code denoiser,
whose output layer starts at zero: before training the model is the Gaussian, and training can only add what the
Gaussian misses.

Protocol (the profile's states, the codes of notebook 08's basis, the profile's seed):
- a validation split, `--val` of each persona's training states; the Gaussian base and every network are fitted on the
  rest; held-out NLL per code dimension on validation every `--eval-every` steps (EMA weights, a `--val-grid`-point
  ODE grid) and at the end on the test states (EMA and raw weights, `--grid` points), one Hutchinson probe;
- known answers: the untrained model's ODE likelihood equals the base Gaussian's closed form on the test states, at
  each grid (the ODE's and the estimator's error; the Gaussian's smallest directions, at the covariance floor 1e-3,
  need a fine grid); the plain latent model of 08's recipe is trained beside it on the same
  split, so the gain is measured against both the Gaussian and the model without the base;
- learning rates `--lrs` for each row, the one with the best final validation NLL chosen per row.
Writes experiments/results/latent_gaussian_base.json.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/latent_gaussian_base.py                 # cpu profile
    OMP_NUM_THREADS=1 .venv/bin/python experiments/latent_gaussian_base.py --profile smoke --lrs 1e-3 --eval-every 10
"""
import copy, json, time

import numpy as np
import torch
from scipy import stats
from torch import nn

from _common import build_fingerprint, parser, result_path, work_dir, write_result
from dreamstate.config import load_profile
from dreamstate.diffusion import Diffusion
from dreamstate.dit import CodeDenoiser, build_latent_model, profile_layers
from dreamstate.metrics import DensityBaseline, diffusion_log_likelihood
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.train import TrainConfig, train


class GaussianBaseDenoiser(nn.Module):
    """ε or v of `net(x, t, y)` added to the exact prediction for data N(μ_y, Σ_y) (label y < K), or for the mixture
    Σ_k w_k N(μ_k, Σ_k) (the null label K). Σ_k = U_k diag(ℓ_k) U_kᵀ; per class, in the eigenbasis d = U_kᵀ(x − αμ_k):
    E[x0 | x] = μ_k + U_k (αℓ/(α²ℓ + σ²) d) and E[ε | x] = U_k (σ/(α²ℓ + σ²) d)."""
    def __init__(self, net: nn.Module, diffusion: Diffusion, means, covs, weights):
        super().__init__()
        self.net, self.diffusion = net, diffusion
        e, U = torch.linalg.eigh(torch.as_tensor(np.asarray(covs), dtype=torch.float64))
        self.register_buffer("mu", torch.as_tensor(np.asarray(means), dtype=torch.float32))     # [K, D]
        self.register_buffer("ell", e.clamp_min(0).float())                                      # [K, D]
        self.register_buffer("U", U.float())                                                     # [K, D, D]
        self.register_buffer("logw", torch.as_tensor(np.log(np.asarray(weights)), dtype=torch.float32))

    def _posterior(self, x, a, s, k):
        "E[x0 | x] and E[ε | x] under class k's Gaussian for rows `x` `[b, D]` at levels `a`, `s` `[b, 1]`; and log N(x; αμ_k, α²Σ_k + σ²I) up to a constant."
        d = (x - a * self.mu[k]) @ self.U[k]
        v = a ** 2 * self.ell[k] + s ** 2
        x0 = self.mu[k] + (a * self.ell[k] / v * d) @ self.U[k].T
        eps = (s / v * d) @ self.U[k].T
        return x0, eps, -0.5 * (d ** 2 / v + v.log()).sum(-1)

    def base(self, x, t, y):
        a, s = self.diffusion._a(t, x)                                   # [B, 1] each
        K = self.mu.shape[0]
        x0, eps = torch.zeros_like(x), torch.zeros_like(x)
        for k in range(K):                                               # a labelled row needs its own class only
            i = (y == k).nonzero().flatten()
            if len(i): x0[i], eps[i] = self._posterior(x[i], a[i], s[i], k)[:2]
        i = (y == K).nonzero().flatten()
        if len(i):                                                       # the null label: the mixture's posterior
            parts = [self._posterior(x[i], a[i], s[i], k) for k in range(K)]
            r = (torch.stack([p[2] for p in parts], -1) + self.logw).softmax(-1)[:, :, None]     # [b, K, 1]
            x0[i] = (r * torch.stack([p[0] for p in parts], 1)).sum(1)
            eps[i] = (r * torch.stack([p[1] for p in parts], 1)).sum(1)
        return eps if self.diffusion.prediction == "eps" else a * eps - s * x0

    def forward(self, x, t, y):
        return self.base(x, t, y) + self.net(x, t, y)


def main():
    ap = parser(__doc__)
    ap.add_argument("--lrs", default="3e-4,1e-3,3e-3", help="learning rates tried for each row")
    ap.add_argument("--budget", type=int, default=1, help="training steps, in multiples of the profile's latent_steps")
    ap.add_argument("--rows", default="gaussian base,plain", help="which rows to train")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds of each `--seed-rows` row, at the learning rate chosen on validation")
    ap.add_argument("--seed-rows", default="gaussian base", help="which rows get `--seeds` training seeds")
    ap.add_argument("--val", type=float, default=0.1, help="share of each persona's training states held for validation")
    ap.add_argument("--eval-every", type=int, default=1000, help="validation NLL every this many steps")
    ap.add_argument("--grid", type=int, default=192, help="ODE grid points on the test states (the known answer checks it and twice it)")
    ap.add_argument("--val-grid", type=int, default=96, help="ODE grid points on the validation states")
    a = ap.parse_args()
    P = load_profile(a.profile)
    build = build_fingerprint(P)
    lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth")
    states = StateDataset.load(P.build_dir / "states", lm.cfg)
    tr, te = states.split("train"), states.split("test")
    names = tr.label_names
    layers = profile_layers(P, lm.cfg)
    torch.manual_seed(P.seed)
    lat = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, layers, residual=P.latent_residual)
    Z, Zte = lat.encode(tr.wkv), lat.encode(te.wkv)
    Y, yte = tr.label_ids(names), te.label_ids(names).numpy()
    g = np.random.default_rng(P.seed)
    val = np.zeros(len(Z), bool)
    for c in range(len(names)):
        idx = np.where(Y.numpy() == c)[0]; val[g.choice(idx, max(1, int(round(a.val * len(idx)))), replace=False)] = True
    Ztr, Ytr, Zva, yva = Z[~val], Y[~val], Z[val], Y[val].numpy()
    D = Z.shape[1]
    print(f"{len(Ztr)} training, {len(Zva)} validation, {len(Zte)} test states; {D} code dimensions", flush=True)
    gauss = DensityBaseline("gmm", components=1).fit(Ztr.double().numpy(), Ytr.numpy())
    gfull = DensityBaseline("gmm", components=1).fit(Z.double().numpy(), Y.numpy())
    closed = {"val": float(-gauss.log_prob(Zva.double().numpy(), yva).mean() / D),
              "test": float(-gauss.log_prob(Zte.double().numpy(), yte).mean() / D),
              "test, fitted on all training states": float(-gfull.log_prob(Zte.double().numpy(), yte).mean() / D)}
    print("Gaussian per persona:", closed, flush=True)
    means = [gauss.parts[c].means_[0] for c in range(len(names))]
    covs = [gauss.parts[c].covariances_[0] for c in range(len(names))]
    freq = np.bincount(Ytr.numpy(), minlength=len(names)) / len(Ytr)
    diff = Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    lab = lambda ids: [names[i] for i in ids]
    def nll_rows(m, Zx, yx, weights="ema", grid=None):
        "Per state: NLL per code dimension under the model's ODE (one probe seeded by the profile's seed: every model sees the same probes)."
        m.eval()
        out = (-diffusion_log_likelihood(m, diff, Zx, lab(yx), grid or a.grid, 1, seed=P.seed, weights=weights) / D).numpy()
        m.train()
        return out
    nll = lambda *args, **kw: float(nll_rows(*args, **kw).mean())
    gauss_rows = -gauss.log_prob(Zte.double().numpy(), yte) / D

    cfg_net = lat.net.cfg
    def make(row, seed):
        "The row's model of training seed `seed` (an offset to the profile's seed): the denoiser drawn as notebook 08 draws it."
        m = copy.deepcopy(lat)
        torch.manual_seed(P.seed + seed)
        m.net = CodeDenoiser(cfg_net)                                    # seed 0: the very weights `lat` was built with
        if row == "gaussian base": m.net = GaussianBaseDenoiser(m.net, diff, means, covs, freq)
        m.ema = copy.deepcopy(m.net).requires_grad_(False)
        return m
    assert all(torch.equal(p, q) for p, q in zip(make("plain", 0).net.parameters(), lat.net.parameters()))

    out_path = result_path(a, "latent_gaussian_base")
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    same = old.get("build") == build and old.get("grid") == a.grid and old.get("val_grid") == a.val_grid
    known = old.get("known_answers", {}) if same and "untrained_test_rows" in old else {}
    if known: untrained_rows = np.asarray(old["untrained_test_rows"])
    else:
        m0 = make("gaussian base", 0)
        t0 = time.time()
        for grid in (a.val_grid, a.grid, 2 * a.grid):
            r0 = nll_rows(m0, Zte, yte, grid=grid)
            if grid == a.grid: untrained_rows = r0                       # the same ODE and probes as the trained models' scores
            known[f"untrained gaussian-base model, test NLL/dim (ODE, {grid} points)"] = float(r0.mean())
        known["the same, closed form"] = closed["test"]
        known["untrained, validation NLL/dim (ODE, validation grid)"] = nll(m0, Zva, yva, grid=a.val_grid)
        known["the same, closed form (validation)"] = closed["val"]
        known["seconds"] = round(time.time() - t0, 1)
    print(known, flush=True)

    steps = P.latent_steps * a.budget
    runs = [r for r in old.get("runs", []) if "test_rows_ema" in r] if same else []      # a rerun keeps what it has
    def save():
        write_result(out_path, a.profile,
                     {"build": build, "seed": P.seed, "code_dims": D, "grid": a.grid, "val_grid": a.val_grid,
                      "states": {"train": len(Ztr), "val": len(Zva), "test": len(Zte)},
                      "gaussian": closed, "gaussian_test_rows": [round(float(v), 6) for v in gauss_rows],
                      "untrained_test_rows": [round(float(v), 6) for v in untrained_rows], "known_answers": known, "runs": runs})

    def run(row, lr, seed):
        if any((r["row"], r["lr"], r["steps"], r.get("seed", 0)) == (row, lr, steps, seed) for r in runs): return
        m = make(row, seed)
        out_dir = work_dir(P, "latent_gaussian_base", build) / (f"{row}-{lr:g}-{steps}" + (f"-seed{seed}" if seed else ""))
        curve_file = out_dir / "val_curve.json"                          # the curve survives a resumed run
        curve = json.loads(curve_file.read_text()) if curve_file.exists() else []
        def after(model, step):
            model.update_ema(step=step)
            if (step + 1) % a.eval_every == 0 or step + 1 == steps:
                curve.append({"step": step + 1, "val_nll_per_dim": nll(model, Zva, yva, grid=a.val_grid)})
                curve_file.write_text(json.dumps(curve))
                print(row, lr, seed, curve[-1], flush=True)
        sd = P.seed + seed
        cfg = TrainConfig(steps=steps, lr=lr, warmup=P.dit_warmup, weight_decay=0.0, ckpt_every=max(1, steps // 4), log_every=50,
                          seed=sd, min_lr_ratio=0.1)
        def batch_fn(step):
            gg = torch.Generator().manual_seed(sd * 1_000_003 + step)
            idx = torch.randint(0, len(Ztr), (P.latent_batch,), generator=gg)
            return Ztr[idx], Ytr[idx], step
        def loss_fn(model, batch):
            x, y, step = batch
            return diff.loss(model, x, y, null_label=len(names), p_uncond=0.1, generator=torch.Generator().manual_seed(sd * 7919 + step)), {}
        t1 = time.time()
        hist = train(m, batch_fn, loss_fn, cfg, out_dir, after_step=after)
        secs = time.time() - t1
        rows_ema = nll_rows(m, Zte, yte, "ema")
        diff_rows = rows_ema - gauss_rows                                # paired per held-out state: below 0, the model is better
        diff_ode = rows_ema - untrained_rows                             # the same, against the Gaussian through the same ODE
        runs.append({"row": row, "lr": lr, "steps": steps, "seed": seed, "final_loss": hist[-1]["loss"], "train_seconds": round(secs),
                     "val_curve": curve, "val_nll_per_dim": curve[-1]["val_nll_per_dim"] if curve else None,
                     "test_nll_per_dim_ema": float(rows_ema.mean()), "test_nll_per_dim_raw": nll(m, Zte, yte, "raw"),
                     "test_minus_gaussian": float(diff_rows.mean()),
                     "test_minus_gaussian_ci95": float(1.96 * diff_rows.std(ddof=1) / np.sqrt(len(diff_rows))),
                     "test_minus_untrained_ode": float(diff_ode.mean()),
                     "test_minus_untrained_ode_ci95": float(1.96 * diff_ode.std(ddof=1) / np.sqrt(len(diff_ode))),
                     "test_rows_ema": [round(float(v), 6) for v in rows_ema]})
        print({k: v for k, v in runs[-1].items() if k != "test_rows_ema"}, flush=True)
        save()

    save()
    rows = [r.strip() for r in a.rows.split(",")]
    for row in rows:
        for lr in [float(x) for x in a.lrs.split(",")]: run(row, lr, 0)
    best = {}
    for r in runs:
        if r.get("seed", 0) == 0 and r["val_nll_per_dim"] is not None and \
           (r["row"] not in best or r["val_nll_per_dim"] < best[r["row"]]["val_nll_per_dim"]): best[r["row"]] = r
    for row in [r.strip() for r in a.seed_rows.split(",") if r.strip()]:
        for seed in range(1, a.seeds): run(row, best[row]["lr"], seed)
    for row, b in best.items():
        per = [r for r in runs if r["row"] == row and r["lr"] == b["lr"] and r["steps"] == steps]
        d = np.array([r["test_minus_gaussian"] for r in per]); do = np.array([r["test_minus_untrained_ode"] for r in per])
        half = lambda v: float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan")
        print(f"{row}: lr {b['lr']:g} chosen on validation; {len(per)} training seeds; test NLL/dim {np.mean([r['test_nll_per_dim_ema'] for r in per]):.4f} "
              f"(EMA), Gaussian {closed['test']:.4f}; minus the Gaussian {d.mean():+.4f} ± {half(d):.4f} (closed form), "
              f"{do.mean():+.4f} ± {half(do):.4f} (through the same ODE); per seed {np.round(d, 4).tolist()}")


if __name__ == "__main__":
    main()
