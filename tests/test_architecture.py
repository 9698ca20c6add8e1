"""The shape of the package (docs/architecture.md): modules import one another without a cycle, each stage imports
only the stages below it, and no module grows past the size a reader can hold."""

from __future__ import annotations

import ast
from pathlib import Path

import bertfit

ROOT = Path(bertfit.__file__).parent
# each folder and the folders it must never import, even inside a function: the layers of docs/architecture.md
NEVER = {
    "data": {
        "checks",
        "prediction",
        "evaluation",
        "exporting",
        "training",
        "serving",
        "cli",
        "explain",
        "reviewing",
        "tuning",
    },
    "checks": {"prediction", "evaluation", "exporting", "training", "serving", "cli", "explain", "reviewing", "tuning"},
    "prediction": {"evaluation", "exporting", "training", "serving", "cli", "reviewing", "tuning"},
    "evaluation": {"exporting", "training", "serving", "cli", "reviewing", "tuning"},
    "exporting": {"training", "serving", "cli", "reviewing", "tuning"},
    "training": {"exporting", "serving", "cli", "reviewing", "tuning"},
    "serving": {"training", "evaluation", "exporting", "cli", "reviewing", "tuning"},
    "reviewing": {"exporting", "serving", "cli", "tuning"},
    "tuning": {"exporting", "serving", "cli", "reviewing"},
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    files = {".".join(("bertfit", *p.relative_to(ROOT).with_suffix("").parts)): p for p in ROOT.rglob("*.py")}
    return {name.removesuffix(".__init__"): path for name, path in files.items()}


MODULES = _modules()


def _imports(path: Path, module: str, top_level: bool) -> set[str]:
    """bertfit modules that `module` imports: at its top level (TYPE_CHECKING blocks included), or anywhere."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [n for top in tree.body for n in ([top, *ast.walk(top)] if isinstance(top, (ast.If, ast.Try)) else [top])]
    found = set()
    for node in nodes if top_level else ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # `from bertfit.cli import common` imports the module bertfit.cli.common (a package's own __init__
            # running first is how Python imports any submodule, not a cycle)
            inner = {f"{node.module}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(inner or {node.module})
    return {name for name in found if name.startswith("bertfit.") and name != module}


def test_no_module_level_import_cycle() -> None:
    modules = MODULES
    graph = {name: {i for i in _imports(path, name, True) if i in modules} for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            assert state.get(other) != 1, "import cycle: " + " -> ".join([*trail[trail.index(other) :], other])
            if other not in state:
                visit(other, [*trail, other])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_a_stage_never_imports_a_stage_above_it() -> None:
    wrong = []
    for name, path in MODULES.items():
        stage = name.split(".")[1] if name.count(".") else ""
        for target in _imports(path, name, False):
            if target.split(".")[1] in NEVER.get(stage, ()):
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in lengths.items() if n > MAX_LINES} == {}
