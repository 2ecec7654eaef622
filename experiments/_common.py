"""What the experiments share: their command line (`--profile`, `--out`), the JSON result they write
(with the commit and the profile), and for the DiT diagnostics the profile's LM and state dataset,
notebook 09's PCA space and the per-persona Fréchet distance / variance of generated states in it."""
import argparse, hashlib, json, subprocess
from pathlib import Path

import numpy as np
import torch

from dreamstate.config import load_profile
from dreamstate.figures import _write_atomic, git_commit
from dreamstate.metrics import PCASpace, build_fingerprint, frechet_distance
from dreamstate.reproduce import host_info
from dreamstate.rwkv7 import RWKV7
from dreamstate.states import StateDataset

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
N_PER_PERSONA = 100


def parser(doc: str, profile: str = "cpu") -> argparse.ArgumentParser:
    "An argument parser described by the script's docstring `doc`, with `--profile` (default `profile`) and `--out`."
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default=profile, help=f"settings.ini profile whose build/ and sizes are used (default {profile})")
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default experiments/results/<script>.json, or <script>-<profile>.json for another profile)")
    ap.set_defaults(default_profile=profile)
    return ap


def parse_with_subset(ap: argparse.ArgumentParser, option: str, names, note: str = "") -> tuple[argparse.Namespace, list[str]]:
    """Adds `option` (which of `names` to run: names or starts of names, default all) to `ap`, parses the
    command line, and returns it with the chosen names in `names` order."""
    dest = option.lstrip("-")
    ap.add_argument(option, nargs="+", default=list(names), metavar="NAME",
                    help=f"which {dest}: names, or starts of names (default: all{note})")
    a = ap.parse_args()
    chosen = [n for n in names if any(n.startswith(s) for s in getattr(a, dest))]
    if not chosen: ap.error(f"no {dest} matches {getattr(a, dest)}; {dest}: {'; '.join(names)}")
    return a, chosen


def commit() -> str:
    "HEAD's hash, `-dirty` with uncommitted code, the experiments' scripts included (`unknown` outside a git checkout)."
    h = git_commit(ROOT)
    if h.endswith("-dirty") or h == "unknown": return h
    st = subprocess.run(["git", "status", "--porcelain", "--", "experiments/*.py"], cwd=ROOT, capture_output=True, text=True)
    return h + ("-dirty" if st.stdout.strip() else "")          # the package's check leaves experiments/ out; a result's script is code too


def work_dir(P, name: str, build: dict) -> Path:
    """Where a state experiment keeps its codes and checkpoints: build/<profile>/experiments/`name`/<12 digits of the SHA-256 of
    the build's fingerprint (the LM's and the state dataset's)>/, so that a rerun on a rebuilt LM or state dataset never resumes
    another build's runs."""
    return P.build_dir / "experiments" / name / hashlib.sha256(json.dumps(build, sort_keys=True).encode()).hexdigest()[:12]


def result_path(a: argparse.Namespace, name: str) -> Path:
    "Where the script `name` writes its result: `--out`, else experiments/results/`name`.json (`name`-PROFILE.json for a profile not the script's default)."
    if a.out: return Path(a.out)
    return RESULTS / (f"{name}.json" if a.profile == a.default_profile else f"{name}-{a.profile}.json")


def write_result(path: Path, profile: str, result: dict) -> dict:
    """Writes `result` to `path` as JSON, headed by the commit, the profile and the host (CPU model, instruction set, threads:
    a build's LM is bit-for-bit the same only on the same kind of host); returns what it wrote."""
    out = {"commit": commit(), "profile": profile, "host": host_info(), **result}
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, lambda tmp: tmp.write_text(json.dumps(out, indent=1) + "\n"))     # a kill mid-write leaves the last file whole
    return out


class Setup:
    "Everything read from build/<profile> (written by `make reproduce`)."
    def __init__(self, profile: str = "cpu", pca_dims: int = 32):
        torch.set_num_threads(2)
        self.P = load_profile(profile)
        self.build = build_fingerprint(self.P)
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


def run_each(doc: str, name: str, runs: dict, run, setup) -> dict:
    """The command line of a script of named one-thread runs: `--profile`, `--out`, `--runs` (names or starts of names of
    `runs`). Each chosen run not yet in the result file is `run(P, **runs[name])`, recorded with its settings and the
    commit, and the file (`result_path(…, name)`) is written after each; `setup(P)` heads it. Returns the results."""
    ap = parser(doc)
    a, chosen = parse_with_subset(ap, "--runs", runs, "; a rerun skips those in the result file")
    torch.set_num_threads(1)
    P = load_profile(a.profile)
    out = result_path(a, name)
    res = json.loads(out.read_text()) if out.exists() else {}
    res["_setup"] = {"profile": a.profile, "seed": P.seed, "torch_threads": 1, **setup(P)}
    for n in chosen:
        if n in res: continue
        res[n] = {**runs[n], **run(P, **runs[n]), "commit": commit()}
        print(n, res[n], flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out, lambda tmp: tmp.write_text(json.dumps(res, indent=1)))
    return res
