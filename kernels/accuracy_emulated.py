"""Accuracy of the chunked Triton form with TF32 matrix products, emulated on the CPU.

    python kernels/accuracy_emulated.py            # (B,T,H,N) = (1,4096,1,64), bf16 inputs
    python kernels/accuracy_emulated.py --T 512    # quicker

On CUDA, `tl.dot` on float32 tiles with input_precision="tf32" runs on tensor cores that read
only the top 10 mantissa bits of each operand: the PTX Triton emits has no rounding instruction
before the MMA (`kernels/compile_check.py` counts them), so the low bits are dropped. Triton's
CPU interpreter computes every `tl.dot` in full float32 whatever the precision asked for. This
script patches the interpreter's dot so that it does what the GPU does to the operands —
"tf32": truncate both to 10 mantissa bits; "tf32x3": split each operand into a truncated high
part and a truncated remainder and add the three cross products that matter (Triton's TF32x3) —
and reports the bf16 accuracy measure of `bench.py` (RMS error / RMS of the float64 reference,
same bf16 inputs and cotangents) for y, the final state and all seven gradients, next to the
exact float32 products ("ieee"). It is an emulation: the GPU measurement is `bench.py`'s error
phase. Writes kernels/results/emulated-accuracy-<date>.json.
"""
import argparse, datetime, json, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "kernels"))
import dreamstate.wkv_triton as wt  # noqa: E402  (its kernel modules switch TRITON_INTERPRET=1 on without a GPU)
from dreamstate.wkv_common import interpreted  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import triton.runtime.interpreter as interp  # noqa: E402
from bench import errors, reference, rwkv_inputs  # noqa: E402

_dot = interp.InterpreterBuilder.create_dot
MODE = {"value": "ieee"}


def _trunc(x):
    "float32 → the value a TF32 tensor core reads: the low 13 mantissa bits cleared."
    return (x.view(np.uint32) & np.uint32(0xFFFFE000)).view(np.float32)


def _emulated_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
    A, B = a.data, b.data
    if A.dtype != np.float32 or MODE["value"] == "ieee":
        return _dot(self, a, b, d, input_precision, max_num_imprecise_acc)
    ah, bh = _trunc(A), _trunc(B)
    out = np.matmul(ah, bh)
    if MODE["value"] == "tf32x3":
        out = out + np.matmul(ah, _trunc(B - bh)) + np.matmul(_trunc(A - ah), bh)
    return interp.TensorHandle(out.astype(np.float32) + d.data, d.dtype.scalar)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", type=int, default=4096)
    ap.add_argument("--H", type=int, default=1)
    ap.add_argument("--N", type=int, default=64)
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    if not interpreted():
        sys.exit("this emulation needs Triton's interpreter (TRITON_INTERPRET=1); on a GPU run bench.py instead")
    interp.InterpreterBuilder.create_dot = _emulated_dot
    B, T, H, N = 1, a.T, a.H, a.N
    xs = rwkv_inputs(B, T, H, N, torch.bfloat16, "cpu", seed=3)
    s0 = 0.1 * torch.randn(B, H, N, N, generator=torch.Generator().manual_seed(2))
    ref = reference(xs, s0, "cpu")
    rows = []
    for mode in ("ieee", "tf32", "tf32x3"):
        MODE["value"] = mode
        t0 = time.perf_counter()
        e = errors(lambda r, w, k, v, a_, b, s: wt.wkv7_triton(r, w, k, v, a_, b, s0=s, form="chunked", precision=mode),
                   xs, s0, ref)
        rows.append({"precision": mode, "emulated": mode != "ieee", "errors": e,
                     "max_rms_rel": max(v["rms_rel"] for v in e.values()), "seconds": round(time.perf_counter() - t0, 1)})
        print(f"{mode:<7} max RMS rel {rows[-1]['max_rms_rel']:.2e}  "
              + " ".join(f"{k}={v['rms_rel']:.1e}" for k, v in e.items()), flush=True)
    res = {"what": "chunked Triton form, bf16 inputs, dot products emulated in the interpreter",
           "shape": [B, T, H, N], "date": datetime.date.today().isoformat(), "rows": rows}
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    path = out / f"emulated-accuracy-{res['date']}.json"
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
