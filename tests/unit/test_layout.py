"""The project's shape, checked from its source: the import rules docs/architecture.md states hold
for every import, top-level or inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("pipelines", "flows", "crawlers")
# The weekly flow's steps that are entry points but not DVC stages.
FLOW_STEPS = {"register", "index"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """Every project module `path` imports, wherever in the file the import statement is."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name.split(".")[0] in PACKAGES)
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            for alias in node.names:  # `from package import submodule` imports the submodule
                submodule = f"{node.module}.{alias.name}"
                yield submodule if submodule in modules else node.module


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: set(imports_of(path, modules)) - {name} for name, path in modules.items()}


def test_no_import_cycle_among_the_projects_modules() -> None:
    graph = import_graph()
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target) :], target] if target in trail else [module, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles: " + "; ".join(" → ".join(cycle) for cycle in cycles)


def test_only_flows_import_stage_modules() -> None:
    """Stages are entry points over the library: serving, the CLI and other library code never
    depend on one (tests and benchmarks may; they are not part of this graph)."""
    offenders = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target.startswith("pipelines.stages.") and not module.startswith("flows.")
    ]
    assert not offenders, offenders


@pytest.mark.parametrize("forbidden", ["prefect", "scrapy", "twisted", "flows"])
def test_the_library_never_imports_the_orchestrator_or_the_crawler(forbidden: str) -> None:
    offenders = []
    for path in (ROOT / "pipelines").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] == forbidden]
    assert not offenders, offenders


def test_each_stage_module_is_named_after_its_stage_and_each_stage_runs_its_module() -> None:
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    modules = {path.stem for path in (ROOT / "pipelines" / "stages").glob("*.py") if path.stem != "__init__"}
    # The crawl is Scrapy's (`python -m crawlers.run crawl`); score_real is an experiment's, never the flow's.
    pipeline_stages = set(stages) - {"crawl", "score_real"}
    assert modules == pipeline_stages | FLOW_STEPS
    assert "python -m experiments.real_photos " in stages["score_real"]["do"]["cmd"]
    assert "experiments/real_photos.py" in stages["score_real"]["do"]["deps"]
    for name in pipeline_stages:
        spec = stages[name].get("do", stages[name])
        assert f"python -m pipelines.stages.{name} " in spec["cmd"] + " ", (name, spec["cmd"])
        assert f"pipelines/stages/{name}.py" in spec["deps"], f"{name}: its own module is not among its deps"
