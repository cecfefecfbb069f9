"""Is a checkpoint intact? Checks files against the manifest, the index, and (fully) the data.

Two depths:

- cheap: every file the manifest lists is a regular file of its recorded size, the index
  matches its crc32, the manifest matches its own checksum, the index is sound (checked in
  Python before TensorFlow opens it, see `index_file`: every entry fits its bytes and its data
  file), and the object graph refers only to nodes it has. For a checkpoint without a
  manifest (written by plain TensorFlow): the same but the manifest, and every data shard the
  index names exists.
- full: also reads every tensor and checks each one's crc32c, as TensorFlow's reader does.

Example:
    >>> report = ckptkit.verify("runs/exp1")          # doctest: +SKIP
    >>> report.ok, [str(p) for c in report.checkpoints for p in c.problems]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from ckptkit import progress
from ckptkit.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    FormatError,
    first_line,
)
from ckptkit.reading.index_file import check_index
from ckptkit.reading.inspection import load_graph, open_reader, read_errors, sharing_readers
from ckptkit.reading.keras_files import is_keras_file
from ckptkit.storage import fs, layout
from ckptkit.storage.manifest import Manifest, file_problems, manifest_path, read_manifest

__all__ = ["CheckpointVerdict", "Problem", "VerifyReport", "verify", "verify_checkpoint"]

_SHARD_RE = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a checkpoint.

    Attributes:
        file: The file at fault.
        reason: What is wrong, e.g. ``size mismatch: expected 1024 bytes, found 512``.
    """

    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.reason}"


@dataclass(frozen=True)
class CheckpointVerdict:
    """The outcome of verifying one checkpoint.

    Attributes:
        path: The checkpoint prefix.
        problems: Everything found wrong; empty when intact.
        has_manifest: Whether ckptkit's manifest was there to check against.
        manifest: That manifest, when it could be read (a restore reports its metadata).
    """

    path: str
    problems: tuple[Problem, ...]
    has_manifest: bool
    manifest: Manifest | None = None

    @property
    def ok(self) -> bool:
        """Whether the checkpoint is intact."""
        return not self.problems


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of verifying a checkpoint or every checkpoint of a directory.

    Attributes:
        checkpoints: One verdict per checkpoint, oldest first.
    """

    checkpoints: tuple[CheckpointVerdict, ...]

    @property
    def ok(self) -> bool:
        """Whether every checkpoint is intact."""
        return all(c.ok for c in self.checkpoints)


def verify_checkpoint(path: str, *, full: bool = False) -> CheckpointVerdict:
    """Verifies the checkpoint prefix `path` (see the module docstring for what is checked).

    Never raises for what it finds: unreadable, missing or special files are problems.
    """
    try:
        manifest = read_manifest(path)
    except CorruptCheckpointError as e:
        return CheckpointVerdict(path, (Problem(manifest_path(path), str(e)),), True)
    if manifest is not None:
        problems = [Problem(f, why) for f, why in file_problems(path, manifest)]
        if problems:
            return CheckpointVerdict(path, tuple(problems), True)
    with sharing_readers():
        found = _check_readable(path, full=full, check_shards=manifest is None)
    return CheckpointVerdict(path, tuple(found), manifest is not None, manifest)


def _check_readable(path: str, *, full: bool, check_shards: bool) -> list[Problem]:
    index = path + ".index"
    if not fs.exists(index, follow_links=True):
        return [Problem(index, "missing")]
    if fs.staged(path) and not full:  # checked where it lies, not downloaded for TensorFlow
        try:
            check_index(index)
        except CorruptCheckpointError as e:
            return [Problem(index, f"unreadable index: {e}")]
        return _missing_shards(path) if check_shards else []
    try:
        _, reader = open_reader(path)
    except (CorruptCheckpointError, CheckpointNotFoundError) as e:
        return [Problem(index, f"unreadable index: {e}")]
    problems: list[Problem] = []
    try:
        load_graph(path)  # an object graph whose references leave it fails restore
    except (CorruptCheckpointError, CheckpointNotFoundError) as e:  # damaged, or deleted since
        problems.append(Problem(path + ".data-*", first_line(e)))
    if check_shards:
        problems.extend(_missing_shards(path))
    if full and not problems:
        keys = sorted(reader.get_variable_to_shape_map())
        check = getattr(reader, "check_tensor", reader.get_tensor)  # ckptkit's: no value built
        with progress.task(f"verifying {os.path.basename(path)}", len(keys)) as advance:
            for key in keys:
                try:
                    check(key)
                except read_errors() as e:  # data damaged or cut short, slices
                    message = getattr(e, "message", None) or str(e)
                    problems.append(
                        Problem(path + ".data-*", f"tensor {key!r} unreadable: {message}")
                    )
                advance(1)
    return problems


def _missing_shards(path: str) -> list[Problem]:
    shards = layout.checkpoint_files(path)
    counts = {int(m.group(2)) for f in shards if (m := _SHARD_RE.search(f))}
    if not counts:
        return [Problem(path + ".data-00000-of-00001", "missing: no data file")]
    total = max(counts)
    have = {int(m.group(1)) for f in shards if (m := _SHARD_RE.search(f))}
    return [
        Problem(f"{path}.data-{i:05d}-of-{total:05d}", "missing")
        for i in range(total)
        if i not in have
    ]


def verify(path: str | os.PathLike[str], *, full: bool = False) -> VerifyReport:
    """Verifies one checkpoint (a prefix) or every committed checkpoint of a directory.

    Args:
        path: A checkpoint prefix or a directory.
        full: Also read every tensor so TensorFlow checks its crc32c (reads all the data).

    Returns:
        One verdict per checkpoint.

    Raises:
        CheckpointNotFoundError: Nothing at `path`, or a directory with no checkpoint.
        FormatError: `path` is a Keras file, which has nothing to verify against.
    """
    path = layout.check_path(path)
    if is_keras_file(path):
        raise FormatError(
            f"cannot verify {path}: a Keras file records no checksums or sizes to check its "
            "values against (TensorFlow checkpoints have ckptkit's manifest and per-tensor "
            f"crc32c); `ckptkit inspect {path}` shows whether it opens and what it holds"
        )
    path = path.removesuffix(".index")
    if any(fs.exists(p, follow_links=True) for p in (path + ".index", manifest_path(path))):
        return VerifyReport((verify_checkpoint(path, full=full),))
    if not fs.isdir(path):
        layout.resolve_checkpoint(path)  # raises the right "not found" error
    entries, _ = layout.committed(path, include_missing=True)
    if not entries:
        raise CheckpointNotFoundError(f"no checkpoint in directory {path!r} to verify")
    return VerifyReport(tuple(verify_checkpoint(p, full=full) for p, _ in entries))
