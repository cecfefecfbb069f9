"""The `ModelCheckpoint` half of `CheckpointCallback`: Keras-native files written to `filepath`.

Which files (every save, or only when `monitor` improved), under which names (``{epoch}``,
``{batch}`` and the logged metrics), and writing each under a temporary name that is renamed
once whole, so a crash never leaves a half-written "best" file.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import tensorflow as tf

from ckptkit.backends.tf_internals import keras_metric_direction
from ckptkit.retention import Mode, direction, is_better
from ckptkit.storage import fs
from ckptkit.warn import warn

__all__ = ["KerasExport", "check_filepath"]

_EXPORT_SUFFIXES = (".keras", ".h5")
_WEIGHTS_SUFFIX = ".weights.h5"


class KerasExport:
    """Writes a model to `filepath` as `ModelCheckpoint` would.

    Args:
        filepath: Ends in ``.keras`` (whole model) or ``.weights.h5`` (`save_weights_only`).
        monitor: The metric `save_best_only` watches, as logged.
        mode: ``"min"``, ``"max"`` or ``"auto"`` (the metric's own direction, as Keras).
        save_best_only: Write only when `monitor` improved on `best`.
        save_weights_only: Write weights instead of the whole model.
        best: The value `monitor` must beat (`initial_value_threshold`, or the best so far
            when a run resumes).
        verbose: 1 prints a line for each decision and write, as `ModelCheckpoint`.

    Raises:
        ValueError: `filepath` does not end as the format requires.
    """

    def __init__(
        self,
        filepath: str,
        *,
        monitor: str,
        mode: Mode,
        save_best_only: bool,
        save_weights_only: bool,
        best: float | None,
        verbose: int,
    ) -> None:
        check_filepath(filepath, save_weights_only=save_weights_only)
        self.filepath = filepath
        self.monitor = monitor
        self.mode = mode
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.best = best
        self.verbose = verbose
        self.direction: Literal["min", "max"] | None = None

    def wanted(
        self, model: Any, epoch: int, batch: int | None, logs: dict[str, Any], *, later: bool
    ) -> bool:
        """Whether this save writes a file; with `save_best_only`, updates `best`.

        Args:
            model: The model (for its metrics' directions).
            epoch: The epoch, from 0.
            batch: The batch index, or None at an epoch's end.
            logs: The logged values.
            later: The epoch's end will decide (it logs validation metrics) when `monitor`
                is missing from a batch's logs.
        """
        if not self.save_best_only:
            return True
        current = logs.get(self.monitor)
        if current is None and batch is not None and later:
            return False  # judged at the epoch's end, where validation metrics are logged
        if current is None:
            warn(f"Can save best model only with {self.monitor} available.")
            return True
        if self.direction is None:
            self.direction = monitor_direction(model, self.monitor, self.mode)
        value = float(current)
        if is_better(value, self.best, self.direction):
            if self.verbose > 0:
                path = format_path(self.filepath, epoch, batch, logs)
                print(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best} to "
                    f"{value:.5f}, saving model to {path}"
                )
            self.best = value
            return True
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best}")
        return False

    def write(self, model: Any, epoch: int, batch: int | None, logs: dict[str, Any]) -> None:
        """Writes the file for this save: a temporary name, then a rename (local paths)."""
        path = format_path(self.filepath, epoch, batch, logs)
        directory = os.path.dirname(path)
        if directory:
            tf.io.gfile.makedirs(directory)
        local = not fs.is_remote(path)
        # Keras picks the format from the name's ending, so the temporary name keeps it.
        temporary = (
            os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(path)}")
            if local
            else path
        )
        try:
            if self.save_weights_only:
                model.save_weights(temporary, overwrite=True)
            else:
                model.save(temporary, overwrite=True)
            if local:
                os.replace(temporary, path)
        finally:
            if local and os.path.exists(temporary):
                os.remove(temporary)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: finished saving model to {path}")


def check_filepath(filepath: str, *, save_weights_only: bool) -> None:
    """Refuses a `filepath` whose ending Keras would not write (as `ModelCheckpoint` does).

    Raises:
        ValueError: The ending does not fit `save_weights_only`.
    """
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


def format_path(filepath: str, epoch: int, batch: int | None, logs: dict[str, Any]) -> str:
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


def monitor_direction(model: Any, monitor: str, mode: Mode) -> Literal["min", "max"]:
    """Keras's rule: "loss" goes down, else the metric object's own direction, else the name.

    Raises:
        ValueError: Nothing tells the direction; `mode` must say it.
    """
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
