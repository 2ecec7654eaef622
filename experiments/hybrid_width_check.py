"""Why does the hybrid stay at chance on the key–value task with a core of C = 128 when it reads its context at
C = 64? A check at step 0 and after 20, 100 and 300 training steps (notebook 11's loss and schedule), per width (and at
C = 128 also with the learning rate 1e-3 instead of the profile's): the gradient of the cross-entropy reaching the context encoder,
the ΔW head and the low-rank factors U, V, against the gradient reaching the core; and the size of the generated
update relative to the weight it modulates, ‖αΔW x‖ / ‖W x‖ on the window's inputs, averaged over the three
projections and the layers. One seed, notebook 11's `cpu` key–value batches. Writes
experiments/results/hybrid_width_check.json.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_width_check.py
"""
import json

import torch

from _common import commit, parser, result_path
from dreamstate.config import load_profile
from dreamstate.hybrid import MATS, HybridConfig, HybridRWKV7
from dreamstate.rwkv7 import RWKV7Config, next_token_nll
from hybrid_kv_check import kv_batches


def grad_norm(params) -> float:
    return float(torch.sqrt(sum(p.grad.pow(2).sum() for p in params if p.grad is not None)))


def diagnose(P, n_embd: int, lr: float, batches: int = 4, after: tuple = (0, 20, 100, 300)) -> dict:
    "The measurements below at each step count in `after` (one model trained on, notebook 11's batches and loss)."
    import tempfile
    from dreamstate.diffusion import Diffusion
    from dreamstate.hybrid import hybrid_loss
    from dreamstate.train import TrainConfig, train
    core = RWKV7Config(vocab_size=256, n_layer=P.hyb_n_layer, n_embd=n_embd, head_size=P.hyb_head_size)
    hc = HybridConfig(rank=P.hyb_rank, ctx_dim=P.hyb_ctx_dim, ctx_depth=P.hyb_ctx_depth, ctx_heads=P.hyb_ctx_heads,
                      max_ctx=1024, alpha0=P.hyb_alpha0, head_init=P.hyb_head_init)
    m = HybridRWKV7(core, hc, seed=P.seed)
    diff, g = Diffusion(prediction=P.hyb_diff_prediction), torch.Generator()
    def loss_fn(model, b):
        g.manual_seed(int(b[2].sum())); return hybrid_loss(model, b, diff, generator=g)
    out = {}
    with tempfile.TemporaryDirectory() as d:
        for n in after:
            if n: train(m, kv_batches(P, P.seed), loss_fn, TrainConfig(steps=P.hyb_kv_steps, lr=lr, warmup=P.hyb_warmup,
                                                                          ckpt_every=10, log_every=10**9, seed=P.seed),
                        d, progress=False, stop_after=n)          # notebook 11's schedule, stopped (and resumed) at n
            out[f"step {n}"] = measure(P, m, batches)
            out[f"step {n}"]["mean_abs_alpha"] = float(m.alpha.abs().mean())
    return out


def measure(P, m, batches: int) -> dict:
    rows = []
    for i in range(batches):
        ctx, mask, win = kv_batches(P, P.seed)(i)
        m.zero_grad(set_to_none=True)
        s = m.coefficients(m.encode(ctx, mask))
        logits = m(ctx, mask, win[:, :-1], s=s).logits
        next_token_nll(logits, win[:, 1:]).backward()
        with torch.no_grad():                       # ‖αΔW x‖ / ‖W x‖ on the window's embeddings after ln1 of layer 0
            x = m.core.blocks[0].ln1(m.core.blocks[0].ln0(m.core.emb(win[:, :-1])))
            rel = []
            for j, name in enumerate(MATS):
                W = getattr(m.core.blocks[0].att, name).weight
                d = ((x @ m.V[0, j]) @ (m.alpha[0, j] * s[:, 0, j]).transpose(1, 2)) @ m.U[0, j].T
                rel.append(float(d.norm() / (x @ W.T).norm()))
        rows.append({"grad_encoder": grad_norm(m.encoder.parameters()), "grad_head": grad_norm(m.head.parameters()),
                     "grad_UV": grad_norm([m.U, m.V]), "grad_core": grad_norm(m.core.parameters()),
                     "rel_update_layer0": sum(rel) / len(rel)})
    out = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
    out["grad_encoder_over_core"] = out["grad_encoder"] / out["grad_core"]
    return out


def main():
    a = parser(__doc__).parse_args()
    torch.set_num_threads(1)
    P = load_profile(a.profile)
    res = {"_setup": {"profile": a.profile, "commit": commit(), "seed": P.seed, "batches": 4,
                      "note": "BlinkDL's initialisation zeros the time-mix output projection, so at step 0 no gradient reaches ΔW"}}
    for C, lr in ((64, P.hyb_lr), (128, P.hyb_lr), (128, 1e-3)):
        res[f"n_embd {C}, lr {lr:g}"] = diagnose(P, C, lr)
        print(C, lr, res[f"n_embd {C}, lr {lr:g}"], flush=True)
    out = result_path(a, "hybrid_width_check")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
