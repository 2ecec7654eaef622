"""Reference, reproducible implementation of DREAMSTATE: diffusing states and parameters of RWKV-7

Modules:

- `dreamstate.config`: Profiles from `settings.ini`, project paths, seeding, device selection, the figure/table helpers every notebook uses, and `reproduce`, which re-runs the notebooks with papermill.
- `dreamstate.data`: `WorldTokenizer` (RWKV World vocabulary, read from the file the `rwkv` package ships), `ByteTokenizer` (for the small models trained here), and the corpora built on them.
- `dreamstate.diffusion`: The diffusion process, separate from any network (as in DiT's `diffusion/`): noise schedules, ε- and v-prediction losses with label dropout, the DPM-Solver++(2M) sampler on a log-SNR grid, ancestral DDPM and DDIM, classifier-free guidance, DDIM inversion and SDEdit.
- `dreamstate.dit`: `StateDiT` (a Diffusion Transformer over WKV states, adaLN-Zero conditioning on the timestep and the persona), `LatentStateModel` (diffusion over the codes of a per-layer principal basis), their training, `generate_states`, `edit_state` and `interpolate_states`.
- `dreamstate.hybrid`: `HybridRWKV7`: an RWKV-7 core whose receptance, key and value matrices are modulated per example by low-rank updates generated from a global context, a context encoder that reads that context in parallel, a diffusion model over the generated updates, and the multi-objective loss. Also the key–value facts task, where the answer is only in the context.
- `dreamstate.metrics`: `dreamstate.metrics`: Fréchet distance and its two terms, k-NN precision and recall, variance ratios, nearest-neighbour copy checks, a persona probe, next-token loss from a given state, an independent text classifier for controlled generation, and confidence intervals. The notebook measures the two state models of notebook 08 against baselines computed here.
- `dreamstate.rwkv7`: `RWKV7Config`, `RWKV7` (sequence and one-token RNN mode, generation), `RWKVState` (the recurrent state as a first-class object) and loading/saving BlinkDL `.pth` checkpoints.
- `dreamstate.states`: `collect_states` runs the LM over persona prompts and keeps each final state; `collect_prompt_states` adds states from the prompt set with sampled continuations; `StateDataset` stores them (safetensors + a metadata table), normalises them, and checks they belong to the model at hand.
- `dreamstate.train`: `train` (AdamW, warmup + cosine, gradient clipping, bf16 autocast on CUDA, progress bar, metrics CSV, atomic checkpoints, exact resume, DDP under torchrun) and the small RWKV-7 of the `cpu` profile trained on the persona corpus, against a bigram baseline.
- `dreamstate.wkv`: The maths of RWKV-7's state update, `wkv7_sequential` (the plain reference every fast path is checked against), `wkv7_chunked` (a differentiable chunk-parallel PyTorch form, the CPU default) and the public op `wkv7`.
- `dreamstate.wkv_triton`: Forward and backward Triton kernels for the WKV-7 recurrence with an optional initial state and the final state, wrapped in a `torch.autograd.Function`; `wkv7(..., backend="triton")`."""

__version__ = "0.1.0"
