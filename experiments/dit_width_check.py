"""Does a wider state DiT (hidden ≥ patch size² × channels) or per-coordinate normalisation fix the DiT's
low diversity? Trains a state DiT variant on a profile's state dataset (build/<profile>/states) and
measures the mean per-persona Fréchet distance and the within-persona variance ratio of its samples in
notebook 09's PCA space, EMA and raw weights (experiments/results/dit_width_check.json, one entry per
variant). Training checkpoints go under build/<profile>/experiments/dit_width/<build fingerprint>/ (a rerun on the same build resumes).

    OMP_NUM_THREADS=1 .venv/bin/python experiments/dit_width_check.py --norm channel --steps 800 --preset W3 --pred v
    OMP_NUM_THREADS=1 .venv/bin/python experiments/dit_width_check.py --norm coordinate --steps 800 --preset DiT-T/4 --pred v
    OMP_NUM_THREADS=1 .venv/bin/python experiments/dit_width_check.py --profile smoke --steps 2 --preset W2 --raw-only   # a tiny run
"""
import json, time

import torch

from _common import Setup, parser, result_path, work_dir, write_result
from dreamstate.diffusion import Diffusion
from dreamstate.dit import DIT_PRESETS, DiTConfig, StateDiT, build_state_dit, state_statistics
from dreamstate.train import TrainConfig, train

WIDE = {   # the wider variants tried here, beside the library's DIT_PRESETS (which this script leaves as they are)
    "W3": dict(hidden=256, depth=3, heads=4, patch_size=4),
    "W2": dict(hidden=256, depth=2, heads=4, patch_size=4),
}


def build(tr, preset: str, norm: str, ema_decay: float) -> StateDiT:
    "`build_state_dit` for a library preset; for a `WIDE` one the same model with that DiT configuration."
    if preset in DIT_PRESETS: return build_state_dit(tr, preset, norm, ema_decay)
    cfg = tr.cfg
    dcfg = DiTConfig(in_channels=cfg.n_layer * cfg.n_head, input_size=cfg.head_size, num_classes=len(tr.label_names), **WIDE[preset])
    m = StateDiT(dcfg, cfg, tr.label_names, "all", **state_statistics(tr, norm, "all"), ema_decay=ema_decay)
    m.clip.fill_(1.1 * float(m.to_image(tr.wkv).abs().max()))
    return m


def main():
    ap = parser(__doc__)
    ap.add_argument("--norm", required=True, choices=["channel", "coordinate"], help="state normalisation")
    ap.add_argument("--steps", type=int, required=True, help="training steps")
    ap.add_argument("--preset", required=True, choices=[*DIT_PRESETS, *WIDE], help="DiT size")
    ap.add_argument("--pred", required=True, help="the diffusion's prediction target (eps, x0, v)")
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--raw-only", action="store_true", help="evaluate only the raw (non-EMA) weights")
    a = ap.parse_args()
    S = Setup(a.profile)
    dit = build(S.tr, a.preset, a.norm, a.ema_decay)
    diffusion = Diffusion(S.P.dit_schedule, 1000, a.pred)
    X, Y = dit.to_image(S.tr.wkv), S.tr.label_ids(S.names)
    n_params = sum(p.numel() for p in dit.net.parameters())
    print(a.norm, a.preset, a.pred, a.steps, n_params, "params; clip", float(dit.clip), flush=True)

    def batch_fn(step):
        g = torch.Generator().manual_seed(1_000_003 + step)
        idx = torch.randint(0, len(X), (64,), generator=g)
        return X[idx], Y[idx], step

    def loss_fn(model, b):
        x, yy, step = b
        return diffusion.loss(model, x, yy, null_label=len(S.names), p_uncond=0.1, generator=torch.Generator().manual_seed(7919 + step)), {}

    t0 = time.time()
    tc = TrainConfig(steps=a.steps, lr=1e-3, warmup=100, weight_decay=0.0, ckpt_every=10**9, log_every=50, seed=0, min_lr_ratio=0.1)
    tag = f"{a.norm}_{a.preset.replace('/', '')}_{a.pred}_{a.steps}_{a.ema_decay}"
    train(dit, batch_fn, loss_fn, tc, work_dir(S.P, "dit_width", S.build) / f"run_{tag}", after_step=dit.update_ema)
    train_s = round(time.time() - t0)
    print("train s", train_s, flush=True)
    dit.eval()
    y = torch.tensor([S.names.index(p) for p in S.labels])

    def ev(net, guidance):
        g = torch.Generator().manual_seed(0)
        c = dit.net.cfg
        x = torch.randn(len(y), c.in_channels, c.input_size, c.input_size, generator=g)
        img = diffusion.ddim(net, x, y, steps=25, guidance=guidance, null_label=dit.null_label, generator=g, clip=float(dit.clip))
        return S.measure(dit.from_image(img).flatten(1).numpy())

    evals = [] if a.raw_only else [("ema", dit.ema, 2.0), ("ema", dit.ema, 1.0)]
    rows = []
    for weights, net, guidance in evals + [("raw", dit.net, 2.0)]:
        m = ev(net, guidance)
        rows.append({"weights": weights, "guidance": guidance, **m})
        print(f"{weights} g{guidance}: FD {m['fd']:.0f}  variance ratio {m['variance_ratio']:.3f}", flush=True)
    path = result_path(a, "dit_width_check")
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    runs[tag] = {"norm": a.norm, "preset": a.preset, "dit": WIDE.get(a.preset, DIT_PRESETS.get(a.preset)), "pred": a.pred,
                 "steps": a.steps, "ema_decay": a.ema_decay, "params": n_params, "train_seconds": train_s, "rows": rows, "build": S.build}
    write_result(path, a.profile, {"runs": runs})


if __name__ == "__main__":
    main()
