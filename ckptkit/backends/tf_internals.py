"""Every private TensorFlow and Keras detail ckptkit relies on, in one place.

Each has no public equivalent. Each entry says what it is for and what happens when a release
moves it, so an upgrade is checked here, against `nox -s oldest` and the newest release. Ruff's
`banned-api` keeps ``tensorflow.python`` imports out of every other module.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import keras
import tensorflow as tf
from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph
from tensorflow.python.checkpoint import checkpoint as tf_checkpoint
from tensorflow.python.checkpoint import restore as restore_lib
from tensorflow.python.checkpoint import saveable_compat
from tensorflow.python.checkpoint.functional_saver import MultiDeviceSaver
from tensorflow.python.distribute import values as distribute_values
from tensorflow.python.training.saving import saveable_object, saveable_object_util

__all__ = [
    "KERAS_VARIABLE",
    "AutoTrackable",
    "Snapshot",
    "is_trackable",
    "keras_metric_direction",
    "name_saveables",
    "one_read_per_variable",
    "restore_leaving_out",
    "restored_into",
    "saves_values",
    "set_initial_epoch",
]

# Every Keras 3 variable's base class. In Keras 3.3 `keras.Variable` is an export shim that the
# backend's variables do not derive from, so `isinstance(v, keras.Variable)` is False there.
KERAS_VARIABLE: type[Any] = next(
    (c for c in keras.Variable.__mro__ if c.__module__ == "keras.src.backend.common.variables"),
    keras.Variable,
)

# A trackable that tracks each attribute under its own name, whatever the name (`tf.Module`
# reserves `name`, `variables`, `submodules`, ...); the objects `ckptkit.convert` builds.
AutoTrackable: type[Any] = tf.__internal__.tracking.AutoTrackable


def is_trackable(value: Any) -> bool:
    """Whether TensorFlow's checkpointing can track `value`."""
    return isinstance(value, tf.__internal__.tracking.Trackable)


def saves_values(obj: Any) -> bool:
    """Whether `obj` writes values of its own to a checkpoint (an iterator, a hash table...)."""
    return bool(saveable_object_util.saveable_objects_from_trackable(obj))


def name_saveables(var_list: Any) -> dict[str, Any]:
    """The names a v1 `Saver` gives the variables of `var_list` (a list or a dict).

    Raises:
        TypeError, ValueError: Something in `var_list` cannot be saved.
    """
    return dict(saveable_object_util.op_list_to_dict(var_list))


def restored_into(status: Any) -> Mapping[int, object] | None:
    """The object each checkpoint node was loaded into, from a restore's load status.

    TensorFlow's own assertions use this map. Without it (a release that renamed it), the
    cross-check that values went into the variables the program holds is skipped: None.
    """
    coordinator = getattr(status, "_checkpoint", None)
    bound = getattr(coordinator, "object_by_proto_id", None)
    return dict(bound.items()) if bound is not None else None


def restore_leaving_out(
    checkpoint: tf.train.Checkpoint, save_path: str, leave_out: Collection[int]
) -> Any:
    """`checkpoint.restore(save_path)`, except that the nodes `leave_out` load no value.

    The same steps as TensorFlow's `TrackableSaver.restore` (TF 2.16 to 2.21), on the object
    graph read from the checkpoint with the values (attributes and slot references) of those
    nodes taken out: the objects are still matched, so their children and deferred restores
    go on as usual, and the program's variables there keep their values. A release that moves
    these internals fails here with an AttributeError or TypeError, in tests.

    Returns:
        TensorFlow's load status, as `restore` returns it.
    """
    if not tf.executing_eagerly():
        raise TypeError("leaving values out of a restore needs eager execution")
    saver = checkpoint._saver
    view = saver._graph_view
    if view.attached_dependencies:
        raise TypeError("leaving values out of a restore of a checkpoint with attached objects")
    reader = tf.train.load_checkpoint(save_path)
    graph = TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    for node_id in leave_out:
        del graph.nodes[node_id].attributes[:]
    for node in graph.nodes:
        kept = [
            slot
            for slot in node.slot_variables
            if slot.slot_variable_node_id not in leave_out
            and slot.original_variable_node_id not in leave_out
        ]
        del node.slot_variables[:]
        node.slot_variables.extend(kept)
    options = tf.train.CheckpointOptions()
    with tf.device("/cpu:0"):
        prefix = tf.constant(save_path)
    coordinator = tf_checkpoint._CheckpointRestoreCoordinator(
        object_graph_proto=graph,
        save_path=save_path,
        save_path_tensor=prefix,
        reader=reader,
        restore_op_cache=saver._restore_op_cache,
        graph_view=view,
        options=options,
        saveables_cache=saver._saveables_cache,
    )
    restore_lib.CheckpointPosition(checkpoint=coordinator, proto_id=0).restore(view.root, reader)
    checkpoint._maybe_create_save_counter()
    return tf_checkpoint.CheckpointLoadStatus(
        coordinator, graph_view=view, feed_dict=None, options=options
    )


def set_initial_epoch(model: Any, epoch: int | None) -> None:
    """Makes the running `fit` start at `epoch` (read by Keras 3's `fit` after on_train_begin).

    None clears it, so that a later `fit` starts where its arguments say.
    """
    model._initial_epoch = epoch


def keras_metric_direction(metric: Any) -> str | None:
    """``"up"`` or ``"down"``: which way a Keras metric improves, when the metric says."""
    direction = getattr(metric, "_direction", None)
    return direction if isinstance(direction, str) else None


@contextmanager
def one_read_per_variable() -> Iterator[None]:
    """While a save gathers its values: a distributed variable is read once, for its value.

    TensorFlow's gather looks up every object's legacy saveable name twice
    (`saveable_compat.get_saveable_name`, a `getattr` with a default). A distributed variable
    has no such attribute, so `DistributedDelegate.__getattr__` forwards the lookup to its
    value: for a `SyncOnRead` variable that is a read, under `MultiWorkerMirroredStrategy` an
    all-reduce across the workers (5 ms each on 127.0.0.1), only to find nothing. Only lookup
    tables, iterators and TPU embeddings carry the name, never a variable, so answering None
    at the class while the save gathers changes no checkpoint. A release that renames the
    attribute or the class makes this a no-op (the reads come back, nothing breaks).
    """
    name = getattr(saveable_compat, "_LEGACY_SAVEABLE_NAME", None)
    delegate = getattr(distribute_values, "DistributedDelegate", None)
    if name is None or delegate is None or name in vars(delegate):
        yield  # a release without them, or a save in another thread set it already
        return
    setattr(delegate, name, None)
    try:
        yield
    finally:
        delattr(delegate, name)


class Snapshot:
    """The values a `tf.train.Checkpoint` saves, taken now and written later (an async save).

    TensorFlow's own save is two halves: gather every object's tensors with the object graph
    (`TrackableSaver._gather_serialized_tensors`), then write them (`MultiDeviceSaver.save`).
    A variable's tensor is a callable read at write time; the snapshot calls it now, so what is
    written is the value at this moment: a host copy of an accelerator variable, and for a host
    variable a read that shares its buffer until training next updates the variable (TensorFlow
    copies a variable's buffer before updating it while a read still holds it). Iterators and
    other objects serialize their state now. The written files are what `Checkpoint.write`
    writes. When a release renames the halves, the constructor raises AttributeError, which
    the backend reports as a `TrackableError` that says to save synchronously.

    Args:
        checkpoint: The checkpoint whose values to take.
        options: How to write them (the data files' sharding).

    Raises:
        AttributeError: This TensorFlow release has no such halves.
        ValueError: An object saves through a registered saver (DTensor, TPU embeddings),
            which writes live values and cannot be snapshotted.
    """

    def __init__(
        self, checkpoint: tf.train.Checkpoint, options: tf.train.CheckpointOptions
    ) -> None:
        saver = checkpoint._saver
        with one_read_per_variable():
            tensors, _, registered, _ = saver._gather_serialized_tensors(None)
        if registered:
            raise ValueError(f"objects saved by registered savers ({', '.join(registered)})")
        for obj, by_key in tensors.items():  # keyed by identity: variables are unhashable
            tensors[obj] = {key: _frozen(value) for key, value in by_key.items()}
        self._tensors = tensors
        self._options = options

    def write(self, prefix: str) -> str:
        """Writes the values taken to `prefix` (any thread); returns the prefix."""
        with tf.device("/cpu:0"):
            prefix_tensor = tf.constant(prefix)
        MultiDeviceSaver(self._tensors).save(prefix_tensor, self._options)
        return prefix


def _frozen(value: Any) -> Any:
    """`value` ({slice: tensor}, a tensor, or a SaveSpec) with every tensor read onto the host."""
    if isinstance(value, dict):
        return {spec: _frozen(v) for spec, v in value.items()}
    if isinstance(value, saveable_object.SaveSpec):
        tensor = value.tensor  # calls a variable's read now
        if tensor is None:
            return value  # an uninitialized variable: recorded, no value saved
        return saveable_object.SaveSpec(
            _on_host(tensor), value.slice_spec, value.name, value.dtype, value.device
        )
    return _on_host(value)


def _on_host(tensor: Any) -> Any:
    with tf.device("/cpu:0"):
        return tf.identity(tensor)
