"""Packages point one way: public_finance -> agents -> model -> experiments / visualization; no cycles."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("registry", "validation", "public_finance", "calibration", "llm_runtime", "agents", "model", "experiments",
            "visualization", "run")
# what each package may import from the project (besides itself)
ALLOWED = {
    "registry": set(),
    "validation": set(),
    "public_finance": {"registry", "validation"},
    "calibration": {"registry", "validation"},
    "llm_runtime": set(),
    "agents": {"registry", "validation", "public_finance", "calibration", "llm_runtime"},
    "model": {"registry", "validation", "public_finance", "calibration", "agents"},
    "experiments": {"registry", "validation", "public_finance", "calibration", "agents", "model", "llm_runtime"},
    "visualization": {"registry", "validation", "public_finance", "calibration", "agents", "model", "llm_runtime", "experiments"},
    "run": {"experiments", "visualization"},
}


def project_imports(package: str) -> set[str]:
    files = [ROOT / f"{package}.py"] if (ROOT / f"{package}.py").is_file() else (ROOT / package).rglob("*.py")
    found = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            found |= {name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES}
    return found - {package}


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    assert project_imports(package) <= ALLOWED[package]


def test_the_model_does_not_import_the_llm_layer():
    assert "llm_runtime" not in project_imports("model")


def test_no_module_edits_sys_path():
    tracked = subprocess.run(["git", "grep", "-l", "sys.path", "--", "*.py"], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert [f for f in tracked if not f.endswith("conftest.py") and f != "tests/test_layers.py"] == []
