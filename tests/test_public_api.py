from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import tensorflow as tf

import ckptkit
from ckptkit import errors

PUBLIC = [
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


def test_public_surface_is_pinned() -> None:
    assert ckptkit.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(ckptkit, name) is not None


def test_keras_surface_is_pinned() -> None:
    import ckptkit.keras

    assert ckptkit.keras.__all__ == ["CheckpointCallback"]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("ckptkit.keras", "CheckpointCallback"),
        ("ckptkit.errors", "CkptkitError"),
        ("ckptkit.config", "CheckpointConfig"),
        ("ckptkit.manager", "CheckpointManager"),
        ("ckptkit.status", "RestoreResult"),
        ("ckptkit.session_hook", "CheckpointHook"),
        ("ckptkit.migration", "migrate"),
        ("ckptkit.run_config", "RunConfigFields"),
        ("ckptkit.backends.object_based", "ObjectBasedBackend"),
        ("ckptkit.backends.saver_v1", "SaverBackend"),
        ("ckptkit.cli", "main"),
    ],
)
def test_the_module_paths_users_import_stay(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    assert getattr(ckptkit, name, value) is value  # the same object as the package's


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ckptkit.nope  # type: ignore[attr-defined]


def test_importing_ckptkit_does_not_import_tensorflow() -> None:
    code = "import sys, ckptkit; ckptkit.CheckpointConfig(directory='d'); print('tensorflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_listing_and_missing_paths_do_not_import_tensorflow(config) -> None:
    """`ckptkit ls`, `list_checkpoints` and a missing path's error need no TensorFlow (~3 s)."""
    cfg = config()
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as mgr:
        mgr.save(1)
    code = (
        "import sys, ckptkit, ckptkit.cli as cli;"
        f"assert [c.step for c in ckptkit.list_checkpoints({cfg.directory!r})] == [1];"
        f"assert cli.main(['ls', {cfg.directory!r}, '--json']) == 0;"
        "assert cli.main(['inspect', 'nowhere']) == 2;"
        "assert cli.main(['diff', 'nowhere', 'elsewhere']) == 2;"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"
    assert "no checkpoint at 'nowhere'" in done.stderr


def test_the_state_file_schema_is_tensorflows() -> None:
    from google.protobuf import descriptor_pb2

    from ckptkit.storage.state_proto import CheckpointState as Ours

    Theirs = type(tf.compat.v1.train.generate_checkpoint_state_proto("d", "d/ckpt-1"))

    def fields(message: type) -> list[str]:
        file = descriptor_pb2.FileDescriptorProto()
        message.DESCRIPTOR.file.CopyToProto(file)  # type: ignore[attr-defined]
        return [str(f) for f in file.message_type[0].field]

    assert fields(Ours) == fields(Theirs)
    assert Ours.DESCRIPTOR.full_name == Theirs.DESCRIPTOR.full_name


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.CheckpointNotFoundError, FileNotFoundError),
        (errors.CheckpointExistsError, FileExistsError),
        (errors.CheckpointKeyError, KeyError),
        (errors.CorruptCheckpointError, ValueError),
        (errors.FormatError, ValueError),
        (errors.DivergenceError, ArithmeticError),
        (errors.IncompatibleCheckpointsError, ValueError),
        (errors.InvalidStepError, ValueError),
        (errors.KeyMapError, ValueError),
        (errors.TrackableError, TypeError),
        (errors.SaveError, OSError),
        (errors.DiskFullError, errors.SaveError),
        (errors.UploadError, errors.SaveError),
        (errors.MissingExtraError, ImportError),
        (errors.StorageUnavailableError, ConnectionError),
        (errors.DirectoryLockedError, BlockingIOError),
        (errors.WorkerLostError, ConnectionError),
        (errors.InvalidMetadataError, TypeError),
        (errors.RestoreMismatchError, AssertionError),
        (errors.ShapeMismatchError, ValueError),
    ],
)
def test_every_error_is_a_ckptkit_error_and_its_builtin(error: type, builtin: type) -> None:
    assert issubclass(error, errors.CkptkitError)
    assert issubclass(error, builtin)
    assert error.__name__ in errors.__doc__  # drawn in the tree
