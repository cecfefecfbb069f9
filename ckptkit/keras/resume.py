"""Mid-epoch resume for `CheckpointCallback`: where training is, saved with the model.

The position (epoch, batches of it done) is checkpointed as two variables beside the model;
the dropout seed states, which Keras leaves out of TF checkpoints, go with it. On resume an
unbuilt model is built from the first batch's shapes, and the batches of the epoch already
trained are read but not trained on.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

__all__ = ["Progress", "batches_done", "build_from", "seed_states"]

# What Keras reports to on_train_batch_end with steps_per_execution > 1 changed in 3.11.
_REPORTS_FIRST_BATCH = tuple(int(part) for part in keras.version().split(".")[:2]) < (3, 11)


class Progress(tf.Module):  # type: ignore[misc]
    """Where training is (the epoch, and the batches of it done), saved with the model.

    Plain ints are kept beside the variables, which are written only before a save.
    """

    def __init__(self) -> None:
        super().__init__(name="progress")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.batch = tf.Variable(0, dtype=tf.int64, trainable=False, name="batch")
        self.at_epoch, self.at_batch = 0, 0

    def move_to(self, epoch: int, batch: int) -> None:
        """Notes the position (the variables are written by `store`)."""
        self.at_epoch, self.at_batch = epoch, batch

    def store(self) -> None:
        """Writes the position into the variables, before a save."""
        self.epoch.assign(self.at_epoch)
        self.batch.assign(self.at_batch)

    def load(self) -> None:
        """Reads the position from the variables, after a restore."""
        self.at_epoch, self.at_batch = int(self.epoch), int(self.batch)


def batches_done(model: Any, steps: Any, batch: int) -> int:
    """How many batches of the epoch are done once the call that Keras reports ends.

    With ``steps_per_execution`` = N, each call trains N batches; Keras before 3.11 reports
    the call's first batch, later versions its first + N - 1.

    Args:
        model: The model being fit.
        steps: Batches per epoch (``params["steps"]``), or None when unknown.
        batch: The batch index Keras reported.
    """
    per_call = max(1, int(getattr(model, "steps_per_execution", 1) or 1))
    first = batch if _REPORTS_FIRST_BATCH else batch - per_call + 1
    return first + per_call if not isinstance(steps, int) else min(first + per_call, steps)


def seed_states(model: Any) -> list[Any]:
    """The dropout (SeedGenerator) states, which Keras leaves out of TF checkpoints."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def build_from(model: Any, element_spec: Any) -> None:
    """Builds `model` by calling it on symbolic inputs shaped like the data's features."""
    features = element_spec[0] if isinstance(element_spec, tuple) else element_spec
    inputs = tf.nest.map_structure(
        lambda spec: keras.Input(batch_shape=tuple(spec.shape), dtype=spec.dtype.name),
        features,
    )
    model(inputs)
