"""TF2 object-based checkpoints through `tf.train.Checkpoint`.

Checkpoints are written with `tf.train.Checkpoint.write` after bumping `save_counter`, which is
exactly what `tf.train.CheckpointManager.save` stores, so plain
``tf.train.Checkpoint(...).restore(path).assert_consumed()`` accepts them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import keras
import tensorflow as tf

from ckptkit.backends.cluster import Cluster
from ckptkit.backends.tf_internals import (
    KERAS_VARIABLE,
    Snapshot,
    is_trackable,
    one_read_per_variable,
    restore_leaving_out,
    restored_into,
    saves_values,
)
from ckptkit.errors import CorruptCheckpointError, FormatError, TrackableError
from ckptkit.matching import CheckpointGraph, NamedValue, ValueSpec, match, walk_paths
from ckptkit.reading import inspection
from ckptkit.status import RestoreReport
from ckptkit.storage import layout, tiers

__all__ = ["ObjectBasedBackend"]


class ObjectBasedBackend:
    """Saves and restores a `tf.train.Checkpoint` built from named trackables.

    Args:
        trackables: Named objects to checkpoint (models, optimizers, variables, iterators...).
        checkpoint: An existing `tf.train.Checkpoint` to use instead of `trackables`.
        max_shard_bytes: Data files of at most this many bytes (`CheckpointConfig`); None:
            TensorFlow's default, one per process.
    """

    def __init__(
        self,
        trackables: Mapping[str, Any],
        *,
        checkpoint: tf.train.Checkpoint | None = None,
        max_shard_bytes: int | None = None,
    ) -> None:
        if checkpoint is None:
            try:
                checkpoint = tf.train.Checkpoint(**trackables)
            except (ValueError, TypeError) as e:
                bad = {k: type(v).__name__ for k, v in trackables.items() if not is_trackable(v)}
                raise TrackableError(
                    f"TensorFlow cannot checkpoint {bad or trackables}: pass tf.Variable, Keras "
                    "models and optimizers, tf.Module or tf.data iterators (wrap plain numbers "
                    f"in a tf.Variable). TensorFlow said: {e}"
                ) from e
        self.checkpoint = checkpoint
        self._options = tf.train.CheckpointOptions(
            experimental_sharding_callback=None
            if max_shard_bytes is None
            else tf.train.experimental.MaxShardSizePolicy(max_shard_bytes)
        )
        _ = checkpoint.save_counter  # Created now so every checkpoint carries it.
        self.cluster = Cluster.of(trackables or _children(checkpoint))

    def read_step(self, step: Any) -> Any:
        """`step` itself: eager tensors and variables give their value through ``numpy()``."""
        return step

    tensorflow_version = tf.__version__

    def write(self, prefix: str) -> str:
        """Writes the checkpoint to `prefix`; returns the prefix.

        Raises:
            SaveError: TensorFlow failed to write (`DiskFullError` when out of space).
        """
        self.checkpoint.save_counter.assign_add(1)
        with one_read_per_variable():
            return _writing(
                prefix, lambda: str(self.checkpoint.write(prefix, options=self._options))
            )

    def snapshot(self) -> Callable[[str], str]:
        """Takes every saved value now (see `tf_internals.Snapshot`); returns its writer.

        The files it writes are those `write` would have written at this call.

        Raises:
            TrackableError: An object saves through a registered saver, or this TensorFlow
                release does not split its save as ckptkit expects.
        """
        self.checkpoint.save_counter.assign_add(1)
        try:
            taken = Snapshot(self.checkpoint, self._options)
        except (AttributeError, ValueError) as e:
            raise TrackableError(
                f"an async save cannot take this checkpoint's values ahead of writing ({e}, "
                f"TensorFlow {tf.__version__}); save synchronously (async_save=False)"
            ) from e
        return lambda prefix: _writing(prefix, lambda: taken.write(prefix))

    def compare(self, path: str, status: Any = None) -> RestoreReport:
        """Matches `path` against the program's object graph without loading anything.

        Given the `status` of an earlier restore of `path`, also checks that every value went
        into the object the program holds now. An unbuilt Keras optimizer whose checkpoint was
        saved built is built first for its model's variables, as Keras's own loading does, so
        that its slot values match now instead of waiting for the first training step.

        Raises:
            FormatError: `path` is a name-based (tf.compat.v1 Saver) checkpoint.
        """
        graph = inspection.load_graph(path)
        if graph is None:
            raise FormatError(
                f"checkpoint {path} is name-based (written by tf.compat.v1 Saver or an "
                "Estimator) and has no object graph to match against; load it with "
                "ckptkit.migrate(path, key_map=..., model=...), convert it once with "
                "ckptkit.convert / `ckptkit convert`, or restore it in graph mode with "
                "CheckpointManager.for_session"
            )
        if status is None:
            self._build_optimizers(graph)
        return match(
            graph,
            self.checkpoint,
            children=_children,
            describe=_describe,
            name_of=_name_of,
            waiting=_waiting,
            restored_into=restored_into(status),
        )

    def _build_optimizers(self, graph: CheckpointGraph) -> None:
        top = dict(tf.train.TrackableView.children(self.checkpoint))
        saved = dict(graph.nodes[0].children)
        models = [m for m in top.values() if isinstance(m, keras.Model) and m.built]
        for name, optimizer in top.items():
            if not isinstance(optimizer, keras.optimizers.Optimizer) or optimizer.built:
                continue
            node = saved.get(name)
            if node is None or "_trainable_variables" not in dict(graph.nodes[node].children):
                continue  # saved before its first step: there are no slots to match
            owners = [m for m in models if getattr(m, "optimizer", None) is optimizer] or models
            if len(owners) == 1:
                optimizer.build(owners[0].trainable_variables)

    def variables(self) -> list[tuple[NamedValue, Any]]:
        """The program's variables with their checkpoint paths, own names, shapes and dtypes."""
        found = []
        for path, obj in walk_paths(self.checkpoint, _children):
            if isinstance(obj, (tf.Variable, KERAS_VARIABLE)):
                spec = _describe(obj)
                assert spec is not None
                own = _name_of(obj)
                found.append((NamedValue(path, "" if own == path else own, spec), obj))
        return found

    def values(self) -> list[tuple[Any, Any]]:
        """Every program variable with a copy of its value now, to `put_back` later."""
        return [(obj, obj.numpy().copy()) for _, obj in self.variables()]

    @staticmethod
    def put_back(values: list[tuple[Any, Any]]) -> None:
        """Assigns each variable the value `values` holds for it."""
        for variable, value in values:
            variable.assign(value)

    def top_objects(self) -> dict[str, Any]:
        """The objects checkpointed, by name (what the manager was given)."""
        children = tf.train.TrackableView.children(self.checkpoint).items()
        return {name: obj for name, obj in children if name != "save_counter"}

    def restore(
        self, path: str, *, expect_partial: bool, leave_out: frozenset[int] = frozenset()
    ) -> Any:
        """Loads `path` (eagerly where variables exist, deferred where they will be created).

        The values of the object-graph nodes `leave_out` are not loaded: the program keeps its
        own there (`restore_leaving_out`).
        """
        try:
            if leave_out:
                status = restore_leaving_out(self.checkpoint, tiers.readable(path), leave_out)
            else:
                status = self.checkpoint.restore(tiers.readable(path))
        except (tf.errors.OpError, ValueError) as e:
            raise CorruptCheckpointError(
                f"TensorFlow could not load checkpoint {path}: {e}; its data may be damaged"
            ) from e
        if expect_partial:
            status.expect_partial()
        return status


def _writing(prefix: str, write: Callable[[], str]) -> str:
    """Runs `write`, with TensorFlow's failure made a typed error naming `prefix`."""
    try:
        return write()
    except tf.errors.OpError as e:
        raise layout.save_error(prefix, os.path.dirname(prefix), e) from e


def _children(obj: object) -> Mapping[str, object]:
    # Variables are leaves of a checkpoint's object graph; skipping them saves one TensorFlow
    # call per variable, which adds up on programs with thousands of them.
    if isinstance(obj, (tf.Variable, KERAS_VARIABLE)) or not is_trackable(obj):
        return {}
    return dict(tf.train.TrackableView.children(obj))


def _describe(obj: object) -> ValueSpec | None:
    if isinstance(obj, tf.Variable):
        try:
            dims = obj.shape.as_list()
        except ValueError:  # unknown rank
            return ValueSpec(None, obj.dtype.name)
        return ValueSpec(None if None in dims else tuple(dims), obj.dtype.name)
    if isinstance(obj, KERAS_VARIABLE):
        return ValueSpec(tuple(obj.shape), str(obj.dtype))
    if is_trackable(obj) and saves_values(obj):
        return ValueSpec(None, None)
    return None


def _waiting(obj: object) -> bool:
    """An unbuilt Keras layer, model or optimizer creates its variables later."""
    return isinstance(obj, (keras.layers.Layer, keras.optimizers.Optimizer)) and not obj.built


def _name_of(obj: object) -> str:
    if isinstance(obj, tf.Variable):
        return str(obj.name).removesuffix(":0")
    if isinstance(obj, KERAS_VARIABLE):
        return str(obj.path)
    return ""
