"""CPU prefill throughput: dreamstate's RWKV-7 vs BlinkDL's `rwkv` package on one checkpoint.

Writes a random-weight RWKV-7 (default L=6, C=512, N=64, World vocabulary) in BlinkDL layout,
loads it in both implementations in this process, and times prefilling T tokens from the zero
state (last-position logits only, as the package's prefill does), fp32 on the CPU.

    .venv/bin/python kernels/bench_prefill_cpu.py [--layers 6 --embd 512 --tokens 1024 --repeats 3]

Prints tokens/s of each and the ratio, checks the two agree, and writes
kernels/results/prefill-cpu-<date>.json.
"""
import argparse, datetime, json, os, platform, sys, tempfile, time
from pathlib import Path

os.environ["RWKV_V7_ON"] = "1"; os.environ["RWKV_CUDA_ON"] = "0"; os.environ.setdefault("RWKV_JIT_ON", "1")
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from dreamstate.rwkv7 import RWKV7, RWKV7Config  # noqa: E402


def best_of(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=6); ap.add_argument("--embd", type=int, default=512)
    ap.add_argument("--head-size", type=int, default=64); ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--tokens", type=int, default=1024); ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    torch.manual_seed(0)
    cfg = RWKV7Config(vocab_size=a.vocab, n_layer=a.layers, n_embd=a.embd, head_size=a.head_size)
    model = RWKV7(cfg).init_weights(seed=0)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.02 * torch.randn_like(p))
    ids = torch.randint(1, a.vocab, (a.tokens,))
    with tempfile.TemporaryDirectory() as d:
        model.save(f"{d}/bench.pth")
        import rwkv.model
        ref = rwkv.model.RWKV(model=f"{d}/bench", strategy="cpu fp32")
        ours = RWKV7.load(f"{d}/bench.pth").eval()
    with torch.no_grad():
        t_ref = best_of(lambda: ref.forward(ids.tolist(), None), a.repeats)
        t_ours = best_of(lambda: ours(ids[None], last_only=True), a.repeats)
        ref_logits, _ = ref.forward(ids.tolist(), None)
        our_logits, _ = ours(ids[None], last_only=True)
    err = float((our_logits[0, -1] - ref_logits).abs().max() / ref_logits.abs().max())
    res = {"benchmark": "prefill_cpu", "date": datetime.date.today().isoformat(),
           "device": f"cpu ({platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})",
           "torch": torch.__version__, "shape": {"L": a.layers, "C": a.embd, "N": a.head_size, "V": a.vocab, "T": a.tokens},
           "dtype": "float32", "baseline": "rwkv package 0.8.x RWKV_x070, strategy 'cpu fp32' (RWKV_JIT_ON=1)",
           "rwkv_package_tokens_per_s": a.tokens / t_ref, "dreamstate_tokens_per_s": a.tokens / t_ours,
           "ratio_dreamstate_over_rwkv": t_ref / t_ours, "max_rel_err_last_logits": err}
    print(json.dumps(res, indent=1))
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    (out / f"prefill-cpu-{res['date']}.json").write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
