"""`CheckpointManager`: one save / restore / inspect interface over TensorFlow checkpoints.

The facade ties the pieces together and owns no policy of its own: `schedule` says when to
save, `commit` how a save is written and committed (inline or in the background), `restore`
how a checkpoint is picked, checked and loaded, `retention` what to keep, `writer` who may
write the directory, `storage` where files go and what is committed, `preemption` what a
termination signal does, `distribute` how a cluster's workers save and restore together, the
backend how TensorFlow moves the tensors, and `status` whether a restore matches.
"""

from __future__ import annotations

import functools
import os
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from ckptkit.backends.base import Backend
from ckptkit.backends.object_based import ObjectBasedBackend
from ckptkit.commit import CommitPipeline, SaveRequest, wait_at_exit
from ckptkit.config import Assertion, CheckpointConfig, as_config
from ckptkit.distribute.choreography import ClusterSaves, restore_together
from ckptkit.errors import (
    InvalidStepError,
    SaveError,
    first_line,
)
from ckptkit.exporting import export_checkpoint
from ckptkit.matching import LeaveOut
from ckptkit.preemption import PreemptionGuard
from ckptkit.reading.inspection import sharing_readers
from ckptkit.recovery import DivergenceWatch
from ckptkit.restore import RestorePipeline, ranked
from ckptkit.schedule import SaveTimer
from ckptkit.status import RestoreReport, RestoreResult, assertion_mode
from ckptkit.storage import fs, layout, routes
from ckptkit.storage.directory_view import DirectoryView
from ckptkit.storage.layout import CheckpointInfo
from ckptkit.storage.manifest import user_fields
from ckptkit.storage.writer import DirectoryWriter
from ckptkit.warn import warn

if TYPE_CHECKING:
    import tensorflow as tf

__all__ = ["CheckpointManager"]


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _own_storage(
    method: Callable[Concatenate[CheckpointManager, _P], _R],
) -> Callable[Concatenate[CheckpointManager, _P], _R]:
    """Runs `method` with this manager's `Storage` for its directory (see `routes.using`)."""

    @functools.wraps(method)
    def run(self: CheckpointManager, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        with routes.using(self._config.directory, self._config.storage):
            return method(self, *args, **kwargs)

    return run


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
        backend = ObjectBasedBackend(
            trackables, checkpoint=checkpoint, max_shard_bytes=config.max_shard_bytes
        )
        self._start(config, backend, clock)

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
        with routes.using(config.directory, config.storage):
            self._backend = backend
            self._view = DirectoryView(
                config.directory,
                allow_outside=config.allow_outside_paths,
                monitor=config.retention.monitor,
            )
            self._view.refresh()
            self._cluster = backend.cluster
            # Only the chief of a cluster writes to the directory; the others never lock it.
            self._writer = DirectoryWriter(config, self._view, follower=self._follower)
            newest = self._view.newest
            latest_step = None if newest is None else layout.parse_step(newest)
            self._timer = SaveTimer(
                config.schedule, last_step=latest_step, clock=clock or time.monotonic
            )
            self._pipeline = CommitPipeline(
                config, self._view, self._writer, backend.tensorflow_version
            )
            self._together = (
                ClusterSaves(self._cluster, self._pipeline, reread=self._view.refresh)
                if self._cluster is not None and self._cluster.multi_worker
                else None
            )
            self._restorer = RestorePipeline(
                config,
                self._view,
                backend,
                reread=self._writer.reread,
                on_restored=self._timer.record,
            )
            self._guard = PreemptionGuard(
                config.preemption,
                self._cluster,
                save_now=self._save_now,
                wait=self._settle,
                close=self.close,
            )
        self._exit_wait: weakref.finalize[Any, Any] | None = None
        self._watch = None if config.recovery is None else DivergenceWatch(config.recovery)

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

    @property
    def preempted(self) -> str | None:
        """The name of the termination signal received (with `Preemption`), or None."""
        return self._guard.name

    @_own_storage
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
            self._settle(self._config.async_timeout_secs)
        finally:
            self._release(tidy=tidy)

    @_own_storage
    def _settle(self, timeout: float | None = None) -> None:
        """Waits for the background save in flight; raises its error (on every worker)."""
        if self._together is not None:
            self._together.settle(timeout)
        else:
            self._pipeline.wait(timeout)

    def _release(self, *, tidy: bool) -> None:
        if self._exit_wait is not None:
            self._exit_wait.detach()
        self._writer.release(tidy=tidy)
        self._guard.release()

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
    @_own_storage
    def checkpoints(self) -> list[CheckpointInfo]:
        """Committed checkpoints whose index file exists, oldest first (sizes are stat'ed)."""
        return [
            layout.describe(path, t)
            for path, t in self._view.entries
            if fs.exists(f"{path}.index", follow_links=True)
        ]

    @property
    @_own_storage
    def latest(self) -> CheckpointInfo | None:
        """The newest committed checkpoint whose index file exists, or None."""
        for path, t in reversed(self._view.entries):
            if fs.exists(f"{path}.index", follow_links=True):
                return layout.describe(path, t)
        return None

    @property
    def best(self) -> CheckpointInfo | None:
        """The best committed checkpoint by `Retention.monitor`, or None.

        Raises:
            TypeError: The config's `Retention` has no `monitor`.
        """
        ranked = self.ranked()
        return ranked[0] if ranked else None

    @_own_storage
    def managed_by_retention(self) -> list[str]:
        """The committed checkpoints retention may still delete, oldest first.

        All but those kept for good by `Retention.keep_every_n_hours`: what
        `tf.train.CheckpointManager.checkpoints` lists.
        """
        view = self._view
        return [path for path, t in view.entries if t > view.last_preserved]

    def as_tf_manager(self) -> Any:
        """This manager as a `tf.train.CheckpointManager` (see `ckptkit.compat`).

        For code and frameworks that take one (Orbit's `Controller`, TensorFlow's
        `PreemptionCheckpointHandler`): its saves and restores are this manager's.

        Raises:
            TypeError: A graph-mode manager (`for_session`).
        """
        from ckptkit.compat import CheckpointManager as TFManager

        backend = self._backend
        if not isinstance(backend, ObjectBasedBackend):
            raise TypeError("a manager made by for_session has no tf.train.Checkpoint")
        retention = self._config.retention
        return TFManager(
            backend.checkpoint,
            self._directory,
            retention.max_to_keep,
            keep_checkpoint_every_n_hours=retention.keep_every_n_hours,
            checkpoint_name=self._config.prefix,
            manager=self,
        )

    @_own_storage
    def ranked(self) -> list[CheckpointInfo]:
        """Committed checkpoints with a value of `Retention.monitor`, best first.

        Raises:
            TypeError: The config's `Retention` has no `monitor`.
        """
        times = dict(self._view.entries)
        return [
            layout.describe(path, times[path])
            for path in ranked(self._view, self._config)
            if fs.exists(f"{path}.index", follow_links=True)
        ]

    @_own_storage
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
                `wait`); raised even on a step that does not save. On a multi-worker cluster
                only at the next save, where every worker raises it together.
        """
        step = self._step(step)
        saved = self._guard.at_step(step, metadata, metrics)
        if saved is not None:
            return saved
        if self._together is None:  # on a cluster, every worker learns it at the next save
            self._pipeline.check()
        if not self._due(step):
            return None
        return self.save(step, metadata=metadata, metrics=metrics, async_save=async_save)

    def _due(self, step: int) -> bool:
        due = self._timer.should_save(step)
        if self._cluster is not None and self._config.schedule.every_secs is not None:
            # Workers' clocks differ: every worker takes the chief's decision.
            with self._cluster.answering(f"the decision whether to save at step {step}"):
                due = bool(self._cluster.agree(int(due)))
        return due

    def _step(self, step: Any) -> int:
        return _as_step(self._backend.read_step(step))

    @_own_storage
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

    @_own_storage
    def due(self, step: Any) -> bool:
        """Whether `maybe_save(step)` would save: the schedule calls for it, or a signal came."""
        return self._guard.pending or self._due(self._step(step))

    @_own_storage
    def _save_now(
        self, step: int, metadata: Mapping[str, Any] | None, metrics: Mapping[str, float] | None
    ) -> str | None:
        """Saves `step` synchronously unless it is committed already (for a signal)."""
        path = self._path_for(step)
        if self._view.listed(path):
            return path
        return self.save(step, metadata=metadata, metrics=metrics, async_save=False)

    @_own_storage
    def save(
        self,
        step: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        metrics: Mapping[str, float] | None = None,
        async_save: bool | None = None,
    ) -> str | None:
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
        next `save`, `maybe_save`, `wait` or `close`. On a multi-worker cluster every worker
        takes the values together (the strategy's reads are collectives), the chief alone
        writes and commits, and every worker learns the outcome at the next `save`, `wait` or
        `close` (the other workers list the checkpoint from then on).

        Args:
            step: The step this checkpoint is for; it names the checkpoint.
            metadata: JSON-serialisable information stored in the manifest.
            metrics: Named numbers stored in the manifest (e.g. ``{"val_loss": 0.31}``).
            async_save: Save in the background (True) or now (False); None: as the config says.

        Returns:
            The checkpoint prefix, e.g. ``runs/exp1/ckpt-200`` (in the background: the prefix
            it will have once committed). None when `Recovery` refused the save: the last
            loss handed to `check_loss` diverged, or `metrics` are not finite (it warns).

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
        begun = time.monotonic()  # what the caller waits is part of the save's cost
        refused = None if self._watch is None else self._watch.refusal(metrics)
        if refused is not None:
            warn(f"{self._directory}: not saving step {step}: {refused} (Recovery)")
            return None
        step = self._step(step)
        extra = user_fields(metadata, metrics)
        background = self._config.async_save if async_save is None else async_save
        path = self._path_for(step)
        if self._together is not None:
            request = SaveRequest(path, step, extra, self._backend.write, begun)
            if background:
                self._watch_exit()
            self._together.save(request, snapshot=self._backend.snapshot if background else None)
            self._timer.record(step)
            return path
        self._pipeline.wait()  # one save in flight at most; its error is raised here
        self._pipeline.admit(path, step)
        if not background:
            request = SaveRequest(path, step, extra, self._backend.write, begun)
            written = self._pipeline.run(request)
            self._timer.record(step)
            return written
        request = SaveRequest(path, step, extra, self._backend.snapshot(), begun)
        self._watch_exit()
        self._pipeline.start(request)
        self._timer.record(step)
        return path

    def _watch_exit(self) -> None:
        """Makes interpreter exit wait (bounded) for a background save of this manager's."""
        if self._exit_wait is None or not self._exit_wait.alive:
            self._exit_wait = weakref.finalize(
                self,
                wait_at_exit,
                self._pipeline,
                self._config.async_timeout_secs,
                self._config.directory,
            )

    @_own_storage
    def check_loss(self, loss: Any) -> bool:
        """Judges this step's loss; rolls back to the newest good checkpoint if it diverged.

        Call it once per step, before that step's save: a loss that is NaN, infinite or
        above `Recovery.loss_upper_bound` restores the newest checkpoint committed before it
        (everything this manager holds: model, optimizer, step...), with a warning naming
        the step, and training goes on from there. Saves are refused until a healthy loss.

        Args:
            loss: The loss (a number, or a scalar tensor or variable).

        Returns:
            True when it rolled back.

        Raises:
            TypeError: The config has no `Recovery`.
            DivergenceError: `Recovery.max_trials` rollbacks in a row without a new
                checkpoint in between, or no checkpoint to roll back to.
        """
        watch = self._watch
        if watch is None:
            raise TypeError(
                "check_loss needs CheckpointConfig(recovery=ckptkit.Recovery(...)) to know "
                "what to do with a diverged loss"
            )
        value = float(loss.numpy() if hasattr(loss, "numpy") else loss)
        if watch.diverges(value):
            self._settle()  # a save in flight (of an earlier step) is a candidate
        target = watch.judge(value, newest=self._view.newest)
        if target is None:
            return False
        result = self.restore(path=target)
        warn(
            f"{self._directory}: the loss diverged ({value}); rolled back to {target} (step "
            f"{result.step}), rollback {watch.rollbacks} of at most {watch.max_trials} in a row"
        )
        return True

    @_own_storage
    def wait(self) -> str | None:
        """Blocks until the background save in flight (if any) is committed.

        On a multi-worker cluster every worker calls it at the same point: the workers learn
        together whether the chief committed that save (an all-reduce).

        Returns:
            The newest committed checkpoint's path, or None when there is none.

        Raises:
            DiskFullError: The background save ran out of space; nothing of it was committed,
                earlier checkpoints are intact, and the next save may go ahead.
            SaveError: The background save failed otherwise; likewise.
            DirectoryLockedError: Another writer took the directory meanwhile.
        """
        self._settle()
        return self._view.newest

    @property
    def in_flight(self) -> str | None:
        """The checkpoint a background save is writing and has not committed yet, or None."""
        return self._pipeline.in_flight

    def _path_for(self, step: int) -> str:
        return os.path.join(self._directory, f"{self._config.prefix}-{step}")

    @_own_storage
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
        path = self._restorer.select(step, None)
        self._writer.become()
        self._pipeline.uncommit(path)

    @_own_storage
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
        return self._backend.compare(self._restorer.select(step, path))

    @_own_storage
    def restore(
        self,
        *,
        step: int | None = None,
        path: str | None = None,
        best: bool = False,
        assertion: Assertion | None = None,
        skip_mismatch: bool | None = None,
        exclude: Sequence[str] | None = None,
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
            skip_mismatch: Load what fits and leave out each value whose shape or dtype
                differs, which keeps the program's value (fine-tuning into a new head);
                overrides `RestorePolicy.skip_mismatch`.
            exclude: Glob patterns of values never to load (``["*head*"]``; see
                `RestorePolicy.exclude`); overrides the policy's.

        Returns:
            Which checkpoint was loaded, its step, and the match report (what was left out is
            in its `left_out`, with the reason).

        Raises:
            CheckpointNotFoundError: No such checkpoint (or none at all).
            CorruptCheckpointError: The requested checkpoint, or every one, is damaged.
            ShapeMismatchError: A variable's shape or dtype differs; nothing was loaded.
            RestoreMismatchError: The assertion failed; nothing was loaded.
            ValueError: `assertion` is not an assertion mode.
        """
        if best and (step is not None or path is not None):
            raise TypeError("pass one of step, path and best=True, not several")
        mode = assertion_mode(assertion, default=self._config.restore.assertion)
        leave = self._leave_out(skip_mismatch, exclude)
        with sharing_readers():  # verification and matching read each index once
            if self._cluster is not None and self._cluster.multi_worker:
                return restore_together(
                    self._cluster,
                    self._restorer,
                    step,
                    path,
                    best,
                    mode,
                    leave,
                    reread=self._view.refresh,
                )
            return self._restorer.run(step, path, best, mode, leave)

    def _leave_out(self, skip_mismatch: bool | None, exclude: Sequence[str] | None) -> LeaveOut:
        """What a restore leaves out: the arguments, else the config's `RestorePolicy`."""
        policy = self._config.restore
        if exclude is not None and (
            isinstance(exclude, str) or not all(isinstance(p, str) and p for p in exclude)
        ):
            raise TypeError(f"exclude takes a list of glob patterns (received {exclude!r})")
        return LeaveOut(
            skip_mismatch=policy.skip_mismatch if skip_mismatch is None else bool(skip_mismatch),
            exclude=policy.exclude if exclude is None else tuple(exclude),
        )

    @_own_storage
    def export(
        self,
        path: str | os.PathLike[str],
        *,
        step: int | None = None,
        best: bool = False,
        signatures: Any = None,
        overwrite: bool = False,
        name: str | None = None,
    ) -> RestoreResult:
        """Writes a checkpoint (the newest by default) as a SavedModel for serving.

        The checkpoint is loaded into this manager's objects (checked as `restore` checks
        it), the object is exported (a Keras model through `model.export`, served with
        ``tf.saved_model.load(path).serve(x)``; a `tf.Module` through `tf.saved_model.save`
        with `signatures`), and every program variable is put back as it was before the
        call, so a running training loop can export its best so far and go on.

        Args:
            path: The SavedModel folder to write (a local path).
            step: Export the checkpoint of this step.
            best: Export the best checkpoint by `Retention.monitor`.
            signatures: For a `tf.Module`: the `tf.function` signatures to serve.
            overwrite: Replace a folder already at `path`.
            name: The object to export, when this manager holds more than one model or
                module (``export(path, name="generator")``).

        Returns:
            The restore of the checkpoint exported: its path, step, metrics and report.

        Raises:
            CheckpointExistsError: Something is at `path` and `overwrite` is not set.
            CheckpointNotFoundError: No such checkpoint.
            TrackableError: Nothing (or more than one object) to export, or an unbuilt model.
            TypeError: A graph-mode manager (`for_session`): use its `Saver`'s own export.
        """
        backend = self._backend
        if not isinstance(backend, ObjectBasedBackend):
            raise TypeError("a manager made by for_session has no object to export")
        if best and step is not None:
            raise TypeError("pass step or best=True, not both")
        self._pipeline.wait(self._config.async_timeout_secs)  # a save's error surfaces first
        restorer = RestorePipeline(  # the save schedule does not count this restore
            self._config,
            self._view,
            backend,
            reread=self._writer.reread,
            on_restored=lambda _: None,
        )
        with sharing_readers():
            return export_checkpoint(
                backend,
                restorer,
                path,
                step=step,
                best=best,
                mode=self._config.restore.assertion,
                signatures=signatures,
                overwrite=overwrite,
                name=name,
            )

    @_own_storage
    def restore_or_initialize(
        self,
        *,
        assertion: Assertion | None = None,
        skip_mismatch: bool | None = None,
        exclude: Sequence[str] | None = None,
    ) -> RestoreResult:
        """Restores the newest checkpoint if there is one; otherwise leaves the program as is.

        This is how a training job starts, so it also takes the directory's writer lock (as
        the first save would): a second job writing to the same directory, or a directory
        this process cannot write, is stopped here, before it trains, rather than at its first
        save. A program that only reads should call `restore`, which writes nothing.

        Args:
            assertion: As for `restore`.
            skip_mismatch: As for `restore`.
            exclude: As for `restore`.

        Returns:
            ``restored=False`` for a fresh start, else as `restore`.

        Raises:
            DirectoryLockedError: Another manager is writing to this directory.
            SaveError: The directory is not writable.
        """
        mode = assertion_mode(assertion, default=self._config.restore.assertion)
        if self._cluster is not None and self._cluster.multi_worker:
            with sharing_readers():
                return restore_together(
                    self._cluster,
                    self._restorer,
                    None,
                    None,
                    False,
                    mode,
                    self._leave_out(skip_mismatch, exclude),
                    reread=self._view.refresh,
                    start=self._claim,
                )
        fresh = self._claim()
        if fresh is not None:
            return fresh
        return self.restore(assertion=mode, skip_mismatch=skip_mismatch, exclude=exclude)

    def _claim(self) -> RestoreResult | None:
        """Takes the writer lock early; a fresh start when nothing is committed, else None."""
        self._writer.claim_early()
        return None if self._view.entries else self._restorer.fresh_start()


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
        if config.max_shard_bytes is not None:
            warn(
                f"{config.directory}: graph-mode managers (for_session) write one data file per "
                "device; CheckpointConfig(max_shard_bytes=...) is ignored for this one"
            )
        self._start(config, backend, clock)


def _as_step(step: Any) -> int:
    value = step.numpy() if hasattr(step, "numpy") else step
    try:
        as_int = int(value)
    except (TypeError, ValueError):
        as_int = -1
    if as_int < 0 or as_int != value:
        raise InvalidStepError(f"step must be a non-negative integer (received step={step!r})")
    return as_int
