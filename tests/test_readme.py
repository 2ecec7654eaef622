"""The README's Python code blocks run as written, on a random-weight World-vocabulary checkpoint in
place of the published file they name."""
import re
from pathlib import Path

from test_paper_profile import write_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = "RWKV-x070-World-0.1B-v2.8-20241210-ctx4096.pth"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks, "the README has no python block to test"
    ckpt = write_checkpoint(tmp_path / "world.pth", n_layer=2, n_embd=64, head_size=32)
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        assert PUBLISHED in code or "RWKV7.load" not in code, "a block loads a checkpoint this test does not substitute"
        ns = {}
        exec(compile(code.replace(PUBLISHED, str(ckpt)), "README.md", "exec"), ns)
    assert (tmp_path / "eiffel.pth").is_file()           # the snippet's state.save wrote its file
