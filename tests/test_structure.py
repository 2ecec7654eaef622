"""The package's shape: its modules import each other without a cycle (lazy imports inside functions count too),
and every module's `__all__` is nbdev's own (one per module, no name listed twice)."""
import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "dreamstate"


def _imports(path: Path) -> set[str]:
    "The dreamstate modules `path` imports anywhere in its body."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: base = node.module or ""
            elif node.module and node.module.startswith("dreamstate"): base = node.module.removeprefix("dreamstate").lstrip(".")
            else: continue
            names = [base] if base else [a.name for a in node.names]
            out.update(n.split(".")[0] for n in names)
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith("dreamstate."))
    return out


def _graph() -> dict[str, set[str]]:
    mods = {p.stem for p in PKG.glob("*.py")} - {"__init__", "_modidx"}
    return {m: _imports(PKG / f"{m}.py") & mods - {m} for m in mods}


def _cycle(graph):
    "One import cycle as a list of modules, or None."
    state, stack = {}, []
    def visit(m):
        state[m] = "open"; stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open": return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)): return c
        state[m] = "done"; stack.pop()
    for m in sorted(graph):
        if m not in state and (c := visit(m)): return c


def test_import_graph_has_no_cycle():
    g = _graph()
    assert {"wkv", "wkv_triton", "rwkv7", "hybrid"} <= set(g) and "wkv_common" in g["wkv"]
    assert _cycle(g) is None, f"import cycle: {' → '.join(_cycle(g))}"
    assert _cycle({**g, "wkv_common": g["wkv_common"] | {"wkv"}}) is not None   # the check finds one when there is one


def test_one_all_per_module_written_by_nbdev():
    for p in sorted(PKG.glob("*.py")):
        if p.stem in ("__init__", "_modidx"): continue
        alls = [n for n in ast.parse(p.read_text()).body if isinstance(n, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in n.targets)]
        assert len(alls) <= 1, f"{p.name}: {len(alls)} assignments to __all__ (nbdev writes its own)"
        if alls:
            names = ast.literal_eval(alls[0].value)
            assert len(names) == len(set(names)), f"{p.name}: __all__ lists a name twice"
