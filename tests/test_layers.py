"""The package's layers: `config` is a leaf, no import cycle, every import points downward.

The import graph is read from the source (module-level imports only: those in function
bodies and under ``if TYPE_CHECKING:`` run later, or never), so a failure names the modules.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import multitune

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(multitune.__file__).resolve().parent

LAYERS: list[set[str]] = [
    {"cli"},  # the `multitune` command
    {"final"},  # the final stage (its trainings may run through tuning's Ray tasks)
    {"tuning"},  # the search stages: the only package importing ray
    {"report"},  # statistics and the report: no MLflow, no training
    {"tracking"},  # MLflow: the only package importing it
    {"training"},  # the loop and its method families
    {"models", "embed"},  # the network; the encoders and the embed stage
    {"data"},  # ingest, split, the artifacts' readers
    {"progress"},
    {"console"},  # what a stage prints, and the guard of every entry point
    {"logs"},
    {"config"},  # the params schema: imports only what is below it
    {"io"},
    {"registry"},
    {"errors"},
    {"multitune"},  # the package's __init__
    {"_env"},
]
"""Top-level packages and modules of `multitune`, highest first. A module may import its own
package's modules and anything in a lower layer; nothing in its layer or above."""

RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its __init__)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["multitune", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(tree: ast.Module, module: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports when it is imported: its module-level
    imports (class bodies, `if`, `try` and `with` blocks included; not function bodies nor
    ``if TYPE_CHECKING:``), with the packages they pass through."""
    names: list[str] = []

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if test not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)
            elif isinstance(node, ast.ClassDef | ast.With):
                visit(node.body)
            elif isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".") if is_package else module.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join([*here, base] if base else here)
                names.append(base)
                names.extend(f"{base}.{alias.name}" for alias in node.names)

    visit(tree.body)
    deps = set()
    for name in names:
        parts = name.split(".")
        for i in range(2, len(parts) + 1):  # `a.b.c` runs `a.b`'s __init__ first
            prefix = ".".join(parts[:i])
            # Its own packages are being imported already when a module is.
            if prefix in known and prefix != module and not module.startswith(prefix + "."):
                deps.add(prefix)
    return deps


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: _imported(
            ast.parse(path.read_text()), name, path.name == "__init__.py", set(modules)
        )
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` (its modules in import order, the first repeated last),
    or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_config_imports_nothing_above_it() -> None:
    # In a fresh interpreter: the test session has imported everything already.
    above = sorted(name for name, rank in RANK.items() if rank < RANK["config"])
    code = f"""
import json, sys
import multitune.config
from multitune.config import load_params
load_params({str(ROOT / "params.yaml")!r})
above = {above!r}
print(json.dumps(sorted(m for m in sys.modules
                        if m.startswith("multitune.") and m.split(".")[1] in above)))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing multitune.config and loading params.yaml loaded {loaded}"


def test_no_import_cycle() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_imports_point_down_the_layers() -> None:
    graph = _graph()
    unplaced = sorted({_layer(m) for m in graph} - set(RANK))
    assert not unplaced, f"place these in LAYERS: {unplaced}"
    upward = [
        f"{module} -> {dep}"
        for module, deps in sorted(graph.items())
        for dep in sorted(deps)
        if _layer(module) != _layer(dep) and RANK[_layer(dep)] <= RANK[_layer(module)]
    ]
    assert not upward, "imports that do not point down the layers:\n  " + "\n  ".join(upward)
