"""Where checkpoints live: directory layout, the `checkpoint` state file, listing and deletion.

A checkpoint ``<dir>/<prefix>-<step>`` is the files ``<prefix>-<step>.index``,
``<prefix>-<step>.data-NNNNN-of-MMMMM``, for a v1 Saver ``<prefix>-<step>.meta``, and
ckptkit's ``<prefix>-<step>.manifest.json`` (see `manifest`). The state file
``<dir>/checkpoint`` is TensorFlow's `CheckpointState` text proto, written with paths relative
to the directory (so the directory can be moved) and replaced atomically; it is what makes a
checkpoint *committed*: plain `tf.train.latest_checkpoint`, `tf.train.CheckpointManager` and
ckptkit all read it. Interrupted saves leave TensorFlow's ``<prefix>-<step>_temp/`` folders
and ``*.tempstate*`` files and ckptkit's ``*.tmp-<id>`` files and ``<prefix>-<step>.pending``
marks (a save in progress).

When the state file is missing, empty (what a rename without fsync can leave after a power
loss) or unparsable, the directory is listed from its files: in a directory ckptkit writes (it
holds manifests or ``.pending`` marks), only checkpoints with a valid manifest count, so a
half-written checkpoint is never taken for a committed one; elsewhere, every ``*.index``.

Files are read, listed and deleted through `fs`: no glob patterns, no links followed when
deleting, no special files read. A failed save's error, TensorFlow's or the OS's, becomes a
typed one here (`save_error`, `lock_error`): `DiskFullError` for a full disk, else `SaveError`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import text_format

from ckptkit.errors import (
    CheckpointNotFoundError,
    CorruptCheckpointError,
    DiskFullError,
    SaveError,
    StorageUnavailableError,
)
from ckptkit.storage import fs
from ckptkit.storage.manifest import MANIFEST_SUFFIX, SaveCost, file_problems, read_manifest
from ckptkit.storage.state_proto import CheckpointState
from ckptkit.warn import warn

__all__ = [
    "DROPPED_SUFFIX",
    "MANIFEST_SUFFIX",
    "PENDING_SUFFIX",
    "STATE_FILE",
    "CheckpointInfo",
    "DirectoryState",
    "check_path",
    "checkpoint_files",
    "committed",
    "delete_checkpoint",
    "describe",
    "list_checkpoints",
    "listing",
    "lock_error",
    "mark_pending",
    "named",
    "no_checkpoint",
    "not_writable",
    "parse_step",
    "read_state",
    "read_state_tagged",
    "remove_leftovers",
    "resolve_checkpoint",
    "save_error",
    "uncommitted",
    "unlisted",
    "unmark_pending",
    "whole",
    "write_state",
]

STATE_FILE = "checkpoint"
_STATE_MAX_BYTES = 16 << 20
_STEP_RE = re.compile(r"-(\d+)$")
# What follows a checkpoint's name in its files' names; the manifest last, so that a deletion
# cut short leaves the manifest that marks the rest as ckptkit's.
_PART_RE = re.compile(r"(\.index|\.data-\d{5}-of-\d{5}|\.meta|" + re.escape(MANIFEST_SUFFIX) + ")$")
PENDING_SUFFIX = ".pending"  # created before TensorFlow writes, removed once the manifest is
# Written before the state file stops listing a checkpoint that ckptkit deletes (retention,
# `delete`), removed with its files: the record that lets a later writer finish the deletion.
DROPPED_SUFFIX = ".dropped"
_MARKS = (PENDING_SUFFIX, DROPPED_SUFFIX)
_TEMP_RE = re.compile(
    r"(_temp|\.[^/]*\.tempstate[^/]*|\.[^/]*\.tmp-[0-9a-f]+|"
    + "|".join(re.escape(m) for m in _MARKS)
    + ")$"
)


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed checkpoint.

    Attributes:
        path: The checkpoint prefix, e.g. ``runs/exp1/ckpt-200`` (what TensorFlow's APIs take).
        step: The step in its name, or None when the name carries none.
        time: Wall time it was committed (seconds since the epoch), from the state file or
            the index file's modification time.
        size_bytes: Total size of its files.
        cost: What its save cost (bytes written, seconds the caller was blocked, seconds in
            the background), from its manifest; None without one.
        metrics: The metrics saved with it (``save(metrics=...)``), from its manifest; None
            without one.
        metadata: The metadata saved with it, from its manifest; None without one.
    """

    path: str
    step: int | None
    time: float
    size_bytes: int
    cost: SaveCost | None = None
    metrics: Mapping[str, float] | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class DirectoryState:
    """The `checkpoint` state file's content, with paths made absolute.

    Attributes:
        entries: ``(path, wall time)`` of the listed checkpoints, oldest first.
        last_preserved: Time the keep-every-n-hours window counts from (0 when never set).
    """

    entries: tuple[tuple[str, float], ...]
    last_preserved: float


def parse_step(path: str) -> int | None:
    """The step in a checkpoint name such as ``ckpt-200`` or ``model.ckpt-1000``, or None."""
    found = _STEP_RE.search(os.path.basename(path))
    return int(found.group(1)) if found else None


def _inside(directory: str, path: str, *, allow_outside: bool) -> tuple[str | None, bool]:
    """Where a state-file path points, kept inside `directory` unless `allow_outside`.

    State files hold relative (TF2) or absolute (tf.compat.v1 Saver) paths. One that leaves
    the directory (absolute elsewhere, ``..``, another URI) could make restores read, and
    retention delete, files that are not this directory's checkpoints. Such a path is replaced
    by the same-named checkpoint inside the directory when there is one (a directory moved from
    another machine) and dropped (None) otherwise.

    Returns:
        The path to use, or None; and whether it differs from what the state file says.
    """
    joined = path if os.path.isabs(path) or "://" in path else os.path.join(directory, path)
    if allow_outside:
        return joined, False
    name = os.path.basename(path.rstrip("/"))
    local = os.path.join(directory, name)
    if name not in ("", ".", "..") and (path == name or _same_place(joined, local)):
        return local, False
    if name not in ("", ".", "..") and fs.exists(f"{local}.index", follow_links=True):
        return local, True
    return None, True


def _same_place(a: str, b: str) -> bool:
    if "://" in a or "://" in b:
        return a.rstrip("/") == b.rstrip("/")
    return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def read_state(directory: str, *, allow_outside: bool = False) -> DirectoryState | None:
    """Reads ``<directory>/checkpoint``; None when it is missing or cannot be parsed.

    An unparsable state file is reported with a warning; the caller then falls back to the
    checkpoints found on disk. Paths leaving the directory are handled as `_inside` says.
    """
    return read_state_tagged(directory, allow_outside=allow_outside)[0]


def read_state_tagged(
    directory: str, *, allow_outside: bool = False
) -> tuple[DirectoryState | None, str | None]:
    """`read_state`, and the tag of the version read (`fs.read_tagged`).

    The tag is what a writer's next commit is fenced with: `fs.ABSENT` when there is no state
    file, None where the store has no tags.
    """
    state_path = os.path.join(directory, STATE_FILE)
    tag: str | None = None  # what could not be read is not fenced
    try:
        raw, tag = fs.read_tagged(state_path, limit=_STATE_MAX_BYTES)
        text = raw.decode()
    except FileNotFoundError:
        return None, fs.ABSENT if fs.staged(state_path) else None
    except StorageUnavailableError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        _ignore_state(state_path, f"it is unreadable ({reason})")
        return None, tag
    if not text.strip():
        _ignore_state(state_path, "it is empty, as a rename without fsync leaves it after a crash")
        return None, tag
    state = CheckpointState()
    try:
        text_format.Parse(text, state)
    except text_format.ParseError as e:
        _ignore_state(state_path, f"it is unparsable ({e})")
        return None, tag
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    times: list[float | None] = list(state.all_model_checkpoint_timestamps)
    if len(times) != len(paths):
        times = [None] * len(paths)  # tf.compat.v1 Saver and old TF record no times
    entries: list[tuple[str, float]] = []
    seen: set[str] = set()  # a hand-edited file may repeat entries: one pass, not n**2
    moved: list[tuple[str, str]] = []
    ignored: list[str] = []
    for raw, time_ in zip(paths, times, strict=True):
        path, outside = _inside(directory, raw, allow_outside=allow_outside)
        if outside and path is None:
            ignored.append(raw)
        elif outside and path is not None:
            moved.append((raw, path))
        if path is not None and path not in seen:
            seen.add(path)
            entries.append((path, _mtime(path) if time_ is None else time_))
    if moved:
        warn(
            f"the state file of {directory} points outside it "
            f"({', '.join(repr(raw) for raw, _ in moved)}), as one written on another machine "
            f"does; using the same-named checkpoint(s) inside it: "
            f"{', '.join(local for _, local in moved)}"
        )
    if ignored:
        warn(
            f"ignoring {', '.join(map(repr, ignored))} in the state file of {directory}: "
            "each points outside the directory, and no checkpoint of that name is inside it "
            "(set allow_outside_paths=True in the config to follow such paths)"
        )
    return DirectoryState(tuple(entries), state.last_preserved_timestamp), tag


def _ignore_state(path: str, why: str) -> None:
    warn(
        f"ignoring the state file {path}: {why}; listing the checkpoints from their files "
        "(in a directory ckptkit writes, those with a valid manifest)"
    )


def write_state(
    directory: str,
    entries: tuple[tuple[str, float], ...],
    last_preserved: float,
    *,
    dropped: Sequence[str] = (),
    expect: str | None = None,
    durable: bool = False,
) -> str | None:
    """Atomically replaces ``<directory>/checkpoint`` with `entries` (oldest first).

    With `durable`, the new file and the directory are fsync'ed, so the commit survives a
    power loss and not only a process kill. A failed write leaves no temporary file.

    Args:
        directory: The checkpoint directory.
        entries: ``(path, time)`` of the checkpoints to list.
        last_preserved: The keep-every-n-hours mark.
        dropped: Listed checkpoints this write stops listing, to be deleted next: each is
            marked ``.dropped`` first, so that a deletion cut short is finished by the next
            writer (`remove_leftovers`). A failed write removes the marks again.
        expect: The tag of the state file this writer last read (`read_state_tagged`): the
            write goes through only if the file is still that version (S3: ``If-Match``).
            None writes unconditionally.
        durable: fsync the file and the directory.

    Returns:
        The new state file's tag (None where the store has none).

    Raises:
        ChangedError: Another writer committed since `expect` was read; nothing changed.
        OSError: Writing failed; the previous state file is unchanged.
    """
    for path in dropped:
        fs.write_atomic(path + DROPPED_SUFFIX, b"")
    try:
        return _write_state(directory, entries, last_preserved, expect=expect, durable=durable)
    except BaseException:
        for path in dropped:
            with contextlib.suppress(OSError):
                fs.remove(path + DROPPED_SUFFIX)  # still listed: no mark
        raise


def _write_state(
    directory: str,
    entries: tuple[tuple[str, float], ...],
    last_preserved: float,
    *,
    expect: str | None,
    durable: bool,
) -> str | None:
    inside = directory.rstrip("/") + "/"
    rel = [p[len(inside) :] if p.startswith(inside) else p for p, _ in entries]
    state = CheckpointState(
        model_checkpoint_path=rel[-1] if rel else "",
        all_model_checkpoint_paths=rel,
        all_model_checkpoint_timestamps=[t for _, t in entries],
        last_preserved_timestamp=last_preserved,
    )
    text = text_format.MessageToString(state)
    path = os.path.join(directory, STATE_FILE)
    return fs.write_tagged(path, text.encode(), expect, durable=durable)


def remove_state(directory: str) -> None:
    """Removes the state file of `directory` (a link as a name); a missing one is no error.

    Raises:
        OSError: It could not be removed.
    """
    fs.remove(os.path.join(directory, STATE_FILE))


def checkpoint_files(path: str) -> list[str]:
    """The files of checkpoint `path`: index, data shards, meta graph, then the manifest."""
    directory, name = os.path.split(path)
    _, groups = _group(fs.listdir(directory or "."), re.escape(name))
    return [os.path.join(directory, n) for n in groups.get(name, [])]


def _mtime(path: str) -> float:
    try:
        return fs.stat(f"{path}.index").mtime
    except StorageUnavailableError:
        raise
    except OSError:
        return 0.0


def describe(path: str, time: float | None = None) -> CheckpointInfo:
    """A `CheckpointInfo` for the checkpoint `path` (its files are stat'ed for the size)."""
    size = 0
    for name in checkpoint_files(path):
        try:
            size += fs.stat(name).size
        except StorageUnavailableError:
            raise
        except OSError:
            continue
    try:
        manifest = read_manifest(path)
    except CorruptCheckpointError:
        manifest = None  # reported by verify and skipped by restore; a listing still lists it
    return CheckpointInfo(
        path=path,
        step=parse_step(path),
        time=_mtime(path) if time is None else time,
        size_bytes=size,
        cost=None if manifest is None else manifest.cost,
        metrics=None if manifest is None else manifest.metrics,
        metadata=None if manifest is None else manifest.metadata,
    )


def _scan(directory: str) -> list[tuple[str, float]]:
    """Checkpoints found by their files, for directories without a usable state file.

    In a directory ckptkit writes (it holds manifests, or the ``.pending`` mark a save leaves
    until its manifest exists), a checkpoint counts only with a valid manifest (written after
    TensorFlow finished); elsewhere every ``*.index`` counts. The lock file says nothing: a
    ckptkit writer takes it in others' directories too.
    """
    names = fs.listdir(directory)
    ours = any(n.endswith((MANIFEST_SUFFIX, PENDING_SUFFIX)) for n in names)
    suffix = MANIFEST_SUFFIX if ours else ".index"
    found = []
    for name in names:
        if not name.endswith(suffix):
            continue
        path = os.path.join(directory, name[: -len(suffix)])
        if ours and not _has_valid_manifest(path, names):
            continue
        found.append((path, _mtime(path)))
    found.sort(key=lambda entry: (parse_step(entry[0]) or -1, entry[1]))
    return found


def _has_valid_manifest(path: str, names: list[str]) -> bool:
    """Whether `path` has a manifest that parses and an index file."""
    if f"{os.path.basename(path)}.index" not in names:
        return False
    try:
        return read_manifest(path) is not None
    except CorruptCheckpointError:
        return False


def committed(
    directory: str, *, include_missing: bool = False, allow_outside: bool = False
) -> tuple[list[tuple[str, float]], float | None]:
    """The committed checkpoints of an existing `directory` as ``(path, time)``, oldest first.

    The state file decides what is committed; a directory without one (written by
    `tf.train.Checkpoint.write`, say) is listed from its ``*.index`` files.

    Args:
        directory: The checkpoint directory.
        include_missing: Keep state-file entries whose index file is gone (for `verify`, which
            reports them); by default they are left out.
        allow_outside: Follow state-file paths that leave the directory.

    Returns:
        The entries, and the state file's keep-every-n-hours mark (None without a state file).
    """
    state = read_state(directory, allow_outside=allow_outside)
    return listing(directory, state, include_missing=include_missing)


def listing(
    directory: str, state: DirectoryState | None, *, include_missing: bool
) -> tuple[list[tuple[str, float]], float | None]:
    """`committed` from a state file already read (None: the directory's files decide)."""
    if state is None:
        return _scan(directory), None
    entries = [
        e for e in state.entries if include_missing or fs.exists(f"{e[0]}.index", follow_links=True)
    ]
    return entries, state.last_preserved


def list_checkpoints(directory: str | os.PathLike[str]) -> list[CheckpointInfo]:
    """The committed checkpoints of `directory` (a str or a `pathlib.Path`), oldest first.

    See `committed`.

    Raises:
        CheckpointNotFoundError: `directory` does not exist.
    """
    directory = check_path(directory)
    if not fs.isdir(directory):
        raise CheckpointNotFoundError(
            f"checkpoint directory not found: {directory!r}; check the path "
            "(a directory is created by the first save)"
        )
    entries, _ = committed(directory)
    return [describe(path, time) for path, time in entries]


def unlisted(directory: str, listed: Iterable[str]) -> list[str]:
    """Checkpoints on disk in `directory` that `listed` (the state file's) leaves out.

    What a hand-edited, rolled back or copied state file hides: each has an index and, in a
    directory ckptkit writes, a manifest that parses. Oldest first. ckptkit never deletes them
    (see `remove_leftovers`); `CheckpointManager.restore(path=...)` loads one.
    """
    names = {os.path.basename(p) for p in listed}
    return [p for p, _ in _scan(directory) if os.path.basename(p) not in names]


def no_checkpoint(directory: str) -> CheckpointNotFoundError:
    """The error for an existing `directory` that holds no committed checkpoint."""
    return CheckpointNotFoundError(
        f"no checkpoint in directory {directory!r}: no '{STATE_FILE}' state file lists one, "
        "and no checkpoint was found by its files (in a directory ckptkit writes, only one "
        "with a valid manifest counts)"
    )


def resolve_checkpoint(path: str) -> str:
    """Turns a directory (its newest checkpoint), a prefix or an ``.index`` file into a prefix.

    Raises:
        CheckpointNotFoundError: Nothing at `path`, or a directory with no checkpoint.
    """
    path = check_path(path).removesuffix(".index")
    if fs.exists(f"{path}.index", follow_links=True):
        return path
    if fs.isdir(path):
        infos = list_checkpoints(path)
        if not infos:
            raise no_checkpoint(path)
        return infos[-1].path
    if fs.exists(path, follow_links=True):
        raise CheckpointNotFoundError(
            f"{path!r} is a file but not a checkpoint: pass a checkpoint prefix (the path "
            "without .index) or the directory holding the checkpoints"
        )
    raise CheckpointNotFoundError(
        f"no checkpoint at {path!r}: expected a directory or a checkpoint prefix "
        f"(such that {path}.index exists)"
    )


def delete_checkpoint(path: str) -> None:
    """Removes the files of checkpoint `path`, and what a save of it may have left half-done.

    The manifest goes last, so a deletion cut short leaves files that `remove_leftovers`
    still knows as ckptkit's. Links are removed as names, never followed. Files already gone
    are ignored.

    Raises:
        OSError: A file could not be removed.
    """
    directory, name = os.path.split(path)
    temporaries, groups = _group(fs.listdir(directory or "."), re.escape(name))
    for part in groups.get(name, []) + temporaries:
        fs.remove(os.path.join(directory, part))


def _steps_of(prefix: str) -> str:
    """The pattern of checkpoint names ``<prefix>-<step>``."""
    return re.escape(prefix) + r"-\d+"


def _group(names: list[str], checkpoints: str) -> tuple[list[str], dict[str, list[str]]]:
    """Temporaries of saves, and files by checkpoint, of checkpoints named by `checkpoints`.

    Args:
        names: File names in one directory.
        checkpoints: A regular expression for checkpoint names: one name escaped, or
            `_steps_of` a prefix.

    Returns:
        Names of temporary files and folders, and each checkpoint's files, manifest last.
    """
    own = re.compile(checkpoints)
    temporaries: list[str] = []
    groups: dict[str, list[str]] = defaultdict(list)
    for name in names:
        found = own.match(name)
        if found is None:
            continue
        checkpoint, rest = found.group(0), name[found.end() :]
        if _TEMP_RE.fullmatch(rest):
            temporaries.append(name)
        elif _PART_RE.fullmatch(rest):
            groups[checkpoint].append(name)
    for parts in groups.values():
        parts.sort(key=lambda n: (n.endswith(MANIFEST_SUFFIX), n))
    return temporaries, dict(groups)


def uncommitted(directory: str, prefix: str) -> list[str]:
    """Checkpoints named ``<prefix>-<step>`` with files or a pending mark in `directory`.

    For a directory that lists none: what a restart ignores.
    """
    temporaries, groups = _group(fs.listdir(directory), _steps_of(prefix))
    found = set(groups) | {
        n[: -len(PENDING_SUFFIX)] for n in temporaries if n.endswith(PENDING_SUFFIX)
    }
    return sorted((os.path.join(directory, c) for c in found), key=lambda p: parse_step(p) or -1)


def remove_leftovers(directory: str, prefix: str, keep: set[str]) -> list[str]:
    """Removes what interrupted saves and deletions left in `directory`; returns what went.

    Only what ckptkit can show is its own garbage goes, among the checkpoints named
    ``<prefix>-<step>`` that `keep` (every committed checkpoint) does not hold:

    - a save that never finished: the ``.pending`` mark a save leaves until its manifest is
      written, and the files are not whole (a whole one stays for a later save of that step to
      replace);
    - a deletion cut short: the ``.dropped`` mark that retention and `delete` write before the
      state file stops listing a checkpoint.

    A whole checkpoint that the state file does not list and that carries neither mark is
    never removed, whatever its step: a hand-edited, rolled-back or copied state file loses
    nothing. TensorFlow's temporary folders and files, ckptkit's temporary files of saves under
    `prefix`, and stale marks go too. Nothing committed, and nothing outside `directory`, is
    touched.

    Raises:
        OSError: A file could not be removed.
    """
    names = fs.listdir(directory)
    temporaries, groups = _group(names, _steps_of(prefix))
    kept = {os.path.basename(p) for p in keep}
    pending, dropped = ({n.removesuffix(m) for n in temporaries if n.endswith(m)} for m in _MARKS)
    removed = []
    for checkpoint in sorted(set(groups) | pending | dropped):
        path = os.path.join(directory, checkpoint)
        if checkpoint in kept or parse_step(checkpoint) is None:
            continue
        if checkpoint in dropped or (checkpoint in pending and not whole(path)):
            delete_checkpoint(path)  # its files, then its marks
            removed.append(checkpoint)
    temporaries += [n for n in names if n.startswith(f"{STATE_FILE}.tmp-")]
    return removed + [n for n in temporaries if fs.remove(os.path.join(directory, n))]


def whole(path: str) -> bool:
    """Whether checkpoint `path` has a valid manifest and its files match it."""
    try:
        manifest = read_manifest(path)
    except CorruptCheckpointError:
        return False
    return manifest is not None and not file_problems(path, manifest)


def named(path: str, prefix: str) -> bool:
    """Whether checkpoint `path` is named ``<prefix>-<step>``."""
    return re.fullmatch(_steps_of(prefix), os.path.basename(path)) is not None


def mark_pending(path: str) -> None:
    """Marks checkpoint `path` as being written by ckptkit, before TensorFlow writes it.

    Raises:
        OSError: The mark could not be written (the disk is full, ...).
    """
    fs.write_atomic(path + PENDING_SUFFIX, b"")


def unmark_pending(path: str) -> None:
    """Removes the mark of `mark_pending` once the checkpoint's manifest is written."""
    fs.remove(path + PENDING_SUFFIX)


def check_path(path: str | os.PathLike[str]) -> str:
    """`path` as a str (a `pathlib.Path` too); `CheckpointNotFoundError` for a NUL byte."""
    path = os.fspath(path)
    if "\x00" in path:
        raise CheckpointNotFoundError(
            f"no checkpoint at {path!r}: a path cannot contain a NUL byte"
        )
    return path


_DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
_DISK_FULL_WORDS = ("no space left", "file too large", "quota exceeded", "disk full")


def save_error(path: str, directory: str, error: BaseException) -> SaveError:
    """The typed error for a save of `path` that failed with `error` (TensorFlow's or the OS's).

    A full disk, a file-size limit or a quota is `DiskFullError`; anything else `SaveError`.
    """
    # TensorFlow prefixes op errors with "{{function_node ...}}" and suffixes "[Op:SaveV2]".
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", str(error))
    if getattr(error, "errno", None) in _DISK_FULL or any(
        w in text.lower() for w in _DISK_FULL_WORDS
    ):
        return DiskFullError(
            errno.ENOSPC,
            f"saving checkpoint {path} ran out of space ({text.strip().splitlines()[0]}). "
            f"Nothing was committed, its partial files were removed, and the earlier "
            f"checkpoints in {directory} are intact; free space or lower max_to_keep",
        )
    return SaveError(
        f"saving checkpoint {path} failed: {text}. Nothing was committed and the earlier "
        f"checkpoints in {directory} are intact"
    )


def not_writable(directory: str, error: OSError) -> SaveError | None:
    """The error for a local `directory` this process may not write, when `error` says so."""
    if fs.is_remote(directory) or error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
        return None
    effective = os.access in os.supports_effective_ids  # this process's uid, not the real one
    if os.path.isdir(directory) and os.access(directory, os.W_OK, effective_ids=effective):
        return None  # the lock file itself, not the directory
    return SaveError(
        f"checkpoint directory {directory} is not writable ({error.strerror or error}): "
        "nothing can be saved there. Fix its permissions, or save to another directory; "
        "restoring from it (restore(), inspect) works without writing"
    )


def lock_error(path: str, error: OSError) -> SaveError:
    """The typed error for a writer lock file that could not be created or opened."""
    reason = error.strerror or str(error)
    if error.errno in _DISK_FULL:
        return DiskFullError(
            errno.ENOSPC,
            f"cannot create the writer lock {path}: {reason}. Nothing was saved; free space "
            "(or inodes) on that filesystem",
        )
    if fs.is_remote(path):
        return SaveError(
            f"cannot take the writer lease {path} ({reason}). Nothing was saved; check that "
            "the storage is reachable and writable with these credentials"
        )
    unwritable = not_writable(os.path.dirname(path), error)
    if unwritable is not None:
        return unwritable
    return SaveError(
        f"cannot take the writer lock {path}: it must be a regular file ckptkit can write "
        f"({reason}). Nothing was saved; remove or fix that file"
    )
