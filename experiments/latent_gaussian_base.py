"""Can a diffusion model beat the closed-form density on held-out likelihood if it starts from it? Notebook 09 finds a
full Gaussian per persona (in the latent model's code space) describes held-out states better than the latent diffusion
model at every data size and budget measured. Here the latent model's prediction is the sum of the *exact* prediction
of the best closed-form density of 09's family (a mixture of full Gaussians per persona, its size chosen on
validation; at the profile's data size, one component: the Gaussian; for the null label, the mixture over personas)
and notebook 08's code denoiser, whose output layer starts at zero: before training the model is that density, and
training can only add what it misses.

Protocol (the profile's states, the codes of notebook 08's basis, the profile's seed):
- a validation split, `--val` of each persona's training states; the base and every network are fitted on the rest;
  held-out NLL per code dimension on validation every `--eval-every` steps (EMA weights, a `--val-grid`-point ODE grid,
  `--val-eval` states per persona) and at the end on the test states (EMA and raw weights, `--grid` points), one
  Hutchinson probe seeded by the profile's seed;
- known answers: the untrained model's ODE likelihood equals the base's closed form on the test states, at each grid
  (the ODE's and the estimator's error; the smallest directions, at the covariance floor 1e-3, need a fine grid);
- rows `--rows`: the model with the base, and 08's plain latent model on the same split; learning rates `--lrs` for
  each, the one with the best final validation NLL chosen per row, then `--seeds` training seeds at that rate;
- the gain paired per held-out state, against the closed form and against the untrained model through the same ODE;
- `--growth M`: M times the profile's training states per persona, the profile's first, then the codes
  `experiments/state_data_growth.py` collected on this build (run it first).
Writes experiments/results/latent_gaussian_base.json (latent_gaussian_base_xM.json with `--growth M`).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/latent_gaussian_base.py --rows "gaussian base"   # the committed record, ≈ 60 min
    OMP_NUM_THREADS=2 .venv/bin/python experiments/latent_gaussian_base.py --growth 8 --test-per-persona 84 --val-eval 100 \\
        --rows "gaussian base" --lrs 3e-4 --seeds 1 --components 4          # the committed _x8 record
    OMP_NUM_THREADS=2 .venv/bin/python experiments/latent_gaussian_base.py --planted 16 --rows "gaussian base" --lrs 3e-4   # the power
        # check: _planted16.json holds seed 0 at 3e-4, and at 3e-3 (`--lrs 3e-3 --seeds 1`); `--budget 2 --seeds 1 --out
        # experiments/results/latent_gaussian_base_planted16_b2.json` the same at twice the steps
    OMP_NUM_THREADS=1 .venv/bin/python experiments/latent_gaussian_base.py --profile smoke --lrs 1e-3 --eval-every 10
"""
import copy, hashlib, json, time

import numpy as np
import torch
from scipy import stats
from torch import nn

from _common import build_fingerprint, parser, result_path, work_dir, write_result
from dreamstate.config import load_profile
from dreamstate.diffusion import Diffusion
from dreamstate.dit import CodeDenoiser, build_latent_model, profile_layers
from dreamstate.metrics import diffusion_log_likelihood, fit_on_validation
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.train import TrainConfig, train


class GaussianBaseDenoiser(nn.Module):
    """ε or v of `net(x, t, y)` added to the exact prediction for data from a mixture of full Gaussians per class (one
    component: a Gaussian). Component j (of class c_j, weight w_j within it) is N(μ_j, Σ_j), Σ_j = U_j diag(ℓ_j) U_jᵀ; in
    its eigenbasis d = U_jᵀ(x − αμ_j): E[x0 | x, j] = μ_j + U_j (αℓ/(α²ℓ + σ²) d), E[ε | x, j] = U_j (σ/(α²ℓ + σ²) d),
    and the components are weighted by their posterior given x. Label y < K: the components of class y; the null
    label K: every component, weighted by its class's frequency too."""
    def __init__(self, net: nn.Module, diffusion: Diffusion, means, covs, logw, classes, class_weights):
        super().__init__()
        self.net, self.diffusion = net, diffusion
        e, U = torch.linalg.eigh(torch.as_tensor(np.asarray(covs), dtype=torch.float64))
        self.register_buffer("mu", torch.as_tensor(np.asarray(means), dtype=torch.float32))     # [J, D]
        self.register_buffer("ell", e.clamp_min(0).float())                                      # [J, D]
        self.register_buffer("U", U.float())                                                     # [J, D, D]
        cls = np.asarray(classes)
        self.register_buffer("logw", torch.as_tensor(np.asarray(logw), dtype=torch.float32))     # [J]: log weight within its class
        self.register_buffer("logw_null", torch.as_tensor(np.asarray(logw) + np.log(np.asarray(class_weights))[cls], dtype=torch.float32))
        self.K, self.of_class = len(class_weights), [np.where(cls == k)[0].tolist() for k in range(len(class_weights))]

    def _posterior(self, x, a, s, j):
        "E[x0 | x, j] and E[ε | x, j] for rows `x` `[b, D]` at levels `a`, `s` `[b, 1]`; and log N(x; αμ_j, α²Σ_j + σ²I) up to a constant."
        d = (x - a * self.mu[j]) @ self.U[j]
        v = a ** 2 * self.ell[j] + s ** 2
        x0 = self.mu[j] + (a * self.ell[j] / v * d) @ self.U[j].T
        eps = (s / v * d) @ self.U[j].T
        return x0, eps, -0.5 * (d ** 2 / v + v.log()).sum(-1)

    def _mixed(self, x, a, s, comps, logw):
        "The posterior-weighted E[x0 | x] and E[ε | x] over components `comps` with log weights `logw`."
        parts = [self._posterior(x, a, s, j) for j in comps]
        if len(parts) == 1: return parts[0][:2]
        r = (torch.stack([p[2] for p in parts], -1) + logw).softmax(-1)[:, :, None]                # [b, J', 1]
        return (r * torch.stack([p[0] for p in parts], 1)).sum(1), (r * torch.stack([p[1] for p in parts], 1)).sum(1)

    def base(self, x, t, y):
        a, s = self.diffusion._a(t, x)                                   # [B, 1] each
        x0, eps = torch.zeros_like(x), torch.zeros_like(x)
        for k in range(self.K + 1):                                      # a labelled row needs its own class's components only
            i = (y == k).nonzero().flatten()
            if not len(i): continue
            comps = self.of_class[k] if k < self.K else list(range(len(self.mu)))
            x0[i], eps[i] = self._mixed(x[i], a[i], s[i], comps, (self.logw if k < self.K else self.logw_null)[comps])
        return eps if self.diffusion.prediction == "eps" else a * eps - s * x0

    def forward(self, x, t, y):
        return self.base(x, t, y) + self.net(x, t, y)


def plant(Ztr, ytr, Zva, yva, Zte, yte, K, k, sep, seed):
    """The power check's codes, a known answer for the whole protocol: for each persona c, with μ_c and the eigenpairs
    (ℓ_j, u_j) of its training codes' covariance (ℓ floored at 1e-3, the base's floor; descending), every code is redrawn
    as x = μ_c + Σ_j √ℓ_j z_j u_j, z_j ~ N(0, 1) except the top `k` directions, where z_j = ±sep + √(1 − sep²) ε (equal
    odds): each persona's mean and covariance are those of its real codes (with the floor), its density is not Gaussian,
    and that density is known. Returns the redrawn train, validation and test codes (float32) and, on the validation and
    test codes as rounded, NLL per code dimension under the true density and under the oracle Gaussian (the true mean
    and covariance: the best any Gaussian can do), the test's per row too. What a model can gain over a Gaussian is
    oracle − true (≈ k · 0.471 / D nats at sep 0.95); a fitted base is further above the oracle by its estimation error."""
    g = np.random.default_rng(seed + 17)
    D, v = Ztr.shape[1], 1 - sep ** 2
    parts = []
    for c in range(K):
        zc = Ztr[torch.as_tensor(ytr == c)].double().numpy()
        ell, U = np.linalg.eigh(np.cov(zc, rowvar=False))
        parts.append((zc.mean(0), np.maximum(ell[::-1], 1e-3), U[:, ::-1].copy()))
    def draw(y):
        out = np.empty((len(y), D))
        for c, (mu, ell, U) in enumerate(parts):
            i = np.where(y == c)[0]
            z = g.standard_normal((len(i), D))
            z[:, :k] = g.choice([-sep, sep], (len(i), k)) + np.sqrt(v) * z[:, :k]
            out[i] = mu + (z * np.sqrt(ell)) @ U.T
        return out
    def nll(X, y, gaussian=False):
        out = np.empty(len(y))
        for c, (mu, ell, U) in enumerate(parts):
            i = np.where(y == c)[0]
            z = ((X[i] - mu) @ U) / np.sqrt(ell)
            bi = np.logaddexp(-0.5 * (z[:, :k] - sep) ** 2 / v, -0.5 * (z[:, :k] + sep) ** 2 / v) - np.log(2) - 0.5 * np.log(2 * np.pi * v)
            lp = -0.5 * (z ** 2).sum(1) - 0.5 * D * np.log(2 * np.pi) if gaussian else \
                 bi.sum(1) - 0.5 * (z[:, k:] ** 2).sum(1) - 0.5 * (D - k) * np.log(2 * np.pi)
            lp = lp - 0.5 * np.log(ell).sum()
            out[i] = -lp / D
        return out
    new = [draw(ytr).astype(np.float32).astype(np.float64), draw(yva).astype(np.float32).astype(np.float64),
           draw(yte).astype(np.float32).astype(np.float64)]                      # scored as the models see them
    rows, orows = nll(new[2], yte), nll(new[2], yte, gaussian=True)
    return (*[torch.as_tensor(x, dtype=torch.float32) for x in new],
            {"val": float(nll(new[1], yva).mean()), "test": float(rows.mean()), "test_rows": rows,
             "oracle_gaussian_val": float(nll(new[1], yva, gaussian=True).mean()), "oracle_gaussian_test": float(orows.mean()),
             "oracle_gaussian_test_rows": orows, "parts": parts, "k": k, "sep": sep})


def planted_prediction(planted, diffusion: Diffusion, x, t, y, k=None):
    """The exact ε or v prediction for the planted density (`plant`'s personas, labelled rows `y` only); `k=0`: for the
    oracle Gaussian (the planted mean and covariance). In persona c's eigenbasis d = Uᵀ(x − αμ) = α√ℓ z + σε' per
    coordinate: a Gaussian z gives E[ε'|d] = σd/(α²ℓ + σ²); a planted z = ±sep + √(1 − sep²)η is a two-component
    mixture, each component Gaussian (variance α²ℓ(1 − sep²) + σ²), weighted by its posterior."""
    k = planted["k"] if k is None else k
    sep = planted["sep"]; v = 1 - sep ** 2
    a, s = (q.double() for q in diffusion._a(t, x))
    x = x.double()
    x0, eps = torch.empty_like(x), torch.empty_like(x)
    for c, (mu, ell, U) in enumerate(planted["parts"]):
        i = (torch.as_tensor(y) == c).nonzero().flatten()
        if not len(i): continue
        mu, ell, U = (torch.as_tensor(np.ascontiguousarray(q), dtype=torch.float64) for q in (mu, ell, U))
        ai, si, sq = a[i], s[i], ell.sqrt()
        d = (x[i] - ai * mu) @ U
        var = ai ** 2 * ell + si ** 2
        ez, ee = ai * sq * d / var, si * d / var                          # E[z | d], E[ε' | d]: Gaussian coordinates
        if k:
            m, vb = ai * sq[:k] * sep, ai ** 2 * ell[:k] * v + si ** 2
            dk = d[:, :k]
            r = torch.sigmoid(((dk + m) ** 2 - (dk - m) ** 2) / (2 * vb))   # posterior of the + mode
            ez[:, :k] = r * (sep + ai * sq[:k] * v * (dk - m) / vb) + (1 - r) * (-sep + ai * sq[:k] * v * (dk + m) / vb)
            ee[:, :k] = r * si * (dk - m) / vb + (1 - r) * si * (dk + m) / vb
        x0[i], eps[i] = mu + (sq * ez) @ U.T, ee @ U.T
    return (eps if diffusion.prediction == "eps" else a * eps - s * x0).float()


def loss_gap(planted, base, diffusion: Diffusion, Z, y, n, batch, seed, bins=10):
    """The known answer the training signal needs, with no network: the denoising loss (the training objective, labelled
    rows) of the exact planted denoiser, the oracle Gaussian's and the fitted base's on `n` draws of (code, t, noise), paired.
    Returns the mean losses per code dimension, the base's and the oracle's excess over the exact denoiser with 95%
    intervals, the excess per t bin, and the standard deviation of one training batch's mean loss (`batch` rows)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(Z), (n,), generator=g)
    x0, yy = Z[idx], torch.as_tensor(y)[idx]
    t = torch.randint(0, diffusion.T, (n,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    xt = diffusion.q_sample(x0, t, noise)
    a, s = diffusion._a(t, x0)
    target = noise if diffusion.prediction == "eps" else a * noise - s * x0
    with torch.no_grad():
        per = {"exact": ((planted_prediction(planted, diffusion, xt, t, yy) - target) ** 2).mean(1),
               "oracle_gaussian": ((planted_prediction(planted, diffusion, xt, t, yy, k=0) - target) ** 2).mean(1),
               "fitted_base": ((base.base(xt, t, yy) - target) ** 2).mean(1)}
    ci = lambda d: float(1.96 * d.std() / np.sqrt(len(d)))
    out = {"draws": n, "loss": {k: float(v.mean()) for k, v in per.items()},
           "batch_loss_sd": float(per["fitted_base"].std() / np.sqrt(batch)), "batch": batch}
    for k in ("oracle_gaussian", "fitted_base"):
        d = (per[k] - per["exact"]).double().numpy()
        out[f"{k}_minus_exact"], out[f"{k}_minus_exact_ci95"] = float(d.mean()), ci(d)
    edges = np.linspace(0, diffusion.T, bins + 1).astype(int)
    out["by_t"] = [{"t_from": int(lo), "t_to": int(hi), "oracle_minus_exact": float((per["oracle_gaussian"] - per["exact"])[(t >= lo) & (t < hi)].mean()),
                    "base_minus_exact": float((per["fitted_base"] - per["exact"])[(t >= lo) & (t < hi)].mean())} for lo, hi in zip(edges[:-1], edges[1:])]
    return out


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
    ap.add_argument("--val-eval", type=int, default=None, help="validation states per persona on the validation curve (default: all)")
    ap.add_argument("--test-per-persona", type=int, default=None, help="held-out states per persona scored (default: all)")
    ap.add_argument("--components", default="1,2,4", type=lambda v: [int(x) for x in v.split(",")],
                    help="mixture sizes per persona the base density is chosen from on validation")
    ap.add_argument("--growth", type=int, default=1,
                    help="training states per persona, × the profile's; above 1 the codes of experiments/state_data_growth.py")
    ap.add_argument("--planted", type=int, default=0,
                    help="the power check: replace every code by a draw with its persona's mean and covariance (eigenvalues floored at 1e-3) that is "
                         "bimodal along the persona's top PLANTED principal directions (0: the real codes)")
    ap.add_argument("--planted-sep", type=float, default=0.95,
                    help="the planted modes sit at ± this many standard deviations, each of variance 1 − sep² (unit variance in all)")
    ap.add_argument("--base-share", type=float, default=0.0,
                    help="fit the base density on this share of each persona's training codes and train the network on the rest "
                         "(0: both on all of them; a base fitted on the network's own codes already fits them better than the true "
                         "density does, see --loss-gap)")
    ap.add_argument("--loss-gap", type=int, default=0,
                    help="with --planted: the denoising loss of the exact planted denoiser, the oracle Gaussian's and the fitted base's "
                         "on this many (code, t, noise) draws, no network (written to <name>_lossgap.json); trains nothing")
    a = ap.parse_args()
    if a.loss_gap and not a.planted: ap.error("--loss-gap needs --planted")
    P = load_profile(a.profile)
    build = build_fingerprint(P)
    lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth")
    states = StateDataset.load(P.build_dir / "states", lm.cfg)
    tr, te = states.split("train"), states.split("test")
    names = tr.label_names
    layers = profile_layers(P, lm.cfg)
    torch.manual_seed(P.seed)
    lat = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, layers, residual=P.latent_residual)
    Z, Y = lat.encode(tr.wkv), tr.label_ids(names)
    n0 = int(np.bincount(Y.numpy()).min())
    if a.growth > 1:     # more training states of the same recipe: the codes experiments/state_data_growth.py collected on this build
        files = sorted(work_dir(P, "state_data_growth", build).glob("codes_*.pt"))
        if not files: raise SystemExit("no grown states for this build: run experiments/state_data_growth.py first")
        new = [torch.load(f) for f in files]
        nC, ny = torch.cat([c["codes"] for c in new]).float(), torch.cat([c["y"] for c in new])
        keep = np.concatenate([np.where(Y.numpy() == i)[0][:n0] for i in range(len(names))] +
                              [len(Y) + np.where(ny.numpy() == i)[0][:(a.growth - 1) * n0] for i in range(len(names))])
        if min(np.bincount(np.concatenate([Y.numpy(), ny.numpy()])[keep])) < a.growth * n0:
            raise SystemExit(f"state_data_growth.py collected fewer than {a.growth}× the profile's states per persona")
        Z, Y = torch.cat([Z, nC])[keep], torch.cat([Y, ny])[keep]
    pick = np.arange(len(te)) if a.test_per_persona is None else \
        np.concatenate([np.where(te.label_ids(names).numpy() == i)[0][:a.test_per_persona] for i in range(len(names))])
    Zte, yte = lat.encode(te.wkv[torch.as_tensor(pick)]), te.label_ids(names).numpy()[pick]
    g = np.random.default_rng(P.seed)
    val = np.zeros(len(Z), bool)
    for c in range(len(names)):
        idx = np.where(Y.numpy() == c)[0]; val[g.choice(idx, max(1, int(round(a.val * len(idx)))), replace=False)] = True
    Ztr, Ytr, Zva, yva = Z[~val], Y[~val], Z[val], Y[val].numpy()
    vsub = np.concatenate([np.where(yva == i)[0][:a.val_eval or None] for i in range(len(names))])    # the validation curve's states
    Zva, yva = Zva[torch.as_tensor(vsub)], yva[vsub]
    D = Z.shape[1]
    planted = None
    if a.planted:
        Ztr, Zva, Zte, planted = plant(Ztr, Ytr.numpy(), Zva, yva, Zte, yte, len(names), a.planted, a.planted_sep, P.seed)
        print(f"planted: codes redrawn, bimodal along each persona's top {a.planted} directions (modes at ±{a.planted_sep}); "
              f"on the test codes the true density {planted['test']:.4f} nats/code dim, the oracle Gaussian {planted['oracle_gaussian_test']:.4f}", flush=True)
    Zbase, Ybase = Ztr, Ytr                                              # what the base density is fitted on
    if a.base_share:                                                     # held apart from the network's training codes
        gb_ = np.random.default_rng(P.seed + 29)
        held = np.zeros(len(Ztr), bool)
        for c in range(len(names)):
            idx = np.where(Ytr.numpy() == c)[0]; held[gb_.choice(idx, int(round(a.base_share * len(idx))), replace=False)] = True
        Zbase, Ybase, Ztr, Ytr = Ztr[held], Ytr[held], Ztr[~held], Ytr[~held]
    print(f"{len(Ztr)} training" + (f" (and {len(Zbase)} for the base alone)" if a.base_share else "")
          + f", {len(Zva)} validation, {len(Zte)} test states; {D} code dimensions", flush=True)
    # the base: the best closed-form density of notebook 09's family, a mixture of full Gaussians per persona (covariance
    # floor 1e-3) whose size is chosen on a validation fifth of the training split (one component: the full Gaussian)
    t0 = time.time()
    gauss, sel = fit_on_validation("gmm", Zbase.double().numpy(), Ybase.numpy(), [c for c in a.components if c < 0.8 * len(Zbase) / len(names)], seed=P.seed)
    print(f"base: {gauss.label} ({time.time() - t0:.0f} s; {sel})", flush=True)
    closed = {"val": float(-gauss.log_prob(Zva.double().numpy(), yva).mean() / D),
              "test": float(-gauss.log_prob(Zte.double().numpy(), yte).mean() / D)}
    if planted: closed.update({"true_density_test": planted["test"], "true_density_val": planted["val"],
                               "oracle_gaussian_test": planted["oracle_gaussian_test"], "oracle_gaussian_val": planted["oracle_gaussian_val"]})
    print("base density:", closed, flush=True)
    means, covs, logw, classes = [], [], [], []
    for c in range(len(names)):
        gm = gauss.parts[c]
        means += list(gm.means_); covs += list(gm.covariances_); logw += list(np.log(gm.weights_)); classes += [c] * gm.n_components
    freq = np.bincount(Ytr.numpy(), minlength=len(names)) / len(Ytr)
    diff = Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    name = ("latent_gaussian_base" + (f"_x{a.growth}" if a.growth > 1 else "") + (f"_planted{a.planted}" if a.planted else "")
            + (f"_sep{a.planted_sep:g}" if a.planted and a.planted_sep != 0.95 else "") + (f"_base{round(100 * a.base_share)}" if a.base_share else ""))
    if a.loss_gap:
        gb = GaussianBaseDenoiser(nn.Identity(), diff, means, covs, logw, classes, freq)
        nll_gap = planted["oracle_gaussian_test"] - planted["test"]
        gaps = {}
        for split, (Zs, ys) in {"train": (Ztr, Ytr.numpy()), "val": (Zva, yva)}.items():
            gaps[split] = gap = loss_gap(planted, gb, diff, Zs, ys, a.loss_gap, P.latent_batch, P.seed)
            print(f"{split} codes (" + ("the network's training codes" + (", held apart from the base's" if a.base_share else ", the base's too")
                                     if split == "train" else "held apart from both") + "):")
            print(json.dumps({k: v for k, v in gap.items() if k != "by_t"}, indent=1))
            for b in gap["by_t"]: print(f"  t {b['t_from']:4d}–{b['t_to']:4d}: oracle − exact {b['oracle_minus_exact']:+.5f}, base − exact {b['base_minus_exact']:+.5f}")
        print(f"the NLL the planted part is worth: {nll_gap:.4f} nats/code dim; in the loss on the training codes the oracle Gaussian is "
              f"{gaps['train']['oracle_gaussian_minus_exact']:.2e} above the exact denoiser and the fitted base "
              f"{gaps['train']['fitted_base_minus_exact']:+.2e}; one batch's loss varies by {gaps['train']['batch_loss_sd']:.2e}")
        write_result(result_path(a, name + "_lossgap"), a.profile,
                     {"build": build, "planted": {"dims": a.planted, "sep": a.planted_sep}, "base": gauss.label, "prediction": diff.prediction,
                      "code_dims": D, "states": {"train": len(Ztr), "base": len(Zbase), "val": len(Zva)}, "personas": len(names),
                      **({"base_share": a.base_share} if a.base_share else {}), "nll_gap_oracle_minus_true_test": nll_gap, "splits": gaps})
        return
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
        if row == "gaussian base": m.net = GaussianBaseDenoiser(m.net, diff, means, covs, logw, classes, freq)
        m.ema = copy.deepcopy(m.net).requires_grad_(False)
        return m
    assert all(torch.equal(p, q) for p, q in zip(make("plain", 0).net.parameters(), lat.net.parameters()))

    out_path = result_path(a, name)
    old = json.loads(out_path.read_text()) if out_path.exists() else {}
    setup = {"build": build, "grid": a.grid, "val_grid": a.val_grid, "base": gauss.label, "heldout_states": len(Zte), "val_states": len(Zva),
             "train_states_per_persona": a.growth * n0, "val_share": a.val, "steps": P.latent_steps * a.budget, "profile_seed": P.seed,
             **({"planted": {"dims": a.planted, "sep": a.planted_sep}} if a.planted else {}),
             **({"base_share": a.base_share, "base_states": len(Zbase)} if a.base_share else {})}
    same = all(old.get(k) == v for k, v in setup.items())
    # checkpoints per training setup: the training split and the base density (a rerun with another never resumes these)
    train_key = hashlib.sha256(json.dumps({"growth": a.growth, "val": a.val, "base": gauss.label, **({"planted": setup["planted"]} if planted else {}), **({"base_share": a.base_share} if a.base_share else {}),
                                           "components": [int(gauss.parts[c].n_components) for c in range(len(names))]}).encode()).hexdigest()[:12]
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
                     {**setup, "seed": P.seed, "code_dims": D, "base_components": {names[c]: int(gauss.parts[c].n_components) for c in range(len(names))},
                      "states": {"train": len(Ztr), "val": len(Zva), "test": len(Zte)},
                      "gaussian": closed, "gaussian_test_rows": [round(float(v), 6) for v in gauss_rows],
                      "untrained_test_rows": [round(float(v), 6) for v in untrained_rows], "known_answers": known, "runs": runs})

    def run(row, lr, seed):
        if any((r["row"], r["lr"], r["steps"], r.get("seed", 0)) == (row, lr, steps, seed) for r in runs): return
        m = make(row, seed)
        out_dir = work_dir(P, "latent_gaussian_base", build) / train_key / (f"{row}-{lr:g}-{steps}" + (f"-seed{seed}" if seed else ""))
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
                     **({"test_minus_true_density": float((rows_ema - planted["test_rows"]).mean()),
                         "test_minus_true_density_ci95": float(1.96 * (rows_ema - planted["test_rows"]).std(ddof=1) / np.sqrt(len(rows_ema)))}
                        if planted else {}),
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
              f"(EMA), base density {closed['test']:.4f}; minus the base density {d.mean():+.4f} ± {half(d):.4f} (closed form), "
              f"{do.mean():+.4f} ± {half(do):.4f} (through the same ODE); per seed {np.round(d, 4).tolist()}")
        if planted and planted["k"] and planted["sep"]:           # the Gaussian control (sep 0) has no planted part
            gap = planted["oracle_gaussian_test"] - planted["test"]
            print(f"    planted: the true density is {gap:.4f} nats/code dim below the oracle Gaussian (the fitted base "
                  f"{closed['test'] - planted['oracle_gaussian_test']:.4f} above that); the model gains {-do.mean() / gap:.0%} of the "
                  f"planted part through the same ODE")


if __name__ == "__main__":
    main()
