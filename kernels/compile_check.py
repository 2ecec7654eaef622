"""Compile the Triton WKV-7 kernels for an NVIDIA GPU on a machine without one.

    python kernels/compile_check.py            # sm_90, every kernel, N in 16..128, three precisions
    python kernels/compile_check.py --quick    # N = 64, the default precision (what the test runs)

Triton compiles ahead of time for a named target (`GPUTarget("cuda", 90, 32)`) down to PTX and a
cubin with the `ptxas` its wheel ships, so a CPU machine can check that every kernel compiles and
read from the cubin (`cuobjdump -res-usage`) the registers per thread and the local-memory stack
(where spilled registers go), from `ptxas -v` on the PTX the bytes of spill stores, and Triton's
shared memory per program; the PTX also shows which instructions `tl.dot` became (`mma.sync` tensor
core ops, `cvt.rna.tf32` roundings, `fma` on CUDA cores). None of this measures speed: that is
`bench.py` on a GPU. Writes kernels/results/compile-sm<arch>-<date>.json (not with --quick).
"""
import argparse, datetime, json, os, re, subprocess, sys, tempfile, time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"      # compile the kernels, do not interpret them
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

import dreamstate.wkv_triton_chunked as chunked  # noqa: E402
import dreamstate.wkv_triton_recurrent as recurrent  # noqa: E402
from dreamstate.wkv_common import launch_config, recurrent_warps  # noqa: E402

PTXAS = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
CUOBJDUMP = PTXAS.parent / "cuobjdump"
BF16_PTRS = {"r_ptr", "w_ptr", "k_ptr", "v_ptr", "a_ptr", "b_ptr", "y_ptr", "dy_ptr",
             "dr_ptr", "dw_ptr", "dk_ptr", "dv_ptr", "da_ptr", "db_ptr"}
INTS = {"T", "NT", "PSTRIDE", "H"}     # H: a runtime int in the chunked kernels, constexpr in the recurrent ones


def kernels(N, prec, H=64):
    "(name, kernel, constexprs, num_warps) as `wkv7_triton` launches them on CUDA for head size N."
    cfg = launch_config(N)                # the table the wrappers use (CUDA values: TRITON_INTERPRET=0 here)
    bv, bvc, nw, nw_bwd = cfg.rows, cfg.rows_chunked, cfg.warps_chunked, cfg.warps_chunked_bwd
    return [
        ("recurrent_fwd", recurrent.recurrent_fwd_kernel, dict(H=H, N=N, BV=bv, CL=recurrent.CHUNK, HAS_S0=True, SAVE=True), recurrent_warps(bv, N)),
        ("recurrent_bwd", recurrent.recurrent_bwd_kernel, dict(H=H, N=N, BV=bv, CL=recurrent.CHUNK), recurrent_warps(bv, N)),
        ("chunked_fwd_intra", chunked.chunk_intra_fwd_kernel, dict(N=N, L=16, PREC=prec), nw),
        ("chunked_fwd_scan", chunked.chunk_scan_fwd_kernel, dict(N=N, L=16, BV=bvc, PREC=prec, HAS_S0=True, SAVE=True), nw),
        ("chunked_bwd_scan", chunked.chunk_scan_bwd_kernel, dict(N=N, L=16, BV=bvc, PREC=prec), nw),
        ("chunked_bwd_intra", chunked.chunk_intra_bwd_kernel, dict(N=N, L=16, PREC=prec), nw_bwd),
    ]


def compile_one(fn, consts, num_warps, arch):
    "Compile for sm_<arch>; registers, spills and shared memory from ptxas -v, instruction counts from the PTX."
    sig = {n: ("constexpr" if n in consts else "i32" if n in INTS else "*bf16" if n in BF16_PTRS else "*fp32")
           for n in fn.arg_names}
    src = ASTSource(fn=fn, signature=sig, constexprs={(fn.arg_names.index(k),): v for k, v in consts.items()})
    t0 = time.perf_counter()
    k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": num_warps})
    secs = time.perf_counter() - t0
    ptx = k.asm["ptx"]
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "k.ptx").write_text(ptx)
        (Path(d) / "k.cubin").write_bytes(k.asm["cubin"])
        suffix = "a" if arch >= 90 else ""
        log = subprocess.run([str(PTXAS), f"-arch=sm_{arch}{suffix}", "-v", str(Path(d) / "k.ptx"), "-o", os.devnull],
                             capture_output=True, text=True).stderr
        res = subprocess.run([str(CUOBJDUMP), "-res-usage", str(Path(d) / "k.cubin")], capture_output=True, text=True).stdout
    num = lambda pat, txt: int(m.group(1)) if (m := re.search(pat, txt)) else None
    return {"registers": num(r"REG:(\d+)", res), "stack_bytes": num(r"STACK:(\d+)", res),
            "spill_store_bytes": num(r"(\d+) bytes spill stores", log), "shared_bytes": k.metadata.shared,
            "num_warps": num_warps, "compile_s": round(secs, 2),
            "ptx_mma_sync": ptx.count("mma.sync"), "ptx_wgmma": ptx.count("wgmma.mma_async"),
            "ptx_cvt_rna_tf32": ptx.count("cvt.rna.tf32"), "ptx_fma_f32": ptx.count("fma.rn.f32")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", type=int, default=90, help="compute capability x10 (90 = H100/H200)")
    ap.add_argument("--quick", action="store_true", help="N = 64 and the default precision only; writes nothing")
    ap.add_argument("--out", default=str(ROOT / "kernels" / "results"))
    a = ap.parse_args()
    if not PTXAS.exists():
        sys.exit(f"no ptxas in this triton install ({PTXAS}); the NVIDIA backend is needed")
    heads = [64] if a.quick else [16, 32, 64, 128]
    precs = ["tf32x3"] if a.quick else list(chunked.PRECISIONS)
    rows = []
    for N in heads:
        for prec in precs:
            for name, fn, consts, nw in kernels(N, prec):
                if name.startswith("recurrent") and prec != precs[0]: continue   # no tl.dot in them
                row = {"kernel": name, "N": N, "precision": prec if name.startswith("chunked") else None,
                       **{k: v for k, v in consts.items() if k in ("BV", "L")}}
                try: row.update(compile_one(fn, consts, nw, a.arch))
                except Exception as e: row["error"] = f"{type(e).__name__}: {str(e)[:400]}"
                rows.append(row)
                print(f"{name:<18} N={N:<3} {str(row['precision']):<6} warps={row.get('num_warps', '-')} "
                      f"regs={row.get('registers')} stack={row.get('stack_bytes')}B spill={row.get('spill_store_bytes')}B smem={row.get('shared_bytes')}B "
                      f"mma={row.get('ptx_mma_sync')} cvt.rna={row.get('ptx_cvt_rna_tf32')} fma={row.get('ptx_fma_f32')} "
                      f"{row.get('error', '')}", flush=True)
    failed = [r for r in rows if "error" in r]
    if not a.quick:
        res = {"target": f"sm_{a.arch}", "date": datetime.date.today().isoformat(), "triton": triton.__version__,
               "note": "compiled ahead of time on a CPU machine; no timing", "rows": rows}
        out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
        path = out / f"compile-sm{a.arch}-{res['date']}.json"
        path.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {path}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
