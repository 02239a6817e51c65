"""Layers point one way (issue 11.4).

- importing the environment does not import the learners (``hear_vec.agents``) or the CLIs;
- no library module (``hear_vec/**`` outside ``hear_vec/cli``) imports ``hear_vec.cli``, except
  a ``python -m`` shim's ``if __name__ == "__main__":`` block;
- the module import graph of hear_vec + kernels (every import statement, lazy ones inside
  functions included -- they are how a circle hides) has no cycle;
- no process-wide switch such as the old ``hear_vec.dsp.inputs_zero_beyond_lengths()`` that
  changes what a public function computes: callers pass ``zero_padded=True`` instead.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hear_vec", "kernels")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of hear_vec and kernels."""
    out: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _is_main_guard(node: ast.AST) -> bool:
    """``if __name__ == "__main__":`` (the entry point of a ``python -m`` shim)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    test = node.test
    return (isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.comparators) == 1 and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, path: Path, skip_main: bool = True) -> list[str]:
    """Absolute names imported anywhere in the file (``from a import b`` gives ``a.b``, which
    :func:`_resolve` maps to the module ``a.b`` when there is one, else to ``a``; parent
    packages that Python also runs are not counted as edges), except under ``TYPE_CHECKING``
    and, with ``skip_main``, under a top-level ``if __name__ == "__main__":``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = module if is_pkg else module.rpartition(".")[0]
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node) or (skip_main and _is_main_guard(node)):
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            names.extend(f"{origin}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of ``name`` that is one of ``modules`` (None outside them)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(n, modules) for n in _imports(module, path)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = dfs(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = dfs(node)
            if found:
                return found
    return None


def test_env_import_does_not_import_agents_or_cli():
    code = ("import sys, hear_vec.env; "
            "bad = sorted(m for m in sys.modules "
            "if m.startswith(('hear_vec.agents', 'hear_vec.cli'))); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_library_never_imports_cli():
    modules = _modules()
    offenders = []
    for module, path in modules.items():
        if module == "hear_vec.cli" or module.startswith("hear_vec.cli."):
            continue
        for name in _imports(module, path):
            if name == "hear_vec.cli" or name.startswith("hear_vec.cli."):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_main_guard_detection_sees_the_shims():
    """The shims' imports of hear_vec.cli are seen when the guard is not skipped (so the test
    above is not vacuous)."""
    modules = _modules()
    names = _imports("hear_vec.evaluate", modules["hear_vec.evaluate"], skip_main=False)
    assert any(n.startswith("hear_vec.cli.evaluate") for n in names)


def test_import_graph_is_acyclic():
    graph = import_graph()
    assert "hear_vec.ops.mmse_lsa" in graph and "kernels.lsa_recursion" in graph
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("name", ["inputs_zero_beyond_lengths", "_ZERO_BEYOND"])
def test_no_zero_padding_switch(name):
    hits = [str(p.relative_to(REPO)) for p in _modules().values()
            if name in p.read_text(encoding="utf-8")]
    assert not hits, f"{name} in {hits}"
    import hear_vec.dsp

    assert not hasattr(hear_vec.dsp, name)


def test_no_module_level_mutable_switch_in_dsp():
    """dsp functions read no module-level state that callers flip: every ``global`` statement
    in hear_vec.dsp is gone."""
    for path in (REPO / "hear_vec" / "dsp").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert not any(isinstance(n, ast.Global) for n in ast.walk(tree)), path


#: modules exempt from the size rule (none: every long module says why at its top)
_SIZE_EXEMPT: set[str] = set()
_SIZE_LIMIT = 420


def test_no_long_module_without_a_reason():
    """A module of hear_vec, kernels or benchmarks over ~400 lines says at its top (in its
    docstring) why it is one module."""
    long = []
    for pkg in (*PACKAGES, "benchmarks"):
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            text = path.read_text(encoding="utf-8")
            if rel in _SIZE_EXEMPT or text.count("\n") <= _SIZE_LIMIT:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "why one module" not in doc.lower():
                long.append(f"{rel} ({text.count(chr(10))} lines)")
    assert not long, "long modules without a reason at the top: " + ", ".join(long)
