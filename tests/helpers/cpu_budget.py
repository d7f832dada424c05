"""Run a function in a forked child under a CPU-time limit, for inputs that once took minutes
(quadratic parsing, regex backtracking). The bound is CPU seconds set far above the normal
cost, not a wall-clock assertion: a busy machine slows a test down without failing it."""

from __future__ import annotations

import multiprocessing
import resource
import signal
from collections.abc import Callable

BUDGET_SECONDS = 30  # normal cost: well under a second


def _child(fn: Callable, args: tuple, seconds: int, out) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))  # then SIGXCPU
    out.send(fn(*args))
    out.close()


def within_cpu_budget(fn: Callable, *args, seconds: int = BUDGET_SECONDS):
    """fn(*args)'s result, computed in a child that may use `seconds` of CPU at most."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(fn, args, seconds, send))
    child.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    child.join()
    if child.exitcode == -signal.SIGXCPU:
        raise AssertionError(f"{fn.__name__} used more than {seconds} s of CPU")
    assert child.exitcode == 0, f"{fn.__name__} failed in the child (exit {child.exitcode})"
    return result
