"""CPU accounting for the spawn benchmark: what a start costs on the hub host.

Two measures, both read from ``/proc`` (no sampling, no agent):

- **process tree** (the one the report quotes): ``utime + stime + cutime +
  cstime`` of every process under a hub's launcher (``labspace up`` or
  ``jupyterhub``: hub, proxy, local workspaces and their kernels, a local warm
  pool's fork server and members), and for docker the CPU of every container
  (``cpuacct.usage`` of its cgroup) plus Docker's own processes (``dockerd``,
  ``containerd``, the shims). A snapshot before and after a start gives each
  process's delta; a process that ended inside the window is counted once its
  parent reaps it (``cutime``), so nothing is counted twice. Deltas are split
  by who paid them: ``hub`` (hub, proxy, Docker), ``user`` (the started
  workspace: processes working in its home, its container) and ``pool`` (a warm
  pool's members and fork server: a refill, paid ahead of the next start);
- **machine busy**: busy jiffies of ``/proc/stat`` over the window, minus what
  the machine was busy at rest just before (an idle baseline); this counts
  everything on the machine, other people's work too, and is kept as a check.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
CGROUP_DOCKER = Path("/sys/fs/cgroup/cpuacct/docker")
DOCKER_DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc")


def parse_stat(text: str) -> tuple[int, str, int, float]:
    """``(pid, comm, ppid, cpu seconds)`` from a ``/proc/<pid>/stat`` line;
    the CPU is ``utime + stime + cutime + cstime`` (reaped children included)."""
    pid = int(text[: text.index(" ")])
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): utime..cstime are fields 14..17
    ppid = int(rest[1])
    ticks = sum(int(x) for x in rest[11:15])
    return pid, comm, ppid, ticks / TICK


def read_procs() -> dict[int, tuple[str, int, float]]:
    """Every process: pid -> (comm, ppid, cpu seconds)."""
    procs = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            pid, comm, ppid, cpu = parse_stat(Path(f"/proc/{entry}/stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # it just ended
        procs[pid] = (comm, ppid, cpu)
    return procs


def descendants(procs: dict[int, tuple[str, int, float]], root: int) -> set[int]:
    """``root`` and every process below it."""
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in out or pid not in procs:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out


def cwd_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except OSError:
        return ""


def containers_cpu() -> dict[str, float]:
    """Docker container id -> CPU seconds so far (its cgroup's cpuacct.usage);
    ``""`` is all containers together (monotonic: a removed container's CPU
    stays in its parent's count)."""
    out = {}
    if not CGROUP_DOCKER.is_dir():
        return out
    try:
        out[""] = int((CGROUP_DOCKER / "cpuacct.usage").read_text()) / 1e9
        for d in CGROUP_DOCKER.iterdir():
            if d.is_dir():
                try:
                    out[d.name] = int((d / "cpuacct.usage").read_text()) / 1e9
                except OSError:
                    continue
    except OSError:
        pass
    return out


@dataclass
class Snapshot:
    at: float
    procs: dict[int, tuple[str, int, float]]  # the hub's tree (and Docker's)
    cwd: dict[int, str]
    containers: dict[str, float]
    busy: tuple[float, float] = (0.0, 0.0)  # /proc/stat (busy s, total s)


def proc_stat() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already in user
    return (total - idle) / TICK, total / TICK


def snapshot(root: int, docker: bool = False) -> Snapshot:
    """CPU so far of ``root``'s tree (and of Docker's daemons and containers)."""
    procs = read_procs()
    keep = descendants(procs, root)
    if docker:
        keep |= {pid for pid, (comm, _, _) in procs.items() if comm in DOCKER_DAEMONS}
    mine = {pid: procs[pid] for pid in keep}
    return Snapshot(
        time.monotonic(),
        mine,
        {pid: cwd_of(pid) for pid in mine},
        containers_cpu() if docker else {},
        proc_stat(),
    )


@dataclass
class Split:
    """CPU seconds of a window, by who paid them."""

    hub: float = 0.0
    user: float = 0.0
    pool: float = 0.0
    docker: float = 0.0  # dockerd, containerd, shims (inside hub's share below)
    busy: float = 0.0  # the machine's busy seconds over the window
    seconds: float = 0.0
    detail: dict[str, float] = field(default_factory=dict)

    @property
    def critical(self) -> float:
        """What the start itself cost: hub side plus the started workspace."""
        return self.hub + self.user

    def as_dict(self) -> dict:
        return {
            "hub": round(self.hub, 3),
            "user": round(self.user, 3),
            "pool": round(self.pool, 3),
            "docker_daemons": round(self.docker, 3),
            "critical": round(self.critical, 3),
            "machine_busy": round(self.busy, 3),
            "seconds": round(self.seconds, 3),
        }


def split(
    before: Snapshot,
    after: Snapshot,
    user_homes: tuple[str, ...],
    pool_pids: set[int] = frozenset(),
    user_containers: set[str] = frozenset(),
    pool_containers: set[str] = frozenset(),
) -> Split:
    """The window's CPU by payer. A process is the user's when it works in
    one of ``user_homes`` (at either snapshot), the pool's when it is in ``pool_pids``
    (a fork server and its unclaimed members); Docker's daemons count on the hub
    side; containers by id prefix (the user's, the pool's; others are not ours)."""
    out = Split(seconds=after.at - before.at)
    out.busy = after.busy[0] - before.busy[0]
    for pid, (comm, _, cpu) in after.procs.items():
        was = before.procs.get(pid)
        # a pid reused by another process: count the new one from zero
        delta = cpu - (was[2] if was and was[0] == comm else 0.0)
        if delta <= 0:
            continue
        cwd = after.cwd.get(pid) or before.cwd.get(pid, "")
        if in_homes(cwd, user_homes):
            out.user += delta
        elif pid in pool_pids:
            out.pool += delta
        else:
            out.hub += delta
            if comm in DOCKER_DAEMONS:
                out.docker += delta
    for cid, cpu in after.containers.items():
        if not cid:
            continue
        delta = cpu - before.containers.get(cid, 0.0)
        if any(cid.startswith(c) for c in user_containers):
            out.user += delta
        elif any(cid.startswith(c) for c in pool_containers):
            out.pool += delta
    return out


def in_homes(cwd: str, homes: tuple[str, ...]) -> bool:
    """Whether folder ``cwd`` is one of ``homes`` or below one."""
    return bool(cwd) and any(h and (cwd == h or cwd.startswith(h + "/")) for h in homes)


def busy_share(before: tuple[float, float], after: tuple[float, float]) -> float | None:
    """Share of the machine's CPU that was busy between two ``proc_stat()``."""
    total = after[1] - before[1]
    return round((after[0] - before[0]) / total, 3) if total > 0 else None


def load() -> dict:
    """The machine's load now: 1/5/15-minute load averages and /proc/stat counters."""
    busy, total = proc_stat()
    return {
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "stat": [round(busy, 2), round(total, 2)],
        "at": time.time(),
    }


def machine() -> dict:
    return {
        "arch": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
