"""`make reproduce PROFILE=smoke`, every notebook end to end at smoke sizes (what `make test` used to run after
pytest; as a test, it runs beside the `paper-smoke` end-to-end test under `pytest -n 2`)."""
import json, os, subprocess, time
from pathlib import Path

import pytest

from dreamstate.config import load_profile
from dreamstate.reproduce import notebooks, plan_notebooks

ROOT = Path(__file__).resolve().parents[1]


def _snapshot(folder: Path) -> dict:
    return {str(f.relative_to(folder)): f.stat().st_mtime_ns for f in folder.rglob("*") if f.is_file()}


@pytest.mark.end_to_end
def test_smoke_end_to_end():
    """Every notebook runs (or is up to date) in the `smoke` profile, into build/smoke/ only: afterwards the plan
    names nothing to rerun, the manifest knows every notebook, and figures/ and nbs/ are untouched."""
    before = {d: _snapshot(ROOT / d) for d in ("figures", "nbs")}
    t0 = time.time()
    r = subprocess.run(["make", "--no-print-directory", "reproduce", "PROFILE=smoke"], cwd=ROOT, env=dict(os.environ),
                       capture_output=True, text=True, timeout=1800)
    print(r.stdout[-2000:], f"smoke end to end: {time.time() - t0:.0f} s")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    prof = load_profile("smoke", ROOT)
    stale = [(n, why) for n, why in plan_notebooks(prof) if why is not None]
    assert not stale, stale
    man = json.loads((prof.figures_dir / "manifest.json").read_text())
    assert man["profile"] == "smoke" and prof.figures_dir == ROOT / "build" / "smoke" / "figures"
    assert set(man["seconds_per_notebook"]) >= {p.stem for p in notebooks(ROOT)}
    assert {d: _snapshot(ROOT / d) for d in ("figures", "nbs")} == before    # never writes figures/ or nbs/
