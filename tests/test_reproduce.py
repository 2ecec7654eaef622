"""The reproduction runner: profiles, incremental reruns, NB=…, failures that name the notebook."""
import json
from pathlib import Path

import nbformat
import pytest

from dreamstate.config import load_profile, reproduce


def _nb(path: Path, code: str):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "cpu"'); p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def project(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    (tmp_path / "settings.ini").write_text("[DEFAULT]\nseed = 7\nsizes = 1,2,3\n[smoke]\n[cpu]\n[paper]\n")
    (tmp_path / "dreamstate").mkdir(); (tmp_path / "dreamstate" / "m.py").write_text("x = 1\n")
    (tmp_path / "nbs").mkdir()
    log = tmp_path / "runs.txt"
    for name in ("00_a", "01_b"):
        _nb(tmp_path / "nbs" / f"{name}.ipynb", f"open({str(log)!r}, 'a').write('{name} ' + profile + '\\n')")
    return tmp_path, log


def _runs(log): return log.read_text().split("\n")[:-1] if log.exists() else []


def test_profiles(project):
    root, _ = project
    p = load_profile("smoke", root)
    assert p.seed == 7 and p.sizes == [1, 2, 3] and p.figures_dir == root / "build" / "smoke" / "figures"
    assert load_profile("cpu", root).figures_dir == root / "figures"
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        load_profile("gpu", root)
    with pytest.raises(AttributeError, match="no setting 'nope'"):
        p.nope


def test_incremental_reruns(project):
    root, log = project
    man = reproduce("smoke", root=root)
    assert _runs(log) == ["00_a smoke", "01_b smoke"]
    assert set(man["seconds_per_notebook"]) == {"00_a", "01_b"} and man["profile"] == "smoke" and man["seed"] == 7
    assert json.loads((root / "build" / "smoke" / "figures" / "manifest.json").read_text())["versions"]["torch"]
    reproduce("smoke", root=root)                       # nothing changed: nothing runs
    assert len(_runs(log)) == 2
    _nb(root / "nbs" / "01_b.ipynb", f"open({str(log)!r}, 'a').write('01_b v2\\n')")
    reproduce("smoke", root=root)                       # only the changed notebook (it is the last)
    assert _runs(log)[2:] == ["01_b v2"]
    (root / "dreamstate" / "m.py").write_text("x = 2\n")
    reproduce("smoke", root=root)                       # the package changed: everything
    assert _runs(log)[3:] == ["00_a smoke", "01_b v2"]
    reproduce("smoke", nb="01_b", root=root)            # forced: that notebook (and what follows)
    assert _runs(log)[5:] == ["01_b v2"]
    with pytest.raises(ValueError, match="no notebook 'zz'"):
        reproduce("smoke", nb="zz", root=root)


def test_failure_names_notebook_and_cell(project):
    root, _ = project
    _nb(root / "nbs" / "01_b.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(SystemExit, match=r"01_b failed at cell \d+ .*raise RuntimeError\('boom'\).*RuntimeError: boom"):
        reproduce("smoke", root=root)
