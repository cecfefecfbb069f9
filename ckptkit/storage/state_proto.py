"""TensorFlow's `CheckpointState` message (the ``checkpoint`` state file), without TensorFlow.

The schema of ``tensorflow/python/training/checkpoint_state.proto`` is declared here, in a
descriptor pool of ckptkit's own, so protobuf parses and prints state files without importing
TensorFlow (about 3 s): `ckptkit ls` and listing a directory start fast. `tests/test_interop.py`
checks that the declaration matches TensorFlow's.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["CheckpointState"]

_FIELDS = (  # name, number, label, type: as in TensorFlow's checkpoint_state.proto
    ("model_checkpoint_path", 1, "LABEL_OPTIONAL", "TYPE_STRING"),
    ("all_model_checkpoint_paths", 2, "LABEL_REPEATED", "TYPE_STRING"),
    ("all_model_checkpoint_timestamps", 3, "LABEL_REPEATED", "TYPE_DOUBLE"),
    ("last_preserved_timestamp", 4, "LABEL_OPTIONAL", "TYPE_DOUBLE"),
)


def _message_class() -> Any:
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="ckptkit/checkpoint_state.proto", package="tensorflow", syntax="proto3"
    )
    message = file.message_type.add(name="CheckpointState")
    for name, number, label, kind in _FIELDS:
        message.field.add(
            name=name, number=number, label=field.Label.Value(label), type=field.Type.Value(kind)
        )
    pool = descriptor_pool.DescriptorPool()  # not the default pool, where TensorFlow's lives
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.CheckpointState"))


CheckpointState: Any = _message_class()
