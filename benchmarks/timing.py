"""Timing for the bench: medians of interleaved runs, dirty pages flushed before each."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

__all__ = ["interleaved", "report", "timed"]


def timed(fn: Callable[[], object]) -> float:
    os.sync()  # the previous run's writeback is not this one's time
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(runs: dict[str, Callable[[], object]], reps: int) -> dict[str, float]:
    """Runs each callable `reps` times, rotating which goes first; returns medians in seconds."""
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(runs[name]))
    return {name: statistics.median(values) for name, values in times.items()}


def report(label: str, medians: dict[str, float]) -> float:
    """Prints ckptkit's median and its ratio to each baseline; returns the ratio to the first."""
    ours = medians.pop("ckptkit")
    parts = [f"{label:<14} ckptkit {ours * 1e3:8.1f} ms"]
    for name, value in medians.items():
        parts.append(f"{name} {value * 1e3:8.1f} ms (ratio {ours / value:.3f})")
    print(" | ".join(parts), flush=True)
    return ours / next(iter(medians.values()))
