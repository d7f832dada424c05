"""The shape of the web layer: webapp never imports worker, templates fail loudly."""

from __future__ import annotations

import ast
from pathlib import Path

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"


def _imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_webapp_never_imports_worker():
    offenders = {
        str(path.relative_to(WEBAPP.parent)): sorted(
            name for name in _imported_modules(path) if name.split(".")[0] == "worker"
        )
        for path in WEBAPP.rglob("*.py")
    }
    assert {path: names for path, names in offenders.items() if names} == {}
