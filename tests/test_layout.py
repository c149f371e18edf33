"""The package's layout rules, read from the source (README: "How the code is laid out").

Stages import only from the stages before them; no module imports itself back through others;
modules stay under 500 lines and functions under 80 lines of code.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "py4dstem_compressed"
#: What each subpackage may import from the package (besides ``version``, the package's
#: version numbers, which every layer may read); top-level modules may import anything
ALLOWED = {
    "core": {"core"},
    "bases": {"core", "bases"},
    "storage": {"core", "bases", "storage"},
    "compression": {"core", "bases", "storage", "compression"},
    "reconstruction": {"core", "bases", "storage", "compression", "reconstruction"},
    "analysis": {"core", "bases", "storage", "compression", "reconstruction", "analysis"},
    "simulation": {"core", "simulation"},
}
MAX_MODULE_LINES = 500
MAX_FUNCTION_CODE_LINES = 80


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text())


def _imports(tree, name: str) -> set[str]:
    """Package modules a module imports (at the top or inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                base = ".".join([*name.split(".")[: -node.level], node.module])
            if base.startswith("py4dstem_compressed"):
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("py4dstem_compressed"))
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_stages_import_only_from_the_stages_before_them():
    known = {name for name, _, _ in _modules()}
    wrong = []
    for name, _, tree in _modules():
        stage = _stage(name)
        if stage not in ALLOWED:
            continue  # top level: demo, commands, libertem, __init__
        for target in _imports(tree, name) & known:
            target_stage = _stage(target)
            if target == "py4dstem_compressed.version" or target_stage in ALLOWED[stage]:
                continue
            wrong.append(f"{name} -> {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_circle():
    known = {name for name, _, _ in _modules()}
    graph = {name: _imports(tree, name) & known - {name} for name, _, tree in _modules()}
    graph = {
        name: {t for t in targets if t != "py4dstem_compressed"} for name, targets in graph.items()
    }
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in graph.get(node, ()):
            if state.get(nxt) == "open":
                cycle.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycle, "import circles: " + "; ".join(" -> ".join(c) for c in cycle)


def test_modules_and_functions_stay_small():
    too_long = []
    for name, path, tree in _modules():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_MODULE_LINES:
            too_long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            start = body[0].lineno
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                start = body[0].end_lineno + 1  # the docstring is not code
            code = [
                line
                for line in lines[start - 1 : node.end_lineno]
                if line.strip() and not line.strip().startswith("#")
            ]
            if len(code) > MAX_FUNCTION_CODE_LINES:
                too_long.append(f"{name}.{node.name}: {len(code)} lines of code")
    assert not too_long, "\n".join(too_long)
