"""Checkpoint profiles (issue 13): one-line failures before anything runs, the checkpoint's sha256 in
stamps and manifest, and `paper-smoke` end to end on a random-weight World-vocabulary checkpoint."""
import json, os, subprocess, sys, time
from pathlib import Path

import nbformat
import pytest
import torch

from conftest import snapshot
from dreamstate.config import ProfileError, check_profile, checkpoint_sha256, load_profile
from dreamstate.reproduce import reproduce, reproduce_cli
from dreamstate.rwkv7 import RWKV7, RWKV7Config

ROOT = Path(__file__).resolve().parents[1]
WORLD_V = 65536


def write_checkpoint(path: Path, vocab=WORLD_V, n_layer=2, n_embd=64, head_size=32, seed=0) -> Path:
    """A random-weight RWKV-7 in BlinkDL's layout (plain state dict, bf16, `[1,1,C]` vectors), written with
    `torch.save` under a fixed name so that the same arguments give the same bytes (and sha256)."""
    m = RWKV7(RWKV7Config(vocab_size=vocab, n_layer=n_layer, n_embd=n_embd, head_size=head_size)).init_weights(seed=seed)
    with torch.no_grad():   # BlinkDL's init zeroes the output projections; make every block do something
        g = torch.Generator().manual_seed(seed)
        for blk in m.blocks:
            for w in (blk.att.output.weight, blk.ffn.value.weight): w.copy_(torch.randn(w.shape, generator=g) * 0.02)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().to(torch.bfloat16).contiguous() for k, v in m.state_dict().items()}, path)
    return path


@pytest.fixture
def paper(tmp_path):
    "The `paper-smoke` profile with its build folder in a temporary directory."
    p = load_profile("paper-smoke", ROOT)
    p["root"] = str(tmp_path)
    return p


def _err(p) -> str:
    with pytest.raises(ProfileError) as e: check_profile(p)
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    return msg


def test_checkpoint_unset_or_literal(paper, monkeypatch):
    for value in ("${DREAMSTATE_CHECKPOINT}", "", "  "):
        paper["checkpoint"] = value
        assert "DREAMSTATE_CHECKPOINT" in _err(paper)
    monkeypatch.delenv("DREAMSTATE_CHECKPOINT", raising=False)
    p = load_profile("paper", ROOT)
    assert p.uses_checkpoint and p.checkpoint == "${DREAMSTATE_CHECKPOINT}"
    assert "set DREAMSTATE_CHECKPOINT" in _err(p)
    monkeypatch.setenv("DREAMSTATE_CHECKPOINT", "")        # set but empty: still unset
    assert "set DREAMSTATE_CHECKPOINT" in _err(load_profile("paper", ROOT))


def test_checkpoint_bad_files(paper, tmp_path):
    paper["checkpoint"] = str(tmp_path / "missing.pth")
    assert "checkpoint not found" in _err(paper) and "missing.pth" in _err(paper)
    paper["checkpoint"] = str(tmp_path)                     # a folder is not a checkpoint file
    assert "checkpoint not found" in _err(paper)
    (tmp_path / "junk.pth").write_bytes(b"\x00garbage" * 100)
    paper["checkpoint"] = str(tmp_path / "junk.pth")
    assert "cannot read checkpoint" in _err(paper)
    torch.save({"emb.weight": torch.zeros(WORLD_V, 8), "head.weight": torch.zeros(WORLD_V, 8)}, tmp_path / "gpt.pth")
    paper["checkpoint"] = str(tmp_path / "gpt.pth")
    assert "not an RWKV-7 checkpoint" in _err(paper) and "blocks.0.att.r_k" in _err(paper)
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    paper["checkpoint"] = str(tmp_path / "list.pth")
    assert "not an RWKV-7 checkpoint" in _err(paper)
    write_checkpoint(tmp_path / "bytes.pth", vocab=256, n_layer=1, n_embd=32, head_size=16)
    paper["checkpoint"] = str(tmp_path / "bytes.pth")
    msg = _err(paper)
    assert "vocabulary of 256" in msg and "65536" in msg and "World" in msg
    # what RWKV7.load accepts, the check accepts: a training checkpoint's model entry with torch.compile's prefixes
    sd = torch.load(write_checkpoint(tmp_path / "w.pth", n_layer=1, n_embd=32, head_size=16), weights_only=True)
    torch.save({"model": {"_orig_mod." + k: v for k, v in sd.items()}, "step": 3}, tmp_path / "compiled.pth")
    paper["checkpoint"] = str(tmp_path / "compiled.pth")
    from dreamstate.config import inspect_checkpoint
    assert inspect_checkpoint(paper)["n_layer"] == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_checkpoint_unreadable(paper, tmp_path):
    f = write_checkpoint(tmp_path / "secret.pth", n_layer=1, n_embd=32, head_size=16)
    f.chmod(0)
    paper["checkpoint"] = str(f)
    assert "not readable" in _err(paper)


def test_device(paper, tmp_path, monkeypatch):
    paper["checkpoint"] = str(write_checkpoint(tmp_path / "w.pth", n_layer=1, n_embd=32, head_size=16))
    info = check_profile(paper)
    assert (info["n_layer"], info["n_head"], info["head_size"], info["vocab_size"]) == (1, 2, 16, WORLD_V)
    if not torch.cuda.is_available():
        paper["device"] = "cuda"
        msg = _err(paper)
        assert "'cuda'" in msg and "DREAMSTATE_DEVICE=cpu" in msg
    assert load_profile("paper", ROOT).device == "cuda"
    monkeypatch.setenv("DREAMSTATE_DEVICE", "cpu")
    assert load_profile("paper", ROOT).device == "cpu" and load_profile("cpu", ROOT).device == "cpu"


def test_cli_one_line_no_traceback(monkeypatch, capsys):
    monkeypatch.delenv("DREAMSTATE_CHECKPOINT", raising=False)
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as e: reproduce_cli(["--profile", "paper"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dreamstate-reproduce: ") and "DREAMSTATE_CHECKPOINT" in err


def test_make_reproduce_paper_without_checkpoint_fails_fast():
    env = {k: v for k, v in os.environ.items() if k != "DREAMSTATE_CHECKPOINT"}
    t0 = time.time()
    r = subprocess.run(["make", "--no-print-directory", "reproduce", "PROFILE=paper"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    elapsed = time.time() - t0
    assert r.returncode != 0
    assert "DREAMSTATE_CHECKPOINT" in r.stderr and "Traceback" not in r.stderr + r.stdout
    assert "running" not in r.stdout                         # no notebook started
    assert elapsed < 60, f"took {elapsed:.0f} s"


def test_sha256_cached_by_path_size_mtime(tmp_path):
    f, cache = tmp_path / "x.bin", tmp_path / "cache.json"
    f.write_bytes(b"abc")
    import hashlib
    assert checkpoint_sha256(f, cache) == hashlib.sha256(b"abc").hexdigest()
    memo = json.loads(cache.read_text()); (key,) = memo
    memo[key] = "cached"; cache.write_text(json.dumps(memo))
    assert checkpoint_sha256(f, cache) == "cached"            # not recomputed
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    assert checkpoint_sha256(f, cache) == hashlib.sha256(b"abc").hexdigest()   # mtime changed: recomputed


def _project(root: Path, log: Path):
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "settings.ini").write_text("[DEFAULT]\nseed = 7\ndevice = cpu\ncheckpoint =\n[smoke]\n[cpu]\n[paper]\n"
                                       "checkpoint = ${DS_TEST_CKPT}\n[paper-smoke]\ninherits = paper, smoke\n")
    (root / "dreamstate").mkdir(); (root / "dreamstate" / "m.py").write_text("x = 1\n")
    (root / "nbs").mkdir()
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "cpu"'); p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell("from dreamstate.config import load_profile\nP = load_profile(profile)\nP.checkpoint\n"
                                             f"open({str(log)!r}, 'a').write('ran\\n')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "nbs" / "00_a.ipynb")


def test_stamps_and_manifest_know_the_checkpoint(tmp_path, monkeypatch):
    root, log = tmp_path / "proj", tmp_path / "runs.txt"
    root.mkdir(); _project(root, log)
    runs = lambda: len(log.read_text().splitlines()) if log.exists() else 0
    ck = write_checkpoint(tmp_path / "a" / "world.pth", n_layer=1, n_embd=32, head_size=16)
    monkeypatch.setenv("DS_TEST_CKPT", str(ck))
    man = reproduce("paper-smoke", root=root)
    assert runs() == 1
    import hashlib
    sha = hashlib.sha256(ck.read_bytes()).hexdigest()
    assert man["checkpoint"]["sha256"] == sha and man["checkpoint"]["name"] == "world.pth"
    assert (man["checkpoint"]["n_layer"], man["checkpoint"]["n_head"], man["checkpoint"]["head_size"]) == (1, 2, 16)
    assert json.loads((root / "build" / "paper-smoke" / "figures" / "manifest.json").read_text())["checkpoint"]["sha256"] == sha
    reproduce("paper-smoke", root=root)
    assert runs() == 1                                           # same checkpoint: up to date
    same = write_checkpoint(tmp_path / "b" / "world.pth", n_layer=1, n_embd=32, head_size=16)
    monkeypatch.setenv("DS_TEST_CKPT", str(same))
    reproduce("paper-smoke", root=root)
    assert runs() == 1                                           # same bytes elsewhere: still up to date
    other = write_checkpoint(tmp_path / "c" / "world.pth", n_layer=1, n_embd=32, head_size=16, seed=1)
    monkeypatch.setenv("DS_TEST_CKPT", str(other))
    man = reproduce("paper-smoke", root=root)
    assert runs() == 2 and man["checkpoint"]["sha256"] == hashlib.sha256(other.read_bytes()).hexdigest()
    monkeypatch.delenv("DS_TEST_CKPT")
    with pytest.raises(ProfileError, match="DS_TEST_CKPT"):
        reproduce("paper-smoke", root=root)
    assert runs() == 2


@pytest.mark.end_to_end
def test_paper_smoke_end_to_end(tmp_path):
    """`DREAMSTATE_CHECKPOINT=… make reproduce PROFILE=paper-smoke` on a random-weight World checkpoint (L=2, C=64,
    head size 32), every notebook, into build/paper-smoke/ only."""
    from dreamstate.states import StateDataset
    ck = write_checkpoint(tmp_path / "RWKV-x070-World-random-L2-C64.pth")
    before = {d: snapshot(ROOT / d) for d in ("figures", "nbs")}
    env = {**os.environ, "DREAMSTATE_CHECKPOINT": str(ck)}
    env.pop("DREAMSTATE_DEVICE", None)
    t0 = time.time()
    r = subprocess.run(["make", "--no-print-directory", "reproduce", "PROFILE=paper-smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    print(f"paper-smoke end to end: {time.time() - t0:.0f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    build = ROOT / "build" / "paper-smoke"
    man = json.loads((build / "figures" / "manifest.json").read_text())
    import hashlib
    assert man["profile"] == "paper-smoke" and man["checkpoint"]["sha256"] == hashlib.sha256(ck.read_bytes()).hexdigest()
    assert set(man["seconds_per_notebook"]) >= {"05_train_lm", "06_states", "08_state_dit", "09_state_eval"}
    # the states are the checkpoint's: its H and N (and L), read with the World tokenizer
    states = StateDataset.load(build / "states")
    assert tuple(states.wkv.shape[1:]) == (2, 2, 32, 32) and states.model_config["vocab_size"] == WORLD_V
    recipe = json.loads((build / "states" / "recipe.json").read_text())
    assert recipe["tokenizer"] == "WorldTokenizer" and recipe["vocab_size"] == WORLD_V
    assert recipe["model_sha256"] == man["checkpoint"]["sha256"]
    sources = {m["source"] for m in states.meta}
    assert sources == {"corpus", "prompt-set"}
    from dreamstate.data import WorldTokenizer
    m = next(m for m in states.meta if m["source"] == "corpus")
    assert m["prompt_len"] == len(WorldTokenizer().encode(m["text"]))     # prompt lengths are World tokens
    assert not (build / "lm" / "last.pt").exists()                         # nothing was trained in 05
    lm_table = (build / "figures" / "lm_val_per_persona.csv").read_text()
    assert "bigram_ce" in lm_table
    # 11: every row started from the checkpoint's core, read World tokens, answers scored per token
    core = json.loads((build / "hybrid" / "core.json").read_text())
    assert core["sha256"] == man["checkpoint"]["sha256"] and core["checkpoint"] == ck.name and core["tokenizer"] == "WorldTokenizer"
    assert (core["n_layer"], core["n_embd"], core["n_head"], core["head_size"], core["vocab_size"]) == (2, 64, 2, 32, WORLD_V)
    assert core["hybrid_core_equals_checkpoint"] and core["prefix_dim_ffn"] > core["dim_ffn"]
    assert core["prefix_max_abs_logit_diff_at_step0"] < 1e-3                     # (b) widened without changing the function
    assert "11_hybrid_eval" in man["seconds_per_notebook"]
    assert "context_tokens" in (build / "figures" / "hybrid_context_length.csv").read_text()
    assert {d: snapshot(ROOT / d) for d in ("figures", "nbs")} == before    # never writes figures/ or nbs/
