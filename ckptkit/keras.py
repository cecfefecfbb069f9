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
from collections.abc import Callable, Mapping
from typing import Any, Literal

import keras
import tensorflow as tf

from ckptkit import fs
from ckptkit.config import CheckpointConfig, Retention, Schedule, as_config
from ckptkit.errors import CheckpointExistsError, CheckpointSkippedWarning
from ckptkit.manager import CheckpointManager
from ckptkit.retention import Mode, direction, is_better
from ckptkit.status import RestoreResult
from ckptkit.storage import list_checkpoints
from ckptkit.tf_internals import keras_metric_direction, set_initial_epoch
from ckptkit.warn import warn

__all__ = ["CheckpointCallback"]

_MODES = ("auto", "min", "max")
_EXPORT_SUFFIXES = (".keras", ".h5")
_WEIGHTS_SUFFIX = ".weights.h5"
# What Keras reports to on_train_batch_end with steps_per_execution > 1 changed in 3.11.
_REPORTS_FIRST_BATCH = tuple(int(part) for part in keras.version().split(".")[:2]) < (3, 11)
# Written at the end of a successful fit that leaves checkpoints behind (best_k, keep_checkpoints).
FINISHED_RECORD = ".ckptkit.fit-finished.json"

# The manager of each directory's last `fit` in this process. `fit` interrupted by an exception
# (Ctrl-C in a notebook) never calls on_train_end; the next `fit` closes what it left open.
_OPEN: dict[str, CheckpointManager] = {}


class _Progress(tf.Module):  # type: ignore[misc]
    """Where training is (the epoch, and the batches of it done), saved with the model.

    Plain ints are kept beside the variables, which are written only before a save.
    """

    def __init__(self) -> None:
        super().__init__(name="progress")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch")
        self.at_epoch, self.at_batch = 0, 0

    def move_to(self, epoch: int, batch: int) -> None:
        self.at_epoch, self.at_batch = epoch, batch

    def store(self) -> None:
        self.epoch.assign(self.at_epoch)
        self.batch.assign(self.at_batch)

    def load(self) -> None:
        self.at_epoch, self.at_batch = int(self.epoch), int(self.batch)


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
    checkpoints are removed (except the `best_k` best), as `BackupAndRestore` does, unless
    `keep_checkpoints` is set; with none kept, so are the state and lock files (and the
    directory, when nothing else is in it), and running the script again trains from scratch.
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
        self.filepath = None if filepath is None else os.fspath(filepath)
        _check_filepath(self.filepath, save_weights_only=save_weights_only)
        if save_best_only and self.filepath is None:
            raise ValueError(
                "save_best_only chooses which Keras files are written to filepath, and no "
                "filepath was given; to keep the best checkpoints in the directory use "
                "retention=Retention(best_k=1, monitor=...)"
            )
        updates: dict[str, Any] = {}
        if retention is not None:
            updates["retention"] = retention
        if schedule is not None:
            updates["schedule"] = schedule
        elif not explicit_schedule:
            updates["schedule"] = Schedule(every_steps=None, every_secs=None)
        self.config = config.model_copy(update=updates)
        self.monitor = monitor
        self.mode = mode
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self.verbose = verbose
        self.keep_checkpoints = keep_checkpoints
        self.resume_finished = resume_finished
        self.best = initial_value_threshold
        self._direction: Literal["min", "max"] | None = None
        self._clock = clock
        # Validation metrics exist only in the epoch's logs: a batch-level schedule also saves
        # at each epoch end when something ranks checkpoints or exports by a metric.
        self._save_each_epoch = (
            (save_freq == "epoch" and schedule is None and not explicit_schedule)
            or self.config.retention.monitor is not None
            or (save_best_only and self.filepath is not None)
        )
        self._manager: CheckpointManager | None = None
        self._progress = _Progress()
        self._skip = 0
        # ModelCheckpoint's count for save_freq=N: batches trained since the last batch save.
        self._batches_since_save = 0
        self._last_batch: int | None = None
        self.restored: RestoreResult | None = None
        if (
            isinstance(save_freq, int)
            or self.config.schedule.periodic
            or self.config.preemption is not None
        ):
            # Only then: a batch hook makes Keras wait for every batch's logs, so a callback
            # that saves per epoch must not have one.
            self.on_train_batch_end = self._on_train_batch_end

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
            rng=_seed_states(model),
        )
        _OPEN[os.path.abspath(self.config.directory)] = manager = self._manager
        result = manager.restore_or_initialize()
        if not result.restored:
            return manager
        self.restored = result
        self._progress.load()
        best = result.metadata.get("export_best")
        if isinstance(best, (int, float)):
            self.best = float(best)  # so a restart does not export a worse "best" file
        if self.verbose > 0:
            print(
                f"\nCheckpointCallback: resumed from {self.restored.path} (epoch "
                f"{self._progress.at_epoch + 1}, {self._progress.at_batch} batches done)"
            )
        return manager

    def _ensure_open(self) -> CheckpointManager:
        return self._manager if self._manager is not None else self._open()

    def _wrap_train_function(self) -> None:
        """Builds and loads an unbuilt model on the first batch, then skips trained batches."""
        model = self.model
        original = model.train_function
        per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))

        def train_function(iterator: Any) -> Any:
            if self._manager is None:
                _build_from(model, iterator.element_spec)
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
        done = self._batches_done(batch)
        if self._skip > 0 or done <= self._progress.at_batch:
            self._last_batch = batch
            return  # a batch skipped on resume
        counted = self._count(batch)
        self._progress.move_to(self._progress.at_epoch, done)
        manager = self._ensure_open()
        step = self._step()
        due = manager.due(step)  # the schedule's, or a termination signal
        if not (counted or due):
            return
        if self._save_each_epoch and done == (self.params or {}).get("steps"):
            return  # the epoch-end save follows at this step, with validation metrics
        self._save(manager, step, self._progress.at_epoch, batch, logs, schedule=due)

    def _batches_done(self, batch: int) -> int:
        """How many batches of the epoch are done once the call that Keras reports ends.

        With ``steps_per_execution`` = N, each call trains N batches; Keras before 3.11
        reports the call's first batch, later versions its first + N - 1.
        """
        per_call = max(1, int(getattr(self.model, "steps_per_execution", 1) or 1))
        first = batch if _REPORTS_FIRST_BATCH else batch - per_call + 1
        steps = (self.params or {}).get("steps")
        return first + per_call if not isinstance(steps, int) else min(first + per_call, steps)

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
        latest = manager.latest
        if latest is None or latest.step != step:  # else saved at this step already
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
        export = self.filepath is not None and self._should_export(epoch, batch, logs)
        if export:  # first, so a crash in between costs a checkpoint, never the best file
            self._export(epoch, batch, logs)
        metadata = self._position()
        if self.best is not None:
            metadata["export_best"] = float(self.best)
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

    def _export(self, epoch: int, batch: int | None, logs: dict[str, Any]) -> None:
        assert self.filepath is not None
        path = _format_path(self.filepath, epoch, batch, logs)
        directory = os.path.dirname(path)
        if directory:
            tf.io.gfile.makedirs(directory)
        local = not fs.is_remote(path)
        temporary = (
            os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
            if local
            else path
        )
        try:
            if self.save_weights_only:
                self.model.save_weights(temporary, overwrite=True)
            else:
                self.model.save(temporary, overwrite=True)
            if local:
                os.replace(temporary, path)
        finally:
            if local and os.path.exists(temporary):
                os.remove(temporary)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")

    def _should_export(self, epoch: int, batch: int | None, logs: dict[str, Any]) -> bool:
        if not self.save_best_only:
            return True
        current = logs.get(self.monitor)
        if current is None and batch is not None and self._save_each_epoch:
            return False  # judged at the epoch's end, where validation metrics are logged
        if current is None:
            warn(f"Can save best model only with {self.monitor} available.")
            return True
        if self._direction is None:
            self._direction = _monitor_direction(self.model, self.monitor, self.mode)
        value = float(current)
        if is_better(value, self.best, self._direction):
            if self.verbose > 0:
                path = _format_path(self.filepath or "", epoch, batch, logs)
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                    f"{value:.5f}, saving model to {path}"
                )
            self.best = value
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best}")
        return False

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """After a successful `fit`: removes the backups (see `keep_checkpoints`), closes.

        With `keep_checkpoints`, saves the last step first when `Schedule.save_last_step`.
        """
        set_initial_epoch(self.model, None)  # Keras would otherwise reuse it in the next fit
        manager = self._manager
        if manager is None:
            return
        if self.keep_checkpoints:
            manager.finish(self._step(), metadata=self._position())  # Schedule.save_last_step
        else:
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
        """After a successful `fit`: drop checkpoints kept only to resume, as BackupAndRestore."""
        best_k = self.config.retention.best_k
        keep = {info.path for info in manager.ranked()[:best_k]} if best_k else set()
        for info in manager.checkpoints:
            if info.path not in keep and info.step is not None:
                manager.delete(info.step)


def _check_filepath(filepath: str | None, *, save_weights_only: bool) -> None:
    if filepath is None:
        return
    if save_weights_only and not filepath.endswith(_WEIGHTS_SUFFIX):
        raise ValueError(
            "with save_weights_only=True, filepath must end in '.weights.h5' (the Keras "
            f"weights format). Received: filepath={filepath!r}"
        )
    if not save_weights_only and (
        filepath.endswith(_WEIGHTS_SUFFIX) or not filepath.endswith(_EXPORT_SUFFIXES)
    ):
        raise ValueError(
            "filepath must end in '.keras' (the Keras model format), or in '.weights.h5' "
            f"with save_weights_only=True. Received: filepath={filepath!r}"
        )


def _format_path(filepath: str, epoch: int, batch: int | None, logs: dict[str, Any]) -> str:
    """`ModelCheckpoint._get_file_path`'s rule: ``{epoch}`` and ``{batch}`` count from 1."""
    try:
        if batch is None or "batch" in logs:
            return filepath.format(epoch=epoch + 1, **logs)
        return filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
    except KeyError as e:
        raise KeyError(
            f"cannot format filepath {filepath!r}: {e} is not among the logged values "
            f"{sorted(logs)} (nor epoch/batch); use one of those placeholders"
        ) from e


def _monitor_direction(model: Any, monitor: str, mode: Mode) -> Literal["min", "max"]:
    """Keras's rule: "loss" goes down, else the metric object's own direction, else the name."""
    if mode == "auto" and monitor.removeprefix("val_") != "loss":
        for metric in _compiled_metrics(model):
            way = keras_metric_direction(metric)
            if metric.name == monitor.removeprefix("val_") and way is not None:
                return "max" if way == "up" else "min"
    found = direction(monitor, mode)
    if found is None:
        raise ValueError(
            f"CheckpointCallback cannot tell whether lower or higher {monitor!r} is better; "
            "pass mode='min' or mode='max'"
        )
    return found


def _compiled_metrics(model: Any) -> list[Any]:
    found: list[Any] = []
    for metric in getattr(model, "metrics", []):
        found.extend(getattr(metric, "metrics", [metric]))
    return found


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


def _seed_states(model: Any) -> list[Any]:
    """The dropout (SeedGenerator) states, which Keras leaves out of TF checkpoints."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _build_from(model: Any, element_spec: Any) -> None:
    """Builds `model` by calling it on symbolic inputs shaped like the data's features."""
    features = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    inputs = tf.nest.map_structure(
        lambda spec: keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name),
        features,
    )
    model(inputs)
