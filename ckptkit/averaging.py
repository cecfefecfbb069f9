"""Checkpoint averaging: the mean of several checkpoints' weights, as one new checkpoint.

A standard trick for translation and speech models (tensor2tensor's ``avg_checkpoints``,
OpenNMT-tf's ``average_checkpoints``), here for any TF2 checkpoint: every floating-point entry
is the mean of the chosen checkpoints' values, accumulated in float64 and stored in its own
dtype; every other entry (step counters, integer variables, strings, the object graph) is the
newest chosen checkpoint's. The result keeps the newest one's object graph, so
`CheckpointManager.restore(path=...)` loads it into the same program.

One entry is read at a time from each checkpoint, into one float64 accumulator; the result is
written in groups of bounded size (`bundle_writer`), so memory holds one variable, its
accumulator and one group, never the chosen checkpoints whole.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ckptkit import progress
from ckptkit.errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    IncompatibleCheckpointsError,
)
from ckptkit.reading.inspection import OBJECT_GRAPH_KEY, get_tensor, open_reader, value_specs
from ckptkit.storage import layout

__all__ = ["Averaged", "average"]

_FLOATING = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclass(frozen=True)
class Averaged:
    """What `average` wrote.

    Attributes:
        path: The new checkpoint's prefix.
        sources: The checkpoints averaged, oldest first.
        averaged: The floating-point entries averaged.
        copied: The other entries, copied from the newest source.
    """

    path: str
    sources: tuple[str, ...]
    averaged: tuple[str, ...]
    copied: tuple[str, ...]


def average(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    output: str | os.PathLike[str],
    last: int | None = None,
    steps: Sequence[int] | None = None,
    overwrite: bool = False,
) -> Averaged:
    """Writes the mean of several checkpoints' floating-point values as a new checkpoint.

    Args:
        source: A checkpoint directory (any storage ckptkit reads; its committed checkpoints),
            or a list of checkpoint paths (prefixes or ``.index`` files).
        output: The new checkpoint's prefix (``runs/exp1/averaged/ckpt-avg``), on a local
            path; its folder is created.
        last: Average the newest `last` checkpoints of the directory.
        steps: Average the directory's checkpoints of these steps.
        overwrite: Replace a checkpoint already at `output`.

    Returns:
        Where it was written and what it holds.

    Raises:
        CheckpointNotFoundError: A source, or a step asked for, does not exist.
        IncompatibleCheckpointsError: The checkpoints do not hold the same entries with the
            same shapes and dtypes (the first difference is named); nothing is written.
        CheckpointExistsError: A checkpoint is at `output` and `overwrite` is not set.
        SaveError: Writing failed (`DiskFullError` when out of space); nothing is left at
            `output` but what was there before.

    Example::

        result = ckptkit.average("runs/exp1", last=5, output="runs/exp1-avg/ckpt-avg")
        manager.restore(path=result.path)
    """
    chosen = _choose(source, last, steps)
    destination = layout.check_path(output)
    if "://" in destination:
        raise ValueError(
            f"average writes a local checkpoint (received output={destination!r}); write it "
            "locally, then copy the files (the prefix's .index and .data-* files)"
        )
    if os.path.exists(f"{destination}.index") and not overwrite:
        raise CheckpointExistsError(
            f"a checkpoint exists at {destination}; pass overwrite=True to replace it, or "
            "choose another output"
        )
    specs = _same_entries(chosen)
    from ckptkit.backends.bundle_writer import BundleWriter  # TensorFlow, only to write

    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    staging = os.path.join(folder, f".{os.path.basename(destination)}.tmp-{uuid.uuid4().hex}")
    writer = BundleWriter(staging)
    readers = [open_reader(path) for path in chosen]
    averaged, copied = [], []
    try:
        newest_prefix, newest = readers[-1]
        with progress.task(f"averaging {len(chosen)} checkpoints", len(specs)) as advance:
            for key in sorted(specs):
                if specs[key] in _FLOATING:
                    writer.add(key, _mean(readers, key))
                    averaged.append(key)
                else:
                    writer.add(key, get_tensor(newest, newest_prefix, key))
                    copied.append(key)
                advance(1)
        if newest.has_tensor(OBJECT_GRAPH_KEY):  # a name-based checkpoint has none
            writer.add(OBJECT_GRAPH_KEY, newest.get_tensor(OBJECT_GRAPH_KEY))
        writer.finish()
        _move_into_place(staging, destination)
    except BaseException:
        writer.discard()
        for leftover in _files_of(staging):
            with contextlib.suppress(OSError):
                os.remove(leftover)
        raise
    return Averaged(destination, tuple(chosen), tuple(averaged), tuple(copied))


def _choose(
    source: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    last: int | None,
    steps: Sequence[int] | None,
) -> list[str]:
    """The checkpoints to average, oldest first (resolved prefixes)."""
    if last is not None and steps is not None:
        raise ValueError("pass last or steps, not both")
    if last is not None and (isinstance(last, bool) or not isinstance(last, int) or last < 1):
        raise ValueError(f"last must be a positive number of checkpoints (received {last!r})")
    if isinstance(source, (str, os.PathLike)):
        infos = layout.list_checkpoints(source)
        if not infos:
            raise layout.no_checkpoint(os.fspath(source))
        if steps is not None:
            by_step = {info.step: info.path for info in infos}
            missing = [s for s in steps if s not in by_step]
            if missing:
                raise CheckpointNotFoundError(
                    f"no checkpoint of step(s) {missing} in {os.fspath(source)}; steps there: "
                    f"{sorted(s for s in by_step if s is not None)}"
                )
            return [by_step[s] for s in sorted(set(steps))]
        return [info.path for info in infos[-(last or len(infos)) :]]
    if last is not None or steps is not None:
        raise ValueError("last and steps choose among a directory's checkpoints; pass a directory")
    paths = [layout.resolve_checkpoint(layout.check_path(p)) for p in source]
    if not paths:
        raise ValueError("average needs at least one checkpoint (received an empty list)")
    return paths


def _same_entries(chosen: list[str]) -> dict[str, str]:
    """Each entry's dtype, after checking every checkpoint holds the same entries alike."""
    first = value_specs(chosen[0])
    for other in chosen[1:]:
        theirs = value_specs(other)
        for key in sorted(first.keys() | theirs.keys()):
            if key not in theirs or key not in first:
                has, lacks = (chosen[0], other) if key in first else (other, chosen[0])
                raise IncompatibleCheckpointsError(
                    f"cannot average: {has} holds {key!r} and {lacks} does not; average "
                    "checkpoints of one program (nothing was written)"
                )
            if first[key] != theirs[key]:
                raise IncompatibleCheckpointsError(
                    f"cannot average: {key!r} is {_text(first[key])} in {chosen[0]} and "
                    f"{_text(theirs[key])} in {other} (nothing was written)"
                )
    for key, spec in first.items():
        if spec.shape is None or spec.dtype is None:
            raise IncompatibleCheckpointsError(f"cannot average: {key!r} has no known shape")
    return {key: str(spec.dtype) for key, spec in first.items()}


def _text(spec: Any) -> str:
    return f"{spec.dtype}[{', '.join(map(str, spec.shape or ()))}]"


def _mean(readers: list[tuple[str, Any]], key: str) -> np.ndarray[Any, Any]:
    """The mean of `key` over the readers, accumulated in float64, in the entry's dtype."""
    first_prefix, first = readers[0]
    value = get_tensor(first, first_prefix, key)
    dtype, total = value.dtype, value.astype(np.float64)
    del value  # one value of the entry at a time, beside the accumulator
    for prefix, reader in readers[1:]:
        total += get_tensor(reader, prefix, key).astype(np.float64)
    total /= len(readers)
    return total.astype(dtype)


def _files_of(prefix: str) -> list[str]:
    folder, name = os.path.split(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        return []
    return [
        os.path.join(folder, f)
        for f in os.listdir(folder)
        if f == f"{name}.index" or f.startswith(f"{name}.data-")
    ]


def _move_into_place(staging: str, destination: str) -> None:
    """Renames the staged files to `destination`'s names: data first, the index last.

    What was at `destination` goes first (its index before its data), so that at no moment
    an index sits beside data files of another checkpoint.
    """
    old = _files_of(destination)
    for path in sorted(old, key=lambda p: not p.endswith(".index")):
        os.remove(path)
    staged = _files_of(staging)
    for path in sorted(staged, key=lambda p: p.endswith(".index")):
        suffix = path[len(os.path.abspath(staging)) :]
        os.replace(path, os.path.abspath(destination) + suffix)
