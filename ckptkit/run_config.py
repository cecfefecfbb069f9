"""Estimator `RunConfig` checkpoint fields, read with the Estimator's own defaults and rules.

`tf.estimator` is gone from current TensorFlow, but its `RunConfig` schedules live on in
configuration files and job launchers. `RunConfigFields` takes the five fields that decide
checkpointing, from a `tf.estimator.RunConfig` (or any object with those attributes) or from a
mapping, and `CheckpointConfig.from_run_config` turns them into a ckptkit config:

==================================  ====================================================
RunConfig field                     ckptkit
==================================  ====================================================
``model_dir``                       ``CheckpointConfig.directory``
``save_checkpoints_steps``          ``Schedule.every_steps``
``save_checkpoints_secs`` (600)     ``Schedule.every_secs``
``keep_checkpoint_max`` (5)         ``Retention.max_to_keep`` (0 or None: keep all)
``keep_checkpoint_every_n_hours``   ``Retention.keep_every_n_hours`` (10000)
(the saver hook's behaviour)        ``save_first_step=True``, ``save_last_step=True``,
                                    ``prefix="model.ckpt"``
==================================  ====================================================

No TensorFlow here: a `RunConfig` is read through its attributes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DEFAULT_EVERY_SECS", "ESTIMATOR_PREFIX", "RUN_CONFIG_FIELDS", "RunConfigFields"]

ESTIMATOR_PREFIX = "model.ckpt"
DEFAULT_EVERY_SECS = 600.0  # tf.estimator.RunConfig's save_checkpoints_secs default
"""The Estimator's checkpoint prefix: ``model.ckpt-<global_step>``."""

RUN_CONFIG_FIELDS = (
    "model_dir",
    "save_checkpoints_steps",
    "save_checkpoints_secs",
    "keep_checkpoint_max",
    "keep_checkpoint_every_n_hours",
)
"""The `RunConfig` fields that decide checkpointing."""

# Other RunConfig fields: accepted in a mapping (a whole RunConfig dumped to a dict), not used.
_IGNORED = frozenset(
    {
        "tf_random_seed",
        "save_summary_steps",
        "session_config",
        "log_step_count_steps",
        "train_distribute",
        "device_fn",
        "protocol",
        "eval_distribute",
        "experimental_distribute",
        "experimental_max_worker_delay_secs",
        "session_creation_timeout_secs",
        "checkpoint_save_graph_def",
    }
)


class RunConfigFields(BaseModel):
    """The checkpoint fields of a `tf.estimator.RunConfig`, with its defaults and rules.

    As in the Estimator: with neither `save_checkpoints_steps` nor `save_checkpoints_secs`
    given, a checkpoint is saved every 600 seconds; giving both is an error; passing both
    explicitly as ``None`` turns periodic saves off.

    Attributes:
        model_dir: The Estimator's model directory (required: ckptkit makes no temporary one).
        save_checkpoints_steps: Save every this many global steps.
        save_checkpoints_secs: Save every this many seconds.
        keep_checkpoint_max: How many recent checkpoints to keep; 0 or None keeps all.
        keep_checkpoint_every_n_hours: Also keep one checkpoint per this many hours.

    Example:
        >>> RunConfigFields.read({"model_dir": "/tmp/m"}).save_checkpoints_secs
        600.0
    """

    # protected_namespaces: pydantic < 2.10 warns that "model_dir" starts like its own "model_*".
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model_dir: str = Field(min_length=1)
    save_checkpoints_steps: int | None = Field(default=None, gt=0)
    save_checkpoints_secs: float | None = Field(default=None, gt=0)
    keep_checkpoint_max: int | None = Field(default=5, ge=0)
    keep_checkpoint_every_n_hours: float | None = Field(default=10000.0, gt=0)

    @field_validator("model_dir", mode="before")
    @classmethod
    def _path_as_str(cls, value: Any) -> Any:
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    @model_validator(mode="before")
    @classmethod
    def _estimator_defaults(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = {k: v for k, v in data.items() if k not in _IGNORED}
        if data.get("model_dir") is None:
            raise ValueError(
                "model_dir is required: ckptkit does not make a temporary directory as the "
                f"Estimator did (received model_dir={data.get('model_dir')!r})"
            )
        steps, secs = data.get("save_checkpoints_steps"), data.get("save_checkpoints_secs")
        if steps is not None and secs is not None:
            raise ValueError(
                "save_checkpoints_steps and save_checkpoints_secs cannot both be set, as in "
                f"tf.estimator.RunConfig (received save_checkpoints_steps={steps}, "
                f"save_checkpoints_secs={secs}); set one, or both to None for no periodic saves"
            )
        if "save_checkpoints_secs" not in data and steps is None:
            data["save_checkpoints_secs"] = DEFAULT_EVERY_SECS
        return data

    @classmethod
    def read(cls, source: Any) -> RunConfigFields:
        """Reads the fields from a mapping or from an object such as `tf.estimator.RunConfig`.

        Raises:
            pydantic.ValidationError: A field is invalid, unknown (in a mapping), or the
                steps and seconds schedules are both set.
        """
        if isinstance(source, Mapping):
            return cls.model_validate(source)
        missing = [name for name in RUN_CONFIG_FIELDS if not hasattr(source, name)]
        if missing:
            raise TypeError(
                f"expected a tf.estimator.RunConfig or a mapping of its fields; "
                f"{type(source).__name__} has no attribute(s) {missing}"
            )
        return cls.model_validate({name: getattr(source, name) for name in RUN_CONFIG_FIELDS})

    @property
    def max_to_keep(self) -> int | None:
        """`Retention.max_to_keep`: the Saver's "0 or None keeps all" as None."""
        return self.keep_checkpoint_max or None
