"""Keras 3 training: `CheckpointCallback`, `ModelCheckpoint` and `BackupAndRestore` as one.

`callback` holds the `fit` hooks, `resume` the saved position and mid-epoch resume, `export`
the `ModelCheckpoint`-style files.
"""

from ckptkit.keras.callback import CheckpointCallback

__all__ = ["CheckpointCallback"]
