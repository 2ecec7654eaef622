"""CPU one-token decoding: dreamstate's RWKV-7 vs BlinkDL's `rwkv` package on one checkpoint.

Writes a random-weight RWKV-7 (default L=6, C=512, N=64, World vocabulary) in BlinkDL layout, loads
it in both implementations in this process, and times decoding: `--steps` tokens fed one at a time
from the zero state, each step returning the next-token logits `[B,V]` and the new state, fp32.

* batch 1: ours steps a `[1]` batch; the package runs `forward([token], state)`.
* batch 16: ours steps all 16 sequences as one `[16]` batch (how `generate` and notebook 09 sample);
  the package has no batched state, so its 16 states are stepped in turn, one `forward` each.

Ours is timed by each path that exists: `forward` (`model(tokens[:, None], state)`, the sequence
machinery at T = 1) and `step` (`model.step(tokens, state)`, where the model has it). The
implementations are timed in alternation (package, ours, …) in one process, `--pairs` times after a
warm-up; the JSON gives the median tokens/s of each and the median and range of the per-pair ratios
(package time / our time: above 1 is faster than the package). Alongside, `matrices` times the
step's matrix products alone (every weight matrix of the package's model, `[B,in] @ [in,out]` in its
transposed layout, the head included): each token must read all of them, so package time /
`matrices` time bounds what any exact fp32 step could reach against the package. Before timing, the two are checked
to agree: the same `--check-steps` tokens fed to both, the last logits' max |difference| relative to
max |package logits|, per batch element.

    OMP_NUM_THREADS=1 .venv/bin/python kernels/bench_decode_cpu.py [--threads 1 --pairs 9 --steps 32]

Writes kernels/results/decode-cpu-<date>.json.
"""
import argparse, datetime, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

os.environ["RWKV_V7_ON"] = "1"; os.environ["RWKV_CUDA_ON"] = "0"; os.environ.setdefault("RWKV_JIT_ON", "1")
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreamstate.rwkv7 import RWKV7, RWKVState  # noqa: E402
sys.path.insert(0, str(ROOT / "kernels"))
from _bench_common import add_model_args, random_model  # noqa: E402


def ours_paths(model):
    "name → fn(tokens [B], state) → (logits [B,V], state) for every one-token path the model has."
    paths = {"forward": lambda t, s: (lambda lo, st: (lo[:, -1], st))(*model(t[:, None], s))}
    if hasattr(model, "step"): paths["step"] = lambda t, s: model.step(t, s)
    return paths


def run_ours(fn, toks, state):
    "toks [B,T]: feed T tokens one at a time from `state`; returns the last logits [B,V] and the state."
    for t in range(toks.shape[1]):
        logits, state = fn(toks[:, t], state)
    return logits, state


def run_ref(ref, toks):
    "The package: each row of toks [B,T] through its own state, rows in turn; last logits [B,V]."
    out = []
    for row in toks.tolist():
        state = None
        for tok in row:
            logits, state = ref.forward([tok], state)
        out.append(logits)
    return torch.stack(out)


def matrix_products(ref, B):
    "fn() doing one step's weight-matrix products alone, on the package's own (transposed) weights."
    mats = [m for n, m in ref.z.items() if m.dim() == 2 and n != "emb.weight" and m.numel() > 0]
    xs = {m.shape[0]: torch.randn(B, m.shape[0]) for m in mats}
    return lambda: [xs[m.shape[0]] @ m for m in mats]


def rel_err(ours, ref):
    "Per batch element: max |ours - ref| / max |ref|."
    return ((ours - ref).abs().amax(-1) / ref.abs().amax(-1)).tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--steps", type=int, default=32, help="tokens decoded per timed run")
    ap.add_argument("--pairs", type=int, default=9, help="alternated timings per implementation (≥ 7)")
    ap.add_argument("--check-steps", type=int, default=64)
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'machine shared with a 1-thread job')")
    ap.add_argument("--tag", default="", help="appended to the file name (e.g. a second shape)")
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    model = random_model(a)
    cfg = model.cfg
    with tempfile.TemporaryDirectory() as d:
        model.save(f"{d}/bench.pth")
        import rwkv.model
        ref = rwkv.model.RWKV(model=f"{d}/bench", strategy="cpu fp32")
        ours = RWKV7.load(f"{d}/bench.pth").eval()
    paths = ours_paths(ours)
    res = {"benchmark": "decode_cpu", "date": datetime.date.today().isoformat(),
           "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})",
           "threads": torch.get_num_threads(), "note": a.note, "torch": torch.__version__,
           "shape": {"L": a.layers, "C": a.embd, "N": a.head_size, "V": a.vocab}, "dtype": "float32",
           "baseline": "rwkv package RWKV_x070 forward([token], state), strategy 'cpu fp32' (RWKV_JIT_ON=1); "
                       "at batch B > 1 its B states are stepped in turn",
           "steps_per_run": a.steps, "pairs": a.pairs, "check_steps": a.check_steps, "results": []}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for B in a.batches:
            check = torch.randint(1, a.vocab, (B, a.check_steps), generator=g)
            ref_logits = run_ref(ref, check)
            errs = {n: max(rel_err(run_ours(fn, check, None if n == "forward" else RWKVState.zeros(cfg, B))[0], ref_logits))
                    for n, fn in paths.items()}
            toks = torch.randint(1, a.vocab, (B, a.steps), generator=g)
            mm = matrix_products(ref, B)
            impls = {"rwkv": lambda: run_ref(ref, toks),
                     **{n: (lambda fn=fn: run_ours(fn, toks, RWKVState.zeros(cfg, B))) for n, fn in paths.items()},
                     "matrices": lambda: [mm() for _ in range(a.steps)]}
            for fn in impls.values(): fn()                      # warm-up (the package's TorchScript profiles its first calls)
            times = {n: [] for n in impls}
            for _ in range(a.pairs):
                for n, fn in impls.items():
                    t0 = time.perf_counter(); fn(); times[n].append(time.perf_counter() - t0)
            row = {"batch": B, "rwkv_tokens_per_s": B * a.steps / statistics.median(times["rwkv"])}
            for n in paths:
                ratios = [tr / to for tr, to in zip(times["rwkv"], times[n])]
                row[n] = {"tokens_per_s": B * a.steps / statistics.median(times[n]), "ratio_median": statistics.median(ratios),
                          "ratio_min": min(ratios), "ratio_max": max(ratios), "max_rel_err_logits": errs[n]}
            row["ms_per_step"] = {n: 1e3 * statistics.median(ts) / a.steps for n, ts in times.items()}
            row["rwkv_over_matrices"] = statistics.median([tr / tm for tr, tm in zip(times["rwkv"], times["matrices"])])
            res["results"].append(row)
            print(json.dumps(row, indent=1), flush=True)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / f"decode-cpu-{res['date']}{a.tag}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
