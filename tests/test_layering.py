"""The package's modules import one way: each only from its own layer or the layers
below, with no cycle, counting the imports written inside functions too. The app sits
on top and the package never imports it (nor Streamlit).

A new module must be given a layer here; docs/architecture.md explains the layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "skin_model"

# bottom to top; a module may import from its own layer and any layer before it
LAYERS: dict[str, tuple[str, ...]] = {
    "shared": (
        "classes",
        "paths",
        "model_files",
        "hashing",
        "images",
        "checkpoint",
        "distribute",
        "folding",
        "int8_bias",
    ),
    "data": ("sources", "splits", "manifest", "collections_audit", "audit", "pipeline", "labelled_pictures"),
    "model": ("colour_constancy", "backbones", "models", "taps", "segmenter_model", "test_time_views"),
    "artifact": ("artifact",),
    "evaluate": ("evaluation", "subgroups", "robustness"),
    "explain | reliability": (
        "outlier_pictures",
        "lesion_measures",
        "segmentation",
        "explain",
        "cases",
        "reliability",
        "conformal",
        "transfer",
    ),
    "predict": ("passes", "inference", "file_predictions", "lesion_files"),
    "report": ("case_report", "risk_context", "follow_up", "lesion_change", "card_text"),
    "serve": ("export", "export_parity", "bundle", "preload", "model_queue"),
    "train | workflows": (
        "train_config",
        "finetune",
        "lesion_focus",
        "warmup",
        "training",
        "workflows",
        "analysis",
        "local_validation",
        "segmentation_training",
        "bench",
    ),
    "cli": ("cli_flags", "cli_model", "cli_use", "cli_segment", "cli", "__main__", "__init__"),
}
LAYER_OF = {module: rank for rank, modules in enumerate(LAYERS.values()) for module in modules}


def imports_of(path: Path) -> set[str]:
    """The package modules (and top-level packages) ``path`` imports anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif node.module and node.module.split(".")[0] == "skin_model":
                parts = node.module.split(".")
                found.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
            elif node.module:
                found.add("<ext>" + node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                found.add(parts[1] if parts[0] == "skin_model" and len(parts) > 1 else "<ext>" + parts[0])
    return found


def graph() -> dict[str, set[str]]:
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    return {p.stem: {m for m in imports_of(p) if m in modules and m != p.stem} for p in PACKAGE.glob("*.py")}


def test_every_module_has_a_layer() -> None:
    missing = sorted(set(graph()) - set(LAYER_OF))
    assert not missing, f"give these modules a layer in tests/test_layering.py: {missing}"


def test_no_module_imports_upward() -> None:
    upward = [
        f"{module} ({list(LAYERS)[LAYER_OF[module]]}) imports {dep} ({list(LAYERS)[LAYER_OF[dep]]})"
        for module, deps in graph().items()
        for dep in deps
        if module in LAYER_OF and dep in LAYER_OF and LAYER_OF[dep] > LAYER_OF[module]
    ]
    assert not upward, "\n".join(upward)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.stem)
def test_the_package_never_imports_the_app(path: Path) -> None:
    external = {m.removeprefix("<ext>") for m in imports_of(path) if m.startswith("<ext>")}
    assert not external & {"streamlit", "pages", "app"}, f"{path.name} imports the app layer"
