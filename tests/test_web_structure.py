"""The shape of the web layer: templates fail loudly (imports: tests/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from jinja2.nodes import Const, Extends, FromImport, Import, Include, Macro

WEBAPP = Path(__file__).resolve().parent.parent / "webapp"


TEMPLATES = WEBAPP / "templates"


def _template_names() -> list[str]:
    return sorted(str(p.relative_to(TEMPLATES)) for p in TEMPLATES.rglob("*.html"))


def _macros(env, name: str) -> set[str]:
    return {node.name for node in env.parse(env.loader.get_source(env, name)[0]).find_all(Macro)}


def test_every_template_compiles_and_every_template_it_names_exists(app):
    """A renamed partial, macro or block fails here, not as a blank part of a page."""
    env = app.jinja_env
    names = _template_names()
    assert "base.html" in names and "cases/show.html" in names
    for name in names:
        env.get_template(name)  # compiles
        tree = env.parse(env.loader.get_source(env, name)[0])
        for node in tree.find_all((Extends, Include, Import, FromImport)):
            assert isinstance(node.template, Const), f"{name}: a template name that is not a string"
            target = node.template.value
            assert target in names, f"{name} names {target}, which does not exist"
            if isinstance(node, Include):
                assert not node.ignore_missing, f"{name}: include {target} ignore missing"
            if isinstance(node, FromImport):
                wanted = {n if isinstance(n, str) else n[0] for n in node.names}
                missing = wanted - _macros(env, target)
                assert not missing, f"{name} imports {sorted(missing)} from {target}: not there"


def _render_block_calls(path: Path):
    """(template, block) of every render_block(...) in a module; a name is a module constant."""
    tree = ast.parse(path.read_text(), str(path))
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "render_block":
            template, block = (
                constants[arg.id] if isinstance(arg, ast.Name) else arg.value
                for arg in node.args[:2]
            )
            yield template, block


def test_every_block_a_route_renders_is_in_its_template(app):
    calls = {call for path in WEBAPP.rglob("*.py") for call in _render_block_calls(path)}
    assert ("cases/show.html", "outbox") in calls
    for template, block in sorted(calls):
        assert block in app.jinja_env.get_template(template).blocks, f"{template}: no {block}"
