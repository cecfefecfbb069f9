"""File primitives over fsspec, for URLs TensorFlow cannot reach (``s3://``, ...).

The same operations as `fs`, with the same contract: what the store answered comes back as
`OSError` (`FileNotFoundError` for a missing object, `FileExistsError` for a create-only write
that found one); whatever else the client raised (botocore's connection errors, timeouts,
denied credentials, ...) is `StorageUnavailableError`: "could not ask" is never "not there".
Object stores have no directories and no rename, so a write is one object put, which the
store makes visible whole or not at all, and `create` is a conditional put (S3's
``If-None-Match: *``). Listings and metadata are always fetched anew: another process may
have written since, and fsspec's listing cache would hide it.

fsspec and the protocol's package (s3fs, gcsfs, ...) are optional: ``pip install ckptkit[s3]``.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ckptkit.errors import MissingExtraError, StorageUnavailableError
from ckptkit.storage import routes

__all__ = ["ABSENT", "ChangedError", "FsspecFiles", "download", "download_all", "upload"]

ABSENT = ""  # the tag of an object the store said is not there


class ChangedError(OSError):
    """A conditional write found the object changed since it was read (S3: 412)."""


_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def _filesystem(path: str) -> tuple[Any, str]:
    """The fsspec filesystem for `path` (with registered options), and the path it takes."""
    try:
        from fsspec.core import url_to_fs
    except ImportError as e:
        raise _missing(path, e) from e
    storage = routes.settings(path)
    options = dict(storage.options)
    s3 = path.partition("://")[0].lower() in ("s3", "s3a")
    if s3:  # every call bounded: one botocore attempt, s3fs's retries with backoff
        bounds = {
            "connect_timeout": storage.timeout_secs,
            "read_timeout": storage.timeout_secs,
            "retries": {"max_attempts": 1, "mode": "standard"},
        }
        options["config_kwargs"] = {**bounds, **options.get("config_kwargs", {})}
    try:
        found: tuple[Any, str] = url_to_fs(path, **options)
    except ImportError as e:
        raise _missing(path, e) from e
    except ValueError as e:  # an unknown protocol
        raise OSError(errno.EINVAL, f"no fsspec filesystem for this URL ({e})", path) from e
    if s3:
        found[0].retries = storage.retries + 1  # s3fs's attempts of each call
    return found


def _within(fs: Any, path: str) -> dict[str, float]:
    """The limit on one whole call to an async fsspec filesystem (``sync``'s ``timeout``).

    Each attempt of a call is bounded by the client's timeouts, but a call can make several
    requests, each retried (s3fs lists a prefix page by page, every page retried, inside a
    retried call): the whole call gets every attempt's time and s3fs's backoff, once. For
    transfers of whole files (`upload`, `download`), only each attempt is bounded.
    """
    from fsspec.asyn import AsyncFileSystem

    if not isinstance(fs, AsyncFileSystem):
        return {}
    storage = routes.settings(path)
    attempts = storage.retries + 1
    backoff = sum(min(1.7**i * 0.1, 15.0) for i in range(attempts))  # s3fs's waits
    return {"timeout": storage.timeout_secs * attempts + backoff}


def _missing(path: str, error: ImportError) -> MissingExtraError:
    scheme = path.partition("://")[0].lower()
    extra = _EXTRAS.get(scheme)
    install = f"pip install 'ckptkit[{extra}]'" if extra else "install fsspec and its package"
    return MissingExtraError(f"{path} needs fsspec's support for {scheme}:// ({error}); {install}")


def _is(test: str, path: str) -> bool:
    """The store's `test` (``exists``, ``isdir``) of `path`, fetched anew.

    Raises:
        StorageUnavailableError: The store could not be asked.
    """
    fs, name = _filesystem(path)
    try:
        with _as_oserror(path, "check that it exists"):
            fs.invalidate_cache(name)
            return bool(getattr(fs, test)(name, **_within(fs, path)))
    except FileNotFoundError:
        return False


# What the store answered; anything else it raised means it could not be asked.
_ANSWERS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError)


@contextlib.contextmanager
def _as_oserror(path: str, operation: str) -> Iterator[None]:
    """The store's answers as `OSError`; everything else as `StorageUnavailableError`.

    A missing object is `FileNotFoundError` only when the store said so (s3fs translates S3's
    404s). Connection failures, timeouts, throttling past the retries, denied or missing
    credentials (botocore's, aiohttp's, ``PermissionError``) could not ask it.
    """
    try:
        yield
    except (*_ANSWERS, MissingExtraError, StorageUnavailableError):
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno == errno.EFBIG:
            raise  # our own size limit: the store answered
        if _precondition_failed(e):  # a conditional write: the object changed since
            raise ChangedError(errno.ESTALE, "changed by another writer since", path) from e
        if isinstance(e, TimeoutError) and not str(e):  # `_within`'s limit on the whole call
            e = TimeoutError(
                "no answer within Storage's bound, timeout_secs x (retries + 1) plus backoff"
            )
        raise StorageUnavailableError.asking(path, operation, e) from e


class FsspecFiles:
    """The `fs` primitives over fsspec (see `ckptkit.storage.fs` for each one's contract)."""

    def read_bytes(self, path: str, *, limit: int | None = None) -> bytes:
        """The bytes of the object `path`; `limit` refuses larger ones (see `fs.read_bytes`)."""
        fs, name = _filesystem(path)
        with _as_oserror(path, "read it"):
            fs.invalidate_cache(name)
            end = None if limit is None else limit + 1
            return bytes(fs.cat_file(name, end=end, **_within(fs, path)))

    def exists(self, path: str, *, follow_links: bool = False) -> bool:
        """Whether an object or a folder (a prefix) `path` exists; False where the store errs."""
        return _is("exists", path)

    def is_regular_file(self, path: str) -> bool:
        """Whether an object (not a folder) `path` exists."""
        return self.exists(path) and not self.isdir(path)

    def isdir(self, path: str) -> bool:
        """Whether `path` is a folder: a bucket, or a prefix some object has."""
        return _is("isdir", path)

    def stat(self, path: str) -> tuple[int, float]:
        """The size and modification time of the object `path`."""
        fs, name = _filesystem(path)
        with _as_oserror(path, "read its size"):
            fs.invalidate_cache(name)
            info = fs.info(name, **_within(fs, path))
            if info.get("type") == "directory":
                raise IsADirectoryError(errno.EISDIR, "a directory, not a regular file", path)
            try:
                mtime = fs.modified(name).timestamp()
            except NotImplementedError:
                mtime = 0.0
        return int(info.get("size") or 0), float(mtime)

    def makedirs(self, path: str) -> None:
        """Creates the folder `path` where the store has folders (a no-op on S3's prefixes)."""
        fs, name = _filesystem(path)
        with _as_oserror(path, "create it"):
            fs.makedirs(name, exist_ok=True, **_within(fs, path))

    def listdir(self, directory: str) -> list[str]:
        """The names in `directory`, sorted, fetched anew; empty when the store has none.

        Raises:
            StorageUnavailableError: The store could not be asked.
        """
        fs, name = _filesystem(directory)
        try:
            with _as_oserror(directory, "list it"):
                fs.invalidate_cache(name)
                found = fs.ls(name, detail=False, refresh=True, **_within(fs, directory))
        except FileNotFoundError:
            return []
        return sorted({os.path.basename(str(p).rstrip("/")) for p in found} - {""})

    def remove(self, path: str) -> bool:
        """Removes the object `path`, or the folder and everything under it; False when gone."""
        fs, name = _filesystem(path)
        with _as_oserror(path, "remove it"):
            fs.invalidate_cache(name)
            within = _within(fs, path)
            try:
                if fs.isdir(name, **within):
                    fs.rm(name, recursive=True, **within)
                else:
                    fs.rm_file(name, **within)
            except FileNotFoundError:
                return False
        return True

    def write_atomic(self, path: str, data: bytes, *, durable: bool = False) -> None:
        """Replaces the object `path` with `data` in one put, which appears whole or not at all."""
        fs, name = _filesystem(path)
        with _as_oserror(path, "write it"):
            fs.pipe_file(name, data, **_within(fs, path))

    def create(self, path: str, data: bytes) -> None:
        """Writes the object `path` only if none is there (a conditional put where there is one).

        Raises:
            FileExistsError: An object `path` exists.
        """
        fs, name = _filesystem(path)
        with _as_oserror(path, "create it"):
            within = _within(fs, path)
            try:
                fs.pipe_file(name, data, mode="create", **within)
            except TypeError:  # an fsspec filesystem without create-only writes: check, then put
                if fs.exists(name, **within):
                    raise FileExistsError(errno.EEXIST, "exists", path) from None
                fs.pipe_file(name, data, **within)

    def fsync(self, path: str) -> None:
        """Nothing: object stores make their own durability promises."""

    def read_tagged(self, path: str, *, limit: int | None = None) -> tuple[bytes, str | None]:
        """The bytes of the object `path` and, on S3, the ETag of that very version.

        One GET: the tag and the bytes are of the same version. Stores without tags (other
        fsspec protocols) give None.

        Raises:
            FileNotFoundError: The store has no such object.
        """
        fs, name = _filesystem(path)
        if not hasattr(fs, "_call_s3"):
            return self.read_bytes(path, limit=limit), None
        from fsspec.asyn import sync

        bucket, key, _ = fs.split_path(name)
        with _as_oserror(path, "read it"):
            data, tag = sync(fs.loop, _get_tagged, fs, bucket, key, limit, **_within(fs, path))
        return data, tag

    def write_tagged(self, path: str, data: bytes, expect: str | None) -> str | None:
        """Replaces the object `path` only if it is still the version read (`expect`).

        Args:
            path: The object.
            data: Its new bytes.
            expect: The ETag read, `ABSENT` when there was no object, None: write anyway.

        Returns:
            The new version's ETag (None where the store has no tags).

        Raises:
            ChangedError: Another writer replaced, created or removed it since (S3 answered
                412, which `_as_oserror` turns into it).
        """
        fs, name = _filesystem(path)
        if expect is None or not hasattr(fs, "_call_s3"):
            self.write_atomic(path, data)
            return None
        condition = {"mode": "create"} if expect == ABSENT else {"IfMatch": expect}
        try:
            with _as_oserror(path, "write it"):
                out = fs.pipe_file(name, data, **condition, **_within(fs, path))
        except FileExistsError as e:  # If-None-Match failed: created since
            raise ChangedError(errno.ESTALE, "created by another writer since", path) from e
        return str(out["ETag"]) if isinstance(out, dict) and "ETag" in out else None


async def _get_tagged(fs: Any, bucket: str, key: str, limit: int | None) -> tuple[bytes, str]:
    response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
    async with response["Body"] as body:
        size = int(response.get("ContentLength") or 0)
        if limit is not None and size > limit:  # refused before its bytes are read
            raise OSError(errno.EFBIG, f"larger than {limit} bytes", f"s3://{bucket}/{key}")
        data = await body.read()
    return bytes(data), str(response["ETag"])


def _precondition_failed(error: BaseException) -> bool:
    """Whether the store answered 412 (s3fs turns it into an EINVAL `OSError`)."""
    cause: BaseException | None = error
    while cause is not None:
        response = getattr(cause, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in (
            "PreconditionFailed",
            "412",
        ):
            return True
        cause = cause.__cause__
    return False


def upload(pairs: Sequence[tuple[str, str]], advance: Callable[[int], None]) -> None:
    """Copies local files to objects, ``(local, remote)`` each, concurrently where it can.

    `Storage.max_concurrency` transfers at a time, shared by the files (on an asynchronous
    filesystem, s3fs or gcsfs; a synchronous one puts one after another) and, on ``s3://``,
    the parts of each (`_concurrency`); `advance` is called with each chunk's bytes as sent.
    """
    if not pairs:
        return
    fs, _ = _filesystem(pairs[0][1])
    remote = [_filesystem(r)[1] for _, r in pairs]
    with _as_oserror(pairs[0][1], "upload to it"):
        fs.put(
            [local for local, _ in pairs],
            remote,
            callback=_progress(advance, children=True),
            **_concurrency(fs, pairs[0][1], files=len(pairs), batch=True),
        )


def download(path: str, local: str, advance: Callable[[int], None], *, sharing: int = 1) -> None:
    """Copies the object `path` to the local file `local` (on ``s3://`` in parallel parts).

    Args:
        path: The object.
        local: The file to write.
        advance: Called with each chunk's bytes as it arrives.
        sharing: How many downloads share `Storage.max_concurrency` with this one.
    """
    fs, name = _filesystem(path)
    with _as_oserror(path, "download it"):
        fs.get_file(
            name, local, callback=_progress(advance), **_concurrency(fs, path, files=sharing)
        )


def download_all(
    pairs: Sequence[tuple[str, str]], advance: Callable[[int], None]
) -> list[BaseException | None]:
    """Copies objects to local files, ``(remote, local)`` each, `Storage.max_concurrency` at once.

    Returns:
        For each pair, what `download` raised (None: copied); nothing is left out or raised.
    """
    if not pairs:
        return []
    workers = min(routes.settings(pairs[0][0]).max_concurrency, len(pairs))

    def one(pair: tuple[str, str]) -> BaseException | None:
        try:
            download(pair[0], pair[1], advance, sharing=workers)
        except Exception as e:  # handed back, for the caller to judge per file
            return e
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        # Each thread in the caller's context: `routes.using` chose the storage settings.
        return list(pool.map(lambda pair: contextvars.copy_context().run(one, pair), pairs))


def _concurrency(fs: Any, path: str, *, files: int, batch: bool = False) -> dict[str, int]:
    """`Storage.max_concurrency` as the filesystem takes it, shared by `files` at once.

    Async batches of files (`batch`) and s3fs's parts of each file: 8 gives 2 files 4 parts
    each, 5 files one stream each, so that the streams stay within the budget.
    """
    from fsspec.asyn import AsyncFileSystem

    found: dict[str, int] = {}
    limit = routes.settings(path).max_concurrency
    at_once = max(1, min(limit, files))
    if path.partition("://")[0].lower() in ("s3", "s3a"):
        found["max_concurrency"] = max(1, limit // at_once)
    if batch and isinstance(fs, AsyncFileSystem):
        found["batch_size"] = at_once
    return found


def _progress(advance: Callable[[int], None], *, children: bool = False) -> Any:
    """An fsspec callback that hands each chunk's bytes to `advance`.

    With `children`, for a multi-file call: its own updates count files, and each file's bytes
    come through the callbacks it branches.
    """
    from fsspec.callbacks import Callback

    class Bytes(Callback):  # type: ignore[misc]
        def call(self, *args: Any, **kwargs: Any) -> None:
            pass  # the sizes come through relative_update

        def relative_update(self, inc: int = 1) -> None:
            if not children:
                advance(inc)

        def branched(self, path_1: str, path_2: str, **kwargs: Any) -> Any:
            return _progress(advance)

    return Bytes()
