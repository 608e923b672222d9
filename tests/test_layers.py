"""Packages point one way: public_finance -> agents -> model -> experiments / visualization; no cycles."""

from __future__ import annotations

import ast
import re
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
    "llm_runtime": {"validation"},
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


def style_branches(source: str, styles: set[str]) -> list[str]:
    """Comparisons with a prompt mode (``mode == "paper"``, ``params.prompt_mode in allowed``) and tables
    keyed by style names (``{"paper": 50, "improved": 8}``) in ``source``."""
    def names_a_style(node) -> bool:
        items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
        return any(isinstance(item, ast.Constant) and item.value in styles for item in items)

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            variables = [ast.unparse(o) for o in operands if not isinstance(o, ast.Constant)]
            mentions_mode = any(re.search(r"prompt_(mode|style)", v) for v in variables)
            mode_is_a_style = any(map(names_a_style, operands)) and any(re.search(r"(mode|style)$", v)
                                                                         for v in variables)
            if mentions_mode or mode_is_a_style:
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Dict) and sum(names_a_style(k) for k in node.keys if k is not None) > 1:
            found.append(ast.unparse(node))
    return found


def test_only_the_prompt_styles_branch_on_a_prompt_style():
    """What differs between prompt styles lives in the registered styles (agents/prompt_styles.py): no other
    module of the project (its tests aside) branches on one."""
    from agents.prompt_styles import PROMPT_STYLES

    styles = set(PROMPT_STYLES)
    assert style_branches('if self.mode == "paper": pass\nx = {"paper": 50, "improved": 8}', styles)
    assert style_branches("ok = params.prompt_mode in allowed", styles)
    assert not style_branches('replay = mode == "replay"\npreset = name == "paper"', styles)
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "--", "*.py"],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert "agents/prompt_styles.py" in files
    modules = [file for file in files if file != "agents/prompt_styles.py" and not file.startswith("tests/")]
    found = {file: branches for file in modules
             if (branches := style_branches((ROOT / file).read_text(encoding="utf-8"), styles))}
    assert found == {}
