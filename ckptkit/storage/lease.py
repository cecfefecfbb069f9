"""One writer per remote directory: a lease object, since object stores have no `flock`.

The first save of a `CheckpointManager` on a URL creates ``<directory>/.ckptkit.lease`` with a
create-only write (S3's ``If-None-Match: *`` through fsspec; see `fs.create` for `tf.io.gfile`,
which has none). The object holds the owner's random token, pid, host and the wall-clock time
the lease expires. While the writer lives, a background thread renews it every third of its
duration; `release` removes it. A second writer gets `DirectoryLockedError` naming the holder
and when its lease runs out. A writer killed with SIGKILL cannot remove its lease: it frees
the directory `Storage.lease_secs` after its last renewal, when the next writer takes it over.

On ``s3://`` every write of the lease is fenced by the version it replaces (`fs.write_tagged`):
a take-over replaces exactly the expired lease it read (of two takers, one wins), and a
renewal only the version this writer wrote last, so a renewal delayed past expiry cannot
overwrite the next writer's lease (the late writer learns it lost the lease instead). Without
versions (`tf.io.gfile`, other fsspec protocols) a take-over deletes the expired object and
creates its own, and two writers that both find the same expired lease can both take it;
`check`, run before every write and commit, re-reads the lease and stops the writer whose
token is no longer there, and the fenced commit (`commit`) stops a commit already in flight.
Expiry compares the holder's clock with the reader's: clocks more than the lease duration
apart break it.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import json
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from ckptkit.errors import DirectoryLockedError
from ckptkit.storage import fs

__all__ = ["LEASE_FILE", "Lease"]

LEASE_FILE = ".ckptkit.lease"
_MAX_BYTES = 64 << 10
_SKEW = 300.0  # seconds two writers' clocks may differ by
_MAX_DURATION = 7 * 86400.0  # the longest lease duration a lease object is believed to have


class Lease:
    """The writer lease of one remote directory (the same interface as `lock.WriterLock`).

    Args:
        directory: The checkpoint directory (a URL).
        duration: Seconds the lease lasts without renewal.
        clock: Wall-clock seconds; for tests.
    """

    def __init__(
        self, directory: str, duration: float, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = f"{directory.rstrip('/')}/{LEASE_FILE}"
        self._duration = duration
        self._clock = clock
        self._token: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewed = 0.0
        self._tag: str | None = None  # the version of the lease object this writer wrote last

    @property
    def held(self) -> bool:
        """Whether this object holds the lease."""
        return self._token is not None

    def acquire(self) -> None:
        """Takes the lease, or raises `DirectoryLockedError` naming who holds it.

        Raises:
            DirectoryLockedError: Another writer's lease has not expired.
            OSError: The lease object could not be written or read (network, permissions).
        """
        if self._token is not None:
            return
        token = uuid.uuid4().hex
        for _ in range(2):
            try:
                self._tag = self._create(self._record(token))
            except FileExistsError:
                try:
                    holder = self._holder()
                except FileNotFoundError:
                    continue  # released since
                if holder["expires"] > self._clock():
                    raise DirectoryLockedError(self._locked_message(holder)) from None
                if holder["tag"] is None:  # no versions: remove, then create
                    fs.remove(self.path)  # expired: its writer is gone
                    continue
                try:  # replace exactly the expired lease: of two takers, one wins
                    self._tag = fs.write_tagged(self.path, self._record(token), holder["tag"])
                except fs.ChangedError:
                    continue
            self._token, self._lost = token, None
            self._renewed = self._clock()
            self._stop = threading.Event()
            self._renewer = threading.Thread(  # in this context: the writer's storage settings
                target=contextvars.copy_context().run,
                args=(_renew_while_held, weakref.ref(self), self._stop, self._duration / 3),
                name=f"ckptkit lease {self.path}",
                daemon=True,
            )
            self._renewer.start()
            return
        raise DirectoryLockedError(
            f"{os.path.dirname(self.path)}: another writer took the expired lease "
            f"{self.path} at the same moment; stop the other writer, or retry"
        )

    def check(self) -> None:
        """Confirms that the lease object is still this writer's.

        Raises:
            DirectoryLockedError: It was deleted, taken over or could not be renewed in time,
                so another writer may hold the directory now.
            OSError: The lease object could not be read (the storage is unreachable).
        """
        if self._token is None:
            return
        if self._lost is None:
            try:
                holder = self._holder()
            except FileNotFoundError:
                holder = {"token": None, "owner": "nothing: it was deleted"}
            if holder.get("token") != self._token:
                self._lost = f"it now says {holder['owner']}"
        if self._lost is not None:
            raise DirectoryLockedError(
                f"this manager no longer holds the writer lease {self.path} ({self._lost}); "
                "another writer may be committing there, so nothing more is written. Make "
                "sure one job writes to the directory, then create a new CheckpointManager"
            )

    def release(self, *, remove: bool = True) -> None:
        """Stops renewing and removes the lease object when it is still this writer's.

        Args:
            remove: Accepted for `lock.WriterLock`'s interface; a lease is always removed.
        """
        del remove
        token, self._token = self._token, None
        if token is None:
            return
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
            self._renewer = None
        with contextlib.suppress(OSError):
            if self._holder().get("token") == token:
                fs.remove(self.path)

    def __del__(self) -> None:
        # Dropped without release (a manager never closed): stop renewing, so it expires.
        self._stop.set()

    def _renew(self) -> None:
        """Extends the lease, or notes that it is lost (read by `check`)."""
        token = self._token
        if token is None or self._lost is not None:
            return
        try:
            if self._tag is not None:  # fenced: only while it is still the version written
                self._tag = fs.write_tagged(self.path, self._record(token), self._tag)
            else:
                if self._holder().get("token") != token:
                    self._lost = "another writer took it over"
                    return
                fs.write_atomic(self.path, self._record(token))
            self._renewed = self._clock()
        except fs.ChangedError:
            self._lost = "another writer took it over"
        except OSError as e:
            if self._clock() > self._renewed + self._duration:
                self._lost = f"it could not be renewed before it expired ({e.strerror or e})"

    def _create(self, data: bytes) -> str | None:
        """Creates the lease object if none is there; its version's tag (None: no tags).

        Raises:
            FileExistsError: A lease object is there.
        """
        if not fs.staged(self.path):
            fs.create(self.path, data)
            return None
        try:
            return fs.write_tagged(self.path, data, fs.ABSENT)
        except fs.ChangedError as e:
            raise FileExistsError(errno.EEXIST, "a lease is there", self.path) from e

    def _record(self, token: str) -> bytes:
        return json.dumps(
            {
                "token": token,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "expires": self._clock() + self._duration,
                "duration": self._duration,
            }
        ).encode()

    def _holder(self) -> dict[str, Any]:
        """The lease object's fields, with ``owner`` in words; a garbled one expires by mtime.

        Garbled: not JSON, fields missing, or an expiry no renewal writes (not finite, or
        beyond now plus the longer of the two writers' lease durations plus `_SKEW`): a lease
        edited to ``"expires": Infinity`` must not block the directory for good.
        """
        raw, tag = fs.read_tagged(self.path, limit=_MAX_BYTES)
        try:
            found = json.loads(raw)
            expires = float(found["expires"])
            theirs = float(found.get("duration", 0.0))
            duration = max(self._duration, theirs if 0 < theirs <= _MAX_DURATION else 0.0)
            if not expires <= self._clock() + duration + _SKEW:  # also NaN and infinity
                raise ValueError(f"expiry {expires} is not one a renewal writes")
            owner = f"pid {found['pid']} on {found['host']}"
            return {**found, "expires": expires, "owner": owner, "tag": tag}
        except (ValueError, KeyError, TypeError):
            mtime = fs.stat(self.path).mtime
            return {
                "token": None,
                "expires": mtime + self._duration,
                "owner": "holder unknown",
                "tag": tag,
            }

    def _locked_message(self, holder: dict[str, Any]) -> str:
        left = holder["expires"] - self._clock()
        return (
            f"{os.path.dirname(self.path)} is being written by another checkpoint manager "
            f"({holder['owner']}, lease {self.path}); two writers would interleave files. "
            f"Stop the other writer, or save to another directory; if that writer is dead, "
            f"its lease expires in {left:.0f} s and the directory is free then"
        )


def _renew_while_held(lease: weakref.ref[Lease], stop: threading.Event, every: float) -> None:
    """The renewal thread: holds the lease weakly, so a dropped one stops being renewed."""
    while not stop.wait(every):
        held = lease()
        if held is None:
            return
        held._renew()
        del held
