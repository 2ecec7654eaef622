"""Enough data for a density model? Notebook 09's best density of RWKV states (a full Gaussian per persona over
the latent codes) still improves from 750 to 1,500 training states per persona, so the profile's dataset does
not show where any model saturates. This grows the training set with new states of the same recipe (notebook
06's `collect_states` on the training documents: the same cut, lengths and boundary, other draws), encodes
them with notebook 08's latent basis (fixed, so every size is scored in the same code space), and refits
every closed-form density of 09 on the first n states per persona for n up to `--mults` × the profile's set:
diagonal, Ledoit–Wolf, full (a mixture of one component with 09's covariance floor), probabilistic PCA and a
Gaussian mixture with q / components chosen on a validation split. The latent model of 08's recipe (one
training seed, EMA weights) is trained at the sizes `--latent-at`, each at 1× and `--latent-budget` ×
`latent_steps`. Every row is scored on notebook 09's held-out states (the reference half: the first
`n_gen` states per persona with a full next-token window) as held-out NLL per code dimension, lower is better.
Saturation: the first size at which doubling the data improves the best density by less than `--tol` nats
per dimension. The control that must fail: at every size, codes drawn from that size's full Gaussian per persona go
through the same choice of mixture size, which must choose one component. And what the largest size's mixture
components are: held-out states assigned to components, read against the last character before the cut and the
number of tokens read (adjusted mutual information, against the same with the property permuted).
Writes experiments/results/state_data_growth.json (notebook 09 shows it); codes and
checkpoints under build/<profile>/experiments/state_data_growth/<build fingerprint>/ (a rerun on the same build resumes).

    OMP_NUM_THREADS=2 .venv/bin/python experiments/state_data_growth.py            # cpu profile
    OMP_NUM_THREADS=1 .venv/bin/python experiments/state_data_growth.py --profile smoke --mults 1,2 --latent-at 2 --latent-budget 1
"""
import copy, json, time

import numpy as np
import torch

from _common import build_fingerprint, parser, result_path, work_dir, write_result
from dreamstate.config import load_profile
from dreamstate.data import persona_corpus
from dreamstate.diffusion import Diffusion
from dreamstate.dit import LatentStateModel, build_latent_model, profile_layers
from dreamstate.metrics import DensityBaseline, diffusion_log_likelihood, fit_on_validation
from dreamstate.states import StateDataset, collect_states
from dreamstate.train import TrainConfig, profile_lm, train


def heldout_reference(te: StateDataset, names: list[str], n_gen: int, next_tokens: int) -> list[int]:
    "Notebook 09's reference half: per persona, the first `n_gen` held-out states with a full next-token window (fewer if fewer have one)."
    full = [i for i, m in enumerate(te.meta) if len(m.get("next_ids", [])) == next_tokens]
    by_p = {p: [i for i in full if te.labels[i] == p] for p in names}
    if min(len(v) for v in by_p.values()) < 2 * n_gen: n_gen = min(len(v) for v in by_p.values()) // 2
    return [i for p in names for i in by_p[p][:n_gen]]


def gaussian_control(full: DensityBaseline, y: np.ndarray, yte: np.ndarray, P, n: int, seed: int) -> dict:
    """The control that must fail: codes drawn from `full` (the full Gaussian per persona fitted at this size), as many per
    persona as the real training set (`y`) and the held-out set (`yte`), then the Gaussian mixture's size chosen on validation
    exactly as for the real codes. On Gaussian codes a mixture has nothing to find: it should choose 1 component, and its
    held-out NLL per dimension should gain nothing over one Gaussian refitted on the draws (`gain_per_dim` ≤ 0 up to noise)."""
    g = np.random.default_rng(seed)
    def draw(labels):            # what DensityBaseline.sample does for one component, in the RNG order the committed record was drawn with
        X = np.empty((len(labels), full.dim))
        for c in np.unique(labels):
            m = full.parts[c]
            X[labels == c] = g.multivariate_normal(m.means_[0], m.covariances_[0], size=int((labels == c).sum()), method="eigh")
        return X
    X, Xte = draw(y), draw(yte)
    D = X.shape[1]
    one = DensityBaseline("gmm", components=1).fit(X, y)
    mix, scores = fit_on_validation("gmm", X, y, [g for g in P.eval_gmm_components if g < n * 0.8], seed=P.seed)
    l1, lm = one.log_prob(Xte, yte), mix.log_prob(Xte, yte)
    gain, ci = paired_gain(l1, lm, D)
    return {"train_states_per_persona": n, "chosen": mix.components, "nll_one_gaussian": float(-l1.mean() / D),
            "nll_mixture": float(-lm.mean() / D), "gain_per_dim": gain, "gain_ci95": ci, "val_scores": scores}


def paired_gain(l_one: np.ndarray, l_mix: np.ndarray, D: int) -> tuple[float, float]:
    "The mixture's held-out gain over one Gaussian, nats per dimension, paired per held-out state: mean and 95% half-width."
    d = (l_mix - l_one) / D
    return float(d.mean()), float(1.96 * d.std(ddof=1) / np.sqrt(len(d)))


def mixture_modes(mix: DensityBaseline, Xte: np.ndarray, yte: np.ndarray, names: list[str], meta: list[dict], seed: int,
                  perms: int = 200) -> dict:
    """What the mixture's components are: each held-out state goes to its persona's most responsible component, and that
    assignment is compared, per persona, with two properties of the state's text: the last character before the cut and
    the number of tokens read (in quartiles). Adjusted mutual information (0: what chance gives for groupings of these sizes,
    1: the same grouping), against the same with the property permuted among the persona's states (`perms` times: mean and
    95th percentile), the control that must stay near 0. Also each persona's component weights."""
    from sklearn.metrics import adjusted_mutual_info_score as ami
    g = np.random.default_rng(seed)
    last = np.array([m["text"][-1:] for m in meta])
    lens = np.array([m["prompt_len"] for m in meta])
    out, rows = {}, []
    for c in np.unique(yte):
        idx = np.where(yte == c)[0]
        comp = mix.parts[c].predict(Xte[idx]) if mix.parts[c].n_components > 1 else np.zeros(len(idx), int)
        q = np.quantile(lens[idx], [0.25, 0.5, 0.75])
        for name, v in (("last character", last[idx]), ("tokens read (quartile)", np.searchsorted(q, lens[idx]).astype(str))):
            null = [ami(g.permutation(v), comp) for _ in range(perms)]        # the record's keys say nmi: read them as the measure named in it
            rows.append({"persona": names[c], "property": name, "components_used": int(len(np.unique(comp))), "nmi": float(ami(v, comp)),
                         "nmi_permuted_mean": float(np.mean(null)), "nmi_permuted_p95": float(np.quantile(null, 0.95)),
                         "states": int(len(idx)), "values": int(len(np.unique(v)))})
    weights = {names[c]: [round(float(w), 4) for w in sorted(mix.parts[c].weights_, reverse=True)] for c in np.unique(yte)}
    for name in dict.fromkeys(r["property"] for r in rows):
        rs = [r for r in rows if r["property"] == name]
        out[name] = {"nmi_mean": float(np.mean([r["nmi"] for r in rs])), "nmi_permuted_mean": float(np.mean([r["nmi_permuted_mean"] for r in rs])),
                     "above_p95": int(sum(r["nmi"] > r["nmi_permuted_p95"] for r in rs)), "personas": len(rs)}
    return {"rows": rows, "summary": out, "weights": weights, "measure": "adjusted mutual information"}


def main():
    ap = parser(__doc__)
    ap.add_argument("--mults", default="1,2,4,8", help="training states per persona, as multiples of the profile's training set")
    ap.add_argument("--latent-at", default="1,8", help="multiples at which the latent model is trained (one seed)")
    ap.add_argument("--latent-budget", type=int, default=4, help="a second, longer budget for the latent model, × latent_steps (1: none)")
    ap.add_argument("--chunk", type=int, default=500, help="new states per persona per collection call (memory)")
    ap.add_argument("--no-control", dest="control", action="store_false",
                    help="skip the control: the mixture's size chosen on draws from each size's full Gaussian (it must choose 1)")
    ap.add_argument("--no-components", dest="components", action="store_false",
                    help="skip reading the largest size's mixture components against the text before the cut")
    ap.add_argument("--tol", type=float, default=0.01, help="saturated: doubling the data gains less than this (nats per code dimension)")
    a = ap.parse_args()
    torch.set_num_threads(2)
    P = load_profile(a.profile)
    mults = sorted({int(m) for m in a.mults.split(",")})
    lat_at = sorted({int(m) for m in a.latent_at.split(",")})
    if mults[0] != 1 or any(m not in mults for m in lat_at): ap.error("--mults must start at 1 and hold every --latent-at")
    lm, tok = profile_lm(P, "cpu")
    states = StateDataset.load(P.build_dir / "states", lm.cfg)
    tr, te = states.split("train"), states.split("test")
    names, K = states.label_names, len(states.label_names)
    layers = profile_layers(P, lm.cfg)
    build = build_fingerprint(P)
    work = work_dir(P, "state_data_growth", build)
    work.mkdir(parents=True, exist_ok=True)

    # notebook 08's basis: deterministic (an SVD of the profile's training states), built as 08 builds it
    torch.manual_seed(P.seed)
    lat0 = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, layers, residual=P.latent_residual)
    saved = LatentStateModel.load(P.build_dir / json.loads((P.build_dir / "state_models.json").read_text())["seed0"]).eval()
    @torch.no_grad()
    def enc(wkv, model=saved): return torch.cat([model.encode(wkv[i:i + 1024]) for i in range(0, len(wkv), 1024)]).double()
    gap = float((enc(tr.wkv[:256], lat0) - enc(tr.wkv[:256])).abs().max())
    if gap > 1e-3: raise SystemExit(f"the rebuilt basis encodes {gap:.2g} away from notebook 08's: rerun make reproduce NB=08")
    ref = heldout_reference(te, names, P.eval_states_per_persona, P.state_next_tokens)
    Cte, yte = enc(te.wkv[torch.as_tensor(ref)]), te.label_ids(names).numpy()[ref]
    base_C, base_y = enc(tr.wkv), tr.label_ids(names).numpy()
    n0 = int(np.bincount(base_y).min())
    D = Cte.shape[1]
    print(f"{len(ref)} held-out states, {D} code dimensions, {n0} training states per persona in the profile's set", flush=True)

    # new training states, in chunks (codes only are kept: a raw state is L·H·N² floats)
    corpus = persona_corpus(P.docs_per_persona, P.seed)
    need = (mults[-1] - 1) * n0
    chunks, have = [], 0
    while have < need:
        n_new = min(a.chunk, need - have)
        f = work / f"codes_{len(chunks):03d}_{n_new}.pt"
        if f.exists(): c = torch.load(f)
        else:
            t0 = time.time()
            ds = collect_states(lm, corpus, tok, n_new, "train", seed=P.seed * 1000 + 1 + len(chunks), min_len=P.state_min_len,
                                max_len=P.state_max_len, cut=P.state_cut, next_tokens=P.state_next_tokens, progress=False)
            c = {"codes": enc(ds.wkv).float(), "y": ds.label_ids(names), "docs": [m["doc_id"] for m in ds.meta]}
            torch.save(c, f)
            print(f"chunk {len(chunks)}: {len(ds)} states in {time.time() - t0:.0f} s", flush=True)
        chunks.append(c); have += n_new
    test_docs = {m["doc_id"] for m in te.meta}
    if any(d in test_docs for c in chunks for d in c["docs"]): raise SystemExit("a new training state comes from a held-out document")
    new_C = torch.cat([c["codes"] for c in chunks]).double() if chunks else torch.zeros(0, D, dtype=torch.float64)
    new_y = torch.cat([c["y"] for c in chunks]).numpy() if chunks else np.zeros(0, int)
    # per persona: the profile's states first, then the new ones in the order collected
    order = {i: np.concatenate([np.where(base_y == i)[0][:n0], len(base_y) + np.where(new_y == i)[0]]) for i in range(K)}
    allC, ally = torch.cat([base_C, new_C]).numpy(), np.concatenate([base_y, new_y])

    def first(n):
        keep = np.concatenate([order[i][:n] for i in range(K)])
        return allC[keep], ally[keep]

    rows, control = [], []
    for m in mults:
        n = m * n0
        X, y = first(n)
        t0 = time.time()
        fits = {"Gaussian, diagonal": DensityBaseline("diag").fit(X, y), "Gaussian, Ledoit–Wolf": DensityBaseline("lw").fit(X, y),
                "Gaussian, full (covariance floor 1e-3)": DensityBaseline("gmm", components=1).fit(X, y)}
        for kind, grid, name in (("ppca", P.eval_ppca_q, "probabilistic PCA, q on validation"),
                                 ("gmm", P.eval_gmm_components, "Gaussian mixture, size on validation")):
            fits[name] = fit_on_validation(kind, X, y, [g for g in grid if g < n * 0.8], seed=P.seed)[0]
        lp = {name: f.log_prob(Cte.numpy(), yte) for name, f in fits.items()}
        for name, f in fits.items():
            rows.append({"method": name, "train_states_per_persona": n, "multiple": m,
                         "chosen": f.q if f.kind == "ppca" else (f.components if name.startswith("Gaussian mixture") else ""),
                         "nll_per_dim": float(-lp[name].mean() / D)})
            if name.startswith("Gaussian mixture"):      # its gain over one Gaussian, paired per held-out state
                rows[-1]["gain_over_one_gaussian"], rows[-1]["gain_ci95"] = paired_gain(lp["Gaussian, full (covariance floor 1e-3)"], lp[name], D)
        print(f"{n} per persona: " + "; ".join(f"{r['method']} {r['nll_per_dim']:.4f}" for r in rows[-len(fits):])
              + f" ({time.time() - t0:.0f} s)", flush=True)
        if a.control:
            control.append(gaussian_control(fits["Gaussian, full (covariance floor 1e-3)"], y, yte, P, n, seed=P.seed + m))
            print(f"  control (Gaussian draws, same n): {control[-1]}", flush=True)
        if m == mults[-1] and a.components:
            modes = mixture_modes(fits["Gaussian mixture, size on validation"], Cte.numpy(), yte, names,
                                  [te.meta[i] for i in ref], seed=P.seed)
            print(f"  the mixture's components on held-out states: {modes['summary']}", flush=True)

    diff = Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    labels = [names[i] for i in yte]
    budgets = sorted({1, a.latent_budget})
    for m in lat_at:
        X, y = first(m * n0)
        X, y = torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y)
        for b in budgets:
            steps = P.latent_steps * b
            net = copy.deepcopy(lat0)
            cfg = TrainConfig(steps=steps, lr=P.latent_lr, warmup=P.dit_warmup, weight_decay=0.0, ckpt_every=max(1, steps // 4), log_every=100,
                              seed=P.seed, min_lr_ratio=0.1)
            def batch_fn(step, X=X, y=y):
                g = torch.Generator().manual_seed(P.seed * 1_000_003 + step)
                idx = torch.randint(0, len(X), (P.latent_batch,), generator=g)
                return X[idx], y[idx], step
            def loss_fn(model, batch):
                x, yy, step = batch
                return diff.loss(model, x, yy, null_label=K, p_uncond=0.1, generator=torch.Generator().manual_seed(P.seed * 7919 + step)), {}
            t0 = time.time()
            hist = train(net, batch_fn, loss_fn, cfg, work / f"latent_x{m}_steps{steps}", after_step=net.update_ema)
            net.eval()
            lp = diffusion_log_likelihood(net, diff, Cte.float(), labels, P.eval_nll_steps, P.eval_nll_probes, seed=P.seed)
            rows.append({"method": f"latent diffusion (EMA), {b}× latent_steps", "train_states_per_persona": m * n0, "multiple": m,
                         "chosen": steps, "nll_per_dim": float(-lp.mean() / D), "final_loss": hist[-1]["loss"],
                         "seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)

    # where the best closed-form density stops improving
    best = {}
    for r in rows:
        if r["method"].startswith("latent"): continue
        best[r["multiple"]] = min(best.get(r["multiple"], np.inf), r["nll_per_dim"])
    gains = [{"from": m0 * n0, "to": m1 * n0, "gain_per_dim": best[m0] - best[m1]} for m0, m1 in zip(mults, mults[1:]) if m1 == 2 * m0]
    saturated_at = next((g["from"] for g in gains if g["gain_per_dim"] < a.tol), None)
    write_result(result_path(a, "state_data_growth"), a.profile,
                 {"build": build, "heldout_states": len(ref), "code_dims": D, "profile_states_per_persona": n0, "tol": a.tol, "seed": P.seed,
                  "rows": rows, "best_density_gains": gains, "saturated_at": saturated_at,
                  "gaussian_control": control, "mixture_modes": modes if a.components else None})
    print("gains of the best density per doubling:", gains, "saturated at", saturated_at, flush=True)


if __name__ == "__main__":
    main()
