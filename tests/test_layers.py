"""The house rules that keep the code readable, checked by parsing every import.

Data flows one way: route or job -> service -> mail layer / models. No import cycle
between modules of webapp/ and worker/ (imports inside functions count), no web
framework in webapp/services or webapp/mail, and webapp never imports worker. Modules
stay under 400 lines and a folder holds at most 15 of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("webapp", "worker")
MAX_LINES = 400
MAX_MODULES_PER_FOLDER = 15
# Werkzeug's password hashing is no web part; its routing, requests and responses are.
WEB_PARTS = ("flask", "flask_wtf", "flask_htmx", "wtforms", "jinja2_fragments", "werkzeug")
WEB_PARTS_ALLOWED = ("werkzeug.security",)
FRAMEWORK_FREE = ("webapp.services", "webapp.mail")


def modules(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(name: str, path: Path) -> list[tuple[str, ...]]:
    """Every import of the file, at any depth (inside functions too), as the names it may
    mean, most specific first: `from a.b import c` is (a.b.c, a.b), since c may be a module
    or a name in a.b; relative imports are resolved against the module's package."""
    is_package = path.name == "__init__.py"
    names: list[tuple[str, ...]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(alias.name,) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            names += [(f"{base}.{alias.name}", base) for alias in node.names]
    return names


def import_graph(root: Path, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the modules of the packages that it imports."""
    known = modules(root, packages)
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        for candidates in imported_names(name, path):
            target = _known_module(candidates, known)
            if target is not None and target != name:
                graph[name].add(target)
    return graph


def _known_module(candidates: tuple[str, ...], known: dict[str, Path]) -> str | None:
    """The first candidate that is a module of ours, or the package of the last one."""
    for candidate in candidates:
        if candidate in known:
            return candidate
    target = candidates[-1]
    while target and target not in known and "." in target:
        target = target.rsplit(".", 1)[0]
    return target if target in known else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def web_imports(root: Path) -> list[str]:
    """`module imports name` for every web-framework import in webapp/services or webapp/mail."""
    found = []
    for name, path in modules(root, ("webapp",)).items():
        if not any(name == p or name.startswith(p + ".") for p in FRAMEWORK_FREE):
            continue
        for candidates in imported_names(name, path):
            target = candidates[-1]  # the module named in the statement
            top = target.split(".")[0]
            if top in WEB_PARTS and not target.startswith(WEB_PARTS_ALLOWED):
                found.append(f"{name} imports {target}")
    return sorted(set(found))


def test_no_import_cycle():
    assert cycles(import_graph(ROOT)) == []


def test_no_web_framework_in_services_or_mail():
    assert web_imports(ROOT) == []


def test_webapp_never_imports_worker():
    graph = import_graph(ROOT)
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if name.startswith("webapp")
        for target in targets
        if target.split(".")[0] == "worker"
    )
    assert wrong == []


def test_no_module_over_400_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for path in modules(ROOT).values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_no_folder_of_webapp_holds_more_than_15_modules():
    crowded = {
        str(folder.relative_to(ROOT)): n
        for folder in [ROOT / "webapp", *(ROOT / "webapp").rglob("*")]
        if folder.is_dir()
        and (n := len([f for f in folder.glob("*.py") if f.name != "__init__.py"]))
        > MAX_MODULES_PER_FOLDER
    }
    assert crowded == {}


# -- the checks themselves find what they look for ------------------------------------


@pytest.fixture
def fake_tree(tmp_path) -> Path:
    """webapp.a -> webapp.b -> (inside a function) webapp.a; webapp.services.s imports
    flask and worker.jobs; worker.jobs imports webapp.b."""
    files = {
        "webapp/__init__.py": "",
        "webapp/a.py": "from webapp import b\n",
        "webapp/b.py": "def later():\n    from . import a\n",
        "webapp/services/__init__.py": "",
        "webapp/services/s.py": "from flask import g\nimport worker.jobs\n"
        "from werkzeug.security import check_password_hash\n",
        "webapp/mailboxes/__init__.py": "",
        "webapp/mailboxes/routes.py": "from flask import Blueprint\n",
        "worker/__init__.py": "",
        "worker/jobs.py": "from webapp.b import later\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_cycle_through_an_import_inside_a_function_is_found(fake_tree):
    assert cycles(import_graph(fake_tree)) == [["webapp.a", "webapp.b"]]


def test_flask_in_a_service_is_found_and_in_a_blueprint_or_for_password_hashing_is_not(
    fake_tree,
):
    assert web_imports(fake_tree) == ["webapp.services.s imports flask"]


def test_webapp_importing_worker_shows_in_the_graph(fake_tree):
    assert "worker.jobs" in import_graph(fake_tree)["webapp.services.s"]
