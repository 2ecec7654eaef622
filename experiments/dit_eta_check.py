"""Does stochastic sampling (DDIM with eta = 1) restore the diversity of the trained cpu state DiT?
Per-persona Frechet distance and generated/real within-persona variance ratio in notebook 09's PCA space.

    .venv/bin/python experiments/dit_eta_check.py      # about 15 min on 2 CPU cores
"""
import torch, numpy as np, time
from dreamstate.config import load_profile
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.dit import StateDiT
from dreamstate.diffusion import Diffusion
from dreamstate.metrics import PCASpace, frechet_distance
torch.set_num_threads(2)
P = load_profile("cpu")
lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth").eval()
states = StateDataset.load(P.build_dir / "states", lm.cfg)
dit = StateDiT.load(P.build_dir / "dit" / "state_dit.pt").eval()
diff = Diffusion("cosine", 1000, P.dit_prediction)
tr, te = states.split("train"), states.split("test"); names = states.label_names
yte = te.label_ids(names).numpy()
Xtr, Xte = tr.wkv.flatten(1).numpy(), te.wkv.flatten(1).numpy()
space = PCASpace(Xtr, 32, 0); Zte = space(Xte)
n = 100; y = torch.arange(len(names)).repeat_interleave(n)
def run(tag, eta, steps, g=2.0, net=None):
    t0 = time.time(); gen = torch.Generator().manual_seed(0)
    x = torch.randn(len(y), 16, 32, 32, generator=gen)
    img = diff.ddim(net or dit.ema, x, y, steps, g, dit.null_label, eta=eta, generator=gen, clip=float(dit.clip))
    Z = space(dit.from_image(img).flatten(1).numpy()); yy = y.numpy()
    fd = np.mean([frechet_distance(Z[yy == i], Zte[yte == i]) for i in range(len(names))])
    vr = np.mean([np.trace(np.cov(Z[yy == i], rowvar=False)) / np.trace(np.cov(Zte[yte == i], rowvar=False)) for i in range(len(names))])
    print(f"{tag:28s} FD {fd:7.0f}  variance ratio {vr:.3f}  {time.time()-t0:.0f}s", flush=True)
run("ddim eta0 25", 0.0, 25)
run("ddim eta1 25", 1.0, 25)
run("ddim eta1 100", 1.0, 100)
run("raw eta1 25", 1.0, 25, net=dit.net)
