"""The save pipeline: write, manifest, state-file commit, retention; inline or in the background.

One save is a `SaveRequest`: the checkpoint's path and step, the manifest's user fields, and a
function that writes the files (the backend's `write`, or the `write` of a snapshot taken when
`save` was called). `CommitPipeline.run` carries it through the protocol on the caller's thread;
`CommitPipeline.start` does the same on a background thread, one save at a time:

1. check that this process still holds the directory's writer lock;
2. a ``.pending`` mark, so that whatever an interrupted save leaves is known as ckptkit's;
3. TensorFlow writes the files; a manifest records them (sizes, the index's crc32, step, time,
   versions, user fields); the mark goes;
4. retention plans which older checkpoints go and marks each ``.dropped``; the state file is
   replaced to list the new one and drop those: the commit, the moment the checkpoint becomes
   visible;
5. only then are the dropped checkpoints' files removed, each mark last. A writer finishes
   what a kill cut short: it deletes marked checkpoints, and never one the state file merely
   does not list.

For a staged directory (an fsspec URL TensorFlow cannot reach, see `tiers`), step 3 writes
into the local tier, uploads the files, and writes the manifest remotely (and beside the local
copy); the state file is then written remotely as above. Training waits for none of it in an
async save.

A failure before the commit removes the partial files and raises a typed error (`SaveError`,
`DiskFullError`, `UploadError`, `DirectoryLockedError`); earlier checkpoints are untouched, and
after an `UploadError` the staged local copy stays. A background save's error is kept until
`wait` or `check` raises it: it is never lost. The `DirectoryView` changes only after the state
file on disk says the same, so a listing never shows an uncommitted save.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ckptkit.config import CheckpointConfig
from ckptkit.errors import (
    CheckpointExistsError,
    DirectoryLockedError,
    SaveError,
    StorageUnavailableError,
    first_line,
)
from ckptkit.retention import plan_deletions
from ckptkit.storage import fs, layout, tiers
from ckptkit.storage.directory_view import DirectoryView
from ckptkit.storage.manifest import MANIFEST_SUFFIX, Manifest, SaveCost, build_manifest
from ckptkit.storage.writer import DirectoryWriter
from ckptkit.warn import warn

__all__ = ["CommitPipeline", "SaveRequest", "wait_at_exit", "write_scratch"]


@dataclass(frozen=True)
class SaveRequest:
    """One checkpoint to write and commit.

    Attributes:
        path: The checkpoint prefix, ``<directory>/<prefix>-<step>``.
        step: The step it is for.
        user: The manifest's user fields (`manifest.user_fields`).
        write: Writes the files to `path` and returns the prefix written; raises `OSError`
            (`SaveError` for TensorFlow's failures) when it cannot.
        started: When the caller asked for it (`time.monotonic`), for its `SaveCost`.
    """

    path: str
    step: int
    user: Mapping[str, Any]
    write: Callable[[str], str]
    started: float = field(default_factory=time.monotonic)


class CommitPipeline:
    """Writes and commits the checkpoints of one directory, one save at a time.

    Args:
        config: The manager's config (directory, prefix, retention, durability).
        view: The manager's view of the directory, which a commit updates.
        writer: This manager's claim on the directory, checked before each write.
        tensorflow_version: Recorded in each manifest.

    Attributes:
        tier: How a save reaches the directory (`tiers.Direct` or `tiers.Staged`).
    """

    def __init__(
        self,
        config: CheckpointConfig,
        view: DirectoryView,
        writer: DirectoryWriter,
        tensorflow_version: str,
    ) -> None:
        self._config = config
        self._view = view
        self._writer = writer
        self.tier = tiers.tier_of(config.directory)  # how a save reaches the directory
        self._tensorflow = tensorflow_version
        self._thread: threading.Thread | None = None
        self._in_flight: str | None = None
        self._error: BaseException | None = None
        self._committing = threading.Lock()  # a commit and an abandonment never interleave
        self._abandoned = False

    @property
    def in_flight(self) -> str | None:
        """The checkpoint a background save is writing and has not committed yet, or None."""
        path, thread = self._in_flight, self._thread
        if path is None or thread is None or not thread.is_alive() or self._view.listed(path):
            return None
        return path

    def admit(self, path: str, step: int) -> None:
        """Before a save of `path`: become the writer, and refuse to replace a good checkpoint.

        A committed checkpoint of `step` that a restore found damaged is un-listed, so that
        this save replaces it.

        Raises:
            CheckpointExistsError: An intact committed checkpoint of `step` exists.
            DirectoryLockedError: Another manager is writing to this directory.
        """
        self._writer.become()
        if self._view.listed(path):
            if path not in self._view.damaged:
                raise CheckpointExistsError(
                    f"checkpoint {path} for step {step} is already committed; it is not "
                    "overwritten. Save at a new step, or use a new directory to retrain from "
                    "an earlier step"
                )
            self.uncommit(path)

    def uncommit(self, path: str) -> None:
        """Un-lists the committed checkpoint `path` in the state file, then removes its files.

        Raises:
            DirectoryLockedError: Another writer has taken the directory.
            SaveError: The state file or the files could not be changed.
        """
        self._writer.check()
        entries = tuple(e for e in self._view.entries if e[0] != path)
        try:
            self._fenced(entries, self._view.last_preserved, dropped=(path,), durable=False)
            self._view.drop(path)
            layout.delete_checkpoint(path)
        except DirectoryLockedError:
            raise  # the fence: typed as such, not as a failed removal
        except OSError as e:
            raise SaveError(
                f"removing checkpoint {path} failed ({e.strerror or e}); the state file may "
                "still list it. Check the directory's permissions and space, then retry"
            ) from e

    def run(self, request: SaveRequest, *, released: float | None = None) -> str:
        """Writes and commits `request` on this thread; returns the checkpoint's path.

        Then calls `CheckpointConfig.on_commit`, if set, with the committed checkpoint.

        Args:
            request: The save.
            released: For a background save: when its caller was released (monotonic).

        Raises:
            DirectoryLockedError: Another writer holds the directory now; nothing is touched.
            DiskFullError: The disk ran out; nothing was committed, partial files removed.
            SaveError: Writing or committing failed otherwise; likewise.
        """
        path = request.path
        durable = self._config.durable
        tier = self.tier
        try:
            self._writer.check()  # before TensorFlow writes: the directory may be another's now
            layout.mark_pending(path)
            written = request.write(tier.target(path))
            now = time.time()
            files = [f for f in layout.checkpoint_files(written) if not f.endswith(MANIFEST_SUFFIX)]
            manifest = build_manifest(
                written,
                files,
                step=request.step,
                time=now,
                tensorflow=self._tensorflow,
                user=request.user,
                durable=durable,
            )
            final = [manifest]

            def with_cost() -> Manifest:  # just before the manifest is written: after an upload
                final[0] = manifest.model_copy(update={"cost": _cost(request, released, manifest)})
                return final[0]

            written = tier.publish(written, path, with_cost, durable=durable)
            layout.unmark_pending(path)
            with self._committing:
                if self._abandoned:
                    raise SaveError(
                        f"checkpoint {written} was abandoned before its commit (the wait for it "
                        "timed out); it was not committed"
                    )
                deleted = self._commit(written, now, request.user)
        except DirectoryLockedError:
            raise  # the files may be another writer's now: leave them
        except OSError as e:
            with contextlib.suppress(OSError):
                if not _unreachable(e):  # else each removal would wait out its bound too;
                    layout.delete_checkpoint(path)  # the next writer's sweep removes them
                tier.discard(path, e)
            if isinstance(e, SaveError):
                raise
            raise layout.save_error(path, self._config.directory, e) from e
        for old in deleted:
            self._delete_files(old, written)
        self._trim_local(written)
        self._tell(written, now, final[0])
        return written

    def _tell(self, written: str, now: float, manifest: Manifest) -> None:
        """Calls `CheckpointConfig.on_commit`; what it raises is warned about, never raised."""
        on_commit = self._config.on_commit
        if on_commit is None:
            return
        cost = manifest.cost
        size = sum(record.size for record in manifest.files.values())
        info = layout.CheckpointInfo(
            written,
            layout.parse_step(written),
            now,
            size,
            cost,
            metrics=manifest.metrics,
            metadata=manifest.metadata,
        )
        try:
            on_commit(info)
        except Exception as e:  # the checkpoint is committed whatever the callable does
            warn(f"{written} is committed; on_commit raised {type(e).__name__}: {first_line(e)}")

    def _trim_local(self, committed: str) -> None:
        """Keeps the local copies of the newest `Storage.keep_local` committed checkpoints."""
        keep = [p for p, _ in self._view.entries][::-1][: self._config.storage.keep_local]
        try:
            self.tier.trim(self._config.prefix, keep)
        except OSError as e:
            warn(f"{committed} is committed, but its local cache could not be trimmed ({e})")

    def _commit(self, written: str, now: float, user: Mapping[str, Any]) -> list[str]:
        """Replaces the state file to list `written` and drop what retention lets go.

        Returns:
            The checkpoints retention dropped, whose files are to be removed.
        """
        view = self._view
        retention = self._config.retention
        entries = [*view.entries, (written, now)]
        scores = dict(view.scores)
        if retention.monitor is not None:
            scores[written] = user["metrics"].get(retention.monitor)
        # Only this manager's own checkpoints are subject to retention (as in TensorFlow, where
        # others carry no timestamp); older than the window means preserved.
        candidates = [
            e
            for e in entries
            if e[1] > view.last_preserved and layout.named(e[0], self._config.prefix)
        ]
        best: tuple[str, ...] = ()
        if retention.best_k is not None and retention.direction is not None:
            best = view.ranked(retention.direction, candidates, scores)[: retention.best_k]
        every = retention.keep_every_steps
        plan = plan_deletions(
            candidates,
            max_to_keep=retention.max_to_keep,
            keep_every_n_hours=retention.keep_every_n_hours,
            last_preserved=view.last_preserved,
            best=best,
            milestones=[p for p, _ in candidates if every and _multiple(p, every)],
        )
        doomed = set(plan.delete)
        entries = [e for e in entries if e[0] not in doomed]
        self._writer.check()
        self._fenced(
            tuple(entries),
            plan.last_preserved,
            dropped=plan.delete,  # marked, so that a kill before their deletion is finished later
            durable=self._config.durable,
        )
        view.entries = entries
        view.last_preserved = plan.last_preserved
        view.scores = {p: s for p, s in scores.items() if p not in doomed}
        return list(plan.delete)

    def _fenced(
        self,
        entries: tuple[tuple[str, float], ...],
        last_preserved: float,
        *,
        dropped: tuple[str, ...],
        durable: bool,
    ) -> None:
        """Writes the state file if it is still the version this manager read or wrote.

        The view keeps the new version's tag, which fences the next commit.

        Raises:
            DirectoryLockedError: Another writer committed since (this one lost its lease
                while a request was in flight): nothing of theirs is un-listed.
        """
        try:
            self._view.state_tag = layout.write_state(
                self._config.directory,
                entries,
                last_preserved,
                dropped=dropped,
                expect=self._view.state_tag,
                durable=durable,
            )
        except fs.ChangedError as e:
            raise DirectoryLockedError(
                f"the state file of {self._config.directory} changed since this manager read "
                "it: another writer has committed there (this one's lease was lost, its "
                "requests delayed), so this commit was refused and nothing of the other "
                "writer's is un-listed. Make sure one job writes to the directory, then create "
                "a new CheckpointManager"
            ) from e

    def _delete_files(self, old: str, committed: str) -> None:
        """Removes a checkpoint's files retention dropped; a failure warns, the commit stands."""
        try:
            layout.delete_checkpoint(old)
        except OSError as e:
            warn(
                f"{committed} is committed, but the files of {old}, which retention no longer "
                f"lists, could not all be removed ({e.strerror or e}); the next writer of "
                f"{self._config.directory} removes them"
            )

    def start(self, request: SaveRequest) -> None:
        """Runs `request` on a background thread; `wait` first if a save is in flight."""
        assert self._thread is None, "one save in flight at a time: wait() first"
        self._abandoned = False
        self._in_flight = request.path
        self._thread = threading.Thread(  # in this context: the manager's storage settings
            target=contextvars.copy_context().run,
            args=(self._background, request, time.monotonic()),
            name=f"ckptkit save {request.path}",
        )
        # A daemon: interpreter exit must not hang on a stuck write. The manager waits for it
        # (bounded) at close and at exit instead.
        self._thread.daemon = True
        self._thread.start()

    def _background(self, request: SaveRequest, released: float) -> None:
        try:
            self.run(request, released=released)
        except BaseException as e:  # kept for the next call, which raises it
            self._error = e

    def check(self) -> None:
        """Raises the error of a background save that has finished, if it failed."""
        thread = self._thread
        if thread is not None and not thread.is_alive():
            thread.join()
            self._thread = None
            self._in_flight = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def wait(self, timeout: float | None = None) -> None:
        """Blocks until the background save is committed; raises its error if it failed.

        Args:
            timeout: Seconds to wait at most; None: as long as it takes.

        Raises:
            SaveError: The save did not finish in time: it is abandoned and will not be
                committed (it removes its files once TensorFlow's write returns; if the process
                ends first, the next writer does); or it failed.
            DiskFullError, DirectoryLockedError: It failed so.
        """
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                with self._committing:
                    committed = self._view.listed(str(self._in_flight))
                    self._abandoned = not committed
                if not committed:
                    raise SaveError(
                        f"checkpoint {self._in_flight} was still being written after "
                        f"{timeout:.0f} s and is left uncommitted: the newest committed "
                        f"checkpoint is {self._view.newest}. Its files are removed when its "
                        "write ends (or by the next writer); raise "
                        "CheckpointConfig.async_timeout_secs if saves take longer"
                    )
        self.check()


def write_scratch(request: SaveRequest, scratch: str) -> None:
    """A worker's part of a save when another worker (the chief) commits: written, then removed.

    Under a multi-worker strategy every worker must write (reading the variables is a
    collective), and only the chief's files are the checkpoint. This worker writes to
    `scratch`, a folder of its own, and removes it at once. The chief's checkpoint does not
    depend on it, so a failure here only warns.
    """
    try:
        fs.makedirs(scratch)
        request.write(os.path.join(scratch, os.path.basename(request.path)))
    except OSError as e:
        warn(f"this worker's throwaway copy of {request.path} failed in {scratch} ({e})")
    finally:
        with contextlib.suppress(OSError):
            fs.remove(scratch)


def wait_at_exit(pipeline: CommitPipeline, timeout: float, directory: str) -> None:
    """At interpreter exit: lets the save in flight commit (bounded); a failure fails the exit.

    A program that exits without `wait`/`close` while its last background save fails must not
    look successful: the failure is printed (the checkpoint, hence step and directory, and the
    cause), the other exit handlers run as they would, and the process exits with status 1.
    """
    try:
        pipeline.wait(timeout)
    except SaveError as e:
        print(
            f"ckptkit: at exit: the last async save to {directory} did not commit: "
            f"{first_line(e)}. Exiting with status 1; call wait() or close() before exiting "
            "to handle it",
            file=sys.stderr,
        )
        atexit._run_exitfuncs()  # the handlers a normal exit runs (logging's flush, ...)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)  # SystemExit raised in an exit handler is ignored by the interpreter


def _cost(request: SaveRequest, released: float | None, manifest: Manifest) -> SaveCost:
    """What the save of `request` cost until now: its bytes, blocked and background time."""
    now = time.monotonic()
    blocked = (now if released is None else released) - request.started
    return SaveCost(
        bytes_written=sum(record.size for record in manifest.files.values()),
        blocked_secs=max(blocked, 0.0),
        background_secs=0.0 if released is None else max(now - released, 0.0),
    )


def _multiple(path: str, every: int) -> bool:
    """Whether the step in `path`'s name is a multiple of `every`."""
    step = layout.parse_step(path)
    return step is not None and step % every == 0


def _unreachable(error: BaseException) -> bool:
    """Whether `error` is, or was caused by, storage that could not be asked."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, StorageUnavailableError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
