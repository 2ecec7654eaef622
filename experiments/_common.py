"""What the DiT diagnostics share: the cpu profile's LM and state dataset, notebook 09's PCA space,
and the per-persona Fréchet distance / variance of generated states in it."""
import numpy as np
import torch

from dreamstate.config import load_profile
from dreamstate.metrics import PCASpace, frechet_distance
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset

N_PER_PERSONA = 100


class Setup:
    "Everything read from build/cpu (written by `make reproduce`)."
    def __init__(self, pca_dims: int = 32):
        torch.set_num_threads(2)
        self.P = load_profile("cpu")
        lm = RWKV7.load(self.P.build_dir / "lm" / "rwkv7.pth").eval()
        states = StateDataset.load(self.P.build_dir / "states", lm.cfg)
        self.tr, self.te = states.split("train"), states.split("test")
        self.names = states.label_names
        self.yte = self.te.label_ids(self.names).numpy()
        self.space = PCASpace(self.tr.wkv.flatten(1).numpy(), pca_dims, 0)
        self.Zte = self.space(self.te.wkv.flatten(1).numpy())
        self.labels = [p for p in self.names for _ in range(N_PER_PERSONA)]

    def measure(self, wkv_flat: np.ndarray) -> dict:
        "Per-persona mean Fréchet distance and generated/real within-persona variance ratio of `N_PER_PERSONA` states per persona (in `labels` order)."
        Z = self.space(wkv_flat)
        y = np.repeat(np.arange(len(self.names)), N_PER_PERSONA)
        K = range(len(self.names))
        real = [np.trace(np.cov(self.Zte[self.yte == i], rowvar=False)) for i in K]
        return {"fd": float(np.mean([frechet_distance(Z[y == i], self.Zte[self.yte == i]) for i in K])),
                "variance_ratio": float(np.mean([np.trace(np.cov(Z[y == i], rowvar=False)) / real[i] for i in K]))}
