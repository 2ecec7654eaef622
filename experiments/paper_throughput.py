"""How long would `make reproduce PROFILE=paper` take on a GPU? Measured here: the work of the `paper`
profile's heavy notebooks at the shape of RWKV-7 World 0.1B (L=12, C=768, H=12, N=64, V=65536, random
weights) and of its DiT-B/4 over one layer's [12, 64, 64] state, counted in FLOPs (torch's FlopCounterMode)
and in eager PyTorch operations per sequential step (each one a kernel launch on a GPU; counted on the CPU
path, whose WKV is the chunked PyTorch form, where CUDA runs one Triton kernel per layer), and timed on
this machine's CPU. The GPU times in `results/paper_throughput.json` are an ESTIMATE from those counts
and three assumed GPU rates (`ASSUMED`, below), not a measurement.

Run from the repository root: `OMP_NUM_THREADS=1 .venv/bin/python experiments/paper_throughput.py`."""
import json, platform, time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from _common import parser, result_path, write_result
from dreamstate.config import load_profile
from dreamstate.diffusion import Diffusion
from dreamstate.dit import DIT_PRESETS, CodeDenoiser, CodeDenoiserConfig, DiT, DiTConfig
from dreamstate.rwkv7 import RWKV7, RWKV7Config

# assumed H100 rates (not measured: no GPU in the session that wrote this)
ASSUMED = {"bf16_tflops": 250.0,      # DiT training under the loop's bf16 autocast: ~25% of the 989 TFLOP/s dense peak
           "fp32_tflops": 40.0,       # fp32 work (LM prefill, DiT sampling): ~60% of the 67 TFLOP/s fp32 (non-tensor-core) peak
           "us_per_op": 10.0}         # eager PyTorch: host overhead + launch per operation, for launch-bound sequential steps
PERSONAS, PROMPTS_TRAIN, PROMPTS_HELDOUT = 4, 40, 5   # persona corpus; the prompt set's split per persona (README)


class OpCount(TorchDispatchMode):
    "Counts aten operations (≈ kernel launches on a GPU)."
    def __init__(self): super().__init__(); self.n = 0
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def flops(fn) -> float:
    with FlopCounterMode(display=False) as fc: fn()
    return float(fc.get_total_flops())


def ops(fn) -> int:
    with OpCount() as c: fn()
    return c.n


def timed(fn, repeats=2) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeats): fn()
    return (time.perf_counter() - t0) / repeats


@torch.no_grad()
def lm_measurements(P) -> dict:
    cfg = RWKV7Config(vocab_size=65536, n_layer=12, n_embd=768, head_size=64)
    lm = RWKV7(cfg).init_weights(seed=0).eval()
    x = torch.randint(0, cfg.vocab_size, (4, 256))
    prefill = lambda: lm(x)
    _, st = lm(x[:, :8])
    step = lambda: lm(x[:, :1], st)
    return {"params": lm.num_params(), "prefill_flops_per_token": flops(prefill) / x.numel(),
            "cpu_prefill_tokens_per_s": x.numel() / timed(prefill, 1), "decode_ops_per_step": ops(step),
            "cpu_decode_step_s_batch4": timed(step, 3)}


def dit_measurements(P) -> dict:
    c = DiTConfig(in_channels=12, input_size=64, num_classes=PERSONAS, **DIT_PRESETS[P.dit_preset])
    net, diff = DiT(c), Diffusion(P.dit_schedule, 1000, P.dit_prediction)
    B = 4
    x0, y = torch.randn(B, 12, 64, 64), torch.randint(0, PERSONAS, (B,))
    def train_step():
        net.zero_grad(set_to_none=True)
        diff.loss(net, x0, y, null_label=PERSONAS).backward()
    with torch.no_grad():
        fwd = flops(lambda: net(x0, torch.full((B,), 500), y)) / B
    lat = CodeDenoiser(CodeDenoiserConfig(P.latent_k, PERSONAS, P.latent_hidden, P.latent_depth))
    z = torch.randn(P.latent_batch, P.latent_k)
    def lat_step():
        lat.zero_grad(set_to_none=True)
        diff.loss(lat, z, torch.randint(0, PERSONAS, (len(z),)), null_label=PERSONAS).backward()
    return {"params": sum(p.numel() for p in net.parameters()), "tokens": (64 // c.patch_size) ** 2,
            "train_flops_per_sample": flops(train_step) / B, "forward_flops_per_sample": fwd,
            "cpu_train_step_s_batch4": timed(train_step, 1), "train_ops_per_step": ops(train_step),
            "latent_train_ops_per_step": ops(lat_step),
            "latent_train_flops_per_step": flops(lat_step)}


def estimate(P, lm, dit) -> dict:
    "Seconds on an H100 per heavy notebook of `paper`, from the counts above and `ASSUMED`."
    bf16, fp32, op = ASSUMED["bf16_tflops"] * 1e12, ASSUMED["fp32_tflops"] * 1e12, ASSUMED["us_per_op"] * 1e-6
    step_s = lm["decode_ops_per_step"] * op                      # one sequential token step, any small batch
    prefill_s = lambda tokens: tokens * lm["prefill_flops_per_token"] / fp32
    mean_prompt = (P.state_min_len + P.state_max_len) / 2
    n_pos = len(P.prompt_positions) if isinstance(P.prompt_positions, list) else 1
    max_pos = max(P.prompt_positions) if isinstance(P.prompt_positions, list) else P.prompt_positions
    corpus_states = PERSONAS * (P.states_per_persona + P.states_heldout_per_persona)
    prompt_runs = PERSONAS * (PROMPTS_TRAIN + PROMPTS_HELDOUT)
    nb06 = prefill_s(corpus_states * mean_prompt) + prompt_runs * max_pos * step_s
    nb05 = prefill_s(PERSONAS * P.lm_eval_windows * P.lm_seq_len) + PERSONAS * P.lm_sample_tokens * step_s
    nb08_dit = P.dit_steps * P.dit_batch * dit["train_flops_per_sample"] / bf16
    nb08_dit_floor = P.dit_steps * dit["train_ops_per_step"] * op       # if launch-bound instead (the larger one counts)
    nb08_latent = (P.latent_seeds + 1) * P.latent_steps * dit["latent_train_ops_per_step"] * op
    # 09: DiT samples (EMA, raw × eval_seeds, + 3 diagnosis sets), ctrl continuations, edits, guidance sweep
    n_gen = PERSONAS * P.eval_states_per_persona
    dit_sets = 2 * P.eval_seeds + 3
    nb09_dit = dit_sets * n_gen * P.eval_steps * dit["forward_flops_per_sample"] / fp32
    state_sets = 2 * P.latent_seeds * P.eval_seeds + 2 * P.eval_seeds + 7     # generated + baselines
    ctrl_batches = -(-PERSONAS * P.ctrl_per_persona // 64)
    edit_batches = len(P.edit_strengths) * 2 * -(-P.edit_per_strength // 64)
    sweep_batches = len(P.guidance_sweep) * -(-PERSONAS * min(P.eval_states_per_persona, P.guidance_sweep_per_persona) // 64)
    nb09_seq = (state_sets * ctrl_batches + edit_batches + sweep_batches) * P.eval_cont_tokens * step_s
    work = {"05_eval_tokens": PERSONAS * P.lm_eval_windows * P.lm_seq_len, "05_sampled_steps": PERSONAS * P.lm_sample_tokens,
            "06_corpus_prompts": corpus_states, "06_prefill_tokens": corpus_states * mean_prompt,
            "06_prompt_runs": prompt_runs, "06_sampled_steps": prompt_runs * max_pos,
            "08_dit_states_seen": P.dit_steps * P.dit_batch, "08_latent_steps": (P.latent_seeds + 1) * P.latent_steps,
            "09_dit_sets": dit_sets, "09_dit_states_per_set": n_gen,
            "09_continuation_batches": state_sets * ctrl_batches + edit_batches + sweep_batches,
            "09_sampled_steps": (state_sets * ctrl_batches + edit_batches + sweep_batches) * P.eval_cont_tokens}
    return work, {"05_train_lm": nb05, "06_states": nb06, "08_state_dit (DiT)": max(nb08_dit, nb08_dit_floor),
                  "08_state_dit (latent models)": nb08_latent, "09_state_eval (DiT sampling)": nb09_dit,
                  "09_state_eval (continuations)": nb09_seq, "decode_step_s": step_s}


def main():
    a = parser(__doc__, profile="paper").parse_args()
    torch.manual_seed(0)
    P = load_profile(a.profile)
    lm, dit = lm_measurements(P), dit_measurements(P)
    out = {"what": __doc__.split("\n\n")[0], "machine": platform.processor() or platform.machine(),
           "torch_threads": torch.get_num_threads(), "assumed_h100": ASSUMED, "rwkv7_0.1b": lm, "dit": dit,
           **dict(zip(("work_in_paper", "h100_estimate_s"), estimate(P, lm, dit)))}
    print(json.dumps(write_result(result_path(a, "paper_throughput"), a.profile, out), indent=1))


if __name__ == "__main__":
    main()
