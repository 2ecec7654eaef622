"""`make reproduce PROFILE=smoke` end to end: every notebook at smoke sizes, into build/smoke/ only. A file of its own, marked
end_to_end, so that `make test` starts it at once in one pytest process, beside the `paper-smoke` run in the other."""
import json, os, subprocess, time
from pathlib import Path

import pytest

from conftest import snapshot

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.end_to_end
def test_smoke_profile_end_to_end():
    "Every notebook of nbs/ has run (now or, unchanged since, before) and has its seconds in build/smoke's manifest; figures/ and nbs/ untouched."
    before = {d: snapshot(ROOT / d) for d in ("figures", "nbs")}
    env = {k: v for k, v in os.environ.items() if k not in ("DREAMSTATE_CHECKPOINT", "DREAMSTATE_DEVICE")}
    t0 = time.time()
    r = subprocess.run(["make", "--no-print-directory", "reproduce", "PROFILE=smoke"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    print(f"smoke end to end: {time.time() - t0:.0f} s\n" + r.stdout[-2000:])
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    man = json.loads((ROOT / "build" / "smoke" / "figures" / "manifest.json").read_text())
    assert man["profile"] == "smoke"
    assert set(man["seconds_per_notebook"]) == {p.stem for p in (ROOT / "nbs").glob("[0-9]*.ipynb")}
    assert {d: snapshot(ROOT / d) for d in ("figures", "nbs")} == before    # never writes figures/ or nbs/
