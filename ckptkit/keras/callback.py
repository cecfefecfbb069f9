"""Keras 3: one callback with `ModelCheckpoint` and `BackupAndRestore` behaviour.

`CheckpointCallback` writes TF object-based checkpoints of the model, its optimizer, the
training position (epoch, batch, step) and the dropout RNG state into a ckptkit directory,
through `CheckpointManager`: committed atomically, verified on restore, kept by one
`Retention` policy (best k by a metric plus the newest n). When `fit` starts again after the
process died, it resumes at the same epoch *and batch*. Optionally, it also writes Keras-native
``.keras`` / ``.weights.h5`` files to `filepath`, with `ModelCheckpoint`'s options and meaning.

Example:
    >>> cb = CheckpointCallback(
    ...     "runs/exp1",
    ...     filepath="runs/exp1/best.keras",
    ...     save_best_only=True,
    ...     retention=ckptkit.Retention(max_to_keep=2, best_k=3, monitor="val_loss"),
    ... )  # doctest: +SKIP
    >>> model.fit(x, y, validation_data=(vx, vy), epochs=10, callbacks=[cb])  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import keras

from ckptkit.backends.tf_internals import set_initial_epoch
from ckptkit.config import CheckpointConfig, Recovery, Retention, Schedule, as_config
from ckptkit.errors import CheckpointExistsError, CheckpointSkippedWarning
from ckptkit.keras.export import KerasExport
from ckptkit.keras.resume import Progress, batches_done, build_from, seed_states
from ckptkit.keras.warm_start import warm_start
from ckptkit.manager import CheckpointManager
from ckptkit.retention import Mode
from ckptkit.status import RestoreResult
from ckptkit.storage import fs
from ckptkit.storage.layout import list_checkpoints, parse_step
from ckptkit.warn import warn

__all__ = ["CheckpointCallback"]

_MODES = ("auto", "min", "max")
# Written at the end of a successful fit that leaves checkpoints behind (best_k, keep_checkpoints).
FINISHED_RECORD = ".ckptkit.fit-finished.json"

# The manager of each directory's last `fit` in this process. `fit` interrupted by an exception
# (Ctrl-C in a notebook) never calls on_train_end; the next `fit` closes what it left open.
_OPEN: dict[str, CheckpointManager] = {}


class CheckpointCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Checkpoints `model.fit` for resumption, keeps the best, and exports Keras files.

    Checkpoints go to `directory` (or `CheckpointConfig.directory`) as ``<prefix>-<step>``,
    where the step counts the batches trained, and are plain TF object-based checkpoints of
    ``model`` and ``optimizer`` (plus ``progress`` and ``rng``): ``tf.train.Checkpoint(
    model=model, optimizer=model.optimizer).restore(path).expect_partial()`` reads them. Each
    records the logged metrics in its manifest (``ckptkit ls`` shows them), which
    `Retention(best_k=..., monitor=...)` ranks by.

    When `fit` starts and the directory has a checkpoint, the newest intact one is restored
    (a damaged one is skipped with `CheckpointSkippedWarning`), `fit` continues at its epoch,
    and the batches of that epoch already trained are skipped: they are read from the data
    but not trained on. The weights then match an uninterrupted run when the data arrives in
    the same order each time (no shuffling, or shuffling seeded per epoch). An unbuilt model
    is built from the first batch's shapes before loading. After `fit` returns, the
    checkpoints are removed (except the `best_k` best and `keep_every_steps` milestones), as
    `BackupAndRestore` does, unless `keep_checkpoints` is set; with none kept, so are the
    state and lock files (and the directory, when nothing else is in it), and running the
    script again trains from scratch.
    When checkpoints are kept, the directory records that its `fit` finished, and a rerun
    stops with `CheckpointExistsError` rather than resume a finished run or mix a new one into
    it (`resume_finished=True` trains on from the newest). A resumed `fit` that has no epoch
    left to train says so in a warning.

    `filepath`, `monitor`, `mode`, `save_best_only`, `save_weights_only`, `save_freq`,
    `initial_value_threshold` and `verbose` mean what they mean for
    `keras.callbacks.ModelCheckpoint`: at every save, a Keras file is written to `filepath`
    formatted with ``{epoch}``, ``{batch}`` and the logged metrics (``{val_loss:.2f}``);
    with `save_best_only`, only when `monitor` improved. Unlike `ModelCheckpoint`, files are
    written to a temporary name and renamed, and the best value survives a restart.

    Validation metrics are logged only at an epoch's end. So with a batch-level `save_freq` or
    `schedule`, the callback also saves at each epoch's end when `Retention.monitor` ranks
    checkpoints or `save_best_only` exports, and a batch-level save whose logs lack `monitor`
    leaves the export decision to the epoch's end (where `ModelCheckpoint` would warn and
    export every time).

    Args:
        directory: Where checkpoints go, or a full `CheckpointConfig` (its retention,
            restore policy, preemption, durability; its schedule when set explicitly).
        filepath: Optional Keras-native export path, ending in ``.keras`` (whole model) or
            ``.weights.h5`` (with `save_weights_only`).
        monitor: The metric `save_best_only` watches, as logged (``val_loss``).
        mode: ``"min"``, ``"max"``, or ``"auto"`` (the metric's own direction, as Keras).
        save_best_only: Export to `filepath` only when `monitor` improves.
        save_weights_only: Export weights (``.weights.h5``) instead of the whole model.
        save_freq: ``"epoch"`` to save at the end of each epoch, or N to save after every
            N batches trained in this `fit` (as `ModelCheckpoint` counts them: the first
            save comes N batches after `fit` starts or resumes, whatever the step).
        initial_value_threshold: The value `monitor` must beat for the first export.
        verbose: 1 prints a line for each save.
        schedule: Save by steps or seconds instead of `save_freq`:
            ``Schedule(every_steps=N)`` saves at each multiple of N of the global step (the
            optimizer's iterations), so a resumed or pre-trained model keeps one rhythm.
        retention: Which checkpoints to keep (overrides the config's).
        keep_checkpoints: Keep every retained checkpoint after a successful `fit`.
        resume_finished: When the directory holds the checkpoints kept by a `fit` that ran
            to its end, train on from the newest of them instead of stopping with
            `CheckpointExistsError`.
        async_save: Write checkpoints in the background while training goes on (see
            `CheckpointConfig.async_save`); None: as the config says. A background save's
            error stops `fit` at the next batch or epoch end; `fit` returns once the last
            save is committed.
        init_from: Another run's checkpoint (a prefix, or a directory: its newest intact
            one) to take the model's weights from when this `fit` starts fresh (a `fit`
            that resumes from its own directory ignores it). Only ``model`` is loaded: the
            optimizer, step and position start anew. At least one value must load.
        skip_mismatch: With `init_from`: leave out values whose shape or dtype changed (a
            new head), as `CheckpointManager.restore(skip_mismatch=True)`.
        exclude: With `init_from`: glob patterns of values never to load (``["*head*"]``).
        export_best_to: When `fit` ends, export the best checkpoint (by `Retention.monitor`,
            else by `monitor` and `mode`) as a SavedModel in this folder, replacing what is
            there (`CheckpointManager.export`); served with
            ``tf.saved_model.load(path).serve(x)``. `exported` says which checkpoint.
        recovery: Roll back past a diverged loss (NaN, infinite, above a bound), judged at
            each batch's end (`CheckpointManager.check_loss`): the newest good checkpoint is
            restored (model, optimizer), the metrics are reset so that the next batches are
            judged on their own (Keras's batch loss is the epoch's running mean), and `fit`
            goes on from the batch it was at. Overrides the config's `recovery`.
        clock: Monotonic seconds for time schedules; for tests.

    Raises:
        ValueError: Contradictory or invalid arguments, each named.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | CheckpointConfig,
        filepath: str | os.PathLike[str] | None = None,
        *,
        monitor: str = "val_loss",
        mode: Mode = "auto",
        save_best_only: bool = False,
        save_weights_only: bool = False,
        save_freq: Literal["epoch"] | int = "epoch",
        initial_value_threshold: float | None = None,
        verbose: int = 0,
        schedule: Schedule | None = None,
        retention: Retention | None = None,
        keep_checkpoints: bool = False,
        resume_finished: bool = False,
        async_save: bool | None = None,
        init_from: str | os.PathLike[str] | None = None,
        skip_mismatch: bool = False,
        exclude: Sequence[str] = (),
        export_best_to: str | os.PathLike[str] | None = None,
        recovery: Recovery | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES} (received mode={mode!r})")
        if save_freq != "epoch" and (
            isinstance(save_freq, bool) or not isinstance(save_freq, int) or save_freq <= 0
        ):
            raise ValueError(
                f"save_freq must be 'epoch' or a positive number of batches "
                f"(received save_freq={save_freq!r})"
            )
        config = as_config(directory, argument="directory")
        explicit_schedule = "schedule" in config.model_fields_set
        if save_freq != "epoch" and (schedule is not None or explicit_schedule):
            raise ValueError(
                f"pass save_freq={save_freq!r} or a schedule, not both: save_freq=N saves "
                "after every N batches of this fit (as ModelCheckpoint), "
                "Schedule(every_steps=N) at every multiple N of the global step"
            )
        if init_from is None and (skip_mismatch or exclude):
            raise ValueError(
                "skip_mismatch and exclude choose what init_from loads, and no init_from was "
                "given; for this run's own restores use RestorePolicy(skip_mismatch=..., "
                "exclude=...) in the CheckpointConfig"
            )
        if isinstance(exclude, str):
            raise TypeError(f"exclude takes a list of glob patterns (received {exclude!r})")
        self.init_from = None if init_from is None else os.fspath(init_from)
        self._skip_mismatch, self._exclude = skip_mismatch, tuple(exclude)
        self.initialized: RestoreResult | None = None
        self.export_best_to = None if export_best_to is None else os.fspath(export_best_to)
        self.exported: RestoreResult | None = None
        self.filepath = None if filepath is None else os.fspath(filepath)
        self._export_to = (
            None
            if self.filepath is None
            else KerasExport(
                self.filepath,
                monitor=monitor,
                mode=mode,
                save_best_only=save_best_only,
                save_weights_only=save_weights_only,
                best=initial_value_threshold,
                verbose=verbose,
            )
        )
        if save_best_only and self.filepath is None:
            raise ValueError(
                "save_best_only chooses which Keras files are written to filepath, and no "
                "filepath was given; to keep the best checkpoints in the directory use "
                "retention=Retention(best_k=1, monitor=...)"
            )
        updates: dict[str, Any] = {}
        if async_save is not None:
            updates["async_save"] = async_save
        if recovery is not None:
            updates["recovery"] = recovery
        if retention is not None:
            updates["retention"] = retention
        ranking = updates.get("retention", config.retention)
        if export_best_to is not None and ranking.monitor is None:
            updates["retention"] = ranking.model_copy(update={"monitor": monitor, "mode": mode})
        if schedule is not None:
            updates["schedule"] = schedule
        elif not explicit_schedule:
            updates["schedule"] = Schedule(every_steps=None, every_secs=None)
        self.config = config.model_copy(update=updates)
        self.save_freq = save_freq
        self.verbose = verbose
        self.keep_checkpoints = keep_checkpoints
        self.resume_finished = resume_finished
        self._clock = clock
        # Validation metrics exist only in the epoch's logs: a batch-level schedule also saves
        # at each epoch end when something ranks checkpoints or exports by a metric.
        self._save_each_epoch = (
            (save_freq == "epoch" and schedule is None and not explicit_schedule)
            or self.config.retention.monitor is not None
            or (save_best_only and self.filepath is not None)
        )
        self._manager: CheckpointManager | None = None
        self._progress = Progress()
        self._skip = 0
        # ModelCheckpoint's count for save_freq=N: batches trained since the last batch save.
        self._batches_since_save = 0
        self._last_batch: int | None = None
        self.restored: RestoreResult | None = None
        if (
            isinstance(save_freq, int)
            or self.config.schedule.periodic
            or self.config.preemption is not None
            or self.config.recovery is not None
        ):
            # Only then: a batch hook makes Keras wait for every batch's logs, so a callback
            # that saves per epoch must not have one.
            self.on_train_batch_end = self._on_train_batch_end

    @property
    def best(self) -> float | None:
        """The best `monitor` value exported so far (`save_best_only`), as `ModelCheckpoint`."""
        return None if self._export_to is None else self._export_to.best

    @property
    def manager(self) -> CheckpointManager | None:
        """The `CheckpointManager` of the running (or last) `fit`, or None before it."""
        return self._manager

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Restores the newest intact checkpoint, if any, and arranges where `fit` goes on."""
        left_open = _OPEN.pop(os.path.abspath(self.config.directory), None)
        if left_open is not None:
            left_open.close()
        self._manager, self.restored, self._skip = None, None, 0
        self._batches_since_save, self._last_batch = 0, None
        self._progress.move_to(0, 0)
        self._check_finished()
        # A built model is restored here, once; an unbuilt one needs its epoch before Keras
        # builds it, so only the position is read now and the rest at the first batch.
        manager = self._open() if self.model.built else None
        resumed = self.restored is not None if manager is not None else self._load_position()
        if not resumed:
            if manager is not None and self.config.schedule.save_first_step:
                manager.maybe_save(self._step(), metadata=self._position())  # as the Estimator
            return  # an unbuilt model's manager opens at the first batch's end
        set_initial_epoch(self.model, self._progress.at_epoch)
        self._skip = self._progress.at_batch
        epochs = (self.params or {}).get("epochs")
        if isinstance(epochs, int) and self._progress.at_epoch >= epochs:
            warn(
                f"CheckpointCallback: the newest checkpoint in {self.config.directory} is at "
                f"the end of epoch {self._progress.at_epoch}, so fit(epochs={epochs}) has no "
                f"epoch left to train and trains nothing; pass epochs > "
                f"{self._progress.at_epoch} to train on, or use a new directory to train from "
                "scratch"
            )
        if self._skip or not self.model.built:
            self._wrap_train_function()

    def _check_finished(self) -> None:
        """Stops a rerun of a finished `fit` whose kept checkpoints it would mix with its own.

        Raises:
            CheckpointExistsError: The directory holds what a finished `fit` kept, and
                `resume_finished` is not set.
        """
        record_path = os.path.join(self.config.directory, FINISHED_RECORD)
        try:
            record = json.loads(fs.read_bytes(record_path, limit=1 << 16))
        except FileNotFoundError:
            return
        except (OSError, ValueError):
            record = {}
        kept = [os.path.basename(i.path) for i in list_checkpoints(self.config.directory)]
        if kept and not self.resume_finished:
            at = record.get("epoch") if isinstance(record, dict) else None
            raise CheckpointExistsError(
                f"{self.config.directory} holds the checkpoints kept by a fit that finished"
                f"{f' after epoch {at}' if isinstance(at, int) else ''} ({', '.join(kept)}); "
                "a new fit would write over them and mix with them. Pass "
                "resume_finished=True to train on from the newest, or use a new directory "
                "(or remove this one) to train from scratch"
            )
        fs.remove(record_path)  # nothing kept, or training on: this fit is not finished yet

    def _load_position(self) -> bool:
        """Loads only the training position of the newest intact checkpoint, if there is one.

        For an unbuilt model: `fit` needs the epoch before the model may be built; the full
        restore follows in `_open`.
        """
        with CheckpointManager(self.config, progress=self._progress) as probe:
            if probe.latest is None:
                return False
            with warnings.catch_warnings():
                # The real restore in _open() walks back the same way and warns.
                warnings.simplefilter("ignore", CheckpointSkippedWarning)
                probe.restore(assertion="partial")
        self._progress.load()
        return True

    def _open(self) -> CheckpointManager:
        """Creates the manager for the built model; restores the newest intact checkpoint.

        The manager does its own walk-back, so that it is the one that replaces a damaged
        checkpoint when it saves that step again. It takes the writer lock now, so a second
        job on the directory stops before it trains.
        """
        model = self.model
        if model.optimizer is not None and not model.optimizer.built:
            # Optimizer slots must exist to be loaded, and to be checkpointed at all.
            model.optimizer.build(model.trainable_variables)
        self._manager = CheckpointManager(
            self.config,
            clock=self._clock,
            model=model,
            optimizer=model.optimizer,
            progress=self._progress,
            rng=seed_states(model),
        )
        _OPEN[os.path.abspath(self.config.directory)] = manager = self._manager
        result = manager.restore_or_initialize()
        if not result.restored:
            if self.init_from is not None:
                self._warm_start(model)
            return manager
        self.restored = result
        self._progress.load()
        best = result.metadata.get("export_best")
        if self._export_to is not None and isinstance(best, (int, float)):
            self._export_to.best = float(best)  # so a restart does not export a worse one
        if self.verbose > 0:
            print(
                f"\nCheckpointCallback: resumed from epoch {self._progress.at_epoch + 1} "
                f"(step {result.step}, {self._progress.at_batch} batches of the epoch done) "
                f"of {self.restored.path}"
            )
        return manager

    def _warm_start(self, model: keras.Model) -> None:
        """A fresh `fit`: the model's weights from `init_from` (see `warm_start`)."""
        assert self.init_from is not None
        self.initialized = result = warm_start(
            self.init_from,
            model,
            storage=self.config.storage,
            skip_mismatch=self._skip_mismatch,
            exclude=self._exclude,
        )
        if self.verbose > 0 and result.report is not None:
            left = len(result.report.left_out)
            print(
                f"\nCheckpointCallback: started from {result.path} "
                f"({len(result.report.matched)} values loaded"
                + (f", {left} left out: see .initialized.report" if left else "")
                + ")"
            )

    def _ensure_open(self) -> CheckpointManager:
        return self._manager if self._manager is not None else self._open()

    def _wrap_train_function(self) -> None:
        """Builds and loads an unbuilt model on the first batch, then skips trained batches."""
        model = self.model
        original = model.train_function
        per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

        def train_function(iterator: Any) -> Any:
            if self._manager is None:
                build_from(model, iterator.element_spec)
                self._open()
            if self._skip > 0:
                for _ in range(min(per_call, self._skip)):
                    next(iterator)
                self._skip -= min(per_call, self._skip)
                return {}
            model.train_function = original
            return original(iterator)

        model.train_function = train_function

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Notes the epoch."""
        if epoch != self._progress.at_epoch:
            self._progress.move_to(epoch, 0)  # else: the epoch a restart resumes in

    def _on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        done = batches_done(self.model, (self.params or {}).get("steps"), batch)
        if self._skip > 0 or done <= self._progress.at_batch:
            self._last_batch = batch
            return  # a batch skipped on resume
        epoch = self._progress.at_epoch
        if self._rolled_back(epoch, done, logs):
            return
        counted = self._count(batch)
        self._progress.move_to(epoch, done)
        manager = self._ensure_open()
        step = self._step()
        due = manager.due(step)  # the schedule's, or a termination signal
        if not (counted or due):
            return
        if self._save_each_epoch and done == (self.params or {}).get("steps"):
            return  # the epoch-end save follows at this step, with validation metrics
        self._save(manager, step, self._progress.at_epoch, batch, logs, schedule=due)

    def _rolled_back(self, epoch: int, done: int, logs: Mapping[str, Any] | None) -> bool:
        """With `recovery`: judges the batch's loss; after a rollback, `fit` goes on here."""
        if self.config.recovery is None or not logs or "loss" not in logs:
            return False
        if not self._ensure_open().check_loss(logs["loss"]):
            return False
        self.model.reset_metrics()  # the running mean would stay NaN for the whole epoch
        self._progress.move_to(epoch, done)  # the checkpoint's position was restored with it
        return True

    def _count(self, batch: int) -> bool:
        """`ModelCheckpoint`'s rule for ``save_freq=N``: N batches trained in this `fit`.

        With ``steps_per_execution`` > 1 Keras reports every few batches; the batches in
        between count too.
        """
        if not isinstance(self.save_freq, int):
            return False
        last, self._last_batch = self._last_batch, batch
        self._batches_since_save += batch + 1 if last is None or batch <= last else batch - last
        if self._batches_since_save < self.save_freq:
            return False
        self._batches_since_save = 0
        return True

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Saves (with ``save_freq="epoch"``) with the epoch's logs as metrics."""
        self._progress.move_to(epoch + 1, 0)
        if not self._save_each_epoch:
            return
        manager = self._ensure_open()
        step = self._step()
        if not _saved_at(manager, step):
            self._save(manager, step, epoch, None, logs, schedule=False)

    def _step(self) -> int:
        """The number of batches trained, which names checkpoints: the optimizer's count."""
        return int(self.model.optimizer.iterations.numpy())  # Keras 3.3 variables lack __int__

    def _save(
        self,
        manager: CheckpointManager,
        step: int,
        epoch: int,
        batch: int | None,
        logs: Mapping[str, Any] | None,
        *,
        schedule: bool,
    ) -> None:
        logs = dict(logs or {})
        export = self._export_to
        if export is not None and export.wanted(
            self.model, epoch, batch, logs, later=self._save_each_epoch
        ):  # first, so a crash in between costs a checkpoint, never the best file
            export.write(self.model, epoch, batch, logs)
        metadata = self._position()
        if export is not None and export.best is not None:
            metadata["export_best"] = float(export.best)
        if schedule:
            saved = manager.maybe_save(step, metadata=metadata, metrics=_numbers(logs))
        else:
            saved = manager.save(step, metadata=metadata, metrics=_numbers(logs))
        if saved is not None and self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: saved checkpoint {saved}")

    def _position(self) -> dict[str, Any]:
        """Writes the position into its variables for a save; returns it as manifest metadata."""
        progress = self._progress
        progress.store()
        return {"epoch": progress.at_epoch, "batch": progress.at_batch}

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """After a successful `fit`: exports the best, removes the backups, closes.

        With `keep_checkpoints`, saves the last step first when `Schedule.save_last_step`;
        with `export_best_to`, exports the best checkpoint before anything is removed.
        """
        set_initial_epoch(self.model, None)  # Keras would otherwise reuse it in the next fit
        manager = self._manager
        if manager is None:
            return
        if self.keep_checkpoints:
            manager.finish(self._step(), metadata=self._position())  # Schedule.save_last_step
        manager.wait()  # the last save is committed before the directory is tidied or left
        if self.export_best_to is not None:
            self.exported = manager.export(self.export_best_to, best=True, overwrite=True)
        if not self.keep_checkpoints:
            self._remove_backups(manager)
        kept = [os.path.basename(info.path) for info in manager.checkpoints]
        if kept:  # so that a rerun does not take them for an interrupted fit's
            record = {"epoch": self._progress.at_epoch, "step": self._step(), "kept": kept}
            fs.write_atomic(
                os.path.join(self.config.directory, FINISHED_RECORD),
                json.dumps(record).encode(),
                durable=self.config.durable,
            )
        manager.close(tidy=True)  # with nothing kept, nothing is left: as BackupAndRestore
        _OPEN.pop(os.path.abspath(self.config.directory), None)

    def _remove_backups(self, manager: CheckpointManager) -> None:
        """After a successful `fit`: drop checkpoints kept only to resume, as BackupAndRestore.

        The `best_k` best and the `keep_every_steps` milestones stay.
        """
        retention = self.config.retention
        best_k, every = retention.best_k, retention.keep_every_steps
        keep = {info.path for info in manager.ranked()[:best_k]} if best_k else set()
        for info in manager.checkpoints:
            milestone = every is not None and info.step is not None and info.step % every == 0
            if info.path not in keep and info.step is not None and not milestone:
                manager.delete(info.step)


def _saved_at(manager: CheckpointManager, step: int) -> bool:
    """Whether the newest checkpoint, committed or being written, is the one of `step`."""
    in_flight = manager.in_flight
    if in_flight is not None:
        return parse_step(in_flight) == step
    latest = manager.latest
    return latest is not None and latest.step == step


def _numbers(logs: Mapping[str, Any] | None) -> dict[str, float]:
    """The finite scalar values of Keras `logs`, as a manifest can store them."""
    numbers = {}
    for key, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers[key] = number
    return numbers
