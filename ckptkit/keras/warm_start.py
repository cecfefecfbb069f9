"""A `fit` that starts from another run's checkpoint: the model's weights, nothing else.

What `tf.estimator.WarmStartSettings` did for Estimators: a new run (a new head, another task)
begins with the weights of a run that trained before, while its own directory stays its own.
Only the model's weights are taken: the other run's step, position and optimizer state are not
this run's. A Keras model tracks its optimizer, so the checkpoint's optimizer values match
this run's optimizer and load with the model; they are put back as they were, and the
optimizer starts fresh. `skip_mismatch` and `exclude` leave out what changed
(`CheckpointManager.restore`); the optimizer's slots are named after their variables
(``adam/sequential_head_kernel_momentum``), so ``exclude=["*head*"]`` covers them too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ckptkit.config import CheckpointConfig, Storage
from ckptkit.manager import CheckpointManager
from ckptkit.status import RestoreResult
from ckptkit.storage import fs, layout

__all__ = ["warm_start"]


def warm_start(
    source: str,
    model: Any,
    *,
    storage: Storage,
    skip_mismatch: bool,
    exclude: Sequence[str],
) -> RestoreResult:
    """Loads the model's weights from `source` into `model` (built).

    Args:
        source: A checkpoint prefix, or a directory (its newest intact checkpoint), written
            by `CheckpointCallback` or any checkpoint whose root holds the model as ``model``.
        model: The Keras model of this run, built, with its optimizer built if it has one.
        storage: How to reach `source` when it is remote (this run's `Storage`).
        skip_mismatch: Leave out values whose shape or dtype differ.
        exclude: Glob patterns of values never to load.

    Returns:
        The restore's result; its report names what was left out.

    Raises:
        CheckpointNotFoundError: Nothing at `source`.
        RestoreMismatchError: Nothing of the model matched (the wrong checkpoint), or a
            mismatch that `skip_mismatch` does not allow.
    """
    prefix = None if fs.isdir(source) else layout.resolve_checkpoint(source)
    directory = source if prefix is None else os.path.dirname(prefix)
    config = CheckpointConfig(directory=directory, storage=storage)
    optimizer = getattr(model, "optimizer", None)
    fresh = [(v, v.numpy()) for v in getattr(optimizer, "variables", ())]
    with CheckpointManager(config, model=model) as reader:  # reads only: takes no lock
        result = reader.restore(
            path=prefix,
            assertion="nontrivial_match",
            skip_mismatch=skip_mismatch,
            exclude=exclude,
        )
    for variable, value in fresh:
        variable.assign(value)
    return result
