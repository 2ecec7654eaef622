"""The reproduction runner: profiles, incremental reruns, NB=…, failures that name the notebook."""
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from dreamstate.config import load_profile
from dreamstate.reproduce import reproduce, show_plan


def _nb(path: Path, code: str):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell('profile = "cpu"'); p.metadata["tags"] = ["parameters"]
    nb.cells = [p, nbformat.v4.new_code_cell(code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def _uses(root: Path, *modules: str) -> str:
    "Notebook code that loads the profile as `P` and imports `modules` of the synthetic project's own package folder."
    imports = "".join(f"import dreamstate.{m}\n" for m in modules)
    return ("import dreamstate\nfrom dreamstate.config import load_profile\n"
            f"dreamstate.__path__.append({str(root / 'dreamstate')!r})\nP = load_profile(profile)\n" + imports)


def _make_project(root: Path) -> Path:
    "Two notebooks in `root`: 00_a imports the package module `m`, 01_b reads the setting `seed`; returns the log they write."
    (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "settings.ini").write_text("[DEFAULT]\nseed = 7\nsizes = 1,2,3\n[smoke]\n[cpu]\n[paper]\n")
    (root / "dreamstate").mkdir(); (root / "dreamstate" / "m.py").write_text("x = 1\n")
    (root / "nbs").mkdir()
    log = root / "runs.txt"
    _nb(root / "nbs" / "00_a.ipynb", _uses(root, "m") + f"open({str(log)!r}, 'a').write('00_a ' + profile + '\\n')")
    _nb(root / "nbs" / "01_b.ipynb", _uses(root) + f"P.seed\nopen({str(log)!r}, 'a').write('01_b ' + profile + '\\n')")
    return log


@pytest.fixture
def project(tmp_path):
    "Two notebooks: 00_a imports the package module `m`, 01_b reads the setting `seed`."
    return tmp_path, _make_project(tmp_path)


def _runs(log): return log.read_text().split("\n")[:-1] if log.exists() else []


class _BuiltOnce:
    """A folder that `build(folder)` fills once per module (running its notebooks takes seconds), saved beside it;
    `fresh()` puts the saved copy back in the same place before each test, so each test starts from what building it
    itself would leave, and what one test changes no other sees. Restored in place rather than copied elsewhere: the
    notebooks name absolute paths (the package folder they append, the log they write)."""
    def __init__(self, folder: Path, build):
        self.folder, self.saved = folder, folder.with_name(folder.name + "-saved")
        folder.mkdir(exist_ok=True)
        build(folder)
        shutil.copytree(folder, self.saved, symlinks=True)

    def fresh(self) -> Path:
        shutil.rmtree(self.folder)
        shutil.copytree(self.saved, self.folder, symlinks=True)
        return self.folder


@pytest.fixture(scope="module")
def _smoked(tmp_path_factory):
    def build(root):
        log = _make_project(root)
        reproduce("smoke", root=root)
        assert _runs(log) == ["00_a smoke", "01_b smoke"]
    return _BuiltOnce(tmp_path_factory.mktemp("smoked"), build)


@pytest.fixture
def smoked_project(_smoked):
    "`project` after `reproduce(\"smoke\")` ran both its notebooks (built once per module, restored for each test)."
    root = _smoked.fresh()
    return root, root / "runs.txt"


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
    _nb(root / "nbs" / "00_a.ipynb", _uses(root, "m") + f"open({str(log)!r}, 'a').write('00_a v2\\n')")
    reproduce("smoke", root=root)                       # only the changed notebook (01_b does not read what 00_a writes)
    assert _runs(log)[2:] == ["00_a v2"]
    (root / "dreamstate" / "m.py").write_text("x = 2\n")
    reproduce("smoke", root=root)                       # a package module changed: only the notebook that imports it
    assert _runs(log)[3:] == ["00_a v2"]
    reproduce("smoke", nb="00_a", root=root)            # forced: that notebook, not what follows it
    assert _runs(log)[4:] == ["00_a v2"]
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
    from dreamstate.reproduce import reproduce_cli
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
    from dreamstate.reproduce import reproduce_cli
    reproduce_cli(["--profile", "tiny"])
    assert _runs(log) == ["00_a tiny", "01_b tiny"]
    assert json.loads((root / "build" / "tiny" / "figures" / "manifest.json").read_text())["seed"] == 3
    code, err = _cli(root, monkeypatch, capsys, "--profile", "gpu")
    assert code == 2 and err.count("\n") == 1 and "unknown profile 'gpu'; settings.ini defines smoke, cpu, paper, tiny" in err


def test_nb_by_prefix(smoked_project, monkeypatch, capsys):
    root, log = smoked_project                                   # after reproduce("smoke")
    reproduce("smoke", nb="01", root=root)                       # a prefix of exactly one notebook
    assert _runs(log)[2:] == ["01_b smoke"]
    _nb(root / "nbs" / "01_c.ipynb", "x = 1")
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke", "--nb", "01")
    assert code == 2 and err.count("\n") == 1 and "NB=01 is ambiguous: it starts 01_b, 01_c" in err
    code, err = _cli(root, monkeypatch, capsys, "--profile", "smoke", "--nb", "07")
    assert code == 2 and "no notebook '07' in nbs/" in err and "00_a, 01_b, 01_c" in err
    assert len(_runs(log)) == 3


def test_records_hold_what_each_notebook_used(smoked_project):
    """A notebook's record holds the settings it read (by value), not settings.ini's text; a file outside the
    package code it read (a prompt file) by its hash; pyproject.toml is no input."""
    root, log = smoked_project                                     # after reproduce("smoke")
    ini = root / "settings.ini"
    n = len(_runs(log))
    rec = json.loads((root / "build" / "smoke" / "records" / "01_b.json").read_text())
    assert rec["settings"] == {"seed": 7} and "dreamstate/m.py" not in rec["modules"]
    assert "dreamstate/m.py" in json.loads((root / "build" / "smoke" / "records" / "00_a.json").read_text())["modules"]
    ini.write_text("# a comment\n" + ini.read_text())
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n                                    # a comment reruns nothing
    ini.write_text(ini.read_text().replace("[cpu]\n", "[cpu]\nseed = 99\n"))
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n                                    # another profile's value reruns nothing
    ini.write_text(ini.read_text().replace("[smoke]\n", "[smoke]\nseed = 8\n"))
    reproduce("smoke", root=root)
    assert _runs(log)[n:] == ["01_b smoke"]                        # this profile's value: the notebook that read it
    ini.write_text(ini.read_text().replace("sizes = 1,2,3", "sizes = 1,2"))
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text() + "# changed\n")
    reproduce("smoke", root=root)
    assert len(_runs(log)) == n + 1                                # a value no notebook read, and pyproject.toml: nothing
    (root / "dreamstate" / "prompts").mkdir(); (root / "dreamstate" / "prompts" / "p.jsonl").write_text("{}\n")
    _nb(root / "nbs" / "00_a.ipynb", _uses(root, "m") + f"open({str(root / 'dreamstate' / 'prompts' / 'p.jsonl')!r}).read()\n"
        f"open({str(log)!r}, 'a').write('00_a prompts\\n')")
    reproduce("smoke", root=root)
    assert _runs(log)[n + 1:] == ["00_a prompts"]
    (root / "dreamstate" / "prompts" / "p.jsonl").write_text('{"a": 1}\n')
    reproduce("smoke", root=root)
    assert _runs(log)[n + 2:] == ["00_a prompts"]                  # a prompt file it read changed


def test_failed_notebook_leaves_no_finished_copy(smoked_project):
    root, _ = smoked_project                                       # after reproduce("smoke")
    out = root / "build" / "smoke" / "notebooks"
    before = (out / "01_b.ipynb").read_bytes()
    _nb(root / "nbs" / "01_b.ipynb", "raise RuntimeError('boom')")
    with pytest.raises(SystemExit, match=r"executed up to the error: .*01_b.failed.ipynb"):
        reproduce("smoke", root=root)
    assert (out / "01_b.ipynb").read_bytes() == before             # the last finished copy, untouched
    assert "boom" in (out / "01_b.failed.ipynb").read_text()
    assert not [f for f in out.iterdir() if ".tmp" in f.name]
    assert not (root / "build" / "smoke" / "records" / "01_b.json").exists()


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


# --- the dependency graph: what a notebook used decides when it reruns -----------------------------------

def _make_graph(tmp_path: Path):
    """Three notebooks and a package of two modules, like 05 → 10 → 11: 01_make reads the setting `a_size` and writes
    data.txt; 02_train imports `hyb` and `common`, reads data.txt, writes model.txt (atomically: a temporary file
    renamed); 03_eval imports `hyb`, reads model.txt and the setting `b_size`; all three run once."""
    root, log = tmp_path / "proj", tmp_path / "runs.txt"      # the log outside the project: not one of its files
    root.mkdir(); (root / "pyproject.toml").write_text("[project]\nname='x'\n")
    (root / "settings.ini").write_text("[DEFAULT]\nseed = 7\na_size = 1\nb_size = 2\n[smoke]\n[cpu]\n")
    (root / "dreamstate").mkdir()
    for m in ("hyb", "common"): (root / "dreamstate" / f"{m}.py").write_text("x = 1\n")
    (root / "nbs").mkdir()
    log_line = lambda name: f"open({str(log)!r}, 'a').write('{name}\\n')\n"
    _nb(root / "nbs" / "01_make.ipynb", _uses(root) + "(P.build_dir / 'data.txt').write_text(str(P.a_size))\n" + log_line("01_make"))
    _nb(root / "nbs" / "02_train.ipynb", _uses(root, "hyb", "common") + "import os\nd = (P.build_dir / 'data.txt').read_text()\n"
        "(P.build_dir / 'tmp.txt').write_text(d + '!')\nos.replace(P.build_dir / 'tmp.txt', P.build_dir / 'model.txt')\n" + log_line("02_train"))
    _nb(root / "nbs" / "03_eval.ipynb", _uses(root, "hyb") + "(P.build_dir / 'model.txt').read_text() + str(P.b_size)\n" + log_line("03_eval"))
    reproduce("smoke", root=root)
    assert _runs(log) == ["01_make", "02_train", "03_eval"]


@pytest.fixture(scope="module")
def _graph_built(tmp_path_factory):
    return _BuiltOnce(tmp_path_factory.mktemp("graph"), _make_graph)


@pytest.fixture
def graph(_graph_built):
    "`_make_graph`'s project after its first run (built once per module, restored for each test)."
    base = _graph_built.fresh()
    return base / "proj", base / "runs.txt"


def _plan(root, nb=None):
    return dict(show_plan("smoke", nb, root))


def test_records_are_the_graph(graph):
    root, _ = graph
    rec = lambda n: json.loads((root / "build" / "smoke" / "records" / f"{n}.json").read_text())
    assert rec("01_make")["writes"] == ["build/smoke/data.txt"] and rec("01_make")["settings"] == {"a_size": 1}
    assert set(rec("02_train")["modules"]) >= {"dreamstate/hyb.py", "dreamstate/common.py"}
    assert list(rec("02_train")["reads"]) == ["build/smoke/data.txt"] and rec("02_train")["writes"] == ["build/smoke/model.txt"]
    assert list(rec("03_eval")["after"]) == ["02_train"] and "dreamstate/common.py" not in rec("03_eval")["modules"]
    assert _plan(root) == {"01_make": None, "02_train": None, "03_eval": None}


def test_module_edit_reruns_only_its_importers(graph, capsys):
    "The issue's example: an edit to dreamstate/hybrid.py plans 10–11 only; here `hyb`, imported by two of the three."
    root, log = graph
    (root / "dreamstate" / "hyb.py").write_text("x = 2\n")
    assert _plan(root) == {"01_make": None, "02_train": "dreamstate/hyb.py changed", "03_eval": "dreamstate/hyb.py changed"}
    out = capsys.readouterr().out
    assert "01_make: up to date\n" in out and "02_train: rerun — dreamstate/hyb.py changed\n" in out
    assert len(_runs(log)) == 3                                       # a plan runs nothing
    reproduce("smoke", root=root)
    assert _runs(log)[3:] == ["02_train", "03_eval"]
    (root / "dreamstate" / "common.py").write_text("x = 2\n")        # imported by 02 only; 03 reads what 02 writes
    assert _plan(root) == {"01_make": None, "02_train": "dreamstate/common.py changed",
                           "03_eval": "reads build/smoke/model.txt written by 02_train (rerunning)"}


def test_setting_reruns_only_its_readers(graph):
    root, log = graph
    ini = root / "settings.ini"
    ini.write_text(ini.read_text().replace("[smoke]\n", "[smoke]\nb_size = 5\n"))
    assert _plan(root) == {"01_make": None, "02_train": None, "03_eval": "setting b_size changed (2 → 5)"}
    reproduce("smoke", root=root)
    assert _runs(log)[3:] == ["03_eval"]
    ini.write_text(ini.read_text().replace("[smoke]\n", "[smoke]\na_size = 3\n"))
    assert _plan(root) == {"01_make": "setting a_size changed (1 → 3)", "02_train": "reads build/smoke/data.txt written by 01_make (rerunning)",
                           "03_eval": "reads build/smoke/model.txt written by 02_train (rerunning)"}


def test_deleted_build_file_reruns_its_writer_and_readers(graph):
    root, log = graph
    (root / "build" / "smoke" / "model.txt").unlink()
    assert _plan(root) == {"01_make": None, "02_train": "build/smoke/model.txt it writes is missing",
                           "03_eval": "reads build/smoke/model.txt written by 02_train (rerunning)"}
    reproduce("smoke", root=root)
    assert _runs(log)[3:] == ["02_train", "03_eval"]
    (root / "build" / "smoke" / "model.txt").write_text("edited by hand")
    assert _plan(root)["03_eval"] == "build/smoke/model.txt it reads is changed" and _plan(root)["02_train"] is None


def test_nb_runs_what_it_needs(graph):
    """NB=X forces X and runs only what X needs that is stale, never what follows; with no record of X, every
    notebook before it."""
    root, log = graph
    (root / "build" / "smoke" / "data.txt").unlink()
    assert _plan(root, "02") == {"01_make": "build/smoke/data.txt it writes is missing", "02_train": "forced (NB=02_train)"}
    reproduce("smoke", nb="02", root=root)
    assert _runs(log)[3:] == ["01_make", "02_train"]                  # not 03_eval, though it is stale
    assert _plan(root)["03_eval"] == "02_train ran again since (it writes a file this one reads)"   # same model.txt bytes
    (root / "build" / "smoke" / "records" / "03_eval.json").unlink()
    assert _plan(root, "03") == {"01_make": None, "02_train": None, "03_eval": "forced (NB=03_eval)"}
    import shutil; shutil.rmtree(root / "build" / "smoke" / "records")
    assert _plan(root, "02") == {"01_make": "no record of a finished run", "02_train": "forced (NB=02_train)"}


def test_lettered_notebooks_run_in_reading_order(project):
    root, log = project
    _nb(root / "nbs" / "00a_x.ipynb", f"open({str(log)!r}, 'a').write('00a_x\\n')")
    (root / "nbs" / "notes.ipynb").write_text((root / "nbs" / "00a_x.ipynb").read_text())   # not a numbered notebook: not run
    reproduce("smoke", root=root)
    assert _runs(log) == ["00_a smoke", "00a_x", "01_b smoke"]
    reproduce("smoke", root=root)
    assert len(_runs(log)) == 3                                       # it has a record like the others


def test_sync_check_compares_the_bytes_nbdev_clean_writes(project):
    "A notebook equal as JSON but laid out otherwise (key order, indent) is one `nbdev-clean` would rewrite."
    import copy
    from fastcore.nbio import write_nb
    from dreamstate.reproduce import _nbdev_clean, notebooks_to_clean
    root, _ = project
    (root / "pyproject.toml").write_text((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())   # nbdev's own config
    for f in (root / "nbs").glob("*.ipynb"):
        write_nb(_nbdev_clean(copy.deepcopy(json.loads(f.read_text())), root / "nbs"), f)
    assert notebooks_to_clean(root) == []
    f = root / "nbs" / "00_a.ipynb"
    nb = json.loads(f.read_text())
    f.write_text(json.dumps(dict(reversed(list(nb.items()))), indent=2) + "\n")          # same JSON, other bytes
    assert json.loads(f.read_text()) == nb and notebooks_to_clean(root) == ["00_a.ipynb"]


def test_two_profiles_side_by_side_in_one_checkout(project):
    """Each run's kernels talk over IPC sockets in a folder of their own, gone after the run: jupyter's default names
    (`kernel-ipc-1`, … in the notebooks' folder) made two profiles run at once in one checkout race for the same sockets."""
    import subprocess, sys
    root, log = project
    (root / "settings.ini").write_text((root / "settings.ini").read_text() + "[side]\ninherits = smoke\n")
    probe = ("from ipykernel.kernelapp import IPKernelApp\n"
             f"open({str(root / 'ips.txt')!r}, 'a').write(IPKernelApp.instance().ip + '\\n')")
    _nb(root / "nbs" / "02_ip.ipynb", _uses(root) + probe)
    run = "from pathlib import Path; from dreamstate.reproduce import reproduce; reproduce({!r}, root=Path({!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", run.format(p, str(root))], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for p in ("smoke", "side")]
    outs = [p.communicate(timeout=300)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted(_runs(log)) == ["00_a side", "00_a smoke", "01_b side", "01_b smoke"]
    ips = (root / "ips.txt").read_text().split()
    assert len(ips) == 2 and len(set(ips)) == 2                         # one socket folder per run
    for ip in ips:
        assert Path(ip).is_absolute() and not Path(ip).is_relative_to(root) and not Path(ip).parent.exists()
    assert not list((root / "nbs").glob("kernel-ipc*"))
