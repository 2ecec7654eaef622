"""The rendered site (notebook 00e, `make site`): built offline from the committed, executed notebooks, and every
page opened in headless Chromium, which must load it and draw every figure; beside it the control that must fail."""
import base64
import json
from pathlib import Path

import pytest

site = pytest.importorskip("dreamstate.site")

ROOT = Path(__file__).resolve().parents[1]
chrome, driver = site.find_browser()
needs_browser = pytest.mark.skipif(not (chrome and driver), reason="Chromium and chromedriver are not installed "
                                   "(make test installs them where it runs as root with apt-get)")

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    info = site.build_site(out, ROOT / "nbs", ROOT / "README.md", ROOT / "figures", ROOT / "docs")
    return out, info


def test_every_notebook_figure_and_doc_has_a_page(built):
    out, info = built
    nbs = sorted(p.stem for p in (ROOT / "nbs").glob("*.ipynb"))
    assert [f"{n}.html" for n in nbs] == [f for f in info if f.removesuffix(".html") in nbs]
    assert {"index.html", "figures.html", "paper_profile.html"} <= set(info)
    assert info["figures.html"]["images"] == len(list((ROOT / "figures").glob("*.png"))) > 0
    assert sum(v["images"] for f, v in info.items() if f != "figures.html") > 0   # notebooks carry their figures
    assert all(v["math_failed"] == 0 for v in info.values()), {f: v["math_failed"] for f, v in info.items()}
    index = (out / "index.html").read_text()
    assert all(f'href="{n}.html"' in index for n in nbs)


@needs_browser
def test_every_page_loads_and_draws_every_figure(built):
    out, info = built
    rows = site.check_site(out)
    assert len(rows) == len(info)
    bad = [r for r in rows if not site.page_ok(r)]
    assert not bad, bad
    assert sum(r["drawn"] for r in rows) == sum(v["images"] for v in info.values())
    assert next(r for r in rows if r["page"] == "10_hybrid.html")["math"] > 10     # MathML, drawn without MathJax


@needs_browser
def test_the_check_fails_a_broken_page(tmp_path):
    (tmp_path / "ok.png").write_bytes(PNG)
    (tmp_path / "bad.html").write_text('<html><head><script src="https://cdn.example.org/x.js"></script></head>'
                                       '<body><img src="ok.png"><img src="missing.png"></body></html>')
    (tmp_path / "good.html").write_text('<html><body><img src="ok.png"></body></html>')
    (tmp_path / "site.json").write_text(json.dumps({"bad.html": {"images": 2}, "good.html": {"images": 2}}))
    rows = {r["page"]: r for r in site.check_site(tmp_path)}
    assert rows["bad.html"]["loaded"] and rows["bad.html"]["drawn"] == 1 and rows["bad.html"]["broken"] == ["missing.png"]
    assert rows["bad.html"]["remote"] == ["https://cdn.example.org/x.js"] and not site.page_ok(rows["bad.html"])
    assert rows["good.html"]["drawn"] == 1 and not site.page_ok(rows["good.html"])     # one figure short of two
    rows["good.html"]["expected_images"] = 1
    assert site.page_ok(rows["good.html"])
