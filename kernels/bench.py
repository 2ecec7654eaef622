"""WKV-7 kernel lab: speed and error of every implementation in one process.

    PYTHONPATH=. python kernels/bench.py            # CUDA: bf16, the four issue shapes
    PYTHONPATH=. python kernels/bench.py --quick    # small shapes (the CPU default)

On CUDA it times, for each (B,T,H,N): dreamstate's Triton kernel, the chunked PyTorch form, and
fla's `chunk_rwkv7` / `fused_recurrent_rwkv7` when fla is importable (fla takes `w` as the log
decay like us, `scale=1.0`, and keeps the state as [B,H,K,V], the transpose of ours). Forward and
forward+backward, median of repeated runs (CUDA events), tokens/s, effective GB/s (the bytes
each call must move at least: six inputs and the output, plus the gradients for fwd+bwd), the
ratio to fla's chunk kernel, and the error of each against the float32 sequential reference
(RMS relative to the reference's RMS and max relative to its max) for y, the final state and
every gradient. On the CPU it compares the torch paths only. Results go to
kernels/results/<device>-<date>.json.
"""
import argparse, datetime, json, math, os, platform, re, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dreamstate.wkv import wkv7_chunked, wkv7_sequential  # noqa: E402

SHAPES = [(8, 4096, 64, 64), (8, 4096, 32, 64), (1, 16384, 16, 64), (16, 1024, 12, 64)]
QUICK = [(1, 512, 4, 64), (2, 256, 2, 32)]


def rwkv_inputs(B, T, H, N, dtype, device, seed=0):
    "Inputs distributed like RWKV-7's: log decay in (-e^{-1/2}, 0), a = -k̂, b = k̂·α."
    g = torch.Generator(device="cpu").manual_seed(seed)
    rnd = lambda: torch.randn(B, T, H, N, generator=g)
    kk = F.normalize(rnd(), dim=-1)
    xs = [rnd(), -math.exp(-0.5) * torch.rand(B, T, H, N, generator=g), rnd() / N ** 0.5, rnd(), -kk,
          kk * torch.rand(B, T, H, N, generator=g)]
    return [x.to(device=device, dtype=dtype) for x in xs]


def implementations(device):
    impls = {"chunked_torch": lambda r, w, k, v, a, b, s0: wkv7_chunked(r, w, k, v, a, b, s0=s0)}
    if device == "cuda":
        from dreamstate.wkv_triton import wkv7_triton
        impls = {"dreamstate_triton": lambda r, w, k, v, a, b, s0: wkv7_triton(r, w, k, v, a, b, s0=s0), **impls}
        try:
            from fla.ops.rwkv7 import chunk_rwkv7, fused_recurrent_rwkv7

            def fla_wrap(fn):
                def call(r, w, k, v, a, b, s0):
                    h0 = s0.transpose(-1, -2).contiguous() if s0 is not None else None
                    y, sT = fn(r=r, w=w, k=k, v=v, a=a, b=b, scale=1.0, initial_state=h0, output_final_state=True)
                    return y, sT.transpose(-1, -2)
                return call
            impls["fla_chunk"] = fla_wrap(chunk_rwkv7)
            impls["fla_fused_recurrent"] = fla_wrap(fused_recurrent_rwkv7)
        except ImportError as e:
            print(f"fla not importable ({e}); comparing dreamstate only", file=sys.stderr)
    else:
        impls["sequential_torch"] = lambda r, w, k, v, a, b, s0: wkv7_sequential(r, w, k, v, a, b, s0=s0)
    return impls


def timeit(fn, device, repeats, warmup=2):
    for _ in range(warmup): fn()
    if device == "cuda":
        torch.cuda.synchronize()
        times = []
        for _ in range(repeats):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record(); fn(); e.record(); torch.cuda.synchronize(); times.append(s.elapsed_time(e))
    else:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter(); fn(); times.append(1e3 * (time.perf_counter() - t0))
    times.sort()
    return times[len(times) // 2]


def errors(impl, xs, s0, ref):
    "RMS-relative and max-relative error of y, s_T and all 7 gradients against `ref` (float64 on CPU)."
    xg = [x.detach().clone().requires_grad_() for x in xs]
    sg = s0.detach().clone().requires_grad_()
    y, sT = impl(*xg, sg)
    gy, gs = ref["gy"].to(y.device, y.dtype), ref["gs"].to(sT.device, sT.dtype)
    grads = torch.autograd.grad((y.float() * gy.float()).sum() + (sT.float() * gs.float()).sum(), xg + [sg])
    out = {}
    for name, a in zip(["y", "s_T", "dr", "dw", "dk", "dv", "da", "db", "ds0"], [y, sT, *grads]):
        b = ref[name]; a = a.detach().double().cpu()
        out[name] = {"rms_rel": float((a - b).pow(2).mean().sqrt() / b.pow(2).mean().sqrt()),
                     "max_rel": float((a - b).abs().max() / b.abs().max())}
    return out


def reference(xs, s0, device):
    "float32 sequential reference (float64 on the CPU), with fixed cotangents."
    dt = torch.float32 if device == "cuda" else torch.float64
    xr = [x.detach().to(dt).requires_grad_() for x in xs]
    sr = s0.detach().to(dt).requires_grad_()
    y, sT = wkv7_sequential(*xr, s0=sr)
    g = torch.Generator(device="cpu").manual_seed(1)
    gy = torch.randn(y.shape, generator=g).to(device, dt); gs = torch.randn(sT.shape, generator=g).to(device, dt)
    grads = torch.autograd.grad((y * gy).sum() + (sT * gs).sum(), xr + [sr])
    ref = {n: t.detach().double().cpu() for n, t in zip(["y", "s_T", "dr", "dw", "dk", "dv", "da", "db", "ds0"], [y, sT, *grads])}
    ref.update(gy=gy, gs=gs)
    return ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small shapes")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-errors", action="store_true", help="skip the (slow) reference comparison")
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    shapes = QUICK if (a.quick or device == "cpu") else SHAPES
    repeats = a.repeats or (20 if device == "cuda" else 3)
    dev_name = torch.cuda.get_device_name(0) if device == "cuda" else f"cpu-{platform.machine()}-{os.cpu_count()}cores"
    impls = implementations(device)
    rows = []
    for (B, T, H, N) in shapes:
        xs = rwkv_inputs(B, T, H, N, dtype, device)
        s0 = 0.1 * torch.randn(B, H, N, N, generator=torch.Generator().manual_seed(2)).to(device)
        ref = None if a.no_errors else reference(xs, s0, device)
        esz = torch.finfo(dtype).bits // 8
        io_fwd = 7 * B * T * H * N * esz + 2 * B * H * N * N * 4
        io_bwd = io_fwd + 7 * B * T * H * N * esz
        for name, impl in impls.items():
            row = {"impl": name, "B": B, "T": T, "H": H, "N": N, "dtype": str(dtype).split(".")[1]}
            try:
                xg = [x.clone().requires_grad_() for x in xs]
                with torch.no_grad():
                    row["fwd_ms"] = timeit(lambda: impl(*xs, s0), device, repeats)
                def fb():
                    y, sT = impl(*xg, s0)
                    (y.float().sum() + sT.sum()).backward()
                row["fwdbwd_ms"] = timeit(fb, device, repeats)
                row["fwd_tokens_per_s"] = B * T / (row["fwd_ms"] / 1e3)
                row["fwdbwd_tokens_per_s"] = B * T / (row["fwdbwd_ms"] / 1e3)
                row["fwd_GBps"] = io_fwd / (row["fwd_ms"] / 1e3) / 1e9
                row["fwdbwd_GBps"] = io_bwd / (row["fwdbwd_ms"] / 1e3) / 1e9
                if ref is not None: row["errors"] = errors(impl, xs, s0, ref)
            except Exception as e:  # record, keep measuring the others
                row["error"] = f"{type(e).__name__}: {str(e)[:300]}"
            rows.append(row)
            print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items() if k != "errors"}, flush=True)
        base = next((r for r in rows if r["impl"] == "fla_chunk" and (r["B"], r["T"], r["H"], r["N"]) == (B, T, H, N) and "fwd_ms" in r), None)
        if base:
            for r in rows:
                if (r["B"], r["T"], r["H"], r["N"]) == (B, T, H, N) and "fwd_ms" in r:
                    r["fwd_speedup_vs_fla_chunk"] = base["fwd_ms"] / r["fwd_ms"]
                    r["fwdbwd_speedup_vs_fla_chunk"] = base["fwdbwd_ms"] / r["fwdbwd_ms"]
    versions = {"torch": torch.__version__, "python": platform.python_version()}
    for p in ("triton", "fla"):
        try: versions[p] = __import__(p).__version__
        except Exception: versions[p] = None
    res = {"device": dev_name, "date": datetime.date.today().isoformat(), "versions": versions, "rows": rows}
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    path = out / f"{re.sub(r'[^A-Za-z0-9]+', '-', dev_name).strip('-')}-{res['date']}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
