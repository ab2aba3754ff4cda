"""The house rules, checked: utils/ imports nothing above it, no package reaches up into a
top-level script, and only models/ asks which kind a model is."""
import ast
from pathlib import Path

import pytest

from utils.provenance import REPO_ROOT

PACKAGES = ("models", "net", "predictor", "utils", "benchmarks")
SCRIPTS = ("cloud_api", "edge_api", "tasks_cloud_api", "tasks_edge_api", "deployment")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def package_files(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", package_files("utils"), ids=lambda p: p.name)
def test_utils_imports_nothing_above_it(path):
    upward = {m for m in imported_modules(path) if m.split(".")[0] in PACKAGES and not m.startswith("utils")}
    assert not upward, f"{path.name} imports {sorted(upward)}"


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_imports_a_top_level_script(package):
    for path in package_files(package):
        scripts = {m for m in imported_modules(path) if m.split(".")[0] in SCRIPTS}
        assert not scripts, f"{path.relative_to(REPO_ROOT)} imports {sorted(scripts)}"


@pytest.mark.parametrize("package", ("net", "utils"))
def test_the_kind_of_a_model_is_asked_only_in_models(package):
    for path in package_files(package):
        text = path.read_text()
        for kind in ("DagModel", "ChainModel"):
            assert f"isinstance(model, {kind})" not in text and f"from models.dag import {kind}" not in text, (
                f"{path.relative_to(REPO_ROOT)} tests for {kind}: use the SplitModel interface")
