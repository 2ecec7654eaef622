"""Can a distilled state of generator width d answer the 64-key task at all? Notebook 11's `StateGenerator` maps its
context to one pooled, normalised vector z of width `hyb_gen_dim` and the state to an affine function of z, so every
state it can generate lies in one affine subspace of dimension ≤ d. The best such subspace for the distillation loss
(each state part's squared error over its mean square) is the principal one of the teacher's own states, weighted
the same way (Eckart–Young in coordinates scaled so that the squared norm is the loss). This projects the states
that row (b) of notebook 11 (the prefix model, seed `P.seed`) reaches after its contexts onto the mean plus the top k
principal directions of its states on training contexts (a stream of the task's own), for k from 16 to all (and
`hyb_gen_dim`), and measures on notebook 11's evaluation examples (i) the distillation loss of the projection, which
estimates the least loss of any width-k generator on this distribution (on the contexts it was fitted on it is that
least loss exactly; on held-out examples a subspace fitted to them does a little better, so `distill_loss_heldout_fit`,
the projection onto the principal directions of the evaluation states of every size pooled, is the strict floor of
the mean over sizes), and (ii) the answer accuracy of the frozen core reading the projected state: the accuracy of
the loss-optimal width-k states, not a ceiling on accuracy (other points of the subspace may answer more). No
training: the teachers are notebook 11's checkpoints in build/<profile>/hybrid/ (the 8-key task, `hyb_kv_steps`; the
64-key task, `hyb_scale_steps`), recorded by their SHA-256. Writes experiments/results/hybrid_state_rank_check.json.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_state_rank_check.py                  # ≈ 2 min on 1 core
    OMP_NUM_THREADS=1 .venv/bin/python experiments/hybrid_state_rank_check.py --profile smoke --fit 64
"""
import random, time

import torch

from _common import parser, result_path, write_result
from dreamstate.checkpoint import load_checkpoint
from dreamstate.config import checkpoint_sha256, load_profile
from dreamstate.data import ByteTokenizer
from dreamstate.hybrid import KV_KEYS, KV_VALUES, kv_example, kv_vocab, tokenize_kv
from dreamstate.rwkv7 import RWKV7, RWKVState
from hybrid_scale_check import prefix_cfg, read

PARTS = ("wkv", "att_shift", "ffn_shift")


def teacher(P, task: str, steps: int) -> tuple[RWKV7, str]:
    "Notebook 11's row (b) of `task` and seed `P.seed` (the run folder whose last checkpoint is at `steps`), and that file's SHA-256."
    runs = sorted((P.build_dir / "hybrid" / task / "b").glob(f"seed{P.seed}-*"))
    found = [d for d in runs if load_checkpoint(d / "last.pt", "row (b) checkpoint")["step"] == steps]
    if len(found) != 1:
        raise SystemExit(f"{len(found)} runs of row (b), task {task!r}, seed {P.seed}, at {steps} steps under "
                         f"{P.build_dir / 'hybrid' / task / 'b'} ({[d.name for d in runs]}): run make reproduce NB=11_hybrid_eval")
    m = RWKV7(prefix_cfg(P)); m.load_state_dict(load_checkpoint(found[0] / "last.pt")["model"])
    return m.eval(), checkpoint_sha256(found[0] / "last.pt")


@torch.no_grad()
def states(m: RWKV7, examples) -> RWKVState:
    "The teacher's state after each example's context (one number of facts per call: equal lengths in bytes)."
    return read(m, torch.tensor([c for c, _, _ in examples]))


def loss_weights(S: RWKVState) -> tuple[torch.Tensor, torch.Tensor]:
    """Each part's mean square over `S` (the distillation loss's `scale`), and per coordinate of `RWKVState.flatten` the factor
    1/√(elements of its part per example × its part's mean square): in those coordinates the squared norm of a difference is
    the loss, Σ_parts mean (Ŝ − S)² / mean S²."""
    scale = torch.stack([getattr(S, n).float().pow(2).mean() for n in PARTS])
    sizes = [getattr(S, n)[:, 0].numel() for n in PARTS]
    w = torch.cat([torch.full((n,), float(1 / (n * s).sqrt())) for n, s in zip(sizes, scale)]).double()
    return scale, w


def principal(X: torch.Tensor):
    "Mean and principal directions (rows) of the rows of X."
    mu = X.mean(0)
    return mu, torch.linalg.svd(X - mu, full_matrices=False)[2]


def project(X, mu, V, k): return mu + ((X - mu) @ V[:k].T) @ V[:k]


@torch.no_grad()
def accuracy(m: RWKV7, ex, S: RWKVState) -> float:
    "Answer exact match (a question is right when all its answer targets are the argmax), as notebook 11's `evaluate`."
    win, qid = torch.tensor([w for _, w, _ in ex]), torch.tensor([q for _, _, q in ex])
    hit = m(win[:, :-1], S)[0].argmax(-1) == win[:, 1:]
    return float(torch.stack([(hit | (qid != q)).all(1) for q in range(1, int(qid.max()) + 1)], 1).float().mean())


def main():
    ap = parser(__doc__)
    ap.add_argument("--fit", type=int, default=4096, help="training contexts whose states give the principal directions")
    ap.add_argument("--ks", default="16,32,64,128,256,512", help="subspace dimensions (hyb_gen_dim and all directions are always added)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    P = load_profile(a.profile)
    tok, KQ = ByteTokenizer(), P.hyb_kv_questions
    SK = kv_vocab(P.hyb_scale_keys, seed=1); SV = kv_vocab(P.hyb_scale_keys, seed=2, exclude=SK)
    SF = [n for n in P.hyb_scale_facts if KQ <= n <= len(SK)]
    tasks = {   # (name, build folder, teacher steps, keys, values, training numbers of facts, evaluated numbers, streams)
        "small": (f"{len(KV_KEYS)} keys", "kv", P.hyb_kv_steps, KV_KEYS, KV_VALUES,
                  list(range(P.hyb_kv_min_facts, P.hyb_kv_max_facts + 1)), [P.hyb_kv_max_facts], "kv-train", "kv-eval"),
        "large": (f"{len(SK)} keys", "kv64", P.hyb_scale_steps, SK, SV, SF, SF, "kv64-train", "kv-eval-large"),
    }
    out = {}
    for task, (name, folder, steps, keys, values, train_facts, eval_facts, tr_stream, ev_stream) in tasks.items():
        t0 = time.time()
        m, sha = teacher(P, folder, steps)
        r = random.Random(f"{tr_stream}/rank-check/{P.seed}")      # a stream of the task's own, every number of facts alike
        per = max(1, a.fit // 64 // len(train_facts))
        fit = RWKVState.cat([states(m, [tokenize_kv(*kv_example(r, n, KQ, keys, values), tok) for _ in range(64)])
                             for n in train_facts for _ in range(per)])
        scale, w = loss_weights(fit)
        X = fit.flatten().double() * w
        mu, V = principal(X)
        D, N = X.shape[1], len(X)
        if N < D: print(f"{name}: {N} fit states for {D} dimensions: the 'all' row is not the identity", flush=True)
        ks = sorted({k for k in (int(x) for x in a.ks.split(",")) if k < min(D, N)} | {min(P.hyb_gen_dim, D, N), min(D, N)})
        # the evaluation examples of every size, and a subspace fitted to them (pooled): the strict floor of the mean over sizes
        ex_by = {}
        for n in eval_facts:
            re_ = random.Random(f"{ev_stream}/{n}")          # notebook 11's evaluation examples of this task
            ex_by[n] = [tokenize_kv(*kv_example(re_, n, KQ, keys, values), tok) for _ in range(P.hyb_kv_eval)]
        S_by = {n: states(m, ex) for n, ex in ex_by.items()}
        Y_by = {n: S.flatten().double() * w for n, S in S_by.items()}
        mu_e, V_e = principal(torch.cat(list(Y_by.values())))
        rows = []
        for n, ex in ex_by.items():
            S, Y = S_by[n], Y_by[n]
            teacher_acc = accuracy(m, ex, S)
            for k in ks:
                Yk = project(Y, mu, V, k)
                Sk = RWKVState.unflatten((Yk / w).float(), m.cfg)
                d2 = ((Yk - Y) ** 2)
                parts = torch.split(d2, [getattr(S, p)[:, 0].numel() for p in PARTS], 1)
                rows.append({"facts": n, "k": k, "distill_loss": float(d2.sum(1).mean()),
                             **{p: float(x.sum(1).mean()) for p, x in zip(PARTS, parts)},
                             "distill_loss_heldout_fit": float(((project(Y, mu_e, V_e, k) - Y) ** 2).sum(1).mean()),
                             "acc": accuracy(m, ex, Sk), "teacher_acc": teacher_acc})
                print(name, rows[-1], flush=True)
        sv2 = torch.linalg.svdvals(X - mu) ** 2
        out[task] = {"name": name, "teacher": f"hybrid/{folder}/b seed {P.seed}, {steps} steps", "teacher_sha256": sha,
                     "fit_states": N, "dims": D, "scale": dict(zip(PARTS, scale.tolist())), "facts": eval_facts,
                     # the fit set's own floor, from the spectrum: the loss of the rank-k projection on the states it was fitted to
                     "fit_floor": {k: float(sv2[k:].sum() / N) for k in ks},
                     "variance_in_top_k": {k: float(sv2[:k].sum() / sv2.sum()) for k in ks}, "rows": rows, "seconds": round(time.time() - t0, 1)}
    write_result(result_path(a, "hybrid_state_rank_check"), a.profile,
                 {"gen_dim": P.hyb_gen_dim, "eval_examples": P.hyb_kv_eval, "tasks": out})


if __name__ == "__main__":
    main()
