"""Is the latent state model's lead over the paper's raw-state DiT (notebook 09) the space it models, the
denoiser, or only its larger budget? Three denoisers at one matched budget, the raw-state DiT's own (its
parameter count, `dit_steps` × `dit_batch` samples seen, `dit_lr`, the same schedule, prediction, label
dropout and EMA), `--seeds` training seeds each:

* **raw-state DiT**: the paper's DiT (`dit_preset`) over the normalised WKV matrices, as notebook 08 trains it (its
  first seed is notebook 08's DiT itself unless `--retrain-first-dit`);
* **code DiT**: the paper's architecture in the latent space: the same DiT blocks over the codes of notebook
  08's basis, cut into tokens of `--token` consecutive components of one layer (a fixed sine position per
  token), of the DiT's hidden size and depth;
* **code MLP**: the latent model's adaLN-Zero MLP denoiser over the same codes, its width chosen so that its
  parameter count is the DiT's (± 10%).

Beside them, the latent models notebook 08 trained at their own budget (read from build/<profile>) and a
full Gaussian per persona over the same codes. Every row is scored as notebook 09 scores it, per training
seed: held-out NLL per code dimension (probability-flow ODE, the code-space rows; the basis is the same for
all of them, so the values are comparable with `figures/state_likelihood.csv`), and on `--per-persona`
generated states per persona (EMA weights, guidance `eval_guidance`, `eval_steps` solver steps): the
Fréchet distance and the within-persona variance ratio in the PCA space of `_common.Setup`, and k-NN
precision and recall against the held-out states, each divided by real training states' value against
the same held-out states (the real-vs-real floor). Intervals: 95% over training seeds (n = seeds).
Writes experiments/results/state_matched_check.json (notebook 09 shows it); checkpoints under
build/<profile>/experiments/state_matched/<build fingerprint>/ (a rerun resumes). The result file is written after each trained seed;
a rerun keeps the rows it holds (scored at the commit each row names) and trains only the missing ones; it refuses a
file written for another setup or another build (the LM's and the state dataset's SHA-256 are part of the setup).

`--budget latent` holds the budget at notebook 08's latent model's instead (its parameter count, `latent_steps` ×
`latent_batch` samples seen): the raw-state DiT and the code DiT are widened (hidden size, at the preset's depth
and heads) to its parameter count and trained on its samples at `dit_lr`, beside 08's latent models (the code MLP
at that budget); result in experiments/results/state_matched_latent_budget.json, checkpoints under
build/<profile>/experiments/state_matched_latent/<build fingerprint>/.

    OMP_NUM_THREADS=2 .venv/bin/python experiments/state_matched_check.py              # cpu profile
    OMP_NUM_THREADS=2 .venv/bin/python experiments/state_matched_check.py --budget latent --rows "code DiT"
    OMP_NUM_THREADS=1 .venv/bin/python experiments/state_matched_check.py --profile smoke --seeds 2 --per-persona 8
"""
import copy, dataclasses, hashlib, json, time

import numpy as np
import torch
import torch.nn as nn

from _common import Setup, commit, parser, result_path, work_dir, write_result
from dreamstate.diffusion import Diffusion
from dreamstate.dit import (DIT_PRESETS, DiT, DiTBlock, LatentStateModel, StateDiT, build_latent_model, build_state_dit, generate_states,
                            profile_layers, timestep_embedding, TimestepEmbedder)
from dreamstate.metrics import DensityBaseline, diffusion_log_likelihood, frechet_distance, knn_precision_recall, mean_ci
from dreamstate.train import TrainConfig, train


@dataclasses.dataclass
class CodeDiTConfig:
    dim: int                    # code size: layers × components per layer
    num_classes: int
    token: int = 32             # consecutive components per token
    hidden: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0


class CodeDiT(nn.Module):
    """DiT over a code vector `[B, dim]`: `dim / token` tokens (a linear embedding and a fixed sine position each),
    DiT's adaLN-Zero blocks conditioned on step and label, DiT's final layer back to the tokens; starts at output 0."""
    def __init__(self, cfg: CodeDiTConfig):
        super().__init__()
        if cfg.dim % cfg.token: raise ValueError(f"code size {cfg.dim} is not a multiple of the token size {cfg.token}")
        self.cfg, h, T = cfg, cfg.hidden, cfg.dim // cfg.token
        self.inp = nn.Linear(cfg.token, h)
        self.register_buffer("pos", timestep_embedding(torch.arange(T), h)[None], persistent=False)
        self.t_mlp = TimestepEmbedder(h, 256)
        self.y_emb = nn.Embedding(cfg.num_classes + 1, h)
        self.blocks = nn.ModuleList(DiTBlock(h, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm_out = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(h, 2 * h))
        self.out = nn.Linear(h, cfg.token)
        for m in self.modules():
            if isinstance(m, nn.Linear): nn.init.xavier_uniform_(m.weight); nn.init.zeros_(m.bias)
        nn.init.normal_(self.y_emb.weight, std=0.02)
        for m in self.t_mlp:
            if isinstance(m, nn.Linear): nn.init.normal_(m.weight, std=0.02)
        for z in [*(b.ada[-1] for b in self.blocks), self.ada_out[-1], self.out]: nn.init.zeros_(z.weight); nn.init.zeros_(z.bias)

    def forward(self, x, t, y):
        B = x.shape[0]
        h = self.inp(x.view(B, -1, self.cfg.token)) + self.pos
        c = self.t_mlp(t) + self.y_emb(y)
        for b in self.blocks: h = b(h, c)
        sh, sc = self.ada_out(c).chunk(2, -1)
        return self.out(self.norm_out(h) * (1 + sc[:, None]) + sh[:, None]).reshape(B, -1)


def n_params(net: nn.Module) -> int: return sum(p.numel() for p in net.parameters())


def dit_hidden_for(target: int, build, heads: int) -> int:
    "The hidden size (a multiple of 2 × `heads`) of the DiT `build(hidden)` whose parameter count is nearest `target`."
    hs, count = list(range(2 * heads, 2049, 2 * heads)), {}
    def n(i):                                   # parameters grow with the width: bisect, building few models
        if i not in count: count[i] = n_params(build(hs[i]))
        return count[i]
    lo, hi = 0, len(hs) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if n(mid) < target else (lo, mid)
    return hs[min((lo, hi), key=lambda i: abs(n(i) - target))]


def mlp_hidden_for(target: int, dim: int, K: int, depth: int) -> int:
    "The width (a multiple of 8) of a code MLP of `depth` blocks over `dim` codes whose parameter count is nearest `target`."
    from dreamstate.dit import CodeDenoiser, CodeDenoiserConfig
    return min(range(16, 2049, 8), key=lambda h: abs(n_params(CodeDenoiser(CodeDenoiserConfig(dim, K, h, depth))) - target))


def main():
    ap = parser(__doc__)
    ap.add_argument("--seeds", type=int, default=3, help="training seeds per row (profile seed + 0, 1, …)")
    ap.add_argument("--rows", default="raw-state DiT,code DiT,code MLP", help="which matched rows to train (comma-separated)")
    ap.add_argument("--retrain-first-dit", action="store_true",
                    help="train the raw-state DiT's first seed here too (default: notebook 08's DiT, the same recipe, is that seed)")
    ap.add_argument("--token", type=int, default=32, help="code components per token of the code DiT")
    ap.add_argument("--mlp-depth", type=int, default=2, help="blocks of the matched code MLP")
    ap.add_argument("--per-persona", type=int, default=84, help="held-out states per persona scored, and states generated per persona")
    ap.add_argument("--budget", choices=("dit", "latent"), default="dit",
                    help="dit: the raw-state DiT's own budget; latent: notebook 08's latent model's (both DiTs widened to it)")
    a = ap.parse_args()
    S = Setup(a.profile)
    P, tr, te, names, K = S.P, S.tr, S.te, S.names, len(S.names)
    layers = profile_layers(P, tr.cfg)
    if layers != "all": raise SystemExit("this check is written for profiles whose state models cover every layer")
    diff = Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    Y = tr.label_ids(names)
    yte = S.yte
    pick = np.concatenate([np.where(yte == i)[0][:a.per_persona] for i in range(K)])
    n_per = int(min(np.bincount(yte[pick])))
    labels = [names[i] for i in yte[pick]]
    gen_labels = [p for p in names for _ in range(n_per)]
    ytr = Y.numpy()
    rng = np.random.default_rng(P.seed)
    real_tr = np.concatenate([rng.choice(np.where(ytr == i)[0], n_per, replace=False) for i in range(K)])    # the real-vs-real floor

    def sample_metrics(flat: np.ndarray) -> dict:
        "Per-persona means of Fréchet, variance ratio, precision, recall of `n_per` states per persona (in `names` order) against the held-out ones."
        Z, R = S.space(flat), S.Zte[pick]
        yy, yr = np.repeat(np.arange(K), n_per), yte[pick]
        out = {"frechet": [], "variance_ratio": [], "precision": [], "recall": []}
        for i in range(K):
            g, r = Z[yy == i], R[yr == i]
            out["frechet"].append(frechet_distance(g, r))
            out["variance_ratio"].append(np.trace(np.cov(g, rowvar=False)) / np.trace(np.cov(r, rowvar=False)))
            p_, r_ = knn_precision_recall(r, g)
            out["precision"].append(p_); out["recall"].append(r_)
        return {k: float(np.mean(v)) for k, v in out.items()}

    floor = sample_metrics(tr.wkv[real_tr].flatten(1).numpy())
    print("real training vs held-out (the floor):", {k: round(v, 3) for k, v in floor.items()}, flush=True)

    # the code space: notebook 08's basis (deterministic: an SVD of the training states)
    lat_ref = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, layers, residual=P.latent_residual)
    Ctr, Cte = lat_ref.encode(tr.wkv), lat_ref.encode(te.wkv[torch.as_tensor(pick)])
    D = Ctr.shape[1]
    dit_probe = build_state_dit(tr, P.dit_preset, P.dit_norm, P.dit_ema, layers)
    X = dit_probe.to_image(tr.wkv)
    paths = json.loads((P.build_dir / "state_models.json").read_text())      # notebook 08's models
    preset = DIT_PRESETS[P.dit_preset]
    token = min(a.token, P.latent_k)          # a token never spans two layers' codes
    if P.latent_k % token: ap.error(f"--token {a.token} does not divide latent_k = {P.latent_k}")
    if a.budget == "dit":
        budget, steps, batch = n_params(dit_probe.net), P.dit_steps, P.dit_batch
        dit_cfg = dit_probe.net.cfg
        cdit_cfg = CodeDiTConfig(D, K, token, preset["hidden"], preset["depth"], preset["heads"])
    else:                                     # notebook 08's latent model's budget: both DiTs widened to its parameter count
        budget, steps, batch = n_params(LatentStateModel.load(P.build_dir / paths["seed0"]).net), P.latent_steps, P.latent_batch
        dit_cfg = dataclasses.replace(dit_probe.net.cfg, hidden=dit_hidden_for(
            budget, lambda h: DiT(dataclasses.replace(dit_probe.net.cfg, hidden=h)), preset["heads"]))
        cdit_cfg = CodeDiTConfig(D, K, token, dit_hidden_for(budget, lambda h: CodeDiT(CodeDiTConfig(D, K, token, h, preset["depth"], preset["heads"])),
                                                             preset["heads"]), preset["depth"], preset["heads"])
        if "code MLP" in a.rows.split(","): a.rows = ",".join(r for r in a.rows.split(",") if r.strip() != "code MLP")   # 08's latent model is that row
    h_mlp = mlp_hidden_for(budget, D, K, a.mlp_depth)
    print(f"budget ({a.budget}): {budget:,} parameters, {steps} steps × {batch}; raw-state DiT hidden {dit_cfg.hidden}, code DiT hidden "
          f"{cdit_cfg.hidden}", flush=True)

    def build(row: str):
        if row == "raw-state DiT":
            m = build_state_dit(tr, P.dit_preset, P.dit_norm, P.dit_ema, layers)
            if a.budget == "latent":
                m.net = DiT(dit_cfg)
                m.ema = copy.deepcopy(m.net).requires_grad_(False)
            return m
        m = build_latent_model(tr, P.latent_k, h_mlp if row == "code MLP" else P.latent_hidden, a.mlp_depth, P.dit_norm, P.dit_ema,
                               layers, residual=P.latent_residual)
        if row == "code DiT":
            m.net = CodeDiT(cdit_cfg)
            m.ema = copy.deepcopy(m.net).requires_grad_(False)
        return m

    def score(m, row: str, seed: int, **extra) -> dict:
        t0 = time.time()
        m.eval()
        st = generate_states(m, diff, gen_labels, len(gen_labels), steps=P.eval_steps, guidance=P.eval_guidance, seed=P.seed)
        rec = {"row": row, "seed": seed, **extra, **sample_metrics(st.wkv.transpose(0, 1).flatten(1).numpy())}
        if isinstance(m, LatentStateModel):
            lp = diffusion_log_likelihood(m, diff, Cte, labels, P.eval_nll_steps, P.eval_nll_probes, seed=P.seed)
            rec["nll_per_dim"] = float(-lp.mean() / D)
        rec["score_seconds"] = round(time.time() - t0, 1)
        rec["commit"] = commit()
        print(rec, flush=True)
        return rec

    out_path = result_path(a, "state_matched_check" if a.budget == "dit" else "state_matched_latent_budget")
    head = {"budget": a.budget, "budget_params": budget, "samples_seen": steps * batch, "dit_hidden": dit_cfg.hidden, "code_dims": D,
            "heldout_states": len(pick), "states_per_persona": n_per, "code_mlp_hidden": h_mlp, "code_mlp_depth": a.mlp_depth,
            "code_dit": dataclasses.asdict(cdit_cfg),
            "build": S.build}
    rows = []
    if out_path.exists():                     # keep what an earlier run scored, if it scored the same setup
        prev = json.loads(out_path.read_text())
        clash = {k: (prev.get(k), v) for k, v in head.items() if prev.get(k) != v}
        if clash: raise SystemExit(f"{out_path} was written for another setup ({clash}); move it away or pass --out")
        rows = [{**r, "commit": r.get("commit", prev["commit"])} for r in prev["rows"]]
        print(f"kept {len(rows)} rows of {out_path.name}", flush=True)
    done = {(r["row"], r["seed"]) for r in rows}

    def save():
        "Writes the result file: every row so far, and per row its mean over training seeds with a 95% interval."
        summary = []
        for row in dict.fromkeys(r["row"] for r in rows):
            rs = [r for r in rows if r["row"] == row]
            rec = {"row": row, "n": len(rs), "params": rs[0]["params"], "samples_seen": rs[0].get("steps", 0) * rs[0].get("batch", 0)}
            for k in ("nll_per_dim", "frechet", "variance_ratio", "precision", "recall"):
                if k not in rs[0]: continue
                v = [r[k] for r in rs]
                if k in floor: v = [x / floor[k] for x in v]
                mu, ci = mean_ci(v)
                key = k if k not in floor else f"{k}_vs_real"
                rec[key], rec[f"{key}_ci95"], rec[f"{key}_per_seed"] = mu, ci, [round(x, 4) for x in v]
            summary.append(rec)
        write_result(out_path, a.profile, {**head, "floor": floor, "rows": rows, "summary": summary})     # atomic: a kill leaves the last one
        return summary

    # first, what needs no training: the latent models of notebook 08 at their own budget, and the full Gaussian over the same
    # codes (every record written after a trained seed then holds the rows the comparisons are made against)
    for s in range(P.latent_seeds):
        if ("latent model of notebook 08 (its own budget)", P.seed + s) in done: continue
        m = LatentStateModel.load(P.build_dir / paths[f"seed{s}"])
        rows.append(score(m, "latent model of notebook 08 (its own budget)", P.seed + s, params=n_params(m.net), steps=P.latent_steps,
                          batch=P.latent_batch))
    if ("full Gaussian per persona (codes → basis)", P.seed) not in done:
        gauss = DensityBaseline("gmm", components=1).fit(Ctr.double().numpy(), ytr)
        z = torch.as_tensor(gauss.sample(np.repeat(np.arange(K), n_per), P.seed), dtype=torch.float32)
        yg = torch.as_tensor(np.repeat(np.arange(K), n_per))
        g_flat = lat_ref.decode(z, yg, torch.Generator().manual_seed(P.seed)).flatten(1).numpy()
        rows.append({"row": "full Gaussian per persona (codes → basis)", "seed": P.seed, "params": 0, **sample_metrics(g_flat),
                     "nll_per_dim": float(-gauss.log_prob(Cte.double().numpy(), yte[pick]).mean() / D), "commit": commit()})

    save()

    cfg0 = TrainConfig(steps=steps, lr=P.dit_lr, warmup=P.dit_warmup, weight_decay=0.0, ckpt_every=P.dit_ckpt_every if a.budget == "dit"
                       else max(1, steps // 8), log_every=50, seed=P.seed, min_lr_ratio=0.1)
    chosen = [r.strip() for r in a.rows.split(",") if r.strip()]
    # checkpoints per setup as well as per build: a changed budget, size, token or learning rate never resumes another setup's run
    setup_key = hashlib.sha256(json.dumps({**head, "lr": cfg0.lr, "warmup": cfg0.warmup}, sort_keys=True, default=str).encode()).hexdigest()[:12]
    for row in chosen:
        if row not in ("raw-state DiT", "code DiT", "code MLP"): ap.error(f"unknown row {row!r}")
        for s in range(a.seeds):
            seed = P.seed + s
            if (row, seed) in done: continue
            if row == "raw-state DiT" and s == 0 and not a.retrain_first_dit and a.budget == "dit":    # notebook 08's DiT is this recipe's first seed
                m = StateDiT.load(P.build_dir / paths["dit"])
                rows.append(score(m, row, seed, params=n_params(m.net), steps=P.dit_steps, batch=P.dit_batch, trained="notebook 08"))
                save()
                continue
            torch.manual_seed(seed)
            m = build(row)
            data = X if row == "raw-state DiT" else Ctr
            def batch_fn(step, seed=seed, data=data):
                g = torch.Generator().manual_seed(seed * 1_000_003 + step)
                idx = torch.randint(0, len(data), (batch,), generator=g)
                return data[idx], Y[idx], step
            def loss_fn(model, batch, seed=seed):
                x, y, step = batch
                return diff.loss(model, x, y, null_label=K, p_uncond=0.1, generator=torch.Generator().manual_seed(seed * 7919 + step)), {}
            t0 = time.time()
            out = work_dir(P, "state_matched" if a.budget == "dit" else "state_matched_latent", S.build) / setup_key / f"{row.replace(' ', '_')}_seed{seed}"
            hist = train(m, batch_fn, loss_fn, dataclasses.replace(cfg0, seed=seed), out, after_step=m.update_ema)
            rows.append(score(m, row, seed, params=n_params(m.net), steps=steps, batch=batch, final_loss=hist[-1]["loss"],
                              train_seconds=round(time.time() - t0, 1), torch_threads=torch.get_num_threads()))
            save()

    for rec in save(): print(rec, flush=True)


if __name__ == "__main__":
    main()
