"""Keras 3 training: `CheckpointCallback`, `ModelCheckpoint` and `BackupAndRestore` as one.

`callback` holds the `fit` hooks, `resume` the saved position and mid-epoch resume, `export`
the `ModelCheckpoint`-style files, `warm_start` a `fit` that starts from another run's weights.
"""

from ckptkit.keras.callback import CheckpointCallback

__all__ = ["CheckpointCallback"]
