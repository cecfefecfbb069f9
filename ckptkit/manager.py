"""`CheckpointManager`: one save / restore / inspect interface over TensorFlow checkpoints.

The facade ties the pieces together and owns no policy of its own: `schedule` says when to
save, `commit` how a save is written and committed (inline or in the background), `retention`
what to keep, `storage` where files go and what is committed, the backend how TensorFlow moves
the tensors, and `status` whether a restore matches.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ckptkit import fs, routes, storage, tiers
from ckptkit.backends.base import Backend
from ckptkit.backends.object_based import ObjectBasedBackend
from ckptkit.commit import CommitPipeline, SaveRequest, write_scratch
from ckptkit.config import Assertion, CheckpointConfig, as_config
from ckptkit.directory_view import DirectoryView
from ckptkit.errors import (
    CheckpointExistsError,
    CheckpointNotFoundError,
    CheckpointSkippedWarning,
    CkptkitError,
    CorruptCheckpointError,
    DirectoryLockedError,
    InvalidStepError,
    SaveError,
    TrackableError,
    first_line,
)
from ckptkit.inspection import sharing_readers
from ckptkit.lease import Lease
from ckptkit.lock import WriterLock
from ckptkit.manifest import read_manifest, user_fields
from ckptkit.preemption import SignalCatcher
from ckptkit.schedule import SaveTimer
from ckptkit.status import RestoreReport, RestoreResult, check_assertion
from ckptkit.storage import CheckpointInfo
from ckptkit.verification import CheckpointVerdict, verify_checkpoint
from ckptkit.warn import warn
from ckptkit.workers import Peers, PreemptionWatch, on_chief

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["CheckpointManager"]


class CheckpointManager:
    """Saves, restores and lists the checkpoints of one directory.

    Drop it into a custom training loop::

        cfg = ckptkit.CheckpointConfig(directory="runs/exp1",
                                       schedule=ckptkit.Schedule(every_steps=100))
        mgr = ckptkit.CheckpointManager(cfg, model=model, optimizer=opt, step=step)
        mgr.restore_or_initialize()
        for batch in dataset:
            train_step(batch)
            step.assign_add(1)
            mgr.maybe_save(step)

    Checkpoints are named ``<prefix>-<step>`` and listed in TensorFlow's ``checkpoint`` state
    file, so plain `tf.train.latest_checkpoint`, `tf.train.CheckpointManager` and
    `tf.train.Checkpoint.restore` read the directory as well.

    Args:
        config: Directory, prefix, schedule, retention and restore policy; or just the
            directory (a path), for the default config of that directory.
        checkpoint: An existing `tf.train.Checkpoint` to save and restore, instead of
            `trackables`.
        clock: Monotonic seconds for time schedules; for tests. Defaults to `time.monotonic`.
        **trackables: Named objects to checkpoint: Keras models and optimizers, `tf.Variable`,
            `tf.Module`, `tf.data` iterators, any trackable. (``checkpoint`` and ``clock`` are
            taken by the arguments above.)

    Raises:
        TrackableError: An object TensorFlow cannot checkpoint.
        TypeError: Neither or both of `checkpoint` and `trackables` were given.
        ValueError: `config` is neither a `CheckpointConfig` nor a path.
    """

    def __init__(
        self,
        config: CheckpointConfig | str | os.PathLike[str],
        /,
        *,
        checkpoint: tf.train.Checkpoint | None = None,
        clock: Callable[[], float] | None = None,
        **trackables: Any,
    ) -> None:
        if (checkpoint is None) == (not trackables):
            raise TypeError(
                "CheckpointManager needs the objects to checkpoint: pass them by name "
                "(model=..., optimizer=...) or pass checkpoint=tf.train.Checkpoint(...), not both"
            )
        config = as_config(config, argument="config")
        self._start(config, ObjectBasedBackend(trackables, checkpoint=checkpoint), clock)

    @classmethod
    def for_session(
        cls,
        config: CheckpointConfig | str | os.PathLike[str],
        /,
        session: Any = None,
        *,
        graph: Any = None,
        var_list: Any = None,
        meta_graph: bool = True,
        clock: Callable[[], float] | None = None,
    ) -> CheckpointManager:
        """A manager for graph-mode code: `tf.compat.v1.train.Saver` checkpoints of a session.

        The same API (`save`, `maybe_save`, `restore`, `restore_or_initialize`, `latest`,
        `checkpoints`, retention, restore checks), writing what a v1 Saver writes::

            with tf.Graph().as_default():
                ...  # build the model, global_step, train_op
                with tf.compat.v1.Session() as sess:
                    sess.run(tf.compat.v1.global_variables_initializer())
                    mgr = ckptkit.CheckpointManager.for_session(cfg, sess)
                    mgr.restore_or_initialize()
                    while ...:
                        sess.run(train_op)
                        mgr.maybe_save(global_step)  # a graph tensor is run in the session

        Checkpoints are ``<prefix>-<step>`` (use ``prefix="model.ckpt"`` for the Estimator's
        names) with a ``.meta`` graph each, listed in a ``checkpoint`` state file that
        `tf.compat.v1.train.get_checkpoint_state` reads. Run the variable initializers before
        `restore_or_initialize`, as with a Saver: a fresh start leaves the variables as they
        are. A restore with a non-strict assertion (``partial``, ``nontrivial_match``) loads
        the variables the checkpoint has and leaves the others. In a graph with no variables,
        `restore` first imports the checkpoint's ``.meta`` graph, so a graph restores without
        the Python code that built it.

        Args:
            config: Directory, prefix, schedule, retention and restore policy; or the
                directory (a path).
            session: The `tf.compat.v1.Session` to save from and restore into; may be left out
                when `graph` is given and `CheckpointHook` binds the session later.
            graph: The graph, when there is no session yet.
            var_list: The variables to save (a list, or ``{name: variable}``); None: all
                saveable variables of the graph, as for `Saver`.
            meta_graph: Write a ``.meta`` graph beside each checkpoint.
            clock: As for the constructor.
        """
        from ckptkit.backends.saver_v1 import SaverBackend

        backend = SaverBackend(session, graph=graph, var_list=var_list, meta_graph=meta_graph)
        return _SessionManager(as_config(config, argument="config"), backend, clock)

    def _start(
        self, config: CheckpointConfig, backend: Backend, clock: Callable[[], float] | None
    ) -> None:
        self._config = config
        self._directory = config.directory
        routes.register(config.directory, config.storage)
        self._backend = backend
        self._view = DirectoryView()
        self._read_directory()
        self._swept = False  # set by the first save, which takes the lock and clears leftovers
        self._cluster = _cluster_of(backend, config)
        # Only the chief of a cluster writes to the directory; the other workers never lock it.
        self._lock: WriterLock | Lease | None = None
        if not self._follower:  # object stores have no flock: a lease object instead
            remote = fs.is_remote(self._directory)
            lease = config.storage.lease_secs
            self._lock = Lease(self._directory, lease) if remote else WriterLock(self._directory)
        self._signals = (
            None if config.preemption is None else SignalCatcher(config.preemption.signals)
        )
        self._preemption: PreemptionWatch | None = None
        if self._signals is not None and self._cluster is not None and self._cluster.multi_worker:
            signals = self._signals
            self._preemption = self._cluster.watch_preemption(
                lambda: signals.received is not None, self._save_on_preemption, self._leave
            )
        newest = self._view.newest
        latest_step = None if newest is None else storage.parse_step(newest)
        self._timer = SaveTimer(
            config.schedule, last_step=latest_step, clock=clock or time.monotonic
        )
        self._pipeline = CommitPipeline(config, self._view, self._lock, backend.tensorflow_version)
        self._exit_wait: weakref.finalize[Any, Any] | None = None

    @property
    def config(self) -> CheckpointConfig:
        """The configuration this manager was built with."""
        return self._config

    @property
    def _follower(self) -> bool:
        """A worker of a cluster other than the chief: it saves to scratch and commits nothing."""
        return self._cluster is not None and not self._cluster.is_chief

    @property
    def directory(self) -> str:
        """The checkpoint directory."""
        return self._directory

    def _read_directory(self) -> None:
        """Loads the committed checkpoints from disk (at start, and on becoming the writer).

        The keep-every-n-hours mark is the state file's, as in `tf.train.CheckpointManager`:
        without one the window started when this manager was created; one in the future (the
        clock went back) restarts the window now, with a warning, and no checkpoint counts as
        newer than now.
        """
        if not fs.isdir(self._directory):
            return
        # Entries whose files are gone stay, so that restore() reports them as skipped.
        entries, last_preserved = storage.committed(
            self._directory,
            include_missing=True,
            allow_outside=self._config.allow_outside_paths,
        )
        now = time.time()
        self._view.entries = [(p, min(t, now)) for p, t in entries]
        if last_preserved is None or last_preserved == self._view.future_mark:
            pass  # the window opened at creation, or was restarted at an earlier read
        elif last_preserved > now:
            self._view.future_mark = last_preserved
            self._view.last_preserved = now
            warn(
                f"time.time() returned a value {last_preserved - now:.0f} seconds behind the "
                f"last preserved checkpoint timestamp in {self._directory}; the "
                "keep_every_n_hours window restarts now, as tf.train.CheckpointManager does"
            )
        else:
            self._view.last_preserved = last_preserved
        monitor = self._config.retention.monitor
        if monitor is not None:
            self._view.scores = {p: _score(p, monitor) for p, _ in self._view.entries}

    @property
    def preempted(self) -> str | None:
        """The name of the termination signal received (with `Preemption`), or None."""
        return None if self._signals is None else self._signals.name

    def close(self, *, tidy: bool = False) -> None:
        """Waits for a background save, then releases the writer lock and signal handlers.

        Restoring and listing still work afterwards. The wait is bounded by
        `CheckpointConfig.async_timeout_secs`.

        Args:
            tidy: When this manager wrote to the directory and no checkpoint is listed there
                any more, also remove the state file and the lock file, and the directory
                itself when nothing else is in it, so that no trace is left.

        Raises:
            SaveError: The background save failed (`DiskFullError` when out of space), or was
                still running when the wait ran out and is left uncommitted. The lock and the
                handlers are released all the same.
        """
        try:
            self._pipeline.wait(self._config.async_timeout_secs)
        finally:
            self._release(tidy=tidy)

    def _release(self, *, tidy: bool) -> None:
        if self._exit_wait is not None:
            self._exit_wait.detach()
        wrote = self._swept or (self._lock is not None and self._lock.held)
        tidy = tidy and wrote and not self._view.entries
        if tidy:
            with contextlib.suppress(OSError):
                storage.remove_state(self._directory)
        if self._lock is not None:
            self._lock.release(remove=tidy)
        if tidy and not fs.is_remote(self._directory):
            with contextlib.suppress(OSError):
                os.rmdir(self._directory)  # only when empty: exports and others' files stay
        if self._signals is not None:
            self._signals.release()
        if self._preemption is not None:
            self._preemption.close()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if kind is None:
            self.close()
            return
        try:  # the with block's own error is the one to raise; a save's is reported
            self.close()
        except SaveError as e:
            warn(f"while closing after {kind.__name__}: {first_line(e)}")

    @property
    def checkpoint(self) -> tf.train.Checkpoint:
        """The `tf.train.Checkpoint` that is saved and restored.

        Raises:
            TypeError: This manager saves a session's graph (`for_session`).
        """
        backend = self._backend
        if not isinstance(backend, ObjectBasedBackend):
            raise TypeError(
                "a manager made by for_session saves a graph, not a tf.train.Checkpoint"
            )
        return backend.checkpoint

    @property
    def backend(self) -> Backend:
        """The backend that moves the tensors (`ObjectBasedBackend` or `SaverBackend`)."""
        return self._backend

    @property
    def checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints whose index file exists, oldest first (sizes are stat'ed)."""
        return [
            storage.describe(path, t)
            for path, t in self._view.entries
            if fs.exists(f"{path}.index", follow_links=True)
        ]

    @property
    def latest(self) -> CheckpointInfo | None:
        """The newest committed checkpoint whose index file exists, or None."""
        for path, t in reversed(self._view.entries):
            if fs.exists(f"{path}.index", follow_links=True):
                return storage.describe(path, t)
        return None

    @property
    def best(self) -> CheckpointInfo | None:
        """The best committed checkpoint by `Retention.monitor`, or None.

        Raises:
            TypeError: The config's `Retention` has no `monitor`.
        """
        ranked = self.ranked()
        return ranked[0] if ranked else None

    def ranked(self) -> list[CheckpointInfo]:
        """Committed checkpoints with a value of `Retention.monitor`, best first.

        Raises:
            TypeError: The config's `Retention` has no `monitor`.
        """
        times = dict(self._view.entries)
        return [
            storage.describe(path, times[path])
            for path in self._ranked()
            if fs.exists(f"{path}.index", follow_links=True)
        ]

    def _ranked(self) -> tuple[str, ...]:
        """Checkpoints with a value of `Retention.monitor`, best first."""
        direction = self._config.retention.direction
        if direction is None:
            raise TypeError(
                "ranking checkpoints needs the metric to rank by: set "
                "CheckpointConfig(retention=Retention(monitor='val_loss', ...))"
            )
        return self._view.ranked(direction)

    def maybe_save(
        self,
        step: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        async_save: bool | None = None,
    ) -> str | None:
        """Saves when the schedule calls for it at `step`.

        Cheap on the steps that do not save, so it can be called on every step. After a
        termination signal (with `CheckpointConfig.preemption`), it waits for a background
        save, saves `step` synchronously and exits. Reading a `tf.Variable` step waits for the
        device; on an accelerator, pass a Python int you keep alongside it to avoid one sync
        per step.

        Args:
            step: The current step: an int, or a scalar `tf.Variable` / tensor.
            metadata: As for `save`, stored only when it saves.
            metrics: As for `save`, stored only when it saves.
            async_save: As for `save`.

        Returns:
            The checkpoint path when it saved (or started saving, in the background), else
            None.

        Raises:
            SaveError: A background save that has finished since the last call failed (as for
                `wait`); raised even on a step that does not save.
        """
        step = self._step(step)
        if self._preemption is not None:
            self._preemption.step(step)  # at the step the workers agreed on: save, then leave
        elif self._received() is not None:
            return self._save_for_preemption(step, metadata, metrics)
        self._pipeline.check()
        if not self._due(step):
            return None
        return self.save(step, metadata=metadata, metrics=metrics, async_save=async_save)

    def _due(self, step: int) -> bool:
        due = self._timer.should_save(step)
        if self._cluster is not None and self._config.schedule.every_secs is not None:
            # Workers' clocks differ: every worker takes the chief's decision.
            due = bool(self._cluster.agree(int(due)))
        return due

    def _step(self, step: Any) -> int:
        return _as_step(self._backend.read_step(step))

    def finish(
        self,
        step: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> str | None:
        """Tells the manager that training ended at `step`.

        With `Schedule.save_last_step` (set by `CheckpointConfig.from_run_config`), saves
        `step` unless it is saved already, as the Estimator's saver hook does at the end of
        training. The manager stays open; `close()` releases it.

        Returns:
            The checkpoint path when it saved, else None.
        """
        step = self._step(step)
        if not self._timer.should_save_last(step):
            return None
        return self.save(step, metadata=metadata, metrics=metrics)

    def due(self, step: Any) -> bool:
        """Whether `maybe_save(step)` would save: the schedule calls for it, or a signal came."""
        return self._received() is not None or self._due(self._step(step))

    def _received(self) -> int | None:
        """The signal to act on now; on a cluster, TensorFlow's handler picks the step instead."""
        if self._signals is None or self._preemption is not None:
            return None
        return self._signals.received

    def _save_on_preemption(self, step: int) -> None:
        if not self._view.listed(self._path_for(step)):
            self.save(step, async_save=False)

    def _leave(self) -> None:
        """After the preemption save on a cluster: exit as `Preemption.exit` says."""
        policy = self._config.preemption
        if policy is None or not policy.exit or self._signals is None:
            return
        number = self._signals.received or signal.SIGTERM.value  # the workers not signalled
        self.close()
        raise SystemExit(128 + number)

    def _save_for_preemption(
        self, step: int, metadata: Mapping[str, Any] | None, metrics: Mapping[str, float] | None
    ) -> str:
        try:
            self._pipeline.wait()
        except SaveError as e:  # the save of this step, below, matters more now
            warn(f"a background save failed before the preemption save: {first_line(e)}")
        path = self._path_for(step)
        if not self._view.listed(path):
            path = self.save(step, metadata=metadata, metrics=metrics, async_save=False)
        number, policy = self._received(), self._config.preemption
        if number is None or policy is None or not policy.exit:
            return path
        self.close()
        raise SystemExit(128 + number)

    def save(
        self,
        step: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        async_save: bool | None = None,
    ) -> str:
        """Saves a checkpoint for `step`, commits it, then applies retention.

        The commit protocol (see `ckptkit.commit`): a ``.pending`` mark; TensorFlow writes the
        files; ckptkit records them in a manifest (sizes, the index's crc32, step, time,
        versions, `metadata`, `metrics`) and drops the mark; then the checkpoint is listed in
        the state file, which is the moment it becomes visible. Only after that are old
        checkpoints deleted. A save interrupted at any point leaves the previous state; its
        leftovers are removed by the next writer's first save.

        An async save (`CheckpointConfig.async_save`, or ``async_save=True`` here) first waits
        for the previous background save, then takes every saved value (accelerator variables
        are copied to the host; host variables share their buffers until training next
        updates them, when TensorFlow copies them), and returns: training may change the
        variables at once without changing what is written. The rest of the protocol runs on
        a background thread. The checkpoint is listed (`latest`, `checkpoints`, restores)
        only once committed; `wait` blocks until then. Its error, if any, is raised by the
        next `save`, `maybe_save`, `wait` or `close`.

        Args:
            step: The step this checkpoint is for; it names the checkpoint.
            metadata: JSON-serialisable information stored in the manifest.
            metrics: Named numbers stored in the manifest (e.g. ``{"val_loss": 0.31}``).
            async_save: Save in the background (True) or now (False); None: as the config says.

        Returns:
            The checkpoint prefix, e.g. ``runs/exp1/ckpt-200`` (in the background: the prefix
            it will have once committed).

        Raises:
            CheckpointExistsError: An intact committed checkpoint for `step` exists already.
            InvalidMetadataError: `metadata` or `metrics` cannot be stored as JSON.
            DirectoryLockedError: Another manager is writing to this directory.
            DiskFullError: The disk (or a file-size limit) ran out; nothing was committed.
            SaveError: Writing failed otherwise; partial files were removed, earlier
                checkpoints kept. After an async save, the previous background save's error.
            TrackableError: An async save of values that cannot be taken ahead of writing
                (graph mode).
        """
        step = self._step(step)
        extra = user_fields(metadata, metrics)
        background = self._config.async_save if async_save is None else async_save
        self._pipeline.wait()  # one save in flight at most; its error is raised here
        path = self._path_for(step)
        if self._cluster is not None and self._cluster.multi_worker:
            if background:
                raise TrackableError(_NO_ASYNC_ON_CLUSTER)
            return self._save_on_cluster(self._cluster, path, step, extra)
        self._prepare(path, step)
        if not background:
            written = self._pipeline.run(SaveRequest(path, step, extra, self._backend.write))
            self._timer.record(step)
            return written
        request = SaveRequest(path, step, extra, self._backend.snapshot())
        if self._exit_wait is None or not self._exit_wait.alive:  # exit waits for it, bounded
            self._exit_wait = weakref.finalize(
                self, _wait_at_exit, self._pipeline, self._config.async_timeout_secs
            )
        self._pipeline.start(request)
        self._timer.record(step)
        return path

    def _prepare(self, path: str, step: int) -> None:
        """Before a save of `path`: become the writer, and refuse to replace a good checkpoint."""
        self._become_writer()
        if self._view.listed(path):
            if path not in self._view.damaged:
                raise CheckpointExistsError(
                    f"checkpoint {path} for step {step} is already committed; it is not "
                    "overwritten. Save at a new step, or use a new directory to retrain from "
                    "an earlier step"
                )
            self._uncommit(path)  # found damaged by restore(): replaced by this save

    def _save_on_cluster(
        self, cluster: Peers, path: str, step: int, extra: Mapping[str, Any]
    ) -> str:
        """Every worker writes (the strategy's reads are collectives); the chief commits.

        Two agreements: that the chief may save (lock, no committed checkpoint of `step`), then
        whether its save committed; a failure of the chief's is raised on every worker.
        """
        doing = f"save {path}"

        def prepare() -> tuple[None, int]:
            self._prepare(path, step)
            return None, 0

        on_chief(cluster, prepare, lambda: None, doing=doing)
        request = SaveRequest(path, step, extra, self._backend.write)
        # TensorFlow cannot write a staged directory: there the scratch is in the local tier.
        near = tiers.cache_dir(self._directory) if fs.staged(path) else self._directory
        scratch = os.path.join(near, f".workertemp-{cluster.task_id}")
        on_chief(
            cluster,
            lambda: (self._pipeline.run(request), 0),
            lambda: write_scratch(request, scratch),
            doing=doing,
        )
        if not cluster.is_chief:
            self._read_directory()  # the chief has committed: list what it lists
        self._timer.record(step)
        return path

    def wait(self) -> str | None:
        """Blocks until the background save in flight (if any) is committed.

        Returns:
            The newest committed checkpoint's path, or None when there is none.

        Raises:
            DiskFullError: The background save ran out of space; nothing of it was committed,
                earlier checkpoints are intact, and the next save may go ahead.
            SaveError: The background save failed otherwise; likewise.
            DirectoryLockedError: Another writer took the directory meanwhile.
        """
        self._pipeline.wait()
        return self._view.newest

    @property
    def in_flight(self) -> str | None:
        """The checkpoint a background save is writing and has not committed yet, or None."""
        return self._pipeline.in_flight

    def _check_lock(self) -> None:
        if self._lock is not None:
            self._lock.check()

    def _path_for(self, step: int) -> str:
        return os.path.join(self._directory, f"{self._config.prefix}-{step}")

    def _become_writer(self) -> None:
        """On the first save: create the directory, take the lock, re-read, clear leftovers."""
        if self._swept:
            return
        try:
            fs.makedirs(self._directory)
        except OSError as e:
            raise storage.save_error(self._directory, self._directory, e) from e
        if self._lock is not None:
            try:
                self._lock.acquire()
            except CkptkitError:
                raise
            except OSError as e:
                raise storage.lock_error(self._lock.path, e) from e
        # Another writer may have committed since this manager read the directory.
        self._read_directory()
        try:
            storage.remove_leftovers(
                self._directory, self._config.prefix, {p for p, _ in self._view.entries}
            )
        except OSError as e:
            warn(
                f"could not remove all leftovers of interrupted saves in {self._directory} "
                f"({e.strerror or e}); saving goes on, and the next writer tries again"
            )
        self._swept = True

    def delete(self, step: int) -> None:
        """Deletes the committed checkpoint of `step`: unlisted first, then its files removed.

        Waits for a background save first. On a worker of a cluster other than the chief,
        does nothing: the chief's call deletes it.

        Raises:
            CheckpointNotFoundError: No committed checkpoint for `step`.
            DirectoryLockedError: Another manager is writing to this directory.
        """
        if self._follower:
            return
        self._pipeline.wait()
        path = self._select(step, None)
        self._become_writer()
        self._uncommit(path)

    def _uncommit(self, path: str) -> None:
        self._check_lock()
        entries = tuple(e for e in self._view.entries if e[0] != path)
        try:
            storage.write_state(self._directory, entries, self._view.last_preserved)
            self._view.drop(path)
            storage.delete_checkpoint(path)
        except OSError as e:
            raise SaveError(
                f"removing checkpoint {path} failed ({e.strerror or e}); the state file may "
                "still list it. Check the directory's permissions and space, then retry"
            ) from e

    def check_compatibility(
        self, *, step: int | None = None, path: str | None = None
    ) -> RestoreReport:
        """Compares a checkpoint with the program without loading anything (a dry run).

        Args:
            step: Compare the checkpoint of this step.
            path: Compare this checkpoint (prefix or directory) instead.

        Returns:
            Matched entries, unused checkpoint values, unrestored program variables and
            shape/dtype mismatches, each by name.
        """
        return self._backend.compare(self._select(step, path))

    def restore(
        self,
        *,
        step: int | None = None,
        path: str | None = None,
        best: bool = False,
        assertion: Assertion | None = None,
    ) -> RestoreResult:
        """Restores the newest checkpoint, or the best, or the one of `step`, or the one at `path`.

        The checkpoint is verified (`RestorePolicy.verify`) and matched against the program
        first; when the assertion fails nothing is loaded. Without `step` or `path`, a damaged
        newest checkpoint is skipped for the newest intact one, with a
        `CheckpointSkippedWarning`; `RestoreResult.skipped` names what was skipped and why.
        Objects that do not exist yet (an unbuilt Keras model) get their values when they are
        created; check them afterwards with `RestoreResult.assert_restored`.

        Args:
            step: Restore the checkpoint of this step.
            path: Restore this checkpoint (prefix or directory), which may be elsewhere.
            best: Restore the best checkpoint by `Retention.monitor` (the values given to
                `save(metrics=...)`); a damaged one is skipped for the next best.
            assertion: Overrides the config's `RestorePolicy.assertion`.

        Returns:
            Which checkpoint was loaded, its step, and the match report.

        Raises:
            CheckpointNotFoundError: No such checkpoint (or none at all).
            CorruptCheckpointError: The requested checkpoint, or every one, is damaged.
            ShapeMismatchError: A variable's shape or dtype differs; nothing was loaded.
            RestoreMismatchError: The assertion failed; nothing was loaded.
        """
        if best and (step is not None or path is not None):
            raise TypeError("pass one of step, path and best=True, not several")
        mode = assertion or self._config.restore.assertion
        with sharing_readers():  # verification and matching read each index once
            if self._cluster is not None and self._cluster.multi_worker:
                return self._restore_on_cluster(self._cluster, step, path, best, mode)
            return self._restore(step, path, best, mode)

    def _restore_on_cluster(
        self,
        cluster: Peers,
        step: int | None,
        path: str | None,
        best: bool,
        mode: Assertion,
        *,
        fresh: bool = False,
    ) -> RestoreResult:
        """The chief picks the checkpoint (walking back past damaged ones); every worker loads it.

        With `fresh` (`restore_or_initialize`), an empty directory on the chief is a fresh
        start on every worker.
        """

        def chief() -> tuple[RestoreResult, int]:
            if fresh:
                self._lock_early()
                if not self._view.entries:
                    return self._fresh_start(), 0
            result = self._restore(step, path, best, mode)
            if path is not None:
                return result, 1  # every worker restores the path it was given
            if result.step is None:
                raise CheckpointNotFoundError(
                    f"{result.path} has no step in its name, and the other workers find the "
                    "chief's checkpoint by its step; restore it with path= on every worker"
                )
            return result, result.step + 1

        result, chosen = on_chief(cluster, chief, lambda: None, doing="restore")
        if chosen == 0:
            return RestoreResult(restored=False)  # a fresh start, on every worker
        error: CkptkitError | None = None
        if not cluster.is_chief:
            try:
                if step is None and path is None:
                    self._read_directory()
                    step = chosen - 1
                result = self._restore(step, path, False, mode)
            except CkptkitError as e:
                error = e
        failed = cluster.count(error is not None)
        if error is not None:
            raise error
        assert result is not None
        if failed:
            raise CorruptCheckpointError(
                f"{failed} other worker(s) could not restore {result.path}, which this worker "
                f"({cluster.task}) restored; their output says why. Check that every worker "
                "sees the same directory"
            )
        return result

    def _restore(
        self, step: int | None, path: str | None, best: bool, mode: Assertion
    ) -> RestoreResult:
        if step is not None or path is not None:
            target = self._select(step, path)
            verdict = self._verify(target)
            if verdict is not None and not verdict.ok:
                raise CorruptCheckpointError(
                    f"checkpoint {target} is damaged: {_why(verdict)}; restore another one "
                    "(ckptkit.verify lists which are intact)"
                )
            return self._load(target, mode, verdict, skipped=())
        if not self._view.entries:
            raise CheckpointNotFoundError(
                f"no checkpoint to restore in {self._directory}; "
                "use restore_or_initialize() to start fresh when there is none"
            )
        if best and not self._ranked():
            raise CheckpointNotFoundError(
                f"no checkpoint in {self._directory} has a value of "
                f"{self._config.retention.monitor!r} to rank by; pass it to save(metrics=...)"
            )
        skipped: list[tuple[str, str]] = []
        tried: set[str] = set()
        rereads = 0
        while True:
            order = self._ranked() if best else [p for p, _ in reversed(self._view.entries)]
            pending = [p for p in order if p not in tried]
            if not pending:
                break
            target = pending[0]
            tried.add(target)
            verdict = self._verify(target)
            problems = _why(verdict)
            if not problems:
                try:
                    result = self._load(target, mode, verdict, skipped=tuple(skipped))
                except (CorruptCheckpointError, CheckpointNotFoundError) as e:
                    problems = first_line(e)
                else:
                    if skipped:
                        warn(
                            CheckpointSkippedWarning(
                                f"restored {target} after skipping damaged checkpoint(s): "
                                + "; ".join(f"{p} ({why})" for p, why in skipped)
                            )
                        )
                    return result
            if rereads < _MAX_REREADS and self._retired(target):
                rereads += 1
                continue  # deleted by the writer's retention while read: not damage
            skipped.append((target, problems))
            self._view.damaged.add(target)
        raise CorruptCheckpointError(
            f"every {'ranked ' if best else ''}checkpoint in {self._directory} is damaged; "
            "nothing was restored: " + "; ".join(f"{p} ({why})" for p, why in skipped)
        )

    def _retired(self, target: str) -> bool:
        """Whether `target`, which failed to load, is no longer committed (re-reads the state).

        A reader races the writer's retention: a checkpoint listed when the reader looked can
        be deleted before it is loaded. Only a reader re-reads; a writer's own list is current.
        """
        if self._swept:
            return False
        self._read_directory()
        return not self._view.listed(target)

    def _verify(self, target: str) -> CheckpointVerdict | None:
        """Verifies `target` as `RestorePolicy.verify` says; None when verification is off."""
        level = self._config.restore.verify
        return None if level == "off" else verify_checkpoint(target, full=level == "full")

    def _load(
        self,
        target: str,
        mode: Assertion,
        verdict: CheckpointVerdict | None,
        *,
        skipped: tuple[tuple[str, str], ...],
    ) -> RestoreResult:
        report = self._backend.compare(target)
        check_assertion(report, mode)
        status = self._backend.restore(target, expect_partial=mode != "none")
        restored_step = storage.parse_step(target)
        if restored_step is not None:
            self._timer.record(restored_step)
        manifest = read_manifest(target) if verdict is None else verdict.manifest
        return RestoreResult(
            restored=True,
            path=target,
            step=restored_step,
            report=report,
            skipped=skipped,
            metadata={} if manifest is None else dict(manifest.metadata),
            metrics={} if manifest is None else dict(manifest.metrics),
            tf_status=status,
            _recheck=lambda: self._backend.compare(target, status),
        )

    def restore_or_initialize(self, *, assertion: Assertion | None = None) -> RestoreResult:
        """Restores the newest checkpoint if there is one; otherwise leaves the program as is.

        This is how a training job starts, so it also takes the directory's writer lock (as
        the first save would): a second job writing to the same directory is stopped here,
        before it trains, rather than at its first save. Where the lock cannot be taken for
        another reason (a read-only directory), restoring goes on and the first save reports it.

        Returns:
            ``restored=False`` for a fresh start, else as `restore`.

        Raises:
            DirectoryLockedError: Another manager is writing to this directory.
        """
        if self._cluster is not None and self._cluster.multi_worker:
            mode = assertion or self._config.restore.assertion
            with sharing_readers():
                return self._restore_on_cluster(self._cluster, None, None, False, mode, fresh=True)
        self._lock_early()
        if not self._view.entries:
            return self._fresh_start()
        return self.restore(assertion=assertion)

    def _fresh_start(self) -> RestoreResult:
        left = storage.uncommitted(self._directory, self._config.prefix)
        if left:
            warn(
                CheckpointSkippedWarning(
                    f"starting fresh: {self._directory} holds no committed checkpoint. "
                    f"{', '.join(os.path.basename(p) for p in left)}: never committed (a "
                    "save interrupted before its state file was written), not restored; "
                    "the first save removes what ckptkit wrote of it"
                )
            )
        return RestoreResult(restored=False)

    def _lock_early(self) -> None:
        if self._lock is None or self._lock.held:
            return
        try:
            fs.makedirs(self._directory)
            self._lock.acquire()
        except DirectoryLockedError:
            raise
        except OSError:
            return  # e.g. a read-only directory: a save would fail anyway, and says why
        self._read_directory()  # another writer may have committed since this manager read it

    def _select(self, step: int | None, path: str | None) -> str:
        if step is not None and path is not None:
            raise TypeError("pass step or path, not both")
        if path is not None:
            return storage.resolve_checkpoint(os.fspath(path))
        if step is not None:
            for candidate, _ in self._view.entries:
                if storage.parse_step(candidate) == step:
                    return candidate
            have = [storage.parse_step(p) for p, _ in self._view.entries]
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in {self._directory}; steps available: {have}"
            )
        newest = self._view.newest
        if newest is None:
            raise CheckpointNotFoundError(
                f"no checkpoint to restore in {self._directory}; "
                "use restore_or_initialize() to start fresh when there is none"
            )
        return newest


class _SessionManager(CheckpointManager):
    """A `CheckpointManager` over a v1 `Saver` backend (made by `for_session`)."""

    def __init__(
        self, config: CheckpointConfig, backend: Backend, clock: Callable[[], float] | None
    ) -> None:
        if config.async_save:
            warn(
                f"{config.directory}: graph-mode managers (for_session) save synchronously; "
                "CheckpointConfig(async_save=True) is ignored for this one"
            )
            config = config.model_copy(update={"async_save": False})
        self._start(config, backend, clock)


_NO_ASYNC_ON_CLUSTER = (
    "async saves are not supported under a multi-worker strategy: every worker must read the "
    "variables for the same save at the same point of training (the strategy's reads are "
    "collectives), which a background save cannot promise; set async_save=False"
)


def _cluster_of(backend: Backend, config: CheckpointConfig) -> Peers | None:
    """The backend's cluster, with what cannot work across workers refused up front."""
    cluster = backend.cluster
    if cluster is not None and cluster.multi_worker and config.async_save:
        raise TrackableError(_NO_ASYNC_ON_CLUSTER)
    return cluster


def _why(verdict: CheckpointVerdict | None) -> str:
    """What verification found wrong ("" when intact or not verified)."""
    return "" if verdict is None else "; ".join(str(p) for p in verdict.problems)


def _wait_at_exit(pipeline: CommitPipeline, timeout: float) -> None:
    """At interpreter exit: lets the save in flight commit (bounded); reports its failure."""
    try:
        pipeline.wait(timeout)
    except SaveError as e:
        print(f"ckptkit: at exit: {first_line(e)}", file=sys.stderr)


def _as_step(step: Any) -> int:
    value = step.numpy() if hasattr(step, "numpy") else step
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        as_int = -1
    if as_int < 0 or as_int != value:
        raise InvalidStepError(f"step must be a non-negative integer (received step={step!r})")
    return as_int


def _score(path: str, monitor: str) -> float | None:
    try:
        manifest = read_manifest(path)
    except CorruptCheckpointError:
        return None
    return None if manifest is None else manifest.metrics.get(monitor)


_MAX_REREADS = 20  # a reader re-reads the state this often per restore when files vanish
