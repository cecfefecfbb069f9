"""The per-checkpoint manifest: what a committed checkpoint consists of, and who wrote it.

``<prefix>-<step>.manifest.json`` sits beside the checkpoint's files. It is written (atomically)
after TensorFlow has finished writing and before the checkpoint is listed in the state file, so
it records the files as they were when the checkpoint was complete: names, sizes, and a crc32 of
the index. Data files are covered by TensorFlow's own per-tensor crc32c, stored in the index and
checked when tensors are read (`verify(..., full=True)`). The manifest carries a checksum of its
own, so a damaged manifest is detected rather than trusted. File names are plain names inside the
checkpoint's directory; anything else is refused.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ckptkit._version import __version__
from ckptkit.errors import (
    CorruptCheckpointError,
    InvalidMetadataError,
    StorageUnavailableError,
    first_line,
)
from ckptkit.storage import fs

__all__ = [
    "MANIFEST_SUFFIX",
    "FileRecord",
    "Manifest",
    "SaveCost",
    "build_manifest",
    "crc32_of",
    "file_problems",
    "manifest_path",
    "parse_manifest",
    "read_manifest",
    "user_fields",
    "write_manifest",
]

MANIFEST_SUFFIX = ".manifest.json"
_FORMAT = "ckptkit-manifest/1"
_MAX_BYTES = 16 << 20  # far above any real manifest; refuses a huge file posing as one


class FileRecord(BaseModel):
    """One file of a checkpoint.

    Attributes:
        size: Its size in bytes.
        crc32: zlib crc32 of its bytes, for files small enough to hash at save time (the index).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(ge=0)
    crc32: int | None = None


class SaveCost(BaseModel):
    """What a save cost, as its manifest records it (Orbax reports the same split).

    Attributes:
        bytes_written: The checkpoint's files, in bytes.
        blocked_secs: How long the caller of `save` waited: the whole save when synchronous;
            for an async save, until its values were taken.
        background_secs: How long an async save then ran in the background until its
            manifest was written (after an upload: just before the commit); 0 when sync.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    bytes_written: int = Field(ge=0)
    blocked_secs: float = Field(ge=0)
    background_secs: float = Field(ge=0)


class Manifest(BaseModel):
    """What a committed checkpoint consists of.

    Attributes:
        format: Manifest format tag.
        checkpoint: The checkpoint's name (its prefix without the directory).
        step: The step it was saved at.
        time: Wall time of the commit, seconds since the epoch.
        files: Its files by plain name, e.g. ``ckpt-100.index``.
        tensorflow: TensorFlow version that wrote it.
        ckptkit: ckptkit version that wrote it.
        metadata: The user's JSON metadata passed to `save`.
        metrics: The user's metrics passed to `save`.
        cost: What the save cost (None in manifests written before it was recorded).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str = _FORMAT
    checkpoint: str
    step: int = Field(ge=0)
    time: float
    files: dict[str, FileRecord]
    tensorflow: str
    ckptkit: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    cost: SaveCost | None = None

    @field_validator("checkpoint")
    @classmethod
    def _plain_checkpoint_name(cls, value: str) -> str:
        return _plain_name(value)

    @field_validator("files")
    @classmethod
    def _plain_file_names(cls, value: dict[str, FileRecord]) -> dict[str, FileRecord]:
        for name in value:
            _plain_name(name)
        return value


def _plain_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or "://" in name:
        raise ValueError(
            f"manifest names must be plain file names inside the checkpoint's directory "
            f"(received {name!r})"
        )
    return name


def crc32_of(path: str) -> int:
    """The zlib crc32 of a regular file's bytes (read whole: only indexes are hashed).

    Raises:
        OSError: It is missing, not a regular file, or unreadable.
    """
    return zlib.crc32(fs.read_bytes(path))


def _canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def manifest_path(checkpoint: str) -> str:
    """Where the manifest of checkpoint prefix `checkpoint` lives."""
    return checkpoint + MANIFEST_SUFFIX


def write_manifest(checkpoint: str, manifest: Manifest, *, durable: bool = False) -> None:
    """Atomically writes the manifest of `checkpoint` (temp file, then rename)."""
    payload = manifest.model_dump(mode="json")
    body = {**payload, "checksum": zlib.crc32(_canonical(payload))}
    text = json.dumps(body, indent=1, sort_keys=True)
    fs.write_atomic(manifest_path(checkpoint), text.encode(), durable=durable)


def read_manifest(checkpoint: str) -> Manifest | None:
    """The manifest of `checkpoint`, or None when it has none (e.g. written by plain TF).

    Raises:
        CorruptCheckpointError: The manifest exists but is unreadable, not a regular file,
            malformed, fails its checksum, or names files outside the checkpoint's directory.
    """
    path = manifest_path(checkpoint)
    try:
        raw = fs.read_bytes(path, limit=_MAX_BYTES)
    except FileNotFoundError:
        if fs.exists(path):  # the name is there: a link to nothing
            raise CorruptCheckpointError(f"manifest {path} is a link to nothing") from None
        return None
    except StorageUnavailableError:
        raise
    except OSError as e:
        raise CorruptCheckpointError(f"cannot read manifest {path}: {e.strerror or e}") from e
    return parse_manifest(raw, checkpoint)


def parse_manifest(raw: bytes, checkpoint: str) -> Manifest:
    """The manifest of `checkpoint` from the bytes `raw` of its file.

    Raises:
        CorruptCheckpointError: They are malformed, fail the checksum, or describe another
            checkpoint.
    """
    path = manifest_path(checkpoint)
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("not a JSON object")
        checksum = body.pop("checksum", None)
        if checksum != zlib.crc32(_canonical(body)):
            raise ValueError("its checksum does not match its content")
        manifest = Manifest.model_validate(body)
    except (ValueError, ValidationError, RecursionError) as e:
        raise CorruptCheckpointError(f"manifest {path} is damaged: {first_line(e)}") from e
    if manifest.checkpoint != os.path.basename(checkpoint):
        raise CorruptCheckpointError(
            f"manifest {path} is damaged: it describes checkpoint {manifest.checkpoint!r}"
        )
    return manifest


def file_problems(checkpoint: str, manifest: Manifest) -> list[tuple[str, str]]:
    """``(file, what is wrong)`` for each file of `checkpoint` that differs from `manifest`.

    Checks that each listed file is a regular file of the recorded size and, where a crc32 is
    recorded (the index), that its bytes match. Empty when the files are as committed.
    """
    directory = os.path.dirname(checkpoint)
    problems: list[tuple[str, str]] = []
    for name, record in manifest.files.items():
        file = os.path.join(directory, name)
        try:
            size = fs.regular_size(file)
            if size != record.size:
                problems.append(
                    (file, f"size mismatch: expected {record.size} bytes, found {size}")
                )
            elif record.crc32 is not None and crc32_of(file) != record.crc32:
                problems.append((file, "checksum mismatch: the file's bytes changed"))
        except StorageUnavailableError:
            raise
        except FileNotFoundError:
            problems.append((file, "missing"))
        except IsADirectoryError:
            problems.append((file, "not a regular file"))
        except OSError as e:
            problems.append((file, f"unreadable: {getattr(e, 'strerror', None) or e}"))
    return problems


def build_manifest(
    checkpoint: str,
    files: list[str],
    *,
    step: int,
    time: float,
    tensorflow: str,
    user: Mapping[str, Any],
    durable: bool,
) -> Manifest:
    """The manifest of the checkpoint `checkpoint` whose `files` TensorFlow just wrote.

    Records each file's size, and the crc32 of the index (the file a reader trusts for the
    rest), with `user` (from `user_fields`). With `durable`, each file is fsync'ed first, so
    the record describes what is on stable storage.
    """
    records = {}
    for name in files:
        if durable:
            fs.fsync(name)
        records[os.path.basename(name)] = FileRecord(
            size=fs.stat(name).size,
            crc32=crc32_of(name) if name.endswith(".index") else None,
        )
    return Manifest(
        checkpoint=os.path.basename(checkpoint),
        step=step,
        time=time,
        files=records,
        tensorflow=tensorflow,
        ckptkit=__version__,
        **user,
    )


def user_fields(
    metadata: Mapping[str, Any] | None, metrics: Mapping[str, float] | None
) -> dict[str, Any]:
    """`save`'s `metadata` and `metrics` as a manifest stores them.

    Raises:
        InvalidMetadataError: They are not JSON (metrics: finite numbers).
    """
    extra = {"metadata": dict(metadata or {}), "metrics": dict(metrics or {})}
    try:
        extra["metrics"] = {str(k): float(v) for k, v in extra["metrics"].items()}
        json.dumps(extra, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise InvalidMetadataError(
            f"save() metadata and metrics must be JSON (metrics: finite numbers): {e}"
        ) from e
    return extra
