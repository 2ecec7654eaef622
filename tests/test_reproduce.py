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


def test_incremental_reruns(project, capfd):
    root, log = project
    man = reproduce("smoke", root=root)
    assert _runs(log) == ["00_a smoke", "01_b smoke"]
    err = capfd.readouterr().err                        # the kernels' own stderr included: no TCP warning, no traceback
    assert "without encryption" not in err and "Traceback" not in err
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


# --- a run that explains itself -------------------------------------------------------------------

def _cli(root, monkeypatch, capsys, *args):
    "Run the command line in `root`; its exit status and stderr."
    from dreamstate.config import reproduce_cli
    monkeypatch.chdir(root)
    with pytest.raises(SystemExit) as e: reproduce_cli(list(args))
    return e.value.code, capsys.readouterr().err


def test_bad_setting_names_key_section_and_type(project, monkeypatch, capsys):
    root, log = project
    ini = (root / "settings.ini").read_text()
    (root / "settings.ini").write_text(ini.replace("[smoke]\n", "[smoke]\nseed = 2O\n"))
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "[smoke] seed = '2O' is not an integer" in err and "[DEFAULT] seed = 7" in err
    (root / "settings.ini").write_text(ini.replace("[smoke]\n", "[smoke]\nsizes = 1,two\n"))
    with pytest.raises(ValueError, match=r"\[smoke\] sizes = '1,two' is not a comma-separated list of ints"):
        load_profile("smoke", root)
    (root / "settings.ini").write_text(ini.replace("[smoke]\n", "[smoke]\nsed = 3\n"))
    with pytest.raises(ValueError, match=r"\[smoke\] sets 'sed', which \[DEFAULT\] does not define \(did you mean 'seed'\?\)"):
        load_profile("smoke", root)
    (root / "settings.ini").write_text(ini.replace("[smoke]\n", "[smoke]\nsizes = 5\n"))
    assert load_profile("smoke", root).sizes == [5]              # one value of a list setting: a list of one
    assert not _runs(log)


def test_settings_parse_error_is_one_line(project, monkeypatch, capsys):
    root, log = project
    (root / "settings.ini").write_text((root / "settings.ini").read_text() + "this line has no equals sign\n")
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke")
    assert code == 2 and err.count("\n") == 1 and "settings.ini cannot be parsed" in err and "Traceback" not in err
    assert not _runs(log)


def test_any_section_is_a_profile(project, monkeypatch, capsys):
    root, log = project
    (root / "settings.ini").write_text((root / "settings.ini").read_text() + "[tiny]\ninherits = smoke\nseed = 3\n")
    monkeypatch.chdir(root)
    from dreamstate.config import reproduce_cli
    reproduce_cli(["--profile", "tiny"])
    assert _runs(log) == ["00_a tiny", "01_b tiny"]
    assert json.loads((root / "build" / "tiny" / "figures" / "manifest.json").read_text())["seed"] == 3
    code, err = _cli(root, monkeypatch, capsys, "--profile", "gpu")
    assert code == 2 and err.count("\n") == 1 and "unknown profile 'gpu'; settings.ini defines smoke, cpu, paper, tiny" in err


def test_nb_by_prefix(project, monkeypatch, capsys):
    root, log = project
    reproduce("smoke", root=root)
    reproduce("smoke", nb="01", root=root)                       # a prefix of exactly one notebook
    assert _runs(log)[2:] == ["01_b smoke"]
    _nb(root / "nbs" / "01_c.ipynb", "x = 1")
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke", "--nb", "01")
    assert code == 2 and err.count("\n") == 1 and "NB=01 is ambiguous: it starts 01_b, 01_c" in err
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke", "--nb", "07")
    assert code == 2 and "no notebook '07' in nbs/" in err and "00_a, 01_b, 01_c" in err
    assert len(_runs(log)) == 3


def test_stamps_hash_what_the_run_depends_on(project):
    root, log = project
    ini = root / "settings.ini"
    reproduce("smoke", root=root); n = len(_runs(log))
    ini.write_text("# a comment\n" + ini.read_text())
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n                                    # a comment reruns nothing
    ini.write_text(ini.read_text().replace("[cpu]\n", "[cpu]\nseed = 99\n"))
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n                                    # another profile's value reruns nothing
    ini.write_text(ini.read_text().replace("[smoke]\n", "[smoke]\nseed = 8\n"))
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n + 2                                # this profile's value reruns all
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "# changed\n")
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n + 4                                # so does pyproject.toml
    (root / "dreamstate" / "prompts").mkdir(); (root / "dreamstate" / "prompts" / "p.jsonl").write_text("{}\n")
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n + 6                                # and a prompt file


def test_failed_notebook_leaves_no_finished_copy(project):
    root, _ = project
    reproduce("smoke", root=root)
    out = root / "build" / "smoke" / "notebooks"
    before = (out / "01_b.ipynb").read_bytes()
    _nb(root / "nbs" / "01_b.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(SystemExit, match=r"executed up to the error: .*01_b.failed.ipynb"):
        reproduce("smoke", root=root)
    assert (out / "01_b.ipynb").read_bytes() == before             # the last finished copy, untouched
    assert "boom" in (out / "01_b.failed.ipynb").read_text()
    assert not [f for f in out.iterdir() if ".tmp" in f.name]
    assert not (root / "build" / "smoke" / "stamps" / "01_b.stamp").exists()


NBDEV = '[tool.nbdev]\nlib_path = "dreamstate"\nnbs_path = "nbs"\nallowed_cell_metadata_keys = ["tags"]\njupyter_hooks = false\n'


def test_cpu_writes_outputs_back_into_nbs(project):
    """Only the cpu profile writes executed notebooks into nbs/: outputs kept, the injected parameters
    cell and progress bars left out, nbdev-clean has nothing to change, and a rerun leaves the bytes alone."""
    import subprocess, sys
    root, _ = project
    (root / "pyproject.toml").write_text("[project]\nname='x'\n" + NBDEV)
    code = ("import sys, time\nfrom tqdm import tqdm\nfor _ in tqdm(range(3), mininterval=0): time.sleep(0.01)\n"
            "print('answer', 6 * 7)\nsys.stderr.write('a warning\\n')\n"
            "from IPython.display import Markdown\nMarkdown('| a |\\n|---|\\n| 1 |')")
    _nb(root / "nbs" / "01_b.ipynb", code)
    src = (root / "nbs" / "01_b.ipynb").read_bytes()
    reproduce("smoke", root=root)
    assert (root / "nbs" / "01_b.ipynb").read_bytes() == src     # smoke never writes into nbs/
    reproduce("cpu", root=root)
    nb = json.loads((root / "nbs" / "01_b.ipynb").read_text())
    assert [c["source"] for c in nb["cells"]] == [['profile = "cpu"'], json.loads(src)["cells"][1]["source"]]
    outs = nb["cells"][1]["outputs"]
    text = json.dumps(outs)
    assert "answer 42" in text and "a warning" in text and "text/markdown" in text
    assert "%|" not in text and "it/s" not in text                 # no progress bar in the document
    assert all(c.get("execution_count") is None for c in nb["cells"]) and "papermill" not in json.dumps(nb)
    written = (root / "nbs" / "01_b.ipynb").read_bytes()
    r = subprocess.run([str(Path(sys.executable).with_name("nbdev-clean"))], cwd=root, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (root / "nbs" / "01_b.ipynb").read_bytes() == written  # nbdev-clean changes nothing
    reproduce("cpu", nb="01_b", root=root)                        # forced rerun, same outputs: same bytes
    assert (root / "nbs" / "01_b.ipynb").read_bytes() == written
    assert not [f for f in (root / "nbs").iterdir() if ".tmp" in f.name]


def _git(root, *args):
    import subprocess
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "HOME": str(root), "PATH": "/usr/bin:/bin"})


def test_provenance_refuses_a_dirty_tree_for_tracked_figures(project, monkeypatch):
    """cpu (writes the tracked figures/) refuses uncommitted code; outputs written back into nbs/ do not count;
    ALLOW_DIRTY=1 writes and records the files and the diff's hash; smoke (build/ only) never refuses. The
    manifest keeps the from-scratch time apart from the last run."""
    from dreamstate.config import ProfileError
    root, log = project
    (root / "pyproject.toml").write_text("[project]\nname='x'\n" + NBDEV)
    _git(root, "init", "-q"); _git(root, "add", "-A"); _git(root, "commit", "-qm", "x")
    monkeypatch.delenv("ALLOW_DIRTY", raising=False)
    man = reproduce("cpu", root=root)                               # clean: runs; its write-back dirties only outputs
    assert man["from_scratch"]["seconds"] > 0 and man["last_run"]["notebooks_run"] == ["00_a", "01_b"]
    assert set(man["from_scratch"]["seconds_per_notebook"]) == {"00_a", "01_b"}
    assert not man["commit"].endswith("-dirty")
    man = reproduce("cpu", nb="00", root=root)                      # outputs in nbs/ are not code changes …
    assert "from_scratch" in json.loads((root / "figures" / "manifest.json").read_text())
    assert not man["commit"].endswith("-dirty")                     # … and do not make the commit "-dirty"
    (root / "dreamstate" / "m.py").write_text("x = 2\n")
    with pytest.raises(ProfileError, match="uncommitted changes to dreamstate/m.py.*ALLOW_DIRTY"):
        reproduce("cpu", root=root)
    nb = json.loads((root / "nbs" / "01_b.ipynb").read_text())
    nb["cells"][1]["source"] = ["print(1)\n"]
    (root / "nbs" / "01_b.ipynb").write_text(json.dumps(nb))
    with pytest.raises(ProfileError, match="nbs/01_b.ipynb"):
        reproduce("cpu", root=root)
    reproduce("smoke", root=root)                                   # build/smoke only: no refusal
    monkeypatch.setenv("ALLOW_DIRTY", "1")
    man = reproduce("cpu", root=root)
    assert man["commit"].endswith("-dirty")
    assert sorted(man["dirty"]["files"]) == ["dreamstate/m.py", "nbs/01_b.ipynb"] and len(man["dirty"]["diff_sha256"]) == 64
