"""ckptkit: a thin, typed SDK over TensorFlow's checkpoint APIs.

One `CheckpointManager` saves, restores and lists checkpoints, driven by frozen pydantic configs,
with restore checks that name every mismatch; `inspect` and `diff` read any TF checkpoint.

Example:
    >>> import ckptkit                                                    # doctest: +SKIP
    >>> cfg = ckptkit.CheckpointConfig(directory="runs/exp1")             # doctest: +SKIP
    >>> mgr = ckptkit.CheckpointManager(cfg, model=model, step=step)      # doctest: +SKIP
    >>> mgr.restore_or_initialize()                                       # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ckptkit._version import __version__

# Light modules (pydantic and the standard library only) are imported at once.
from ckptkit.config import (
    Assertion,
    CheckpointConfig,
    Preemption,
    Recovery,
    RestorePolicy,
    Retention,
    Schedule,
    Storage,
)
from ckptkit.errors import (
    CheckpointExistsError,
    CheckpointKeyError,
    CheckpointNotFoundError,
    CheckpointSkippedWarning,
    CkptkitError,
    CorruptCheckpointError,
    DirectoryLockedError,
    DiskFullError,
    DivergenceError,
    FormatError,
    IncompatibleCheckpointsError,
    InvalidMetadataError,
    InvalidStepError,
    KeyMapError,
    MissingExtraError,
    RestoreMismatchError,
    SaveError,
    ShapeMismatchError,
    StorageUnavailableError,
    TrackableError,
    UploadError,
    WorkerLostError,
)
from ckptkit.status import Mismatch, RestoreReport, RestoreResult

if TYPE_CHECKING:
    from ckptkit.averaging import Averaged, average
    from ckptkit.manager import CheckpointManager
    from ckptkit.migration import convert, migrate
    from ckptkit.reading.inspection import (
        CheckpointContents,
        CheckpointDiff,
        KeyChange,
        VariableInfo,
        diff,
        inspect,
        read_tensor,
    )
    from ckptkit.reading.verification import CheckpointVerdict, Problem, VerifyReport, verify
    from ckptkit.reading.weights_export import export_weights
    from ckptkit.session_hook import CheckpointHook
    from ckptkit.storage.layout import CheckpointInfo, list_checkpoints
    from ckptkit.storage.manifest import SaveCost

# Names whose modules import TensorFlow load on first use, so that `import ckptkit` (and the
# `ckptkit` command's start-up) does not pay for TensorFlow before it is needed.
_LAZY = {
    "Averaged": "ckptkit.averaging",
    "CheckpointContents": "ckptkit.reading.inspection",
    "CheckpointDiff": "ckptkit.reading.inspection",
    "CheckpointInfo": "ckptkit.storage.layout",
    "CheckpointHook": "ckptkit.session_hook",
    "CheckpointManager": "ckptkit.manager",
    "CheckpointVerdict": "ckptkit.reading.verification",
    "KeyChange": "ckptkit.reading.inspection",
    "VariableInfo": "ckptkit.reading.inspection",
    "average": "ckptkit.averaging",
    "convert": "ckptkit.migration",
    "diff": "ckptkit.reading.inspection",
    "export_weights": "ckptkit.reading.weights_export",
    "inspect": "ckptkit.reading.inspection",
    "list_checkpoints": "ckptkit.storage.layout",
    "migrate": "ckptkit.migration",
    "Problem": "ckptkit.reading.verification",
    "read_tensor": "ckptkit.reading.inspection",
    "SaveCost": "ckptkit.storage.manifest",
    "verify": "ckptkit.reading.verification",
    "VerifyReport": "ckptkit.reading.verification",
}


def __getattr__(name: str) -> Any:
    if name == "compat":  # the tf.train.CheckpointManager drop-in, a module of its own
        return importlib.import_module("ckptkit.compat")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ckptkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Assertion",
    "Averaged",
    "CheckpointConfig",
    "CheckpointContents",
    "CheckpointDiff",
    "CheckpointExistsError",
    "CheckpointHook",
    "CheckpointInfo",
    "CheckpointKeyError",
    "CheckpointManager",
    "CheckpointNotFoundError",
    "CheckpointSkippedWarning",
    "CheckpointVerdict",
    "CkptkitError",
    "CorruptCheckpointError",
    "DirectoryLockedError",
    "DiskFullError",
    "DivergenceError",
    "FormatError",
    "IncompatibleCheckpointsError",
    "InvalidMetadataError",
    "InvalidStepError",
    "KeyChange",
    "KeyMapError",
    "Mismatch",
    "MissingExtraError",
    "Preemption",
    "Problem",
    "Recovery",
    "RestoreMismatchError",
    "RestorePolicy",
    "RestoreReport",
    "RestoreResult",
    "Retention",
    "SaveCost",
    "SaveError",
    "Schedule",
    "ShapeMismatchError",
    "Storage",
    "StorageUnavailableError",
    "TrackableError",
    "UploadError",
    "VariableInfo",
    "VerifyReport",
    "WorkerLostError",
    "__version__",
    "average",
    "compat",
    "convert",
    "diff",
    "export_weights",
    "inspect",
    "list_checkpoints",
    "migrate",
    "read_tensor",
    "verify",
]
