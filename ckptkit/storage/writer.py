"""A manager's claim on its directory: the writer lock or lease, the first save's sweep, tidying.

One process writes a directory at a time. A local directory is claimed with a file lock
(`lock.WriterLock`), an object store, which has none, with a lease object (`lease.Lease`); the
choice is made here, once. A manager becomes the writer at its first save (or at
`restore_or_initialize`, so that a second job stops before it trains): it creates the
directory, takes the lock, re-reads what is committed (another writer may have committed since
it looked) and removes what interrupted saves left. A cluster's workers other than the chief
never claim the directory.
"""

from __future__ import annotations

import contextlib
import os

from ckptkit.config import CheckpointConfig
from ckptkit.errors import CkptkitError, DirectoryLockedError
from ckptkit.storage import fs, layout
from ckptkit.storage.directory_view import DirectoryView
from ckptkit.storage.lease import Lease
from ckptkit.storage.lock import WriterLock
from ckptkit.warn import warn

__all__ = ["DirectoryWriter"]


class DirectoryWriter:
    """Becomes, checks and stops being the one writer of a directory.

    Args:
        config: The manager's config (directory, prefix, the lease's length).
        view: The manager's view of the directory: re-read once the lock is held, and its
            committed set kept by the sweep.
        follower: A cluster worker other than the chief, which never claims the directory.
    """

    def __init__(self, config: CheckpointConfig, view: DirectoryView, *, follower: bool) -> None:
        self._directory = config.directory
        self._prefix = config.prefix
        self._view = view
        self._lock: WriterLock | Lease | None = None
        if not follower:
            lease = config.storage.lease_secs
            remote = fs.is_remote(self._directory)
            self._lock = Lease(self._directory, lease) if remote else WriterLock(self._directory)
        self.swept = False  # set by the first save, which takes the lock and clears leftovers

    def become(self) -> None:
        """On the first save: create the directory, take the lock, re-read, clear leftovers.

        Raises:
            DirectoryLockedError: Another manager is writing to this directory.
            SaveError: The directory or the lock file cannot be created.
        """
        if self.swept:
            return
        try:
            fs.makedirs(self._directory)
        except OSError as e:
            raise layout.save_error(self._directory, self._directory, e) from e
        if self._lock is not None:
            try:
                self._lock.acquire()
            except CkptkitError:
                raise
            except OSError as e:
                raise layout.lock_error(self._lock.path, e) from e
        self._view.refresh()  # another writer may have committed since this manager read it
        try:
            layout.remove_leftovers(
                self._directory, self._prefix, {p for p, _ in self._view.entries}
            )
        except OSError as e:
            warn(
                f"could not remove all leftovers of interrupted saves in {self._directory} "
                f"({e.strerror or e}); saving goes on, and the next writer tries again"
            )
        self.swept = True

    def claim_early(self) -> None:
        """Takes the lock before the first save (`restore_or_initialize`), where it can.

        Raises:
            DirectoryLockedError: Another manager is writing to this directory.
            SaveError: The directory is not writable (said before training). Other failures
                are left for the first save to report.
        """
        if self._lock is None or self._lock.held:
            return
        try:
            fs.makedirs(self._directory)
            self._lock.acquire()
        except DirectoryLockedError:
            raise
        except OSError as e:
            unwritable = layout.not_writable(self._directory, e)
            if unwritable is not None:
                raise unwritable from e  # before training, not at its first save
            return  # other failures: the first save reports them
        self._view.refresh()  # another writer may have committed since this manager read it

    def reread(self) -> bool:
        """Re-reads the directory unless this manager is its writer, whose view is current."""
        if self.swept:
            return False
        self._view.refresh()
        return True

    def check(self) -> None:
        """Raises `DirectoryLockedError` when another writer has taken the directory since."""
        if self._lock is not None:
            self._lock.check()

    def release(self, *, tidy: bool) -> None:
        """Releases the lock; with `tidy`, first removes what an empty run's writer left.

        Args:
            tidy: When this manager wrote to the directory and no checkpoint is listed there
                any more, also remove the state file and the lock file, and the directory
                itself when nothing else is in it.
        """
        wrote = self.swept or (self._lock is not None and self._lock.held)
        tidy = tidy and wrote and not self._view.entries
        if tidy:
            with contextlib.suppress(OSError):
                layout.remove_state(self._directory)
        if self._lock is not None:
            self._lock.release(remove=tidy)
        if tidy and not fs.is_remote(self._directory):
            with contextlib.suppress(OSError):
                os.rmdir(self._directory)  # only when empty: exports and others' files stay
