"""Typed configuration: what to save, when, what to keep, and how strictly to restore.

All models are frozen, forbid unknown keys, and validate contradictions, so a bad config fails
where it is written (or loaded from JSON) with pydantic's `ValidationError` naming the field.
Booleans are strict: ``"yes"`` or ``1`` is refused rather than taken for ``True``, because
switches such as `durable` and `allow_outside_paths` change what is safe.

Example:
    >>> import ckptkit
    >>> cfg = ckptkit.CheckpointConfig(
    ...     directory="runs/exp1",
    ...     schedule=ckptkit.Schedule(every_steps=100),
    ...     retention=ckptkit.Retention(max_to_keep=3),
    ... )
    >>> cfg.schedule.every_secs is None
    True
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from ckptkit.retention import Mode, direction
from ckptkit.run_config import DEFAULT_EVERY_SECS, ESTIMATOR_PREFIX, RunConfigFields

__all__ = [
    "Assertion",
    "CheckpointConfig",
    "Preemption",
    "RestorePolicy",
    "Retention",
    "Schedule",
    "Storage",
    "as_config",
]

Assertion = Literal["consumed", "existing_objects_matched", "nontrivial_match", "partial", "none"]
"""How strictly a restore must match the program (see `RestorePolicy`)."""

GFILE_SCHEMES = ("gs", "ram", "file")
"""URL schemes that `tf.io.gfile` reaches in every supported TensorFlow (others go to fsspec)."""

_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.\-]*$")

# A path given as a str or an os.PathLike (pathlib.Path), kept as a str.
_PathStr = Annotated[
    str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)
]

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class Schedule(BaseModel):
    """When `CheckpointManager.maybe_save` saves.

    Set at most one of `every_steps` and `every_secs`. With neither given, the schedule saves
    every 600 seconds, as `tf.estimator.RunConfig` does. Passing both explicitly as ``None``
    turns periodic saves off (only explicit `save` calls write checkpoints).

    A step schedule saves when the step crosses a multiple of `every_steps` (100, 200, ... even
    when the loop advances several steps at a time), counted from the newest checkpoint, so a
    resumed run keeps the same rhythm. A time schedule saves when `every_secs` have passed since
    the last save (or since the first `maybe_save` call). `steps` adds exact steps on top of
    either (the step a learning-rate schedule changes at, an evaluation point), or alone:
    ``Schedule(steps=[1000, 5000])`` saves at those two steps only.

    Attributes:
        every_steps: Save every this many steps.
        every_secs: Save when this many seconds have passed since the last save.
        steps: Also save at each of these steps (when the step reaches or crosses it, so a
            loop that advances several steps at a time still saves there, once).
        save_first_step: Also save at the first step `maybe_save` sees when no checkpoint
            exists yet (as the Estimator's saver hook does at the start of training).
        save_last_step: Also save when training ends (`CheckpointManager.finish`, the Keras
            callback's end of `fit`, the session hook's `end`) unless that step is saved
            already, as the Estimator's saver hook does.

    Example:
        >>> Schedule(every_steps=500).every_secs is None
        True
    """

    model_config = _MODEL_CONFIG

    every_steps: int | None = Field(default=None, gt=0)
    every_secs: float | None = Field(default=None, gt=0)
    steps: tuple[Annotated[int, Field(ge=0)], ...] = ()
    save_first_step: StrictBool = False
    save_last_step: StrictBool = False

    @model_validator(mode="before")
    @classmethod
    def _default_to_seconds(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "every_secs" not in data
            and data.get("every_steps") is None
            and not data.get("steps")
        ):
            return {**data, "every_secs": DEFAULT_EVERY_SECS}
        return data

    @field_validator("steps")
    @classmethod
    def _sorted_steps(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @model_validator(mode="after")
    def _one_interval(self) -> Schedule:
        if self.every_steps is not None and self.every_secs is not None:
            raise ValueError(
                "set only one of every_steps and every_secs, not both "
                f"(received every_steps={self.every_steps}, every_secs={self.every_secs}); "
                "to save on both, call save() yourself for the second rule"
            )
        return self

    @property
    def periodic(self) -> bool:
        """Whether this schedule ever saves on its own."""
        return self.every_steps is not None or self.every_secs is not None or bool(self.steps)


class Retention(BaseModel):
    """Which checkpoints are kept after a save.

    Mirrors `tf.train.CheckpointManager`: the newest `max_to_keep` are kept; of the older ones,
    one every `keep_every_n_hours` is kept as well (and stays listed). With `best_k`, the k best
    checkpoints by the `monitor` metric (given to `save(metrics=...)`, or logged by the Keras
    callback) are kept as well, so "the 3 best and the 2 newest" is
    ``Retention(max_to_keep=2, best_k=3, monitor="val_loss")``. The newest checkpoint, which a
    resumed run needs, is always kept. Deletion happens only after the new checkpoint is
    committed.

    Attributes:
        max_to_keep: How many of the newest checkpoints to keep; ``None`` keeps all.
        keep_every_n_hours: Additionally keep one checkpoint per this many hours.
        best_k: Additionally keep the k best checkpoints by `monitor`.
        keep_every_steps: Additionally keep, for good, every checkpoint whose step is a
            multiple of this (milestones: ``keep_every_steps=10_000``); they stay listed.
        monitor: The metric that ranks checkpoints, e.g. ``"val_loss"``; also what
            `CheckpointManager.restore(best=True)` goes by.
        mode: ``"min"`` or ``"max"`` when lower or higher is better; ``"auto"`` infers it from
            the name as Keras does (losses and errors down, accuracies and AUCs up).

    Example:
        >>> Retention(max_to_keep=2, best_k=3, monitor="val_accuracy").direction
        'max'
    """

    model_config = _MODEL_CONFIG

    max_to_keep: int | None = Field(default=5, gt=0)
    keep_every_n_hours: float | None = Field(default=None, gt=0)
    best_k: int | None = Field(default=None, gt=0)
    keep_every_steps: int | None = Field(default=None, gt=0)
    monitor: str | None = Field(default=None, min_length=1)
    mode: Mode = "auto"

    @model_validator(mode="after")
    def _monitor_is_usable(self) -> Retention:
        if self.best_k is not None and self.monitor is None:
            raise ValueError(
                f"best_k={self.best_k} needs the metric to rank by: set monitor, "
                "e.g. monitor='val_loss'"
            )
        if self.monitor is not None and direction(self.monitor, self.mode) is None:
            raise ValueError(
                f"cannot tell whether lower or higher {self.monitor!r} is better "
                "(received mode='auto'); set mode='min' or mode='max'"
            )
        return self

    @property
    def direction(self) -> Literal["min", "max"] | None:
        """``"min"`` or ``"max"`` for `monitor` (None without a monitor)."""
        return None if self.monitor is None else direction(self.monitor, self.mode)

    def tf_kwargs(self) -> dict[str, Any]:
        """The matching `tf.train.CheckpointManager` keyword arguments."""
        return {
            "max_to_keep": self.max_to_keep,
            "keep_checkpoint_every_n_hours": self.keep_every_n_hours,
        }


class RestorePolicy(BaseModel):
    """How strictly `restore` checks that the checkpoint and the program match.

    The assertion is checked before anything is loaded. Modes, strictest first:

    - ``consumed``: every checkpoint value is used and every program variable is restored.
    - ``existing_objects_matched``: every program variable that exists now is restored;
      checkpoint values for objects not created yet stay pending (deferred restoration).
    - ``nontrivial_match``: at least one variable is restored.
    - ``partial``: no check, and TensorFlow's warnings about unused values are silenced.
    - ``none``: no check; TensorFlow's own warnings are left as they are.

    A shape or dtype mismatch is an error in every mode, because TensorFlow could not load it.

    Before loading, the checkpoint is verified (see `ckptkit.verify`): ``cheap`` checks files,
    sizes and the index's checksum against the manifest; ``full`` also reads every tensor so
    TensorFlow checks its crc32c; ``off`` skips it. When the newest checkpoint is damaged,
    `restore()` falls back to the newest intact one and warns with what it skipped.

    Fine-tuning into a changed model: ``skip_mismatch=True`` loads everything that fits and
    leaves each value whose shape or dtype differs (the program keeps its own); ``exclude``
    leaves out the values whose names match one of its glob patterns. Each value left out is
    named, with the reason, in `RestoreReport.left_out`, and the assertion judges the rest.

    Attributes:
        assertion: The default assertion mode; `restore(assertion=...)` overrides it.
        verify: How thoroughly to verify a checkpoint before loading it.
        skip_mismatch: The default of `restore(skip_mismatch=...)`.
        exclude: The default of `restore(exclude=...)`: glob patterns (``*`` also crosses
            ``/``) over a value's checkpoint path, its variable's own name and its object
            paths, as `RestoreReport` and ``ckptkit inspect`` print them.

    Example:
        >>> RestorePolicy(assertion="consumed").assertion
        'consumed'
        >>> RestorePolicy(skip_mismatch=True, exclude=["*head*"]).exclude
        ('*head*',)
    """

    model_config = _MODEL_CONFIG

    assertion: Assertion = "existing_objects_matched"
    verify: Literal["off", "cheap", "full"] = "cheap"
    skip_mismatch: StrictBool = False
    exclude: tuple[Annotated[str, Field(min_length=1)], ...] = ()


class Recovery(BaseModel):
    """Roll back to the newest good checkpoint when training diverges, instead of stopping.

    Hand the loss to `CheckpointManager.check_loss` once per step (before that step's save),
    or give `CheckpointCallback(recovery=...)` to `fit`. A loss that is NaN, infinite or above
    `loss_upper_bound` restores the newest checkpoint committed before it (model, optimizer,
    step, and whatever else the manager holds), warns with the step it rolled back to, and
    training goes on. While the loss is bad, and for a save whose metrics are not finite,
    saves are refused with a warning, so diverged weights are never committed. After
    `max_trials` rollbacks with no new checkpoint committed in between, `DivergenceError`
    names the steps.

    Attributes:
        max_trials: Rollbacks allowed in a row before giving up.
        loss_upper_bound: A finite loss above this also counts as diverged; None: only NaN
            and infinity do.

    Example:
        >>> Recovery(max_trials=2, loss_upper_bound=1e4).max_trials
        2
    """

    model_config = _MODEL_CONFIG

    max_trials: int = Field(3, gt=0)
    loss_upper_bound: float | None = Field(None, allow_inf_nan=False)


class Preemption(BaseModel):
    """Save at the next safe point after a termination signal, then exit.

    The signal handler only takes note; the save happens in the next `maybe_save` call, at a
    step boundary of the training loop, never in the middle of a step. A second signal before
    that terminates the process at once, as it would without ckptkit. Handlers are installed
    in the main thread when the manager is created and restored by `close()`. Under
    `MultiWorkerMirroredStrategy`, TensorFlow's `PreemptionCheckpointHandler` settles one step
    for every worker: a signal to any worker makes all of them save that step (the chief
    commits it) and exit, the workers not signalled with status 143 (as for SIGTERM).

    Attributes:
        signals: Names of the signals that mean "you are about to be stopped".
        exit: Exit after the save, with status 128 + the signal number (143 for SIGTERM),
            the shell's convention for "terminated by a signal", which schedulers treat as
            restartable. With ``False``, training goes on and `CheckpointManager.preempted`
            says which signal arrived.

    Example:
        >>> Preemption().signals
        ('SIGTERM', 'SIGINT')
    """

    model_config = _MODEL_CONFIG

    signals: tuple[Literal["SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"], ...] = (
        "SIGTERM",
        "SIGINT",
    )
    exit: StrictBool = True


class Storage(BaseModel):
    """How a remote `CheckpointConfig.directory` is reached, staged, cached and locked.

    Two ways reach storage. ``gs://``, ``ram://`` and ``file://`` URLs go through TensorFlow's
    `tf.io.gfile`, which TensorFlow writes to directly. Every other URL (``s3://``, ``az://``,
    ``memory://``, any fsspec protocol, and ``gs://`` too with ``transport="fsspec"``) goes
    through fsspec, which TensorFlow cannot reach: TensorFlow writes each checkpoint into a
    local staging folder, ckptkit uploads it, and the folder stays as a cache that restores
    read first when it matches the remote copy. Local paths ignore these settings but
    `lease_secs` (they are locked with a file lock instead of a lease).

    Attributes:
        transport: ``"auto"`` (the rule above), ``"gfile"`` or ``"fsspec"``.
        options: Keyword arguments for the fsspec filesystem, e.g.
            ``{"endpoint_url": "http://127.0.0.1:9000"}`` for s3fs; credentials come from the
            usual places (``AWS_*`` variables, ``~/.aws``) when not given here.
        cache_dir: Local folder that stages saves and caches restores of this directory;
            None: ``$CKPTKIT_CACHE_DIR`` (else ``~/.cache/ckptkit``) / a hash of the URL.
        keep_local: How many of the newest committed checkpoints keep their local copy;
            0 removes each staged copy once uploaded (restores then download).
        lease_secs: How long the writer lease on a remote directory lasts without renewal;
            a writer renews it while it lives, so a killed writer's lease frees the directory
            this long after its last renewal.
        timeout_secs: How long one attempt of a remote call may wait to connect, or for the
            next bytes, before it is given up (``s3://``: botocore's connect and read
            timeouts). Default 20 s.
        retries: How many times a failed or timed-out remote call is tried again, with
            exponential backoff (s3fs's retries; botocore's own are turned off so the two do
            not multiply). Default 4: with the defaults a call that cannot be answered fails
            with `StorageUnavailableError` within about 100 s plus 2 s of backoff. Other
            fsspec protocols use their client's settings, and ``gs://`` through gfile
            TensorFlow's.
        max_concurrency: How many transfers a download or upload of one checkpoint runs at
            once: its files (an upload only on an asynchronous fsspec filesystem, s3fs or
            gcsfs; others upload one file after another), and on ``s3://`` the parts of each
            file (multipart upload parts, ranged reads), the budget shared: 8 moves 2 files of
            4 parts, or 5 files of one stream each. 1: one file after another, each in one
            stream.

    Example:
        >>> Storage(options={"endpoint_url": "http://127.0.0.1:9000"}).keep_local
        1
    """

    model_config = _MODEL_CONFIG

    transport: Literal["auto", "gfile", "fsspec"] = "auto"
    options: dict[str, Any] = Field(default_factory=dict)
    cache_dir: _PathStr | None = None
    keep_local: int = Field(1, ge=0)
    lease_secs: float = Field(60.0, gt=0, allow_inf_nan=False)
    timeout_secs: float = Field(20.0, gt=0, allow_inf_nan=False)
    retries: int = Field(4, ge=0, le=20)
    max_concurrency: int = Field(8, ge=1, le=64)

    @field_validator("cache_dir")
    @classmethod
    def _cache_is_local(cls, value: str | None) -> str | None:
        if value is not None and ("://" in value or not value.strip()):
            raise ValueError(
                f"cache_dir must be a local folder (received cache_dir={value!r}); it holds "
                "the copies TensorFlow reads and writes, which cannot be remote"
            )
        return value


class CheckpointConfig(BaseModel):
    """Everything `CheckpointManager` needs to know, loadable from JSON or a dict.

    Attributes:
        directory: A local path, a `tf.io.gfile` URL (``gs://``, ``ram://``) or an fsspec URL
            (``s3://bucket/run``, with the ``ckptkit[s3]`` extra); see `Storage`.
        prefix: Checkpoint file prefix; checkpoints are named ``<prefix>-<step>``.
        schedule: When `maybe_save` saves.
        retention: Which checkpoints are kept.
        restore: How strictly restores are checked.
        durable: fsync data, index, manifest and directory before a checkpoint counts as
            committed, so it survives a power loss, not only a process kill.
        preemption: Save and exit on SIGTERM/SIGINT (see `Preemption`); None: off.
        recovery: Roll back past a diverged loss (see `Recovery`); None: off.
        async_save: Save in the background: `save` returns once the values are taken (copied
            off accelerators), and TensorFlow's write, the manifest, the commit and retention
            run on a thread while training goes on. `save(async_save=...)` overrides it per
            call. Graph mode (`CheckpointManager.for_session`) always saves synchronously.
        async_timeout_secs: How long `close`, the ``with`` block's end and interpreter exit
            wait for a background save before leaving it uncommitted (with an error naming it).
        max_shard_bytes: Split the values into data files of at most this many bytes
            (TensorFlow's `tf.train.experimental.MaxShardSizePolicy`; a single value larger
            than that is sliced across files), so that a remote directory's files upload and
            download in parallel (`Storage.max_concurrency`). None: one data file per
            process, as TensorFlow writes by default. Plain TensorFlow reads either. Graph mode
            (`CheckpointManager.for_session`) writes one file per device whatever it says.
        storage: How a remote directory is reached, staged, cached and locked.
        allow_outside_paths: Follow paths in the ``checkpoint`` state file that point outside
            `directory`. Off by default: a crafted state file could otherwise make restores
            read, and retention delete, files elsewhere.
        on_commit: Called with the `CheckpointInfo` of each checkpoint once it is committed
            (an async save's from its background thread), never for a save that failed: to
            copy, notify or evaluate without polling. What it raises is warned about; the
            checkpoint stays committed.

    Example:
        >>> cfg = CheckpointConfig.model_validate({"directory": "/tmp/x", "prefix": "model"})
        >>> cfg.tf_manager_kwargs()["checkpoint_name"]
        'model'
    """

    model_config = _MODEL_CONFIG

    directory: _PathStr
    prefix: str = "ckpt"
    schedule: Schedule = Field(default_factory=Schedule)
    retention: Retention = Field(default_factory=Retention)
    restore: RestorePolicy = Field(default_factory=RestorePolicy)
    durable: StrictBool = False
    preemption: Preemption | None = None
    recovery: Recovery | None = None
    async_save: StrictBool = False
    async_timeout_secs: float = Field(600.0, gt=0, allow_inf_nan=False)
    max_shard_bytes: int | None = Field(None, ge=1 << 20, strict=True)
    allow_outside_paths: StrictBool = False
    storage: Storage = Field(default_factory=Storage)
    on_commit: Callable[[Any], object] | None = None

    @field_validator("directory")
    @classmethod
    def _directory_is_a_path(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("directory must name a folder, e.g. 'runs/exp1' or 'gs://bucket/run'")
        if "\x00" in value:
            raise ValueError(f"directory cannot contain a NUL byte (received {value!r})")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_is_a_file_name(cls, value: str) -> str:
        if not _PREFIX_RE.match(value):
            raise ValueError(
                f"prefix must be a plain file name of letters, digits, '.', '_' or '-' "
                f"(received prefix={value!r}); put folders in `directory` instead"
            )
        return value

    @model_validator(mode="after")
    def _transport_fits(self) -> CheckpointConfig:
        scheme = self.directory.partition("://")[0].lower() if "://" in self.directory else ""
        if self.storage.transport == "gfile" and scheme not in ("", *GFILE_SCHEMES):
            raise ValueError(
                f"storage.transport='gfile' cannot reach {self.directory!r}: TensorFlow's "
                f"tf.io.gfile has only {', '.join(GFILE_SCHEMES)}; use transport='auto' (fsspec "
                "for this URL, with the ckptkit[s3] extra for s3://)"
            )
        return self

    def tf_manager_kwargs(self) -> dict[str, Any]:
        """The `tf.train.CheckpointManager` keyword arguments for the same directory and policy."""
        return {
            "directory": self.directory,
            "checkpoint_name": self.prefix,
            **self.retention.tf_kwargs(),
        }

    @classmethod
    def from_run_config(cls, run_config: Any, **overrides: Any) -> CheckpointConfig:
        """The config that checkpoints as a `tf.estimator.RunConfig` would.

        Reads `model_dir`, `save_checkpoints_steps`, `save_checkpoints_secs`,
        `keep_checkpoint_max` and `keep_checkpoint_every_n_hours` with the Estimator's defaults
        and rules (see `ckptkit.run_config`). Like the Estimator's saver hook, it saves when
        training starts and when it ends, and names checkpoints ``model.ckpt-<step>``.

        Args:
            run_config: A `tf.estimator.RunConfig` (or an object with those attributes) or a
                mapping of those fields; other `RunConfig` fields in a mapping are ignored.
            **overrides: Other `CheckpointConfig` fields, e.g. ``restore=RestorePolicy(...)``.

        Raises:
            pydantic.ValidationError: A field is invalid or both schedules are set.
            TypeError: `run_config` is neither a mapping nor has the fields.

        Example:
            >>> cfg = CheckpointConfig.from_run_config(
            ...     {"model_dir": "/tmp/m", "save_checkpoints_steps": 100}
            ... )
            >>> cfg.prefix, cfg.schedule.every_steps, cfg.retention.max_to_keep
            ('model.ckpt', 100, 5)
        """
        fields = RunConfigFields.read(run_config)
        schedule = Schedule(
            every_steps=fields.save_checkpoints_steps,
            every_secs=fields.save_checkpoints_secs,
            save_first_step=True,
            save_last_step=True,
        )
        retention = Retention(
            max_to_keep=fields.max_to_keep,
            keep_every_n_hours=fields.keep_checkpoint_every_n_hours,
        )
        values = {
            "directory": fields.model_dir,
            "prefix": ESTIMATOR_PREFIX,
            "schedule": schedule,
            "retention": retention,
        }
        return cls.model_validate({**values, **overrides})


def as_config(value: Any, *, argument: str) -> CheckpointConfig:
    """`value` if it is a `CheckpointConfig`, else the default config of the directory `value`.

    Args:
        value: A `CheckpointConfig`, or a directory as a `str` or `os.PathLike`.
        argument: The caller's name for it, for the error message.

    Raises:
        ValueError: `value` is neither.
    """
    if isinstance(value, CheckpointConfig):
        return value
    if isinstance(value, (str, os.PathLike)):
        return CheckpointConfig(directory=os.fspath(value))
    raise ValueError(
        f"{argument} must be a checkpoint directory (a str or os.PathLike path) or a "
        f"CheckpointConfig (received {argument}={value!r})"
    )
