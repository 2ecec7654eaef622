"""Can a distilled state of generator width d answer the 64-key task at all? Notebook 11's `StateGenerator` maps its
context to one pooled, normalised vector z of width `hyb_gen_dim` and the state to an affine function of z, so every
state it can generate lies in one affine subspace of dimension ≤ d. The best such subspace for the distillation loss
(each state part's squared error over its mean square) is the principal one of the teacher's own states, weighted
the same way. This projects the states that row (b) of notebook 11 (the prefix model, seed `P.seed`) reaches after
its contexts onto the mean plus the top k principal directions of its states on training contexts, for k from 16 to
all, and measures on notebook 11's evaluation examples (i) the distillation loss of the projection, the floor of
any width-k generator's, and (ii) the answer accuracy of the frozen core reading the projected state: the ceiling of
a width-k generator whose z were perfect. No training: the teachers are notebook 11's checkpoints in build/<profile>/hybrid/
(the 8-key task, `hyb_kv_steps`; the 64-key task, `hyb_scale_steps`). Writes experiments/results/hybrid_state_rank_check.json.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_state_rank_check.py                  # ≈ 2 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_state_rank_check.py --profile smoke --fit 64
"""
import csv, random, time

import torch

from _common import parser, result_path, write_result
from dreamstate.checkpoint import load_checkpoint
from dreamstate.config import load_profile
from dreamstate.data import ByteTokenizer
from dreamstate.hybrid import KV_KEYS, KV_VALUES, kv_example, kv_vocab, tokenize_kv
from dreamstate.rwkv7 import RWKV7, RWKVState
from hybrid_scale_check import prefix_cfg, read


def teacher(P, task: str, steps: int) -> RWKV7:
    "Notebook 11's row (b) of `task` and seed `P.seed`: the run folder whose last checkpoint is at `steps`."
    runs = sorted((P.build_dir / "hybrid" / task / "b").glob(f"seed{P.seed}-*"))
    for d in runs:
        ck = load_checkpoint(d / "last.pt", "row (b) checkpoint")
        if ck["step"] == steps:
            m = RWKV7(prefix_cfg(P)); m.load_state_dict(ck["model"]); return m.eval()
    raise SystemExit(f"no row (b) of task {task!r}, seed {P.seed}, at {steps} steps under {P.build_dir / 'hybrid' / task / 'b'}: "
                     f"run make reproduce NB=11_hybrid_eval (found {[d.name for d in runs]})")


@torch.no_grad()
def states(m: RWKV7, examples) -> RWKVState:
    "The teacher's state after each example's context (one number of facts per call: equal lengths in bytes)."
    return read(m, torch.tensor([c for c, _, _ in examples]))


def flat(S: RWKVState, scale: torch.Tensor) -> torch.Tensor:
    "[B, D]: WKV, att shift, ffn shift, each divided by the square root of its mean square (the distillation loss's weights)."
    B = S.wkv.shape[1]
    return torch.cat([(x.transpose(0, 1).reshape(B, -1) / s.sqrt()) for x, s in zip((S.wkv, S.att_shift, S.ffn_shift), scale)], 1).double()


def unflat(X: torch.Tensor, like: RWKVState, scale: torch.Tensor) -> RWKVState:
    parts, i = [], 0
    for x, s in zip((like.wkv, like.att_shift, like.ffn_shift), scale):
        n = x[:, 0].numel()
        shape = (X.shape[0], x.shape[0], *x.shape[2:])
        parts.append((X[:, i:i + n].float() * s.sqrt()).view(shape).transpose(0, 1).contiguous()); i += n
    return RWKVState(*parts)


def main():
    ap = parser(__doc__)
    ap.add_argument("--fit", type=int, default=4096, help="training contexts whose states give the principal directions")
    ap.add_argument("--ks", default="16,32,64,128,256,512", help="subspace dimensions (all directions are always added)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    P = load_profile(a.profile)
    tok, KQ = ByteTokenizer(), P.hyb_kv_questions
    SK = kv_vocab(P.hyb_scale_keys, seed=1); SV = kv_vocab(P.hyb_scale_keys, seed=2, exclude=SK)
    tasks = {   # name → (build folder, teacher steps, keys, values, training numbers of facts, evaluated numbers, streams)
        "8 keys": ("kv", P.hyb_kv_steps, KV_KEYS, KV_VALUES, list(range(P.hyb_kv_min_facts, P.hyb_kv_max_facts + 1)),
                   [P.hyb_kv_max_facts], "kv-train", "kv-eval"),
        f"{len(SK)} keys": ("kv64", P.hyb_scale_steps, SK, SV, [n for n in P.hyb_scale_facts if KQ <= n <= len(SK)],
                            [n for n in P.hyb_scale_facts if KQ <= n <= len(SK)], "kv64-train", "kv-eval-large"),
    }
    out = {}
    for name, (folder, steps, keys, values, train_facts, eval_facts, tr_stream, ev_stream) in tasks.items():
        t0 = time.time()
        m = teacher(P, folder, steps)
        # training contexts: a stream of the task's own (not one training batch of notebook 11), every number of facts alike
        r = random.Random(f"{tr_stream}/rank-check/{P.seed}")
        fit = [RWKVState.cat([states(m, [tokenize_kv(*kv_example(r, n, KQ, keys, values), tok) for _ in range(64)])
                              for _ in range(max(1, a.fit // 64 // len(train_facts)))]) for n in train_facts]
        fit = RWKVState.cat(fit)
        scale = torch.stack([x.float().pow(2).mean() for x in (fit.wkv, fit.att_shift, fit.ffn_shift)])
        X = flat(fit, scale)
        mu = X.mean(0)
        _, sv, Vt = torch.linalg.svd(X - mu, full_matrices=False)
        D = X.shape[1]
        ks = sorted({k for k in (int(x) for x in a.ks.split(",")) if k < min(D, len(X))} | {min(D, len(X))})
        rows = []
        for n in eval_facts:
            r = random.Random(f"{ev_stream}/{n}")          # notebook 11's evaluation examples of this task
            ex = [tokenize_kv(*kv_example(r, n, KQ, keys, values), tok) for _ in range(P.hyb_kv_eval)]
            S = states(m, ex)
            Y = flat(S, scale)
            win = torch.tensor([w for _, w, _ in ex])
            acc_of = lambda St: float((m(win[:, :-1], St)[0].argmax(-1) == win[:, 1:]).view(len(ex), -1, 8)[:, :, 4:7].all(-1).float().mean())
            with torch.no_grad(): teacher_acc = acc_of(S)      # the known answer: the full-rank row must give it
            for k in ks:
                V = Vt[:k]
                Yk = mu + ((Y - mu) @ V.T) @ V
                Sk = unflat(Yk, S, scale)
                err = [float(((p - q).float().pow(2).mean()) / s) for p, q, s in
                       zip((Sk.wkv, Sk.att_shift, Sk.ffn_shift), (S.wkv, S.att_shift, S.ffn_shift), scale)]
                with torch.no_grad(): acc = acc_of(Sk)
                rows.append({"facts": n, "k": k, "distill_loss": sum(err), "wkv": err[0], "att_shift": err[1], "ffn_shift": err[2], "acc": acc,
                             "teacher_acc": teacher_acc})
                print(name, rows[-1], flush=True)
        var = (sv ** 2) / (sv ** 2).sum()
        out[name] = {"teacher": f"hybrid/{folder}/b seed {P.seed}, {steps} steps", "fit_states": len(X), "dims": D,
                     "scale": dict(zip(("wkv", "att_shift", "ffn_shift"), scale.tolist())),     # each part's mean square: the loss's weights
                     "variance_in_top_k": {k: float(var[:k].sum()) for k in ks}, "rows": rows, "seconds": round(time.time() - t0, 1)}
    write_result(result_path(a, "hybrid_state_rank_check"), a.profile,
                 {"gen_dim": P.hyb_gen_dim, "eval_examples": P.hyb_kv_eval, "tasks": out})


if __name__ == "__main__":
    main()
