"""What the CPU model benchmarks share: the model-shape arguments and the random-weight RWKV-7 both
implementations load (weights perturbed from BlinkDL's init so every projection does work)."""
import argparse

import torch

from dreamstate.rwkv7 import RWKV7, RWKV7Config


def add_model_args(ap: argparse.ArgumentParser):
    ap.add_argument("--layers", type=int, default=6); ap.add_argument("--embd", type=int, default=512)
    ap.add_argument("--head-size", type=int, default=64); ap.add_argument("--vocab", type=int, default=65536)
    ap.add_argument("--threads", type=int, default=1)


def random_model(a) -> RWKV7:
    "Sets the thread count and the seed, returns the benchmark's model for the parsed arguments `a`."
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = RWKV7Config(vocab_size=a.vocab, n_layer=a.layers, n_embd=a.embd, head_size=a.head_size)
    model = RWKV7(cfg).init_weights(seed=0)
    with torch.no_grad():
        for p in model.parameters(): p.add_(0.02 * torch.randn_like(p))
    return model
