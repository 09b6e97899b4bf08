"""The package's layout holds: one folder per pipeline stage, a CLI layer nothing else imports, no import cycle.

A maintainer finds where a change goes from the path (ARCHITECTURE.md); these checks keep that true as the
code grows. The import graph is read from the source (every `import`, at module level or inside a function,
except `if TYPE_CHECKING:` blocks, which never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT, SKILL_DIR

PACKAGE = SKILL_DIR / "batchpilot"
STAGES = ("cli", "core", "api", "prepare", "rundir", "executors", "results", "report", "emulator")
TOP_LEVEL_LIMIT = 12


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SKILL_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """The batchpilot modules `path` imports, wherever in the file, except under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("batchpilot"):
            for name in [node.module, *(f"{node.module}.{a.name}" for a in node.names)]:
                if name in MODULES:
                    found.add(name)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in MODULES)
    return found


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_each_pipeline_stage_is_a_folder_and_the_top_level_is_small():
    for stage in STAGES:
        assert (PACKAGE / stage).is_dir(), f"batchpilot/{stage}/ is missing"
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= TOP_LEVEL_LIMIT, top


def test_no_module_outside_the_cli_imports_it():
    outside = {name: sorted(i for i in imports if i == "batchpilot.cli" or i.startswith("batchpilot.cli."))
               for name, imports in GRAPH.items()
               if not name.startswith("batchpilot.cli") and name != "batchpilot.__main__"}
    assert {n: i for n, i in outside.items() if i} == {}
    bench = {p.name: p.read_text() for p in (ROOT / "bench").glob("*.py")}
    assert [name for name, text in bench.items() if "batchpilot.cli" in text] == []


def test_the_import_graph_has_no_cycle():
    # Importing a package runs its __init__, but here every __init__ is a docstring: edges to packages are noise.
    graph = {n: {i for i in imports if MODULES[i].name != "__init__.py"} for n, imports in GRAPH.items()}
    state: dict[str, int] = {}
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_lower_stages_do_not_import_higher_ones():
    """core is the floor; the API edge, prepare and the run directory sit on it; executors, results and
    reports sit on those; only the CLI sees everything. The emulator is a separate program: it shares only
    core with the client."""
    order = {"core": 0, "api": 1, "prepare": 1, "rundir": 2, "results": 3, "executors": 4, "report": 4, "cli": 5}
    wrong = []
    for name, imports in GRAPH.items():
        parts = name.split(".")
        if len(parts) < 3 or parts[1] not in order:
            continue
        for target in imports:
            tparts = target.split(".")
            if len(tparts) >= 2 and tparts[1] in order and order[tparts[1]] > order[parts[1]]:
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_one_table_of_modes():
    """The mode words the CLI offers, the commands that run them and the executors that `run` drives agree."""
    from batchpilot.core.modes import EXECUTOR_COMMANDS, MODES
    from batchpilot.executors.pipeline import EXECUTORS

    assert set(MODES) == set(EXECUTOR_COMMANDS) == set(EXECUTORS)


def test_the_emulator_counts_tokens_with_its_own_tokenizer():
    """The emulator must be able to disagree with the client's estimate: it never imports the estimator."""
    wrong = [f"{name} imports {target}" for name, imports in GRAPH.items()
             if name.startswith("batchpilot.emulator.") for target in imports if target == "batchpilot.core.tokens"]
    assert wrong == []
