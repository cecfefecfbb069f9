"""Where checkpoints live: directory layout, the `checkpoint` state file, listing and deletion.

A checkpoint ``<dir>/<prefix>-<step>`` is the files ``<prefix>-<step>.index``,
``<prefix>-<step>.data-NNNNN-of-MMMMM``, for a v1 Saver ``<prefix>-<step>.meta``, and
ckptkit's ``<prefix>-<step>.manifest.json`` (see `manifest`). The state file
``<dir>/checkpoint`` is TensorFlow's `CheckpointState` text proto, written with paths relative
to the directory (so the directory can be moved) and replaced atomically; it is what makes a
checkpoint *committed*: plain `tf.train.latest_checkpoint`, `tf.train.CheckpointManager` and
ckptkit all read it. Interrupted saves leave TensorFlow's ``<prefix>-<step>_temp/`` folders
and ``*.tempstate*`` files and ckptkit's ``*.tmp-<id>`` files.

All file access goes through `tf.io.gfile`, so any filesystem TensorFlow knows works.
"""

from __future__ import annotations

import os
import re
import uuid
import warnings
from dataclasses import dataclass

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training.checkpoint_state_pb2 import CheckpointState

from ckptkit.errors import CheckpointNotFoundError

__all__ = [
    "MANIFEST_SUFFIX",
    "STATE_FILE",
    "CheckpointInfo",
    "DirectoryState",
    "checkpoint_files",
    "committed",
    "delete_checkpoint",
    "describe",
    "fsync",
    "list_checkpoints",
    "parse_step",
    "read_state",
    "remove_leftovers",
    "resolve_checkpoint",
    "write_state",
]

STATE_FILE = "checkpoint"
MANIFEST_SUFFIX = ".manifest.json"
_STEP_RE = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class CheckpointInfo:
    """One committed checkpoint.

    Attributes:
        path: The checkpoint prefix, e.g. ``runs/exp1/ckpt-200`` (what TensorFlow's APIs take).
        step: The step in its name, or None when the name carries none.
        time: Wall time it was committed (seconds since the epoch), from the state file or
            the index file's modification time.
        size_bytes: Total size of its files.
    """

    path: str
    step: int | None
    time: float
    size_bytes: int


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
    if name not in ("", ".", "..") and tf.io.gfile.exists(f"{local}.index"):
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
    state_path = os.path.join(directory, STATE_FILE)
    try:
        text = tf.io.gfile.GFile(state_path, "r").read()
    except tf.errors.NotFoundError:
        return None
    except (tf.errors.OpError, UnicodeDecodeError) as e:
        warnings.warn(
            f"ignoring unreadable state file {state_path} ({e}); listing checkpoints from files",
            stacklevel=2,
        )
        return None
    state = CheckpointState()
    try:
        text_format.Parse(text, state)
    except text_format.ParseError as e:
        warnings.warn(f"ignoring unparsable state file {state_path}: {e}", stacklevel=2)
        return None
    paths = list(state.all_model_checkpoint_paths)
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    times: list[float | None] = list(state.all_model_checkpoint_timestamps)
    if len(times) != len(paths):
        times = [None] * len(paths)  # tf.compat.v1 Saver and old TF record no times
    entries: list[tuple[str, float]] = []
    moved: list[tuple[str, str]] = []
    ignored: list[str] = []
    for raw, time_ in zip(paths, times, strict=True):
        path, outside = _inside(directory, raw, allow_outside=allow_outside)
        if outside and path is None:
            ignored.append(raw)
        elif outside and path is not None:
            moved.append((raw, path))
        if path is not None and all(path != e[0] for e in entries):
            entries.append((path, _mtime(path) if time_ is None else time_))
    if moved:
        warnings.warn(
            f"the state file of {directory} points outside it "
            f"({', '.join(repr(raw) for raw, _ in moved)}), as one written on another machine "
            f"does; using the same-named checkpoint(s) inside it: "
            f"{', '.join(local for _, local in moved)}",
            stacklevel=2,
        )
    if ignored:
        warnings.warn(
            f"ignoring {', '.join(map(repr, ignored))} in the state file of {directory}: "
            "each points outside the directory, and no checkpoint of that name is inside it "
            "(set allow_outside_paths=True in the config to follow such paths)",
            stacklevel=2,
        )
    return DirectoryState(tuple(entries), state.last_preserved_timestamp)


def fsync(path: str) -> None:
    """Flushes a local file or directory to stable storage; remote filesystems are skipped."""
    if "://" in path:
        return  # Remote filesystems make their own durability promises.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_state(
    directory: str,
    entries: tuple[tuple[str, float], ...],
    last_preserved: float,
    *,
    durable: bool = False,
) -> None:
    """Atomically replaces ``<directory>/checkpoint`` with `entries` (oldest first).

    With `durable`, the new file and the directory are fsync'ed, so the commit survives a
    power loss and not only a process kill.
    """
    inside = directory.rstrip("/") + "/"
    rel = [p[len(inside) :] if p.startswith(inside) else p for p, _ in entries]
    state = CheckpointState(
        model_checkpoint_path=rel[-1] if rel else "",
        all_model_checkpoint_paths=rel,
        all_model_checkpoint_timestamps=[t for _, t in entries],
        last_preserved_timestamp=last_preserved,
    )
    final = os.path.join(directory, STATE_FILE)
    temp = f"{final}.tmp-{uuid.uuid4().hex}"
    with tf.io.gfile.GFile(temp, "w") as f:
        f.write(text_format.MessageToString(state))
    if durable:
        fsync(temp)
    tf.io.gfile.rename(temp, final, overwrite=True)
    if durable:
        fsync(directory)


def checkpoint_files(path: str) -> list[str]:
    """The files that make up the checkpoint `path`: index, data shards, meta graph, manifest."""
    pattern = _glob_escape(path)
    found: list[str] = [
        *tf.io.gfile.glob(f"{pattern}.index"),
        *tf.io.gfile.glob(f"{pattern}.data-?????-of-?????"),
        *tf.io.gfile.glob(f"{pattern}.meta"),
        *tf.io.gfile.glob(f"{pattern}{MANIFEST_SUFFIX}"),
    ]
    return found


def _glob_escape(path: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", path)


def _mtime(path: str) -> float:
    try:
        return float(tf.io.gfile.stat(f"{path}.index").mtime_nsec) / 1e9
    except tf.errors.OpError:
        return 0.0


def describe(path: str, time: float | None = None) -> CheckpointInfo:
    """A `CheckpointInfo` for the checkpoint `path` (its files are stat'ed for the size)."""
    size = 0
    for name in checkpoint_files(path):
        try:
            size += tf.io.gfile.stat(name).length
        except tf.errors.OpError:
            continue
    return CheckpointInfo(
        path=path,
        step=parse_step(path),
        time=_mtime(path) if time is None else time,
        size_bytes=size,
    )


def _scan(directory: str) -> list[tuple[str, float]]:
    """Checkpoints found by their index files, for directories without a usable state file."""
    found = [
        (name[: -len(".index")], _mtime(name[: -len(".index")]))
        for name in tf.io.gfile.glob(os.path.join(_glob_escape(directory), "*.index"))
    ]
    found.sort(key=lambda entry: (parse_step(entry[0]) or -1, entry[1]))
    return found


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
    if state is None:
        return _scan(directory), None
    entries = [e for e in state.entries if include_missing or tf.io.gfile.exists(f"{e[0]}.index")]
    return entries, state.last_preserved


def list_checkpoints(directory: str) -> list[CheckpointInfo]:
    """The committed checkpoints of `directory`, oldest first (see `committed`).

    Raises:
        CheckpointNotFoundError: `directory` does not exist.
    """
    if not tf.io.gfile.isdir(directory):
        raise CheckpointNotFoundError(
            f"checkpoint directory not found: {directory!r}; check the path "
            "(a directory is created by the first save)"
        )
    entries, _ = committed(directory)
    return [describe(path, time) for path, time in entries]


def resolve_checkpoint(path: str) -> str:
    """Turns a directory (its newest checkpoint), a prefix or an ``.index`` file into a prefix.

    Raises:
        CheckpointNotFoundError: Nothing at `path`, or a directory with no checkpoint.
    """
    if path.endswith(".index"):
        path = path[: -len(".index")]
    if tf.io.gfile.exists(f"{path}.index"):
        return path
    if tf.io.gfile.isdir(path):
        infos = list_checkpoints(path)
        if not infos:
            raise CheckpointNotFoundError(
                f"no checkpoint in directory {path!r}: it has no '{STATE_FILE}' state file "
                "listing one and no *.index files"
            )
        return infos[-1].path
    if tf.io.gfile.exists(path):
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

    Files already gone are ignored.
    """
    for name in checkpoint_files(path) + _temporaries(_glob_escape(path)):
        _remove(name)


def _temporaries(pattern: str) -> list[str]:
    """Files an interrupted save of the checkpoint(s) matching glob `pattern` may have left."""
    found: list[str] = [
        *tf.io.gfile.glob(f"{pattern}_temp"),
        *tf.io.gfile.glob(f"{pattern}.*.tempstate*"),
        *tf.io.gfile.glob(f"{pattern}.*.tmp-*"),
    ]
    return found


def _remove(name: str) -> bool:
    """Removes a file or folder; False when it was already gone."""
    try:
        if tf.io.gfile.isdir(name):
            tf.io.gfile.rmtree(name)
        else:
            tf.io.gfile.remove(name)
    except tf.errors.NotFoundError:
        return False
    return True


def remove_leftovers(directory: str, prefix: str, keep: set[str]) -> list[str]:
    """Removes what interrupted saves left in `directory`; returns what was removed.

    Leftovers are TensorFlow's temporary shard folders and rename files, ckptkit's temporary
    manifest and state files, and checkpoints named ``<prefix>-<step>`` that are not committed
    (not in `keep`) and are newer than every committed one: a save killed before its commit.
    Nothing committed, and nothing older than the newest committed checkpoint, is touched.
    """
    pattern = os.path.join(_glob_escape(directory), _glob_escape(prefix))
    newest = max((parse_step(p) or -1 for p in keep), default=-1)
    temporaries = _temporaries(f"{pattern}-*") + tf.io.gfile.glob(
        os.path.join(_glob_escape(directory), f"{STATE_FILE}.tmp-*")
    )
    removed = [name for name in temporaries if _remove(name)]
    for index in tf.io.gfile.glob(f"{pattern}-*.index") + tf.io.gfile.glob(
        f"{pattern}-*{MANIFEST_SUFFIX}"
    ):
        candidate = index.removesuffix(".index").removesuffix(MANIFEST_SUFFIX)
        step = parse_step(candidate)
        if candidate in keep or step is None or step <= newest:
            continue
        delete_checkpoint(candidate)
        removed.append(candidate)
    return removed
