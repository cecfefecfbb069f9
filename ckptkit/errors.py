"""The exceptions ckptkit raises.

Every error derives from `CkptkitError`, and each leaf also derives from the builtin a caller
would already catch for that problem, so `except FileNotFoundError` keeps working::

    CkptkitError
    ├── CheckpointNotFoundError  (FileNotFoundError)  nothing to restore or inspect there
    ├── CheckpointExistsError    (FileExistsError)    a save would replace a committed one
    ├── CheckpointKeyError       (KeyError)           a checkpoint has no such key
    ├── CorruptCheckpointError   (ValueError)         files there cannot be read as a checkpoint
    ├── DirectoryLockedError     (BlockingIOError)    another writer holds the directory
    ├── DivergenceError          (ArithmeticError)    the loss kept diverging after rollbacks
    ├── FormatError              (ValueError)         a format this backend cannot restore
    ├── IncompatibleCheckpointsError (ValueError)     checkpoints that cannot be combined
    ├── InvalidMetadataError     (TypeError)          save() metadata that is not JSON
    ├── KeyMapError              (ValueError)         a key map that is malformed or ambiguous
    ├── InvalidStepError         (ValueError)         a step that is not a non-negative integer
    ├── MissingExtraError        (ImportError)        a URL needs an optional extra (ckptkit[s3])
    ├── StorageUnavailableError  (ConnectionError)    remote storage could not be asked
    ├── TrackableError           (TypeError)          an object TensorFlow cannot checkpoint
    ├── WorkerLostError          (ConnectionError)    a worker of the cluster stopped answering
    ├── SaveError                (OSError)            a save failed; nothing was committed
    │   ├── DiskFullError                                 ... for lack of space (ENOSPC, EFBIG)
    │   └── UploadError                                   ... copying to remote storage failed
    └── RestoreMismatchError     (AssertionError)     program and checkpoint disagree
        └── ShapeMismatchError   (ValueError)         a variable's shape or dtype differs

Invalid configuration is reported by pydantic's `ValidationError`, which names the field.
`CheckpointSkippedWarning` (a `UserWarning`) tells that a restore passed over a damaged
checkpoint for an older, intact one, or over an interrupted save when starting fresh.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ckptkit.status import RestoreReport

__all__ = [
    "CheckpointExistsError",
    "CheckpointKeyError",
    "CheckpointNotFoundError",
    "CheckpointSkippedWarning",
    "CkptkitError",
    "CorruptCheckpointError",
    "DirectoryLockedError",
    "DiskFullError",
    "DivergenceError",
    "FormatError",
    "IncompatibleCheckpointsError",
    "InvalidMetadataError",
    "InvalidStepError",
    "KeyMapError",
    "MissingExtraError",
    "RestoreMismatchError",
    "SaveError",
    "ShapeMismatchError",
    "StorageUnavailableError",
    "TrackableError",
    "UploadError",
    "WorkerLostError",
]


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error's message (TensorFlow's run to many lines)."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class CkptkitError(Exception):
    """Base class of every error raised by ckptkit."""


class CheckpointNotFoundError(CkptkitError, FileNotFoundError):
    """No checkpoint exists at the given path, step or directory."""


class CheckpointExistsError(CkptkitError, FileExistsError):
    """A save would replace a checkpoint that is already committed."""


class CheckpointKeyError(CkptkitError, KeyError):
    """A checkpoint has no tensor under the requested key."""

    def __str__(self) -> str:
        # KeyError would print the message in quotes.
        return str(self.args[0]) if self.args else ""


class CorruptCheckpointError(CkptkitError, ValueError):
    """Files are present but cannot be read as a checkpoint (truncated, garbage, unreadable)."""


class DirectoryLockedError(CkptkitError, BlockingIOError):
    """Another checkpoint manager is writing to the same directory."""


class DivergenceError(CkptkitError, ArithmeticError):
    """The loss diverged again after `Recovery.max_trials` rollbacks in a row."""


class FormatError(CkptkitError, ValueError):
    """The checkpoint is of a format this backend cannot restore (e.g. name-based into TF2)."""


class IncompatibleCheckpointsError(CkptkitError, ValueError):
    """Checkpoints that cannot be combined (`ckptkit.average`): other entries, shapes or dtypes."""


class InvalidMetadataError(CkptkitError, TypeError):
    """Metadata or metrics passed to `save` that cannot be stored as JSON."""


class KeyMapError(CkptkitError, ValueError):
    """A key map that is malformed, names a variable ambiguously, or maps two values to one."""


class InvalidStepError(CkptkitError, ValueError):
    """A step that is not a non-negative integer."""


class MissingExtraError(CkptkitError, ImportError):
    """A URL needs an optional dependency that is not installed (``pip install ckptkit[s3]``)."""


class StorageUnavailableError(CkptkitError, ConnectionError):
    """Remote storage could not be asked (the store gave no answer about the path).

    Refused or reset connections, DNS, TLS, timeouts, throttling past the retries, denied or
    missing credentials. Never a "not found": ckptkit says a checkpoint or directory is
    missing only when the store answered so. The message names the URL, the operation and the
    cause.
    """

    @classmethod
    def asking(cls, url: str, operation: str, cause: BaseException) -> StorageUnavailableError:
        """The error for `operation` (e.g. "list") on `url` that failed with `cause`."""
        reason = first_line(cause) if str(cause) else type(cause).__name__
        return cls(
            f"cannot reach {url} to {operation} ({type(cause).__name__}: {reason}); nothing "
            "was taken for missing. Check the endpoint (Storage(options=...)), the network "
            "and the credentials, then retry"
        )


class TrackableError(CkptkitError, TypeError):
    """An object given to `CheckpointManager` that TensorFlow cannot checkpoint."""


class WorkerLostError(CkptkitError, ConnectionError):
    """A worker of a `tf.distribute` cluster stopped answering during a save or restore.

    Killed, frozen or cut off: TensorFlow's coordination service declares a worker lost when it
    misses heartbeats for 10 s, and aborts every collective; the message names the worker(s).
    Committed checkpoints are intact; restart every worker and `restore_or_initialize` resumes.
    """


class SaveError(CkptkitError, OSError):
    """Writing a checkpoint failed; nothing was committed and earlier checkpoints are untouched."""


class DiskFullError(SaveError):
    """A save ran out of space (ENOSPC, or EFBIG from a file-size limit); nothing was committed."""


class UploadError(SaveError):
    """Copying a staged checkpoint to remote storage failed; the staged local copy stays."""


class CheckpointSkippedWarning(UserWarning):
    """A restore passed over damaged checkpoints, or files of a save that was never committed."""


class RestoreMismatchError(CkptkitError, AssertionError):
    """The program's objects and the checkpoint's values do not match as the assertion requires.

    Attributes:
        report: The full comparison: what matched, what was left unused on either side, and
            every shape or dtype mismatch.
        assertion: The assertion mode that failed.
    """

    def __init__(self, message: str, *, report: RestoreReport, assertion: str) -> None:
        super().__init__(message)
        self.report = report
        self.assertion = assertion

    @property
    def unused_checkpoint_values(self) -> tuple[str, ...]:
        """Checkpoint entries that no program object took."""
        return self.report.unused_checkpoint_values

    @property
    def deferred_checkpoint_values(self) -> tuple[str, ...]:
        """Checkpoint entries waiting for program objects that do not exist yet."""
        return self.report.deferred_checkpoint_values

    @property
    def unrestored_objects(self) -> tuple[str, ...]:
        """Program variables that found no value in the checkpoint."""
        return self.report.unrestored_objects


class ShapeMismatchError(RestoreMismatchError, ValueError):
    """A program variable and its checkpoint value differ in shape or dtype.

    Raised before anything is loaded, so the program's variables keep their values.
    """
