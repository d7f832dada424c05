"""Email templates cannot exhaust the worker: output size and render time are capped.

The sandbox keeps templates away from Python internals; this keeps them small and quick. A
render may add at most MAX_ADDED characters to what its variables hold, run for at most
MAX_SECONDS and MAX_STEPS loop turns and calls. Operators and filters that multiply text
(`*`, `**`, `+`, `~`, replace, center, format widths) are checked before they allocate, and
the output is counted as it is generated. Going over raises TemplateLimit.
"""

from __future__ import annotations

import contextvars
import functools
import re
import time
import types
from dataclasses import dataclass, field

from jinja2 import nodes, pass_eval_context
from jinja2.compiler import CodeGenerator
from jinja2.filters import do_replace
from jinja2.sandbox import SandboxedEnvironment

MAX_ADDED = 200_000  # characters a template may add to its variables' text
MAX_SECONDS = 2.0
MAX_STEPS = 1_000_000  # loop turns, calls and operators
MAX_NUMBER_BITS = 4096
# A field width or precision of six digits or more in a format string ("%0999999d", "{:>999999}").
_HUGE_WIDTH = re.compile(r"%[-+ #0]*\d{6,}|%[-+ #0]*\d*\.\d{6,}|\{[^{}]*:[^{}]*\d{6,}[^{}]*\}")


class TemplateLimit(Exception):
    """The template would grow too large or run too long."""


@dataclass
class Budget:
    max_chars: int
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)
    steps: int = 0

    def step(self, count: int = 1) -> None:
        self.steps += count
        if self.steps > MAX_STEPS:
            raise TemplateLimit(
                f"it runs too long (more than {MAX_STEPS:,} loop turns and calls): remove the loops"
            )
        if self.steps % 1000 < count and time.monotonic() > self.deadline:
            raise TemplateLimit(f"it takes longer than {MAX_SECONDS:g} seconds to render")

    def size(self, chars: int) -> None:
        if chars > self.max_chars:
            raise TemplateLimit(
                f"its text would be larger than {self.max_chars:,} characters "
                f"(a template may add at most {MAX_ADDED:,} to its variables)"
            )


_BUDGET: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("budget", default=None)


def _budget() -> Budget:
    budget = _BUDGET.get()
    # Outside render_limited (never in this app) each check gets the default limits.
    return budget if budget is not None else Budget(MAX_ADDED)


def _length(value) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _check_width(fmt) -> None:
    if isinstance(fmt, str) and _HUGE_WIDTH.search(fmt):
        raise TemplateLimit("a format width of 100,000 or more is not allowed")


class _Generator(CodeGenerator):
    """The `~` operator joins through the environment, where its size is checked."""

    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        self.write("environment.joined((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedSandbox(SandboxedEnvironment):
    code_generator_class = _Generator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.globals["_loop_guard"] = _loop_guard
        self.filters = {name: _numbers_checked(f) for name, f in self.filters.items()}
        self.filters["replace"] = _replace
        self.filters["center"] = _width_checked(self.filters["center"])
        self.filters["indent"] = _width_checked(self.filters["indent"])
        self.filters["format"] = _format_checked(self.filters["format"])

    def _generate(self, source, name, filename, defer_init=False):
        for loop in source.find_all(nodes.For):  # every loop counts its turns
            guard = nodes.Call(nodes.Name("_loop_guard", "load"), [loop.iter], [], None, None)
            loop.iter = guard.set_lineno(loop.lineno).set_environment(self)
        return super()._generate(source, name, filename, defer_init)

    def joined(self, parts) -> str:
        budget = _budget()
        budget.step()
        texts = [str(p) for p in parts]
        budget.size(sum(map(len, texts)))
        return "".join(texts)

    def call_binop(self, context, operator, left, right):
        budget = _budget()
        budget.step()
        if operator == "*":
            _check_product(budget, left, right)
        elif operator == "**":
            if isinstance(right, int) and abs(right) > 64:
                raise TemplateLimit("a power above 64 is not allowed")
        elif operator == "+":
            if _length(left) is not None and _length(right) is not None:
                budget.size(_length(left) + _length(right))
        elif operator == "%":
            _check_width(left)
        result = super().call_binop(context, operator, left, right)
        if isinstance(result, int) and result.bit_length() > MAX_NUMBER_BITS:
            raise TemplateLimit("numbers this large are not allowed")
        return result

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (the sandbox's signature)
        budget = _budget()
        budget.step()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        if isinstance(method, types.BuiltinMethodType) and isinstance(method.__self__, str):
            _check_str_method(budget, method.__self__, method.__name__, args)
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, str):
            budget.size(len(result))
        return result


def _check_product(budget: Budget, left, right) -> None:
    for seq, times in ((left, right), (right, left)):
        if _length(seq) is not None and isinstance(times, int):
            budget.size(_length(seq) * max(times, 0))
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_NUMBER_BITS:
            raise TemplateLimit("numbers this large are not allowed")


def _check_str_method(budget: Budget, text: str, name: str, args) -> None:
    if name == "replace" and len(args) >= 2:
        budget.size(_replaced_length(text, str(args[0]), str(args[1])))
    elif name in ("format", "format_map"):
        _check_width(text)
    elif any(isinstance(a, int) and a > budget.max_chars for a in args):
        raise TemplateLimit(f"a width above {budget.max_chars:,} is not allowed")


def _replaced_length(text: str, old: str, new: str) -> int:
    hits = text.count(old) if old else len(text) + 1
    return len(text) + hits * (len(new) - len(old))


def _loop_guard(iterable):
    budget = _budget()
    for item in iterable:
        budget.step()
        yield item


@pass_eval_context
def _replace(eval_ctx, s, old, new, count=None):
    _budget().size(_replaced_length(str(s), str(old), str(new)))
    return do_replace(eval_ctx, s, old, new, count)


def _numbers_checked(original):
    """No filter gets a number larger than the text a template may make (batch, slice, ...)."""

    @functools.wraps(original)
    def checked(*args, **kwargs):
        limit = _budget().max_chars
        if any(isinstance(a, int) and abs(a) > limit for a in (*args, *kwargs.values())):
            raise TemplateLimit(f"a number above {limit:,} is not allowed in a filter")
        return original(*args, **kwargs)

    return checked


def _width_checked(original):
    def checked(value, width=4, *args, **kwargs):
        budget = _budget()
        if isinstance(width, int):
            budget.size(width)
        elif isinstance(width, str):
            budget.size(len(width) * (str(value).count("\n") + 1))
        return original(value, width, *args, **kwargs)

    return checked


def _format_checked(original):
    def checked(value, *args, **kwargs):
        _check_width(value)
        return original(value, *args, **kwargs)

    return checked


def render_limited(env: LimitedSandbox, source: str, context: dict) -> str:
    """Render with a fresh budget: MAX_ADDED characters beyond the variables' own text."""
    given = sum(len(str(v)) for v in context.values())
    budget = Budget(given + MAX_ADDED)
    token = _BUDGET.set(budget)
    try:
        out, size = [], 0
        for chunk in env.from_string(source).generate(context):
            size += len(chunk)
            budget.size(size)
            budget.step()
            out.append(chunk)
        return "".join(out)
    finally:
        _BUDGET.reset(token)
