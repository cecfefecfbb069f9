from __future__ import annotations

import subprocess
import sys

import pytest

import ckptkit
from ckptkit import errors

PUBLIC = [
    "Assertion",
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
    "FormatError",
    "InvalidMetadataError",
    "InvalidStepError",
    "KeyChange",
    "KeyMapError",
    "Mismatch",
    "Preemption",
    "Problem",
    "RestoreMismatchError",
    "RestorePolicy",
    "RestoreReport",
    "RestoreResult",
    "Retention",
    "SaveError",
    "Schedule",
    "ShapeMismatchError",
    "TrackableError",
    "VariableInfo",
    "VerifyReport",
    "__version__",
    "convert",
    "diff",
    "inspect",
    "list_checkpoints",
    "migrate",
    "read_tensor",
    "verify",
]


def test_public_surface_is_pinned() -> None:
    assert ckptkit.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(ckptkit, name) is not None


def test_keras_surface_is_pinned() -> None:
    import ckptkit.keras

    assert ckptkit.keras.__all__ == ["CheckpointCallback"]


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ckptkit.nope  # type: ignore[attr-defined]


def test_importing_ckptkit_does_not_import_tensorflow() -> None:
    code = "import sys, ckptkit; ckptkit.CheckpointConfig(directory='d'); print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.CheckpointNotFoundError, FileNotFoundError),
        (errors.CheckpointExistsError, FileExistsError),
        (errors.CheckpointKeyError, KeyError),
        (errors.CorruptCheckpointError, ValueError),
        (errors.FormatError, ValueError),
        (errors.InvalidStepError, ValueError),
        (errors.KeyMapError, ValueError),
        (errors.TrackableError, TypeError),
        (errors.SaveError, OSError),
        (errors.DiskFullError, errors.SaveError),
        (errors.DirectoryLockedError, BlockingIOError),
        (errors.InvalidMetadataError, TypeError),
        (errors.RestoreMismatchError, AssertionError),
        (errors.ShapeMismatchError, ValueError),
    ],
)
def test_every_error_is_a_ckptkit_error_and_its_builtin(error: type, builtin: type) -> None:
    assert issubclass(error, errors.CkptkitError)
    assert issubclass(error, builtin)
    assert error.__name__ in errors.__doc__  # drawn in the tree
