"""Is the hybrid's miss on the key–value task a training budget, a size, or the design? One seed per run,
the `cpu` profile's hybrid shape and key–value task (notebook 11's batches and held-out set), with
answer exact-match accuracy with the model's own context and with another example's (shuffled).

Runs: the budget (180, 600, 1500 steps) for the hybrid (matrix coefficients), the prefix model and the
diagonal design; at 600 steps a wider context encoder, a larger rank, outer-product pooling of the
encoder's tokens instead of one vector, no diffusion and norm terms; and for the parameter denoiser,
accuracy with sampled coefficients with and without the rms normalisation ρ, and after `fit_denoiser`.
Then what limits the hybrid near 0.45 at 4 facts: the encoder replaced by the facts themselves (oracle z);
encoders that might bind a key to its value more easily (rotary positions, a short convolution, pooling by
learned queries, width 128, the state written token by token); and a linear readout of each key's value from
z (`binding_probe`), on the trained hybrid's frozen z and on an encoder trained for the bindings directly. Last,
context → state distilled (notebook 10's `DistilledState`): a generator trained on the state the prefix model reaches after
reading the context, at two widths and rates, with and without the window CE, and the window CE alone.
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
from dreamstate.hybrid import (ContextBlock, DistilledState, HybridConfig, HybridOutput, HybridRWKV7, KV_KEYS, KV_VALUES, StateGenerator,
                               fit_denoiser, hybrid_loss, kv_example, state_distill_loss)
from dreamstate.rwkv7 import RWKV7, RWKV7Config, RWKVState, next_token_nll
from dreamstate.train import TrainConfig, train



def encode_keeping_tokens(model, ctx, mask=None):
    "`model.encode`, keeping the encoder's per-token states (through `model.norm_t`) and the mask in `model._tok`."
    mask = torch.ones_like(ctx, dtype=torch.bool) if mask is None else mask
    e = model.encoder
    h = e.emb(ctx)
    if not e.rotary: h = h + timestep_embedding(torch.arange(ctx.shape[1]), e.emb.embedding_dim)
    if getattr(e, "conv", None) is not None: h = h + e.conv(h.transpose(1, 2))[..., :ctx.shape[1]].transpose(1, 2)
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


class VariantEncoder(nn.Module):
    """The context encoder with what may bind a key to its value: rotary positions (`rope`), a causal short convolution
    of width `conv` before the blocks (0: none), and pooling by `n_queries` learned queries (`pool="attn"`) instead of the mean."""
    def __init__(self, vocab_size, d, depth, heads, rope=False, conv=0, pool="mean", n_queries=4):
        super().__init__()
        self.emb = nn.Embedding(vocab_size, d)
        nn.init.normal_(self.emb.weight, std=1.0)
        self.rotary, self.pool = rope, pool
        self.conv = nn.Conv1d(d, d, conv, padding=conv - 1) if conv else None
        self.blocks = nn.ModuleList(ContextBlock(d, heads, rotary=rope) for _ in range(depth))
        if pool == "attn":
            self.queries = nn.Parameter(torch.randn(n_queries, d))
            self.pool_kv, self.pool_out = nn.Linear(d, 2 * d), nn.Linear(n_queries * d, d)
        self.norm = nn.LayerNorm(d)

    def forward(self, ctx, mask):
        T, d = ctx.shape[1], self.emb.embedding_dim
        h = self.emb(ctx)
        if not self.rotary: h = h + timestep_embedding(torch.arange(T, device=ctx.device), d)
        if self.conv is not None: h = h + self.conv(h.transpose(1, 2))[..., :T].transpose(1, 2)
        for b in self.blocks: h = b(h, mask)
        if self.pool == "attn":
            k, v = self.pool_kv(h).chunk(2, -1)
            a = F.scaled_dot_product_attention(self.queries.expand(len(h), -1, -1), k, v, attn_mask=mask[:, None, :])
            return self.norm(self.pool_out(a.flatten(1)))
        m = mask.to(h.dtype)[..., None]
        return self.norm((h * m).sum(1) / m.sum(1).clamp_min(1))


def with_variant_encoder(cls):
    "A subclass of the hybrid `cls` whose context encoder is `VariantEncoder(**enc)` (drawn from seed + 3)."
    class Variant(cls):
        def __init__(self, cfg, hc, seed=0, enc=None):
            super().__init__(cfg, hc, seed)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + 3)
                self.encoder = VariantEncoder(cfg.vocab_size, hc.ctx_dim, hc.ctx_depth, hc.ctx_heads, **(enc or {}))
    Variant.__name__ = f"{cls.__name__}WithVariantEncoder"
    return Variant


def fact_table(ctx: list[int]) -> list[int]:
    "Each of `KV_KEYS`' value in the context bytes `ctx`: 1 + its index in `KV_VALUES`, 0 where the key is absent."
    t = [0] * len(KV_KEYS)
    for fact in bytes(ctx).decode().strip(";").split(";"):
        k, v = fact.split("=")
        t[KV_KEYS.index(k)] = 1 + KV_VALUES.index(v)
    return t


def binding_probe(P, encode, d, steps, params=(), seed=0):
    """Accuracy of a linear readout z → each key's value (or absent) on held-out 4-fact contexts, over the keys present: does
    z = `encode(ctx)` `[B,d]` hold which value each key has? The readout is trained `steps` Adam steps (lr 1e-3) on notebook
    11's training contexts, with `params` (the encoder's, to train it for the bindings directly; none: z frozen)."""
    torch.manual_seed(seed)
    head = nn.Linear(d, len(KV_KEYS) * (1 + len(KV_VALUES)))
    opt = torch.optim.AdamW([*params, *head.parameters()], lr=1e-3)
    batches = kv_batches(P, seed + 20_000)
    for step in range(steps):
        ctx = batches(step)[0]
        with torch.set_grad_enabled(bool(params)): z = encode(ctx)
        target = torch.tensor([fact_table(c) for c in ctx.tolist()])
        loss = F.cross_entropy(head(z).view(-1, 1 + len(KV_VALUES)), target.view(-1))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    r = random.Random(f"kv-eval/{P.hyb_kv_max_facts}")
    ctx = torch.tensor([kv_example(r, P.hyb_kv_max_facts, P.hyb_kv_questions)[0] for _ in range(P.hyb_kv_eval)])
    target = torch.tensor([fact_table(c) for c in ctx.tolist()])
    with torch.no_grad(): pred = head(encode(ctx)).view(len(ctx), len(KV_KEYS), -1).argmax(-1)
    return float((pred == target)[target > 0].float().mean())


def probe_run(P, steps, ctx_dim, enc=None):
    "The context encoder alone (`VariantEncoder(**enc)` at width `ctx_dim`) trained for the bindings directly: `binding_probe`'s accuracy."
    torch.manual_seed(P.seed)
    e = VariantEncoder(256, ctx_dim, P.hyb_ctx_depth, P.hyb_ctx_heads, **(enc or {}))
    t0 = time.time()
    acc = binding_probe(P, lambda c: e(c, torch.ones_like(c, dtype=torch.bool)), ctx_dim, steps, list(e.parameters()), seed=P.seed)
    return {"acc_probe": acc, "seconds": round(time.time() - t0, 1)}


_TEACHERS = {}
def prefix_teacher(P, steps, lr=1e-3):
    "The core trained to read the context as a prefix (run(kind='prefix')'s model), and its read: context + separator → state."
    core = RWKV7Config(vocab_size=256, n_layer=P.hyb_n_layer, n_embd=P.hyb_n_embd, head_size=P.hyb_head_size)
    read = lambda m, c: m(torch.cat([c, torch.zeros_like(c[:, :1])], 1))[1]
    if (steps, lr) not in _TEACHERS:
        torch.manual_seed(P.seed)
        m = RWKV7(core).init_weights(seed=P.seed)
        def loss_fn(model, b):
            l = next_token_nll(model(b[2][:, :-1], read(model, b[0]))[0], b[2][:, 1:]); return l, {"ce": l.item()}
        # train() resumes from a finished run's checkpoint: the teacher is trained once per profile, steps and rate
        out = P.build_dir / "experiments" / "hybrid_kv_check" / f"prefix-teacher-{steps}-{lr:g}"
        train(m, kv_batches(P, P.seed), loss_fn, TrainConfig(steps=steps, lr=lr, warmup=P.hyb_warmup, ckpt_every=steps,
                                                             log_every=max(1, steps // 10), seed=P.seed), out, progress=False)
        _TEACHERS[steps, lr] = m.eval().requires_grad_(False)
    return _TEACHERS[steps, lr], read


def distill_run(P, steps, teacher_steps, lr=1e-3, ctx_dim=128, ce=1.0, mse=1.0):
    """Context → state, distilled (notebook 10's `DistilledState`): a `StateGenerator` of width `ctx_dim` trained by
    `state_distill_loss` towards the state the prefix model (trained `teacher_steps`) reaches after reading the context
    (`mse` = 0: the window CE through the teacher's frozen core alone; `ce` = 0: the regression alone); then the teacher's
    core answers from the generated state."""
    teacher, read = prefix_teacher(P, teacher_steps)
    m = DistilledState(StateGenerator(teacher.cfg, ctx_dim, P.hyb_ctx_depth, P.hyb_ctx_heads, seed=P.seed), teacher, read)
    def loss_fn(model, b):
        if mse: return state_distill_loss(model, b, ce=ce)
        l = next_token_nll(model(b[0], b[1], b[2][:, :-1]).logits, b[2][:, 1:]); return l, {"ce": l.item()}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as d:
        train(m, kv_batches(P, P.seed), loss_fn, TrainConfig(steps=steps, lr=lr, warmup=P.hyb_warmup, ckpt_every=10**9,
                                                             log_every=max(1, steps // 10), seed=P.seed), d, progress=False)
    m.eval()
    def acc_at(n_facts, shuffle=False, gen=True):
        r = random.Random(f"kv-eval/{n_facts}")
        ex = [kv_example(r, n_facts, P.hyb_kv_questions) for _ in range(P.hyb_kv_eval)]
        ctx, win = torch.tensor([e[0] for e in ex]), torch.tensor([e[1] for e in ex])
        if shuffle: ctx = torch.roll(ctx, len(ex) // 2, 0)
        with torch.no_grad():
            hit = teacher(win[:, :-1], m.gen(ctx) if gen else read(teacher, ctx))[0].argmax(-1) == win[:, 1:]
        return float(hit.view(len(ex), -1, 8)[:, :, 4:7].all(-1).float().mean())
    K, KMIN = P.hyb_kv_max_facts, P.hyb_kv_min_facts
    return {"acc": acc_at(K), "acc_shuffled": acc_at(K, shuffle=True), f"acc_{KMIN}_facts": acc_at(KMIN),
            "acc_teacher": acc_at(K, gen=False), "seconds": round(time.time() - t0, 1)}


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


def run(P, kind, steps, coef="matrix", rho=True, fit=0, generate="weights", enc=None, z_probe=0, teacher_steps=0, ce=1.0, mse=1.0,
        **sizes):
    """One run of profile `P`'s task: train for `steps` steps, then the answer accuracies (and with `z_probe` steps, how
    much of the bindings the trained encoder's z holds: `binding_probe` on it, frozen). `kind="probe"`: `probe_run`. `sizes` overrides the
    profile's rank, ctx_dim, lambda_diff, lambda_reg, n_embd, n_layer, lr, head_init and alpha0 (`P.hyb_<name>`)."""
    rank, ctx_dim, ctx_depth, lambda_diff, lambda_reg, n_embd, n_layer, lr, head_init, alpha0 = (
        sizes.pop(k, getattr(P, f"hyb_{k}")) for k in ("rank", "ctx_dim", "ctx_depth", "lambda_diff", "lambda_reg", "n_embd", "n_layer",
                                                        "lr", "head_init", "alpha0"))
    if sizes: raise TypeError(f"run() got unknown arguments {sorted(sizes)}")
    if kind == "probe": return probe_run(P, steps, ctx_dim, enc)
    if kind == "distill": return distill_run(P, steps, teacher_steps, lr, ctx_dim, ce, mse)
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
        if kind == "encoder": m = with_variant_encoder(HybridRWKV7)(core, hc, seed=SEED, enc=enc)
        elif kind == "token_state_encoder": m = with_variant_encoder(TokenStateHybrid)(core, hc, seed=SEED, enc=enc)
        else: m = {"outer": OuterHybrid, "token_state": TokenStateHybrid, "oracle": OracleHybrid}.get(kind, HybridRWKV7)(core, hc, seed=SEED)
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
    if z_probe: out["acc_z_probe"] = binding_probe(P, lambda c: m.encode(c), ctx_dim, z_probe, seed=SEED)
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
    # the encoder is the bottleneck: what lets it bind a key to the value four bytes later?
    "encoder rotary, ΔW, 1500 steps, lr 1e-3": dict(kind="encoder", steps=1500, lr=1e-3, enc=dict(rope=True)),
    "encoder conv 4, ΔW, 1500 steps, lr 1e-3": dict(kind="encoder", steps=1500, lr=1e-3, enc=dict(conv=4)),
    "encoder rotary + conv 4, ΔW, 1500 steps, lr 1e-3": dict(kind="encoder", steps=1500, lr=1e-3, enc=dict(rope=True, conv=4)),
    "encoder attention pooling, ΔW, 1500 steps, lr 1e-3": dict(kind="encoder", steps=1500, lr=1e-3, enc=dict(pool="attn")),
    "encoder rotary + conv 4, state, 1500 steps, lr 1e-3": dict(kind="encoder", steps=1500, lr=1e-3, generate="state", lambda_diff=0.0,
                                                               enc=dict(rope=True, conv=4)),
    # none of them moves it; a supervised probe (z → each key's value) says the encoder's width decides how soon it learns to bind
    "hybrid, 1500 steps, ctx_dim 128, lr 1e-3": dict(kind="hybrid", steps=1500, ctx_dim=128, lr=1e-3),
    "hybrid state, 1500 steps, ctx_dim 128, lr 1e-3": dict(kind="hybrid", steps=1500, ctx_dim=128, lr=1e-3, generate="state", lambda_diff=0.0),
    "hybrid, 1500 steps, ctx_dim 128, lr 3e-3": dict(kind="hybrid", steps=1500, ctx_dim=128, lr=3e-3),
    "hybrid state, 1500 steps, ctx_dim 128, lr 3e-3": dict(kind="hybrid", steps=1500, ctx_dim=128, lr=3e-3, generate="state", lambda_diff=0.0),
    "hybrid, 4500 steps, ctx_dim 128, lr 1e-3": dict(kind="hybrid", steps=4500, ctx_dim=128, lr=1e-3),
    # with rotary positions the probe binds by 800 steps at width 128 (sinusoidal: 2000–3000)
    "encoder rotary, ΔW, 1500 steps, ctx_dim 128, lr 1e-3": dict(kind="encoder", steps=1500, ctx_dim=128, lr=1e-3, enc=dict(rope=True)),
    "encoder rotary, state, 1500 steps, ctx_dim 128, lr 1e-3": dict(kind="encoder", steps=1500, ctx_dim=128, lr=1e-3, generate="state",
                                                                  lambda_diff=0.0, enc=dict(rope=True)),
    "encoder rotary, ΔW, 1500 steps, ctx_dim 64, lr 1e-3": dict(kind="encoder", steps=1500, ctx_dim=64, lr=1e-3, enc=dict(rope=True)),
    "encoder rotary, ΔW, 1500 steps, ctx_dim 128, head_init 0.1, lr 1e-3": dict(kind="encoder", steps=1500, ctx_dim=128, lr=1e-3,
                                                                               head_init=0.1, enc=dict(rope=True)),
    "encoder rotary, ΔW, 1500 steps, ctx_dim 128, head_init 1, lr 1e-3": dict(kind="encoder", steps=1500, ctx_dim=128, lr=1e-3,
                                                                             head_init=1.0, enc=dict(rope=True)),
    "hybrid state written per token, encoder rotary, 1500 steps, ctx_dim 128, lr 1e-3": dict(kind="token_state_encoder", steps=1500,
        ctx_dim=128, lr=1e-3, generate="state", lambda_diff=0.0, enc=dict(rope=True)),
    "hybrid state written per token, 1500 steps, lr 1e-3": dict(kind="token_state", steps=1500, lr=1e-3, generate="state", lambda_diff=0.0),
    # does the trained hybrid's z hold the bindings (a linear readout of each key's value from the frozen z), and can the
    # encoder learn them at all when trained for them directly (kind "probe": acc_probe, no core)?
    "hybrid, 1500 steps, lr 1e-3, z probed": dict(kind="hybrid", steps=1500, lr=1e-3, z_probe=2000),
    "encoder rotary, ΔW, 1500 steps, ctx_dim 128, lr 1e-3, z probed": dict(kind="encoder", steps=1500, ctx_dim=128, lr=1e-3,
                                                                          enc=dict(rope=True), z_probe=2000),
    **{f"binding probe, encoder{' rotary' if rope else ''}, ctx_dim {d}, 3000 steps": dict(kind="probe", steps=3000, ctx_dim=d,
                                                                                          enc=dict(rope=rope))
       for rope in (False, True) for d in (32, 64, 128)},
    # context → state distilled from the prefix model's own state after reading the context (notebook 10's DistilledState; the
    # teacher: the prefix model at 1500 steps, lr 1e-3; the generator's encoder has rotary positions)
    **{f"state distilled and window CE, ctx_dim {d}, 1500 steps, lr {lr_name}": dict(kind="distill", steps=1500, teacher_steps=1500, lr=lr,
                                                                                   ctx_dim=d) for d in (32, 128) for lr, lr_name in ((1e-3, "1e-3"), (3e-3, "3e-3"))},
    **{f"state distilled, no window CE, ctx_dim {d}, 1500 steps, lr {lr_name}": dict(kind="distill", steps=1500, teacher_steps=1500, lr=lr,
                                                                                   ctx_dim=d, ce=0.0)
       for d in (32, 64, 128) for lr, lr_name in ((1e-3, "1e-3"), (3e-3, "3e-3"))},
    # the generator at about (b)'s parameter count (width 64): longer, or at a higher rate
    **{f"state distilled, no window CE, ctx_dim 64, {n} steps, lr {lr_name}": dict(kind="distill", steps=n, teacher_steps=1500, lr=lr,
                                                                                 ctx_dim=64, ce=0.0)
       for n, lr, lr_name in ((4500, 3e-3, "3e-3"), (1500, 1e-2, "1e-2"))},
    "window CE only, from the teacher's frozen core, ctx_dim 128, 1500 steps, lr 3e-3": dict(kind="distill", steps=1500, teacher_steps=1500,
                                                                                            lr=3e-3, ctx_dim=128, mse=0.0),
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
