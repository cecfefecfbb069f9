"""The local tier of a staged directory: where saves are written before upload, and restores read.

TensorFlow cannot reach a directory on an fsspec URL (``s3://...``, see `routes`). For such a
directory each checkpoint lives in two tiers:

- local: a cache folder (`Storage.cache_dir`, by default ``~/.cache/ckptkit/<hash of the
  URL and its endpoint>``) where TensorFlow writes a save at local-disk speed, and from which
  restores read; a ``.ckptkit-source`` file in it names the URL and endpoint its copies came
  from, and copies from any other are dropped before the folder is used;
- remote: the directory itself, where `upload` copies the files (the commit pipeline then
  writes the manifest and the state file there, see `commit`).

A save goes through the directory's tier, chosen once (`tier_of`): `Direct` where TensorFlow
writes the directory itself, `Staged` where it writes the local tier and the files are then
uploaded. `readable` is how anything hands a checkpoint to TensorFlow. For a staged checkpoint
it uses the nearest intact copy: the local one when its manifest is byte for byte the remote one and
its files match it; otherwise it downloads the checkpoint into a fresh folder, checks every
file against the remote manifest, and only then moves it into the cache. So a damaged or
missing object is caught before TensorFlow reads anything, and a restore walks back past it.
Any other path is returned as TensorFlow can take it (`fs.tf_path`).

The cache folder is private: created 0700, and used only when it is a real folder of this
user's that no one else can write, in a parent no one else can swap it out of. Otherwise (a
shared cache root another user got to first) it is not read at all: the process warns once and
stages through a private temporary folder, removed at exit, so what a restore loads comes from
the remote copy.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable

from ckptkit import progress
from ckptkit.errors import CorruptCheckpointError, StorageUnavailableError, UploadError
from ckptkit.storage import fs, fsspec_files, layout, routes
from ckptkit.storage.manifest import (
    MANIFEST_SUFFIX,
    Manifest,
    file_problems,
    manifest_path,
    parse_manifest,
    write_manifest,
)
from ckptkit.warn import warn

__all__ = [
    "Direct",
    "Staged",
    "cache_dir",
    "evict",
    "local_copy",
    "readable",
    "tier_of",
    "trim",
    "upload",
]

_MANIFEST_MAX_BYTES = 16 << 20


class Direct:
    """A directory TensorFlow writes itself: a local folder, or a URL gfile reaches."""

    def __init__(self, directory: str) -> None:
        self.directory = directory

    def workspace(self) -> str:
        """A folder TensorFlow can write for this directory: the directory itself."""
        return self.directory

    def target(self, path: str) -> str:
        """Where TensorFlow writes the checkpoint `path`: at `path`."""
        return path

    def publish(
        self, written: str, path: str, manifest: Callable[[], Manifest], *, durable: bool
    ) -> str:
        """Records the written checkpoint's manifest (made now) beside it; returns its path."""
        write_manifest(written, manifest(), durable=durable)
        return written

    def discard(self, path: str, error: OSError) -> None:
        """After a failed save of `path`, whose files are removed: nothing else is kept."""

    def trim(self, prefix: str, keep: list[str]) -> None:
        """Nothing to trim: there is no local tier."""


class Staged(Direct):
    """A directory on an fsspec URL: written in the local tier, uploaded, then recorded there."""

    def workspace(self) -> str:
        """A folder TensorFlow can write for this directory: its local tier."""
        return cache_dir(self.directory)

    def target(self, path: str) -> str:
        """Where TensorFlow writes the checkpoint `path`: its local copy."""
        local = local_copy(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        return local

    def publish(
        self, written: str, path: str, manifest: Callable[[], Manifest], *, durable: bool
    ) -> str:
        """Uploads the local copy `written` to `path`, then its manifest, in both tiers.

        The manifest is made after the upload, so that it records the upload's time.

        Raises:
            UploadError: A file could not be uploaded; the local copy stays for a retry.
        """
        upload(written, path)
        made = manifest()
        write_manifest(written, made)  # the local copy, as the cache matches it
        write_manifest(path, made, durable=durable)
        return path

    def discard(self, path: str, error: OSError) -> None:
        """After a failed save of `path`: a whole local copy stays for a retry, a partial goes."""
        if not isinstance(error, UploadError):
            evict(path)

    def trim(self, prefix: str, keep: list[str]) -> None:
        """Removes the local copies but `keep`'s (`trim`)."""
        trim(self.directory, prefix, keep)


def tier_of(directory: str) -> Direct:
    """The tier a save of `directory` goes through: `Staged` on an fsspec URL, else `Direct`."""
    return Staged(directory) if fs.staged(directory) else Direct(directory)


def cache_dir(directory: str) -> str:
    """The local folder of the staged `directory`'s checkpoints: private, created if missing.

    A folder someone else could write (see the module docstring) is replaced, for the life of
    the process, by a private temporary one, with a warning.
    """
    source = _source(directory)
    chosen = routes.settings(directory).cache_dir
    if chosen is None:
        root = os.environ.get("CKPTKIT_CACHE_DIR") or os.path.join(
            os.path.expanduser("~"), ".cache", "ckptkit"
        )
        chosen = os.path.join(root, hashlib.sha256(source.encode()).hexdigest()[:16])
    used = _USED.get((chosen, source))
    if used is None:
        used = _USED[(chosen, source)] = _private(chosen, directory)
        _hold_for(used, source)
    return used


_USED: dict[tuple[str, str], str] = {}  # (cache folder, source) -> the folder used for it
_SOURCE_FILE = ".ckptkit-source"


def _source(directory: str) -> str:
    """Where the cached files come from: the URL and the endpoint that serves it.

    Two servers' buckets of the same name are different stores: one's files are never
    served for the other's.
    """
    options = routes.settings(directory).options
    endpoint = (
        options.get("endpoint_url")
        or options.get("client_kwargs", {}).get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
        or "the default endpoint"
    )
    return f"{directory.rstrip('/')} via {endpoint}"


def _hold_for(folder: str, source: str) -> None:
    """Makes `folder` the cache of `source`: another source's copies in it are removed."""
    marker = os.path.join(folder, _SOURCE_FILE)
    try:
        with open(marker) as f:
            held = f.read()
    except OSError:
        held = None
    if held == source:
        return
    for name in os.listdir(folder):  # copies of unknown origin: a cache, so dropped
        if name.endswith(".index"):
            layout.delete_checkpoint(os.path.join(folder, name.removesuffix(".index")))
    fs.write_atomic(marker, source.encode())


def _private(folder: str, directory: str) -> str:
    """`folder` when only this user can write it, else a private temporary folder."""
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        why = _unsafe(folder)
    except OSError as e:
        why = f"it cannot be created ({e.strerror or e})"
    if not why:
        return folder
    fallback = tempfile.mkdtemp(prefix="ckptkit-cache-")
    atexit.register(shutil.rmtree, fallback, True)
    warn(
        f"the local cache {folder} of {directory} is not used: {why}. Checkpoints are staged "
        f"through the private folder {fallback} instead (removed at exit), so restores read the "
        "remote copy. Use a cache folder only you can write (chmod 700, "
        "Storage(cache_dir=...) or CKPTKIT_CACHE_DIR)"
    )
    return fallback


def _unsafe(folder: str) -> str:
    """Why another user could change what is in `folder` ("" when no one can)."""
    me = os.geteuid()
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        return "it is not a folder (a link or a file)"
    if info.st_uid != me:
        return f"it belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"other users can write in it (mode {stat.S_IMODE(info.st_mode):o})"
    parent = os.stat(os.path.dirname(os.path.abspath(folder)))
    shared = parent.st_mode & 0o022 and not parent.st_mode & stat.S_ISVTX
    if parent.st_uid not in (me, 0) or shared:
        return "other users can replace it (its parent folder is theirs or writable by them)"
    return ""


def local_copy(path: str) -> str:
    """Where the local tier keeps the staged checkpoint `path` (it may not be there)."""
    directory, name = os.path.split(path)
    return os.path.join(cache_dir(directory), name)


def upload(local: str, remote: str) -> list[str]:
    """Copies the files of the local checkpoint `local` but its manifest to `remote`'s folder.

    Returns:
        The files uploaded, by their remote names.

    Raises:
        UploadError: A file could not be copied; nothing is committed, the local copy stays.
    """
    directory = os.path.dirname(remote)  # the local copy has the same name (`local_copy`)
    pairs = [
        (f, os.path.join(directory, os.path.basename(f)))
        for f in layout.checkpoint_files(local)
        if not f.endswith(MANIFEST_SUFFIX)
    ]
    total = sum(os.path.getsize(local_file) for local_file, _ in pairs)
    try:
        with progress.task(f"uploading {os.path.basename(remote)}", total, unit="bytes") as step:
            fsspec_files.upload(pairs, step)
    except OSError as e:
        raise UploadError(
            f"uploading checkpoint {remote} failed ({e.strerror or e}). Nothing was "
            f"committed there, the earlier checkpoints in {directory} are intact, and the "
            f"staged copy stays at {local}; the next save retries once {directory} is "
            "reachable"
        ) from e
    return [remote_name for _, remote_name in pairs]


def readable(path: str) -> str:
    """The path TensorFlow reads checkpoint `path` from (see the module docstring).

    Raises:
        CorruptCheckpointError: A staged checkpoint whose remote files are missing or differ
            from its manifest, or that could not be downloaded.
        CheckpointNotFoundError: A staged checkpoint with no manifest or index remotely.
    """
    if not fs.staged(path):
        return fs.tf_path(path)
    remote_manifest = _read_remote_manifest(path)
    local = local_copy(path)
    if remote_manifest is not None and _matches(local, remote_manifest):
        return local
    return _download(path, local, remote_manifest)


def _read_remote_manifest(path: str) -> tuple[bytes, Manifest] | None:
    try:
        raw = fs.read_bytes(manifest_path(path), limit=_MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        return None  # a checkpoint some other tool uploaded: taken as it is
    except StorageUnavailableError:
        raise
    except OSError as e:
        raise CorruptCheckpointError(
            f"cannot read the manifest of {path} ({e.strerror or e}); check that the storage "
            "is reachable, or restore another checkpoint"
        ) from e
    return raw, parse_manifest(raw, path)


def _matches(local: str, remote: tuple[bytes, Manifest]) -> bool:
    """Whether the local copy has the remote manifest's bytes and files as it records them."""
    try:
        same = fs.read_bytes(manifest_path(local), limit=_MANIFEST_MAX_BYTES) == remote[0]
    except OSError:
        return False
    return same and not file_problems(local, remote[1])


def _download(path: str, local: str, manifest: tuple[bytes, Manifest] | None) -> str:
    """Downloads `path` into a fresh folder, checks it against `manifest`, moves it to `local`."""
    directory, name = os.path.split(path)
    if manifest is not None:
        names = list(manifest[1].files)
    else:
        names = [os.path.basename(f) for f in layout.checkpoint_files(path)]
    cache = os.path.dirname(local)
    fresh = os.path.join(cache, f".download-{uuid.uuid4().hex}")
    os.makedirs(fresh)
    try:
        pairs = [(os.path.join(directory, file), os.path.join(fresh, file)) for file in names]
        total = sum(r.size for r in manifest[1].files.values()) if manifest is not None else 0
        with progress.task(f"downloading {name}", total, unit="bytes") as step:
            outcomes = fsspec_files.download_all(pairs, step)  # the files at once
        for (remote, _), error in zip(pairs, outcomes, strict=True):
            if error is None or isinstance(error, FileNotFoundError):
                continue  # a missing file is reported below, as missing
            if isinstance(error, OSError) and not isinstance(error, StorageUnavailableError):
                raise CorruptCheckpointError(
                    f"cannot download {remote} ({error.strerror or error}); check that the "
                    "storage is reachable, or restore another checkpoint"
                ) from error
            raise error
        staged = os.path.join(fresh, name)
        if manifest is not None:
            with open(manifest_path(staged), "wb") as f:
                f.write(manifest[0])
            problems = file_problems(staged, manifest[1])
            if problems:
                raise CorruptCheckpointError(
                    f"checkpoint {path} does not match its manifest: "
                    + "; ".join(
                        f"{os.path.join(directory, os.path.basename(f))}: {why}"
                        for f, why in problems
                    )
                )
        elif not os.path.exists(staged + ".index"):
            raise CorruptCheckpointError(f"checkpoint {path} has no index file")
        evict(path)
        for file in sorted(os.listdir(fresh), key=lambda n: n.endswith(MANIFEST_SUFFIX)):
            os.replace(os.path.join(fresh, file), os.path.join(cache, file))
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
    return local


def evict(path: str) -> None:
    """Removes the local copy of the staged checkpoint `path` (its manifest last)."""
    layout.delete_checkpoint(local_copy(path))


def evict_copy(path: str) -> bool:
    """Removes the local copy of `path` when it is a staged checkpoint that has one.

    Returns:
        Whether there was a copy to remove (so that reading `path` again downloads it).
    """
    if not fs.staged(path) or not os.path.exists(local_copy(path) + ".index"):
        return False
    evict(path)
    return True


def trim(directory: str, prefix: str, keep: list[str]) -> None:
    """Removes local copies of ``<prefix>-<step>`` checkpoints but `keep`'s, and leftovers.

    Raises:
        OSError: A file could not be removed.
    """
    kept = {os.path.basename(p) for p in keep}
    cache = cache_dir(directory)
    for name in fs.listdir(cache):
        folder = os.path.join(cache, name)
        # What a killed download left; a recent one may be another reader's, still running.
        if name.startswith(".download-") and fs.stat(folder).mtime < time.time() - 3600:
            shutil.rmtree(folder, ignore_errors=True)
    layout.remove_leftovers(cache, prefix, set())
    for local in layout.uncommitted(cache, prefix):
        if os.path.basename(local) not in kept or not layout.whole(local):
            layout.delete_checkpoint(local)
