"""Where the `cpu` profile's training time goes, per training step of each model it trains (issue 24 item 2).

For the LM of notebook 05, the raw-state DiT and the latent model of 08, the hybrid (row c) of 11 and the facts core of
11a, at the profile's shapes and batch sizes, on random data of the right shape (the states of build/<profile>/states
for the two state models): seconds per optimizer step (forward, backward, clipping, AdamW) with two torch threads, with
one, and with two one-thread processes side by side (throughput, the way `run_in_processes` uses the two cores); for the
LM and the two state models also under `torch.compile` (two threads; the compile time apart); and the operators that take
the time (`torch.profiler`, two threads). Each configuration runs in a fresh process. Needs notebook 06's states.

    python experiments/cpu_step_profile.py [--profile cpu] [--models lm dit latent hybrid facts] [--steps 15]
"""
import json, os, subprocess, sys, time

from _common import RESULTS, parse_with_subset, parser, result_path, write_result

MODELS = ("lm", "dit", "latent", "hybrid", "facts")
COMPILED = ("lm", "dit", "latent")


def build(which: str, P):
    "A model at the profile's shapes and a zero-argument function that computes one training loss on a fresh batch."
    import random
    import torch
    from dreamstate.rwkv7 import RWKV7, RWKV7Config, next_token_nll
    g = torch.Generator().manual_seed(0)
    if which == "lm":
        m = RWKV7(RWKV7Config(vocab_size=256, n_layer=P.lm_n_layer, n_embd=P.lm_n_embd, head_size=P.lm_head_size)).init_weights(seed=0)
        def loss(net):
            x = torch.randint(0, 256, (P.lm_batch, P.lm_seq_len + 1), generator=g)
            return next_token_nll(net(x[:, :-1])[0], x[:, 1:])
        return m, loss
    if which in ("dit", "latent"):
        from dreamstate.diffusion import Diffusion
        from dreamstate.dit import build_latent_model, build_state_dit, latent_svd
        from dreamstate.states import StateDataset
        tr = StateDataset.load(P.build_dir / "states").split("train")      # its own model config, written by notebook 06
        if which == "dit":
            m = build_state_dit(tr, P.dit_preset, P.dit_norm, P.dit_ema, "all"); X, B = m.to_image(tr.wkv), P.dit_batch
        else:
            m = build_latent_model(tr, P.latent_k, P.latent_hidden, P.latent_depth, P.dit_norm, P.dit_ema, "all",
                                   residual=P.latent_residual, svd=latent_svd(tr, P.dit_norm, "all"))
            X, B = m.encode(tr.wkv), P.latent_batch
        Y, diff, K = tr.label_ids(tr.label_names), Diffusion(P.dit_schedule, 1000, P.dit_prediction), len(tr.label_names)
        def loss(net):
            i = torch.randint(0, len(X), (B,), generator=g)
            return diff.loss(net, X[i], Y[i], null_label=K, p_uncond=0.1, generator=g)
        return m, loss
    if which == "hybrid":
        from dreamstate.data import ByteTokenizer
        from dreamstate.diffusion import Diffusion
        from dreamstate.hybrid import HybridConfig, HybridRWKV7, hybrid_loss, kv_example, tokenize_kv
        core = RWKV7Config(vocab_size=256, n_layer=P.hyb_n_layer, n_embd=P.hyb_n_embd, head_size=P.hyb_head_size)
        hc = HybridConfig(rank=P.hyb_rank, ctx_dim=P.hyb_ctx_dim, ctx_depth=P.hyb_ctx_depth, ctx_heads=P.hyb_ctx_heads,
                          alpha0=P.hyb_alpha0, head_init=P.hyb_head_init, lambda_diff=P.hyb_lambda_diff, lambda_reg=P.hyb_lambda_reg)
        m, tok, diff, r = HybridRWKV7(core, hc, seed=0), ByteTokenizer(), Diffusion(prediction=P.hyb_diff_prediction), random.Random(0)
        def loss(net):
            ex = [tokenize_kv(*kv_example(r, P.hyb_kv_max_facts, P.hyb_kv_questions), tok) for _ in range(P.hyb_batch)]
            ctx, win = torch.tensor([c for c, _, _ in ex]), torch.tensor([w for _, w, _ in ex])
            return hybrid_loss(net, (ctx, torch.ones_like(ctx, dtype=torch.bool), win), diff, generator=g)[0]
        return m, loss
    if which == "facts":
        from dreamstate.data import ByteTokenizer
        from dreamstate.editing import facts_batches, prefix_loss
        m = RWKV7(RWKV7Config(vocab_size=256, n_layer=P.facts_n_layer, n_embd=P.facts_n_embd, head_size=P.facts_head_size)).init_weights(seed=0)
        bf, step = facts_batches(ByteTokenizer(), P.facts_batch, P.facts_max_facts, P.facts_max_facts, seed=0), iter(range(10 ** 9))
        return m, lambda net: prefix_loss(net, bf(next(step)))[0]
    raise ValueError(which)


def measure(which: str, profile: str, compiled: bool, steps: int, ops: bool) -> dict:
    "In this process: seconds per training step (median of `steps` after 3 warm-up steps), and the top operators."
    import torch
    from dreamstate.config import load_profile
    P = load_profile(profile)
    torch.manual_seed(0)
    m, loss = build(which, P)
    net = torch.compile(m) if compiled else m
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    def step():
        l = loss(net); opt.zero_grad(set_to_none=True); l.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    t0 = time.perf_counter()
    for _ in range(3): step()
    warm = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
    out = {"seconds_per_step": sorted(times)[len(times) // 2], "warmup_seconds": warm, "threads": torch.get_num_threads(),
           "parameters": sum(p.numel() for p in m.parameters())}
    if ops:
        from torch.profiler import ProfilerActivity, profile as tprofile
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5): step()
        ev = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in ev)
        out["top_ops"] = [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3)} for e in ev[:8]]
    return out


def run_child(which, profile, threads, compiled, steps, ops, capture_err=False):
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, __file__, "--child", which, profile, str(int(compiled)), str(steps), str(int(ops))]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture_err else None, text=True)


def result_of(proc, may_fail: bool = False) -> dict:
    "The child's measurement; with `may_fail`, a failed child gives {'error': its last error line} instead of raising."
    out, err = proc.communicate()
    if proc.returncode != 0:
        if not may_fail: raise RuntimeError(f"child failed ({proc.returncode})")
        return {"error": next((l for l in reversed((err or "").splitlines()) if "Error" in l), f"exit code {proc.returncode}")[:300]}
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = parser(__doc__)
    ap.add_argument("--steps", type=int, default=15, help="timed steps per configuration (median reported)")
    a, models = parse_with_subset(ap, "--models", MODELS)
    rows = []
    for which in models:
        two = result_of(run_child(which, a.profile, 2, False, a.steps, True))
        one = result_of(run_child(which, a.profile, 1, False, a.steps, False))
        pair = [run_child(which, a.profile, 1, False, a.steps, False) for _ in range(2)]
        side = [result_of(p) for p in pair]
        row = {"model": which, "parameters": two["parameters"], "s_per_step_2threads": two["seconds_per_step"],
               "s_per_step_1thread": one["seconds_per_step"],
               "s_per_step_1thread_two_processes": max(s["seconds_per_step"] for s in side),
               "top_ops_2threads": two["top_ops"]}
        # throughput against one one-thread process: steps per second of the whole CPU
        row["speedup_2threads"] = one["seconds_per_step"] / two["seconds_per_step"]
        row["speedup_two_processes"] = 2 * one["seconds_per_step"] / row["s_per_step_1thread_two_processes"]
        if which in COMPILED:
            c = result_of(run_child(which, a.profile, 2, True, a.steps, False, capture_err=True), may_fail=True)
            if "error" in c: row["compile_error"] = c["error"]      # torch.compile failed on this model: reported, not hidden
            else:
                row["s_per_step_compiled_2threads"], row["compile_seconds"] = c["seconds_per_step"], c["warmup_seconds"]
                row["compile_speedup"] = two["seconds_per_step"] / c["seconds_per_step"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "top_ops_2threads"}), flush=True)
    out = write_result(result_path(a, "cpu_step_profile"), a.profile, {
        "what": "seconds per training step of each model the profile trains; speedups are throughput ratios against one "
                "one-thread process (two processes: both processes' steps per second together)",
        "cpu_count": os.cpu_count(), "rows": rows})
    print(f"wrote {result_path(a, 'cpu_step_profile')} ({len(out['rows'])} models)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        which, profile, compiled, steps, ops = sys.argv[2], sys.argv[3], bool(int(sys.argv[4])), int(sys.argv[5]), bool(int(sys.argv[6]))
        print(json.dumps(measure(which, profile, compiled, steps, ops)))
    else:
        main()
