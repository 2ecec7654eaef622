"""Which basis for latent state diffusion: per-layer PCA or a small non-linear autoencoder of the same
code size? Both are fitted on the cpu profile's normalised training states (as notebook 08 normalises
them); the measure is the held-out relative reconstruction error ‖x − x̂‖² / ‖x‖² (x: a state minus
the training mean), per code size. Writes experiments/results/latent_basis_check.json.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/latent_basis_check.py                       # cpu profile, ≈ 6 min per code size
    OMP_NUM_THREADS=1 .venv/bin/python experiments/latent_basis_check.py --profile smoke --ks 4 --epochs 1   # a tiny run
"""
import time

import torch
import torch.nn as nn

from _common import build_fingerprint, parser, result_path, write_result
from dreamstate.config import load_profile
from dreamstate.dit import build_state_dit
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset


def autoencoder(d_in: int, k: int, hidden: int) -> nn.Module:
    "A per-layer MLP autoencoder d_in → hidden → k → hidden → d_in with a linear skip through the code."
    class AE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, k))
            self.dec = nn.Sequential(nn.Linear(k, hidden), nn.GELU(), nn.Linear(hidden, d_in))
            self.lin_enc, self.lin_dec = nn.Linear(d_in, k, bias=False), nn.Linear(k, d_in, bias=False)
        def forward(self, x):
            z = self.enc(x) + self.lin_enc(x)
            return self.dec(z) + self.lin_dec(z)
    return AE()


def rel_error(x, xh): return ((x - xh) ** 2).sum(1) / (x ** 2).sum(1)


def main():
    ap = parser(__doc__)
    ap.add_argument("--ks", default="128", help="code sizes per layer, comma-separated")
    ap.add_argument("--hidden", type=int, default=512, help="the autoencoder's hidden width")
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    P = load_profile(a.profile)
    lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth")
    states = StateDataset.load(P.build_dir / "states", lm.cfg)
    tr, te = states.split("train"), states.split("test")
    dit = build_state_dit(tr, P.dit_preset, P.dit_norm)
    nl = lm.cfg.n_layer
    Xtr, Xte = dit.normalise(tr.wkv).view(len(tr), nl, -1), dit.normalise(te.wkv).view(len(te), nl, -1)
    rows = []
    for k in [int(s) for s in a.ks.split(",")]:
        pca_err, ae_err, t0 = torch.zeros(len(te)), torch.zeros(len(te)), time.time()
        for l in range(nl):
            V = torch.linalg.svd(Xtr[:, l].double(), full_matrices=False)[2][:k].float()
            pca_err += ((Xte[:, l] - Xte[:, l] @ V.T @ V) ** 2).sum(1)
            ae = autoencoder(Xtr.shape[2], k, a.hidden)
            opt = torch.optim.AdamW(ae.parameters(), 1e-3, weight_decay=1e-4)
            for epoch in range(a.epochs):
                for idx in torch.randperm(len(tr)).split(256):
                    loss = ((ae(Xtr[idx, l]) - Xtr[idx, l]) ** 2).sum(1).mean()
                    opt.zero_grad(); loss.backward(); opt.step()
            with torch.no_grad(): ae_err += ((Xte[:, l] - ae(Xte[:, l])) ** 2).sum(1)
        energy = (Xte ** 2).sum((1, 2))
        rows.append({"k_per_layer": k, "pca_heldout_rel_error": float((pca_err / energy).mean()),
                     "autoencoder_heldout_rel_error": float((ae_err / energy).mean()), "seconds": round(time.time() - t0, 1)})
        print(rows[-1], flush=True)
    write_result(result_path(a, "latent_basis_check"), a.profile, {"build": build_fingerprint(P), "hidden": a.hidden, "epochs": a.epochs, "seed": a.seed, "rows": rows})


if __name__ == "__main__":
    main()
