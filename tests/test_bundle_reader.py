"""The TensorFlow-free bundle reader against TensorFlow's own reader, value for value."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph

import ckptkit
from ckptkit.cli import main
from ckptkit.reading.bundle import DTYPES, OBJECT_GRAPH_KEY, Bundle
from ckptkit.reading.table import Damage

SHAPES = [(), (5,), (2, 3, 4)]
NUMERIC = [
    tf.float16,
    tf.bfloat16,
    tf.float32,
    tf.float64,
    tf.int8,
    tf.int16,
    tf.int32,
    tf.int64,
    tf.uint8,
    tf.uint16,
    tf.uint32,
    tf.uint64,
    tf.complex64,
    tf.complex128,
    tf.bool,
]


def test_the_dtype_table_names_each_dtype_as_tensorflow_does() -> None:
    for number, (name, _) in DTYPES.items():
        try:
            theirs = tf.dtypes.as_dtype(number).name
        except TypeError:
            continue  # a dtype this TensorFlow release does not have
        assert name == theirs, number


def test_every_dtype_and_shape_reads_as_tensorflows_reader_reads_it(tmp_path) -> None:
    rng = np.random.default_rng(0)
    variables = {}
    for dtype in NUMERIC:
        for shape in SHAPES:
            raw = rng.normal(size=shape) * 50
            if dtype.is_complex:
                raw = raw + 1j * rng.normal(size=shape)
            value = tf.cast(tf.constant(raw), dtype) if dtype != tf.bool else tf.constant(raw > 0)
            variables[f"{dtype.name}_{len(shape)}"] = tf.Variable(value)
    strings = ["", "plain", "non-ASCII: äß漢字", "x" * 300]
    variables["strings"] = tf.Variable(tf.constant(np.array(strings, dtype=object)))
    variables["scalar_string"] = tf.Variable(tf.constant("ünïcode"))
    variables["no_strings"] = tf.Variable(tf.constant(np.array([], dtype=object), tf.string))
    prefix = tf.train.Checkpoint(**variables).write(str(tmp_path / "ckpt"))
    theirs = tf.train.load_checkpoint(prefix)
    ours = Bundle(prefix)
    assert sorted(ours.entries) == sorted(theirs.get_variable_to_shape_map())
    dtypes = theirs.get_variable_to_dtype_map()
    for key, entry in ours.entries.items():
        assert list(entry.shape) == theirs.get_variable_to_shape_map()[key], key
        assert entry.dtype_name == dtypes[key].name, key
        expected = theirs.get_tensor(key)
        value = ours.read(key)
        if entry.dtype_name == "string":
            assert np.asarray(expected, dtype=object).tolist() == value.tolist(), key
        else:
            assert value.dtype == np.asarray(expected).dtype or entry.dtype_name == "bfloat16"
            assert value.tobytes() == np.asarray(expected).tobytes(), key  # bit for bit


def test_the_object_graph_reads_as_tensorflows_proto(tmp_path) -> None:
    keras = tf.keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 2)), verbose=0)
    prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).write(str(tmp_path / "c"))
    proto = TrackableObjectGraph()
    proto.ParseFromString(tf.train.load_checkpoint(prefix).get_tensor(OBJECT_GRAPH_KEY))
    nodes = Bundle(prefix).object_graph()
    assert nodes is not None
    assert len(nodes) == len(proto.nodes)
    for ours, theirs in zip(nodes, proto.nodes, strict=True):
        assert ours.children == tuple((c.local_name, c.node_id) for c in theirs.children)
        assert ours.attributes == tuple(
            (a.name, a.full_name, a.checkpoint_key) for a in theirs.attributes
        )
        assert ours.slots == tuple(
            (s.original_variable_node_id, s.slot_variable_node_id) for s in theirs.slot_variables
        )


def test_a_flipped_byte_fails_the_checksum_as_in_tensorflow(tmp_path) -> None:
    prefix = tf.train.Checkpoint(
        w=tf.Variable(tf.ones((64,))), s=tf.Variable(tf.constant(["abc", "de"]))
    ).write(str(tmp_path / "c"))
    data = tmp_path / "c.data-00000-of-00001"
    body = bytearray(data.read_bytes())
    bundle = Bundle(prefix)
    for key in ("w/.ATTRIBUTES/VARIABLE_VALUE", "s/.ATTRIBUTES/VARIABLE_VALUE"):
        entry = bundle.entries[key]
        flipped = bytearray(body)
        flipped[entry.offset + entry.size - 1] ^= 0x01
        data.write_bytes(bytes(flipped))
        with pytest.raises(Damage, match="crc32c"):
            Bundle(prefix).read(key)
        with pytest.raises(tf.errors.OpError, match="Checksum does not match"):
            tf.train.load_checkpoint(prefix).get_tensor(key)
    data.write_bytes(bytes(body[:10]))
    with pytest.raises(Damage, match="ends at byte"):
        Bundle(prefix).read("w/.ATTRIBUTES/VARIABLE_VALUE")


def test_every_read_function_and_command_runs_without_tensorflow(tmp_path) -> None:
    """In a fresh interpreter: after each call, `tensorflow` has not been imported."""
    directory = tmp_path / "run"
    checkpoint = tf.train.Checkpoint(
        w=tf.Variable(tf.ones((3, 2))), s=tf.Variable(tf.constant(["a", "ä"]))
    )
    manager = tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=None)
    manager.save()
    checkpoint.w.assign(tf.zeros((3, 2)))
    manager.save()
    code = f"""
import sys
import ckptkit
from ckptkit.cli import main

def clean(what):
    assert "tensorflow" not in sys.modules, what
    print(what, "ok")

d = {str(directory)!r}
ckptkit.list_checkpoints(d); clean("list_checkpoints")
ckptkit.inspect(d); clean("inspect")
ckptkit.read_tensor(d, "w"); clean("read_tensor")
ckptkit.diff(d + "/ckpt-1", d + "/ckpt-2"); clean("diff")
assert ckptkit.verify(d, full=True).ok; clean("verify full")
ckptkit.export_weights(d, d + "/w.npz", format="npz"); clean("export_weights")
ckptkit.export_weights(d, d + "/w.safetensors"); clean("export_weights safetensors")
for args in (["ls", d], ["inspect", d], ["inspect", d, "--tensor", "s"],
             ["diff", d + "/ckpt-1", d + "/ckpt-2"], ["verify", d, "--full"]):
    main([*args, "--json"]); clean(" ".join(args[:1]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(" ok\n") == 12


def test_weights_export_for_other_frameworks_names_by_the_graph_and_leaves_the_optimizer(
    tmp_path, capsys
) -> None:
    keras = tf.keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), verbose=0)
    extra = tf.Variable(tf.cast(tf.reshape(tf.range(6.0), (2, 3)), tf.bfloat16))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, extra=extra)
    prefix = checkpoint.write(str(tmp_path / "ckpt"))
    theirs = tf.train.load_checkpoint(prefix)

    names = ckptkit.export_weights(prefix, tmp_path / "w.safetensors")
    assert len(names) == 5  # two kernels, two biases, the bfloat16 variable
    assert all(n.startswith(("model/", "extra")) for n in names)  # not optimizer/...
    assert any(k.startswith("optimizer/_trainable_variables") for k in names.values())
    from safetensors.numpy import load_file

    loaded = load_file(str(tmp_path / "w.safetensors"))
    assert sorted(loaded) == sorted(names)
    assert loaded["extra"].dtype.name == "bfloat16"  # stays BF16
    for name, key in names.items():
        assert loaded[name].tobytes() == np.asarray(theirs.get_tensor(key)).tobytes(), name

    with_optimizer = ckptkit.export_weights(
        prefix, tmp_path / "w.npz", format="npz", include_optimizer=True
    )
    assert set(names) < set(with_optimizer)
    with np.load(tmp_path / "w.npz") as arrays:
        assert sorted(arrays.files) == sorted(with_optimizer)
        for name, key in with_optimizer.items():
            expected = np.asarray(theirs.get_tensor(key))
            if expected.dtype.name == "bfloat16":
                expected = expected.astype(np.float32)  # numpy cannot load bfloat16 back
            np.testing.assert_array_equal(arrays[name], expected, err_msg=name)
    mapping = (tmp_path / "w.npz.names.json").read_text()
    assert "iterations" in mapping  # optimizer/_iterations (Keras 3.3: optimizer/iterations)

    assert main(["export", prefix, "--to", "npz", str(tmp_path / "c.npz"), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["names"]) == sorted(names)
