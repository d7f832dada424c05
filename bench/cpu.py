"""Where a run's CPU went, machine-wide: the whole machine (/proc/stat), and the process trees
of PostgreSQL and Dovecot (their live processes, plus what their masters reaped).

The bench's own figures count the rq workers and their helpers; this adds what they made
the database and the mail server do, and how much of the machine stayed idle: a pipeline
with no idle CPU left cannot go faster by adding workers, only by costing less CPU per
message (bench/shared_filing.py prints the ceiling this gives).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: str) -> tuple[int, int, float, float] | None:
    """(ppid, starttime, own CPU s, reaped children's CPU s) of a process, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    own = (int(fields[11]) + int(fields[12])) / _TICK
    reaped = (int(fields[13]) + int(fields[14])) / _TICK
    return int(fields[1]), int(fields[19]), own, reaped


def _comm(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole machine since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values[:8]) - idle) / _TICK, idle / _TICK


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@dataclass
class Snapshot:
    machine: tuple[float, float]
    trees: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    reaped: dict[str, float] = field(default_factory=dict)


def snapshot(dovecot_pid: int | None = None, database: str | None = None) -> Snapshot:
    """The machine's CPU, the CPU of this Dovecot's processes (live, and what its master
    reaped), and PostgreSQL's: the live backends connected to `database`, and what the
    postmaster reaped. Backends of other databases that end during a run count too: run
    the bench alone for PostgreSQL's figure."""
    procs = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit() and (st := _stat(pid)) is not None:
            procs[pid] = st
    snap = Snapshot(_machine())
    if dovecot_pid is not None and str(dovecot_pid) in procs:
        members, todo = {}, [str(dovecot_pid)]
        while todo:
            pid = todo.pop()
            members[(pid, procs[pid][1])] = procs[pid][2]
            todo += [p for p, st in procs.items() if str(st[0]) == pid]
        snap.trees["dovecot"] = members
        snap.reaped["dovecot"] = procs[str(dovecot_pid)][3]
    if database:  # its backends, and what the postmaster reaped (backends that ended)
        postgres = {pid: st for pid, st in procs.items() if _comm(pid) == "postgres"}
        snap.trees["postgresql"] = {
            (pid, st[1]): st[2]
            for pid, st in postgres.items()
            if f" {database} " in _cmdline(pid) or _comm(str(st[0])) != "postgres"
        }
        snap.reaped["postgresql"] = sum(
            st[3] for pid, st in postgres.items() if _comm(str(st[0])) != "postgres"
        )
    return snap


def used(before: Snapshot, after: Snapshot) -> dict:
    """CPU seconds between two snapshots: the machine's busy and idle, each tree's."""
    out = {
        "machine_busy_s": round(after.machine[0] - before.machine[0], 2),
        "machine_idle_s": round(after.machine[1] - before.machine[1], 2),
    }
    for tree in ("dovecot", "postgresql"):
        if tree not in after.trees:
            continue
        was, now = before.trees.get(tree, {}), after.trees[tree]
        total = after.reaped.get(tree, 0.0) - before.reaped.get(tree, 0.0)
        total += sum(cpu - was.get(key, 0.0) for key, cpu in now.items())
        total -= sum(cpu for key, cpu in was.items() if key not in now)  # reaped: counted whole
        out[f"{tree}_s"] = round(total, 2)
    return out
