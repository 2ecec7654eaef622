"""Reference, reproducible implementation of DREAMSTATE: diffusing states and parameters of RWKV-7

Modules:

- `dreamstate.hybrid`: `HybridRWKV7`: an RWKV-7 core whose receptance, key and value matrices are modulated per example by low-rank updates generated from a global context, a context encoder that reads that context in parallel, a diffusion model over the generated updates, and the multi-objective loss. Also the key–value facts task, where the answer is only in the context, its tokenisation for any tokenizer (`tokenize_kv`), and what a checkpoint profile needs to start the hybrid and its baselines from a pretrained core (`HybridRWKV7.load_core`, `widen_ffn`).
- `dreamstate.metrics`: `dreamstate.metrics`: Fréchet distance and its two terms, k-NN precision and recall, variance ratios, nearest-neighbour copy checks, a persona probe, next-token loss from a given state, an independent text classifier for controlled generation, and confidence intervals. The notebook measures the two state models of notebook 08 against baselines computed here.
- `dreamstate.record`: What a notebook run by `reproduce` used, noted by its own kernel as it runs: the package modules it imported, the settings it read (with their values), the files it read and wrote. The runner (`dreamstate.reproduce`, 00d) turns this into the notebook's stamp and the graph of which notebook needs which.
- `dreamstate.states`: `collect_states` runs the LM over persona prompts and keeps each final state; `collect_prompt_states` adds states from the prompt set with sampled continuations; `StateDataset` stores them (safetensors + a metadata table), normalises them, and checks they belong to the model at hand.
- `dreamstate.wkv_common`: What the torch forms (`dreamstate.wkv`) and the Triton kernels (`dreamstate.wkv_triton`) share: the input checks, the state dtype, the chunk factorisation's decay limit, whether Triton is installed and runs in its interpreter, the kernels' default launch configurations, and the RWKV-like random inputs every check and benchmark draws. It imports neither of the two, so neither imports the other."""

__version__ = "0.1.0"
