"""The package's levels import one way: a lower level never imports a higher one.

Parses every module's imports (including those inside functions) and checks them against the
levels documented in each folder's docstring and in the architecture page of the docs.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "induction_lens"

LEVEL = {
    "_version": 0, "errors": 0, "constants": 0, "io": 0,
    "frame": 1, "config": 1,
    "presets": 2, "models": 2, "data": 2,
    "hub": 3,
    "train": 4, "train_reddy": 4, "pretrained": 4, "measures": 4, "analysis": 4, "fixtures": 4,
    "runs": 5,
    "viz": 6,
    "cli": 7,
    "__init__": 8,
}
"""Rank of each top-level module or folder: an import may only go to the same or a lower rank."""

FORBIDDEN = {
    "measures": {"hub", "train", "presets", "analysis"},
    "analysis": {"models", "measures", "hub", "train", "data", "presets", "config"},
    "data": {"hub", "models"},
    "models": {"data", "presets"},
    "train": {"measures", "analysis"},
    "pretrained": {"measures", "analysis"},
    "train_reddy": {"measures", "analysis"},
}
"""Same-or-lower imports that are still not allowed (the folders' docstrings say why)."""


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "induction_lens" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_level():
    units = {_unit(p) for p in MODULES}
    assert units <= set(LEVEL), f"give these a level: {sorted(units - set(LEVEL))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_down(path):
    unit = _unit(path)
    bad = []
    for line, target in _imports(path):
        if target not in LEVEL or target == unit:
            continue  # a submodule name such as induction_lens.plots resolved elsewhere
        if LEVEL[target] > LEVEL[unit] or target in FORBIDDEN.get(unit, ()):
            bad.append(f"line {line}: {unit} (level {LEVEL[unit]}) imports {target} "
                       f"(level {LEVEL[target]})")
    assert not bad, "\n".join(bad)


def test_the_checker_catches_an_upward_import(tmp_path):
    fake = tmp_path / "mod.py"
    fake.write_text("from induction_lens.cli import main\nimport induction_lens.runs.cache\n")
    assert [t for _, t in _imports(fake)] == ["cli", "cli", "runs"]


def test_no_print_or_argparse_outside_cli():
    offenders = []
    for path in MODULES:
        if _unit(path) == "cli":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} print")
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""]
                if "argparse" in mods:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} argparse")
    assert not offenders, offenders


def test_each_folder_says_what_it_may_import():
    for folder in (p for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
        assert "Level:" in doc, f"{folder.name}/__init__.py needs a 'Level:' paragraph"
