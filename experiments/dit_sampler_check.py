"""Is the state DiT's low diversity a sampler setting? Samples 100 states per persona from the trained
DiT of the `cpu` profile (build/cpu/dit/state_dit.pt, written by `make reproduce`) under several
sampler settings and prints the mean per-persona Fréchet distance to the held-out states in the
32-dim PCA space of notebook 09, and the generated vs real total variance in that space.

    .venv/bin/python experiments/dit_sampler_check.py        # ≈ 15 min on 2 CPU cores
"""
import torch, numpy as np, time, sys
from dreamstate.config import load_profile
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset
from dreamstate.dit import StateDiT, generate_states
from dreamstate.diffusion import Diffusion
from dreamstate.metrics import PCASpace, frechet_distance
torch.set_num_threads(2)
P = load_profile("cpu")
lm = RWKV7.load(P.build_dir / "lm" / "rwkv7.pth").eval()
states = StateDataset.load(P.build_dir / "states", lm.cfg)
dit = StateDiT.load(P.build_dir / "dit" / sys.argv[1] if len(sys.argv) > 1 else P.build_dir / "dit" / "state_dit.pt").eval()
diff = Diffusion("cosine", 1000, P.dit_prediction)
tr, te = states.split("train"), states.split("test")
names = states.label_names
ytr, yte = tr.label_ids(names).numpy(), te.label_ids(names).numpy()
Xtr, Xte = tr.wkv.flatten(1).numpy(), te.wkv.flatten(1).numpy()
space = PCASpace(Xtr, 32, 0); Ztr, Zte = space(Xtr), space(Xte)
n = 100
labels = [p for p in names for _ in range(n)]
def fd(Z):
    y = np.repeat(np.arange(len(names)), n)
    return np.mean([frechet_distance(Z[y == i], Zte[yte == i]) for i in range(len(names))])
def run(tag, **kw):
    t0 = time.time()
    st = generate_states(dit, diff, labels, len(labels), kw.pop("steps", 25), kw.pop("guidance", 2.0), seed=0)
    Z = space(st.wkv.transpose(0, 1).flatten(1).numpy())
    print(f"{tag:30s} FD {fd(Z):8.1f}  total var {Z.var(0).sum():8.1f} (real {Zte.var(0).sum():.1f})  {time.time()-t0:.0f}s", flush=True)
print("real var per persona", np.mean([Zte[yte==i].var(0).sum() for i in range(len(names))]), "gen var per persona computed within fd")
run("default clip10 g2 25")
dit.clip.fill_(1e9); run("noclip g2 25")
dit.clip.fill_(10.0); run("clip10 g2 100", steps=100)
run("clip10 g1 25", guidance=1.0)
run("clip10 g4 25", guidance=4.0)
ema = dit.ema; dit.ema = dit.net; run("raw weights g2 25"); dit.ema = ema
