"""Export for serving: a chosen checkpoint as a SavedModel, the running program left as it was.

A training loop can export its best checkpoint so far and go on training: every program
variable's value is copied first, the checkpoint is loaded into the program's objects, the
SavedModel is written into a folder beside `path` and renamed into place, and the copies are
assigned back whatever happened. Loading goes through the manager's restore pipeline (its
verification, walk-back and checks), without touching the save schedule.
"""

from __future__ import annotations

import os
import shutil
import uuid
from typing import Any

from ckptkit.backends.object_based import ObjectBasedBackend
from ckptkit.backends.saved_model import servable, write_saved_model
from ckptkit.config import Assertion
from ckptkit.errors import CheckpointExistsError
from ckptkit.restore import RestorePipeline
from ckptkit.status import RestoreResult
from ckptkit.storage import layout

__all__ = ["export_checkpoint"]


def export_checkpoint(
    backend: ObjectBasedBackend,
    restorer: RestorePipeline,
    path: str | os.PathLike[str],
    *,
    step: int | None,
    best: bool,
    mode: Assertion,
    signatures: Any,
    overwrite: bool,
    name: str | None,
) -> RestoreResult:
    """Loads the chosen checkpoint, writes it as a SavedModel at `path`, puts values back.

    Args:
        backend: The manager's objects.
        restorer: A restore pipeline over the manager's directory.
        path: The SavedModel folder to write (local).
        step: Export the checkpoint of this step; None: the newest (or the best).
        best: Export the best checkpoint by `Retention.monitor`.
        mode: The assertion the checkpoint must pass against the program.
        signatures: For a `tf.Module`: `tf.saved_model.save`'s signatures.
        overwrite: Replace a folder already at `path`.
        name: Which object to export, when the manager holds several.

    Returns:
        The restore of the checkpoint exported (its path, step and metrics).
    """
    target = os.path.abspath(layout.check_path(path))
    if "://" in os.fspath(path):
        raise ValueError(
            f"export writes a local SavedModel (received path={os.fspath(path)!r}); export "
            "locally, then copy the folder"
        )
    if os.path.exists(target) and not overwrite:
        raise CheckpointExistsError(
            f"{target} exists; pass overwrite=True to replace it, or choose another path"
        )
    parent, base = os.path.split(target)
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{base}.tmp-{uuid.uuid4().hex}")
    _, obj = servable(backend.top_objects(), name)  # before anything is loaded
    before = backend.values()
    try:
        result = restorer.run(step, None, best, mode)
        write_saved_model(obj, staging, signatures)
        _move_into_place(staging, target)
    finally:
        backend.put_back(before)
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _move_into_place(staging: str, target: str) -> None:
    """Renames the written folder to `target`; a folder there is renamed away first."""
    if not os.path.exists(target):
        os.replace(staging, target)
        return
    old = f"{staging}.old"
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
