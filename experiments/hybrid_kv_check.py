"""Is the hybrid's miss on the key–value task a training budget, a size, or the design? One seed per run,
the `cpu` profile's hybrid shape and key–value task (notebook 11's batches and held-out set), with
answer exact-match accuracy with the model's own context and with another example's (shuffled).

Runs: the budget (180, 600, 1500 steps) for the hybrid (matrix coefficients), the prefix model and the
diagonal design; at 600 steps a wider context encoder, a larger rank, outer-product pooling of the
encoder's tokens instead of one vector, no diffusion and norm terms; and for the parameter denoiser,
accuracy with sampled coefficients with and without the rms normalisation ρ, and after `fit_denoiser`.
Writes experiments/results/hybrid_kv_check.json after each run (a rerun skips what is there; another
profile than `cpu` writes hybrid_kv_check-<profile>.json). Needs no build/.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_kv_check.py                  # all runs, ≈ 2 h on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_kv_check.py --profile smoke --runs "hybrid, 180" "prefix, 180"
"""
import json, random, tempfile, time

import torch
import torch.nn as nn
import torch.nn.functional as F

from _common import commit, parse_with_subset, parser, result_path
from dreamstate.config import load_profile
from dreamstate.diffusion import Diffusion
from dreamstate.dit import timestep_embedding
from dreamstate.hybrid import HybridConfig, HybridOutput, HybridRWKV7, KV_KEYS, KV_VALUES, fit_denoiser, hybrid_loss, kv_example
from dreamstate.rwkv7 import RWKV7, RWKV7Config, RWKVState, next_token_nll
from dreamstate.train import TrainConfig, train



def encode_keeping_tokens(model, ctx, mask=None):
    "`model.encode`, keeping the encoder's per-token states (through `model.norm_t`) and the mask in `model._tok`."
    mask = torch.ones_like(ctx, dtype=torch.bool) if mask is None else mask
    e = model.encoder
    h = e.emb(ctx) + timestep_embedding(torch.arange(ctx.shape[1]), e.emb.embedding_dim)
    for b in e.blocks: h = b(h, mask)
    model._tok = (model.norm_t(h), mask)
    m = mask.to(h.dtype)[..., None]
    return e.norm((h * m).sum(1) / m.sum(1).clamp_min(1))


class OuterHybrid(HybridRWKV7):
    "S(c) = masked mean over the context's encoded tokens of a_t b_tᵀ (outer-product pooling; a at scale ε, b unit)."
    def __init__(self, cfg, hc, seed=0):
        super().__init__(cfg, hc, seed)
        L, r, d = cfg.n_layer, hc.rank, hc.ctx_dim
        self.ha, self.hb, self.norm_t = nn.Linear(d, L * 3 * r), nn.Linear(d, L * 3 * r), nn.LayerNorm(d)
        nn.init.normal_(self.ha.weight, std=hc.head_init * d ** -0.5); nn.init.zeros_(self.ha.bias)
        nn.init.normal_(self.hb.weight, std=d ** -0.5); nn.init.zeros_(self.hb.bias)

    encode = encode_keeping_tokens

    def coefficients(self, z):
        h, mask = self._tok
        B, T, _ = h.shape
        L, r = self.cfg.n_layer, self.hcfg.rank
        a, b = self.ha(h).view(B, T, L, 3, r), self.hb(h).view(B, T, L, 3, r)
        m = mask.to(h.dtype)
        return torch.einsum("btlmr,btlmq,bt->blmrq", a, b, m) / m.sum(1).clamp_min(1)[:, None, None, None, None]


class TokenStateHybrid(HybridRWKV7):
    """Context → state written token by token: S₀[ℓ,h] = β_ℓ Σ_t v_{tℓh} k̂_{tℓh}ᵀ / n over the context's encoded tokens (unit keys,
    values at scale ε), the linear-attention memory the core's own state is, instead of β P Σ(z) Qᵀ from the pooled z."""
    def __init__(self, cfg, hc, seed=0):
        super().__init__(cfg, hc, seed)
        L, H, N, d = cfg.n_layer, cfg.n_head, cfg.head_size, hc.ctx_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.wk, self.wv, self.norm_t = nn.Linear(d, L * H * N), nn.Linear(d, L * H * N), nn.LayerNorm(d)
            nn.init.normal_(self.wv.weight, std=hc.head_init * d ** -0.5); nn.init.zeros_(self.wv.bias)
        self.state_head = None                                        # unused: the writes replace it

    encode = encode_keeping_tokens

    def forward(self, ctx, ctx_mask, tokens, s=None, state=None, diffusion=None, generator=None, win_mask=None):
        self.encode(ctx, ctx_mask)
        h, mask = self._tok
        B, T, _ = h.shape
        L, H, N = self.cfg.n_layer, self.cfg.n_head, self.cfg.head_size
        k = F.normalize(self.wk(h).view(B, T, L, H, N), dim=-1)
        v = self.wv(h).view(B, T, L, H, N)
        m = mask.to(h.dtype)
        S = torch.einsum("btlhv,btlhk,bt->lbhvk", v, k, m) / m.sum(1).clamp_min(1)[None, :, None, None, None]
        S = S * self.beta[:, None, None, None, None]
        z = torch.zeros(L, B, self.cfg.n_embd)
        logits = self.core(tokens if diffusion is None else tokens[:, :-1], RWKVState(S.float(), z, z.clone()))[0]
        if diffusion is None: return HybridOutput(logits)
        ce = next_token_nll(logits, tokens[:, 1:], win_mask)
        return HybridOutput(logits, ce, {"ce": ce.detach(), "diffusion": torch.zeros(()), "reg": torch.zeros(())})


class OracleHybrid(HybridRWKV7):
    """The encoder replaced by the facts themselves: z = a learned linear map of the key × value one-hot table parsed from the
    context bytes (`KV_KEYS` × `KV_VALUES`). Whatever limits this model is downstream of the encoder (the head, ΔW or the
    state, the core's use of them)."""
    def __init__(self, cfg, hc, seed=0):
        super().__init__(cfg, hc, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 2)
            self.oracle = nn.Sequential(nn.Linear(len(KV_KEYS) * len(KV_VALUES), hc.ctx_dim), nn.LayerNorm(hc.ctx_dim))

    def encode(self, ctx, mask=None):
        table = torch.zeros(ctx.shape[0], len(KV_KEYS), len(KV_VALUES))
        for b, row in enumerate(ctx.tolist()):
            for fact in bytes(row).decode(errors="ignore").strip(";\x00").split(";"):
                if "=" in fact:
                    k, v = fact.split("=")
                    table[b, KV_KEYS.index(k), KV_VALUES.index(v)] = 1.0
        return self.oracle(table.flatten(1))


def kv_batches(P, seed):
    "notebook 11's key–value training batches"
    KQ, KMIN, KMAX = P.hyb_kv_questions, P.hyb_kv_min_facts, P.hyb_kv_max_facts
    def f(step):
        r = random.Random(f"kv-train/{seed}/{step}")
        n = r.randint(KMIN, KMAX)
        ex = [kv_example(r, n, KQ) for _ in range(P.hyb_batch)]
        ctx = torch.tensor([c for c, _, _ in ex])
        return ctx, torch.ones_like(ctx, dtype=torch.bool), torch.tensor([w for _, w, _ in ex])
    return f


def run(P, kind, steps, coef="matrix", rho=True, fit=0, generate="weights", **sizes):
    """One run of profile `P`'s task: train for `steps` steps, then the answer accuracies. `sizes` overrides the
    profile's rank, ctx_dim, lambda_diff, lambda_reg, n_embd, n_layer, lr, head_init and alpha0 (`P.hyb_<name>`)."""
    rank, ctx_dim, ctx_depth, lambda_diff, lambda_reg, n_embd, n_layer, lr, head_init, alpha0 = (
        sizes.pop(k, getattr(P, f"hyb_{k}")) for k in ("rank", "ctx_dim", "ctx_depth", "lambda_diff", "lambda_reg", "n_embd", "n_layer",
                                                        "lr", "head_init", "alpha0"))
    if sizes: raise TypeError(f"run() got unknown arguments {sorted(sizes)}")
    SEED, KQ, KMIN, KMAX = P.seed, P.hyb_kv_questions, P.hyb_kv_min_facts, P.hyb_kv_max_facts
    DIFF = Diffusion(prediction=P.hyb_diff_prediction)
    core = RWKV7Config(vocab_size=256, n_layer=n_layer, n_embd=n_embd, head_size=P.hyb_head_size)
    hc = HybridConfig(rank=rank, ctx_dim=ctx_dim, ctx_depth=ctx_depth, ctx_heads=P.hyb_ctx_heads, max_ctx=1024,
                      alpha0=alpha0, head_init=head_init, lambda_diff=lambda_diff, lambda_reg=lambda_reg, coef=coef,
                      generate=generate)
    if kind == "prefix":
        torch.manual_seed(SEED)
        m = RWKV7(core).init_weights(seed=SEED)
        read = lambda c: m(torch.cat([c, torch.zeros_like(c[:, :1])], 1))[1]
        def loss_fn(model, b):
            lg = model(b[2][:, :-1], read(b[0]))[0]
            l = next_token_nll(lg, b[2][:, 1:]); return l, {"ce": l.item()}
        logits = lambda c, x, s=None: m(x, read(c))[0]
    else:
        torch.manual_seed(SEED)
        m = {"outer": OuterHybrid, "token_state": TokenStateHybrid, "oracle": OracleHybrid}.get(kind, HybridRWKV7)(core, hc, seed=SEED)
        if not rho: m.update_coef_rms = lambda *a, **k: None          # ρ stays 1: the denoiser sees raw coefficients
        g = torch.Generator()
        def loss_fn(model, b):
            g.manual_seed(int(b[2].sum())); return hybrid_loss(model, b, DIFF, generator=g)
        logits = lambda c, x, s=None: m(c, None, x, s=s).logits
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        train(m, kv_batches(P, SEED), loss_fn, TrainConfig(steps=steps, lr=lr, warmup=P.hyb_warmup, ckpt_every=10**9,
                                                           log_every=max(1, steps // 10), seed=SEED), d, progress=False)
    m.eval()
    r = random.Random(f"kv-eval/{KMAX}")
    ex = [kv_example(r, KMAX, KQ) for _ in range(P.hyb_kv_eval)]
    ctx, win = torch.tensor([e[0] for e in ex]), torch.tensor([e[1] for e in ex])
    @torch.no_grad()
    def acc(c, s=None):
        hit = logits(c, win[:, :-1], s).argmax(-1) == win[:, 1:]
        return float(hit.view(len(ex), -1, 8)[:, :, 4:7].all(-1).float().mean())
    out = {"acc": acc(ctx), "acc_shuffled": acc(torch.roll(ctx, len(ex) // 2, 0))}
    r2 = random.Random(f"kv-eval/{KMIN}")
    ex2 = [kv_example(r2, KMIN, KQ) for _ in range(P.hyb_kv_eval)]
    ctx2, win2 = torch.tensor([e[0] for e in ex2]), torch.tensor([e[1] for e in ex2])
    with torch.no_grad():
        hit2 = logits(ctx2, win2[:, :-1]).argmax(-1) == win2[:, 1:]
    out[f"acc_{KMIN}_facts"] = float(hit2.view(len(ex2), -1, 8)[:, :, 4:7].all(-1).float().mean())
    if kind != "prefix" and lambda_diff > 0 and generate != "state":
        with torch.no_grad(): z = m.encode(ctx)
        out["acc_sampled"] = acc(ctx, m.sample_coefficients(z, DIFF, P.hyb_sample_steps, seed=0))
        if fit:
            fit_denoiser(m, kv_batches(P, SEED + 10_000), DIFF, fit, seed=SEED)
            with torch.no_grad(): z = m.encode(ctx)
            out[f"acc_sampled_after_fit{fit}"] = acc(ctx, m.sample_coefficients(z, DIFF, P.hyb_sample_steps, seed=0))
    out["seconds"] = round(time.time() - t0, 1)
    return out


RUNS = {   # name: arguments of `run` (`fit`: -1 is the profile's denoiser steps)
    **{f"hybrid, {s} steps": dict(kind="hybrid", steps=s) for s in (180, 600, 1500)},
    **{f"prefix, {s} steps": dict(kind="prefix", steps=s) for s in (180, 600, 1500)},
    **{f"hybrid diagonal, {s} steps": dict(kind="hybrid", steps=s, coef="diag") for s in (180, 600)},
    "hybrid, 600 steps, ctx_dim 64": dict(kind="hybrid", steps=600, ctx_dim=64),
    "hybrid, 600 steps, rank 16": dict(kind="hybrid", steps=600, rank=16),
    "hybrid, 600 steps, outer-product pooling": dict(kind="outer", steps=600),
    "hybrid, 600 steps, no diffusion or norm term": dict(kind="hybrid", steps=600, lambda_diff=0.0, lambda_reg=0.0),
    "hybrid, 600 steps, denoiser without ρ, then fit_denoiser": dict(kind="hybrid", steps=600, rho=False, fit=-1),
    "hybrid, 600 steps, core n_embd 128": dict(kind="hybrid", steps=600, n_embd=128),
    "hybrid, 600 steps, core 4 layers": dict(kind="hybrid", steps=600, n_layer=4),
    "hybrid, 600 steps, lr 1e-3": dict(kind="hybrid", steps=600, lr=1e-3),
    "prefix, 600 steps, core n_embd 128": dict(kind="prefix", steps=600, n_embd=128),
    # the width (issue: the hybrid stays at chance with a core of C = 128): budget, learning rate, the head's scale
    "hybrid, 1500 steps, core n_embd 128": dict(kind="hybrid", steps=1500, n_embd=128),
    "hybrid, 600 steps, core n_embd 128, lr 1e-3": dict(kind="hybrid", steps=600, n_embd=128, lr=1e-3),
    "hybrid, 600 steps, core n_embd 128, head_init 0.1": dict(kind="hybrid", steps=600, n_embd=128, head_init=0.1),
    "prefix, 600 steps, lr 1e-3": dict(kind="prefix", steps=600, lr=1e-3),
    # context → state (notebook 10): the initial WKV state generated instead of ΔW, and beside it
    "hybrid state, 600 steps": dict(kind="hybrid", steps=600, generate="state", lambda_diff=0.0),
    "hybrid state and ΔW, 600 steps": dict(kind="hybrid", steps=600, generate="both"),
    "hybrid state, 600 steps, lr 1e-3": dict(kind="hybrid", steps=600, generate="state", lambda_diff=0.0, lr=1e-3),
    "hybrid state and ΔW, 600 steps, lr 1e-3": dict(kind="hybrid", steps=600, generate="both", lr=1e-3),
    # the budget within which the prefix model converges (issue 22): 3000 steps, and 1500 at the other learning rate
    "prefix, 3000 steps": dict(kind="prefix", steps=3000),
    "prefix, 1500 steps, lr 1e-3": dict(kind="prefix", steps=1500, lr=1e-3),
    "hybrid, 3000 steps": dict(kind="hybrid", steps=3000),
    "hybrid state, 1500 steps": dict(kind="hybrid", steps=1500, generate="state", lambda_diff=0.0),
    "hybrid state written per token, 600 steps": dict(kind="token_state", steps=600, generate="state", lambda_diff=0.0),
    # every generated-context design plateaus near 0.45 at 4 facts: is it the encoder's depth?
    "hybrid, 1500 steps, encoder depth 4, lr 1e-3": dict(kind="hybrid", steps=1500, ctx_depth=4, lr=1e-3),
    "hybrid, 1500 steps, encoder depth 4, ctx_dim 64, lr 1e-3": dict(kind="hybrid", steps=1500, ctx_depth=4, ctx_dim=64, lr=1e-3),
    # the encoder replaced by the facts themselves (an oracle z): is the plateau upstream or downstream of z?
    "oracle z, ΔW, 1500 steps, lr 1e-3": dict(kind="oracle", steps=1500, lr=1e-3),
    "oracle z, state, 1500 steps, lr 1e-3": dict(kind="oracle", steps=1500, lr=1e-3, generate="state", lambda_diff=0.0),
}


def main():
    ap = parser(__doc__)
    a, chosen = parse_with_subset(ap, "--runs", RUNS, "; a rerun skips those in the result file")
    torch.set_num_threads(1)
    P = load_profile(a.profile)
    out = result_path(a, "hybrid_kv_check")
    res = json.loads(out.read_text()) if out.exists() else {}
    if res.get("_setup", {}).get("profile", a.profile) != a.profile:
        ap.error(f"{out} holds runs of profile {res['_setup']['profile']!r}, not {a.profile!r}: pass another --out")
    core = RWKV7Config(vocab_size=256, n_layer=P.hyb_n_layer, n_embd=P.hyb_n_embd, head_size=P.hyb_head_size)
    res["_setup"] = {"profile": a.profile, "commit": commit(), "seed": P.seed, "core": str(core), "eval_examples": P.hyb_kv_eval,
                     "facts": P.hyb_kv_max_facts, "questions": P.hyb_kv_questions, "torch_threads": 1, "chance": 1 / 8}
    for name in chosen:
        if name in res: continue
        kw = {**RUNS[name], **({"fit": P.hyb_denoiser_steps} if RUNS[name].get("fit") == -1 else {})}
        res[name] = {**kw, **run(P, **kw)}
        print(name, res[name], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
