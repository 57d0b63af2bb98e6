"""What this process may use of the machine it runs on."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus() -> int:
    """The CPUs this process may use: those it may run on (taskset, a container's cpuset), fewer when a
    CPU quota allows less time than they give (``cpu_quota``); never the host's count inside a container."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = cpu_quota()
    return max(1, min(cpus, math.ceil(quota))) if quota else cpus


def cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPUs' worth of time this process's cgroup may use (Docker's ``--cpus``, a Kubernetes CPU limit),
    the tightest of its group and those above it; None when there is no limit (or no cgroups).

    cgroup v2: ``cpu.max`` ("QUOTA PERIOD" or "max PERIOD"); v1: ``cpu/cpu.cfs_quota_us`` over ``cpu.cfs_period_us``.
    """
    limits = [_ratio(folder / "cpu.max") for folder in _own_groups(root)]
    limits.append(_ratio(root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"))
    limits = [limit for limit in limits if limit is not None]
    return min(limits) if limits else None


def _own_groups(root: Path) -> list[Path]:
    """This process's cgroup v2 folder and the ones above it, up to ``root``."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    own = next((line[3:] for line in lines if line.startswith("0::")), None)
    if own is None:
        return []
    group = root / own.strip("/")
    return [group, *(root / parent for parent in group.relative_to(root).parents)]


def _ratio(quota_file: Path, period_file: Path | None = None) -> float | None:
    """A quota over its period: both in ``quota_file`` (v2) or one in each (v1); None when unlimited or unread."""
    try:
        words = quota_file.read_text().split()
        if period_file is not None:
            words.append(period_file.read_text().strip())
        quota, period = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):  # "max" (no limit), a missing file, no cgroups
        return None
    return quota / period if quota > 0 and period > 0 else None  # v1 writes -1 for no limit
