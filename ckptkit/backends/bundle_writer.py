"""Writes a TensorFlow checkpoint (a tensor bundle) key by key, in groups of bounded size.

A checkpoint made of values rather than of program objects (an average of checkpoints): each
group of tensors up to `GROUP_BYTES` is written with TensorFlow's own `SaveV2` op into a part
of its own, and `MergeV2Checkpoints` joins the parts into one prefix (one data shard per
part), as TensorFlow's sharded saves do. Memory holds one group, not the whole checkpoint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import numpy as np
import tensorflow as tf

from ckptkit.storage import layout

__all__ = ["GROUP_BYTES", "BundleWriter"]

GROUP_BYTES = 64 << 20


class BundleWriter:
    """Collects ``key -> value`` pairs and writes them as one checkpoint.

    Args:
        destination: The prefix to write (``<dir>/<name>``): its ``.index`` and data shards.

    Example:
        >>> import numpy as np, tempfile, os
        >>> prefix = os.path.join(tempfile.mkdtemp(), "avg")
        >>> writer = BundleWriter(prefix)
        >>> writer.add("w", np.ones(3, np.float32))
        >>> writer.finish() == prefix
        True
    """

    def __init__(self, destination: str) -> None:
        self.destination = destination
        directory = os.path.dirname(os.path.abspath(destination))
        # Parts go beside the destination, so the merge renames rather than copies.
        self._parts_dir = tempfile.mkdtemp(prefix=".ckptkit-parts-", dir=directory)
        self._parts: list[str] = []
        self._keys: list[str] = []
        self._values: list[Any] = []
        self._bytes = 0

    def add(self, key: str, value: np.ndarray[Any, Any] | bytes) -> None:
        """Queues one tensor; writes the group once it holds `GROUP_BYTES`."""
        self._keys.append(key)
        self._values.append(value)
        self._bytes += value.nbytes if isinstance(value, np.ndarray) else len(value)
        if self._bytes >= GROUP_BYTES:
            self._flush()

    def finish(self) -> str:
        """Writes what is queued and merges the parts into `destination`; returns it.

        Raises:
            SaveError: TensorFlow could not write (`DiskFullError` when out of space).
        """
        try:
            self._flush()
            tf.raw_ops.MergeV2Checkpoints(
                checkpoint_prefixes=self._parts,
                destination_prefix=self.destination,
                delete_old_dirs=False,
            )
        except tf.errors.OpError as e:
            raise layout.save_error(self.destination, os.path.dirname(self.destination), e) from e
        finally:
            shutil.rmtree(self._parts_dir, ignore_errors=True)
        return self.destination

    def discard(self) -> None:
        """Removes the parts written so far (after a failure)."""
        shutil.rmtree(self._parts_dir, ignore_errors=True)

    def _flush(self) -> None:
        if not self._keys:
            return
        part = os.path.join(self._parts_dir, f"part-{len(self._parts)}")
        try:
            with tf.device("/cpu:0"):
                tf.raw_ops.SaveV2(
                    prefix=part,
                    tensor_names=self._keys,
                    shape_and_slices=[""] * len(self._keys),
                    tensors=[tf.convert_to_tensor(v) for v in self._values],
                )
        except tf.errors.OpError as e:
            raise layout.save_error(self.destination, os.path.dirname(self.destination), e) from e
        self._parts.append(part)
        self._keys, self._values, self._bytes = [], [], 0
