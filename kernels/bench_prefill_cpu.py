"""CPU prefill throughput: dreamstate's RWKV-7 vs BlinkDL's `rwkv` package on one checkpoint.

Writes a random-weight RWKV-7 (default L=6, C=512, N=64, World vocabulary) in BlinkDL layout,
loads it in both implementations in this process, and times prefilling T tokens from the zero
state (last-position logits only, as the package's prefill does), fp32 on the CPU. The two are
timed in alternation (package, ours, …) `--pairs` times after a warm-up; the JSON gives the median
tokens/s of each and the median and range of the per-pair ratios (package time / our time).
`--profile` adds our own forward's top operations by self time (torch.profiler, one prefill).

    OMP_NUM_THREADS=1 .venv/bin/python kernels/bench_prefill_cpu.py [--threads 1 --pairs 7 --profile]

Prints tokens/s of each and the ratio, checks the two agree, and writes
kernels/results/prefill-cpu-<date>.json.
"""
import argparse, datetime, json, os, platform, statistics, sys, tempfile, time
from pathlib import Path

os.environ["RWKV_V7_ON"] = "1"; os.environ["RWKV_CUDA_ON"] = "0"; os.environ.setdefault("RWKV_JIT_ON", "1")
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreamstate.rwkv7 import RWKV7  # noqa: E402
sys.path.insert(0, str(ROOT / "kernels"))
from _bench_common import add_model_args, random_model  # noqa: E402


def alternate(fa, fb, pairs):
    "Seconds of `fa` and `fb`, timed in alternation after one warm-up call each."
    fa(); fb()
    ta, tb = [], []
    for _ in range(pairs):
        t0 = time.perf_counter(); fa(); ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); fb(); tb.append(time.perf_counter() - t0)
    return ta, tb


def top_ops(fn, n=15):
    "Top `n` operations of one call of `fn` by self CPU time: name, self ms, calls."
    from torch.profiler import profile, ProfilerActivity
    with profile(activities=[ProfilerActivity.CPU]) as prof: fn()
    ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in ev)
    return [{"op": e.key, "self_ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total, "calls": e.count}
            for e in ev[:n]]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_args(ap)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--pairs", type=int, default=7, help="alternated timings per implementation (≥ 7)")
    ap.add_argument("--profile", action="store_true", help="also record our forward's top operations")
    ap.add_argument("--note", default="", help="free text stored in the JSON (e.g. 'machine shared with a 1-thread job')")
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    model = random_model(a)
    cfg = model.cfg
    ids = torch.randint(1, a.vocab, (a.tokens,))
    with tempfile.TemporaryDirectory() as d:
        model.save(f"{d}/bench.pth")
        import rwkv.model
        ref = rwkv.model.RWKV(model=f"{d}/bench", strategy="cpu fp32")
        ours = RWKV7.load(f"{d}/bench.pth").eval()
    with torch.no_grad():
        ts_ref, ts_ours = alternate(lambda: ref.forward(ids.tolist(), None), lambda: ours(ids[None], last_only=True), a.pairs)
        ratios = [r / o for r, o in zip(ts_ref, ts_ours)]
        t_ref, t_ours = statistics.median(ts_ref), statistics.median(ts_ours)
        ops = top_ops(lambda: ours(ids[None], last_only=True)) if a.profile else None
        ref_logits, _ = ref.forward(ids.tolist(), None)
        our_logits, _ = ours(ids[None], last_only=True)
    err = float((our_logits[0, -1] - ref_logits).abs().max() / ref_logits.abs().max())
    res = {"benchmark": "prefill_cpu", "date": datetime.date.today().isoformat(),
           "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})",
           "threads": torch.get_num_threads(), "note": a.note, "torch": torch.__version__, "shape": {"L": a.layers, "C": a.embd, "N": a.head_size, "V": a.vocab, "T": a.tokens},
           "dtype": "float32", "baseline": "rwkv package 0.8.x RWKV_x070, strategy 'cpu fp32' (RWKV_JIT_ON=1)",
           "rwkv_package_tokens_per_s": a.tokens / t_ref, "dreamstate_tokens_per_s": a.tokens / t_ours,
           "ratio_dreamstate_over_rwkv": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
           "pairs": a.pairs, "max_rel_err_last_logits": err}
    if ops: res["dreamstate_top_ops"] = ops
    print(json.dumps(res, indent=1))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / f"prefill-cpu-{res['date']}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
