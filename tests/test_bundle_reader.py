"""The TensorFlow-free bundle reader against TensorFlow's own reader, value for value."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf.tensor_bundle_pb2 import BundleEntryProto
from tensorflow.core.protobuf.trackable_object_graph_pb2 import TrackableObjectGraph
from workers import index_table

import ckptkit
from ckptkit.cli import main
from ckptkit.reading import bundle_protos
from ckptkit.reading.bundle import DTYPES, OBJECT_GRAPH_KEY, Bundle
from ckptkit.reading.slice_keys import slice_key
from ckptkit.reading.table import Damage

FIXTURES = Path(__file__).parent / "fixtures"
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


def test_the_declared_messages_are_tensorflows() -> None:
    """bundle_protos declares TensorFlow's fields by name, number, type and repetition."""
    from google.protobuf.descriptor import FieldDescriptor
    from tensorflow.core.framework import tensor_shape_pb2, tensor_slice_pb2
    from tensorflow.core.protobuf import tensor_bundle_pb2, trackable_object_graph_pb2

    graph = trackable_object_graph_pb2.TrackableObjectGraph
    theirs = {
        "Dim": tensor_shape_pb2.TensorShapeProto.Dim,
        "TensorShapeProto": tensor_shape_pb2.TensorShapeProto,
        "Extent": tensor_slice_pb2.TensorSliceProto.Extent,
        "TensorSliceProto": tensor_slice_pb2.TensorSliceProto,
        "BundleHeaderProto": tensor_bundle_pb2.BundleHeaderProto,
        "BundleEntryProto": tensor_bundle_pb2.BundleEntryProto,
        "ObjectReference": graph.TrackableObject.ObjectReference,
        "SerializedTensor": graph.TrackableObject.SerializedTensor,
        "SlotVariableReference": graph.TrackableObject.SlotVariableReference,
        "TrackableObject": graph.TrackableObject,
        "TrackableObjectGraph": graph,
    }
    assert sorted(theirs) == sorted(bundle_protos.FIELDS)
    kinds = {v: k[5:].lower() for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_")}
    for name, fields in bundle_protos.FIELDS.items():
        for field, number, kind, repeated in fields:
            their = theirs[name].DESCRIPTOR.fields_by_name[field]
            their_kind = their.message_type.name if their.message_type else kinds[their.type]
            their_repeated = (  # `label` is gone from newer protobuf, `is_repeated` new there
                their.is_repeated
                if hasattr(their, "is_repeated")
                else their.label == FieldDescriptor.LABEL_REPEATED
            )
            assert (number, repeated) == (their.number, their_repeated), (name, field)
            assert kind == ("int32" if their_kind == "enum" else their_kind), (name, field)


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
    _same_as_tensorflow(prefix)


def test_partitioned_variables_of_a_v1_saver_read_as_tensorflows_reader_reads_them(
    tmp_path,
) -> None:
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        # Starts past 63 and 8191 take OrderedCode's longer encodings in the slices' keys.
        v1.get_variable("rows", [20_000, 2], partitioner=v1.fixed_size_partitioner(3))
        v1.get_variable(
            "cube",
            [2, 3, 130],
            tf.int64,
            v1.random_uniform_initializer(0, 1000, dtype=tf.int64),
            partitioner=v1.fixed_size_partitioner(4, axis=2),
        )
        v1.get_variable("wide", [7, 5], tf.float64, partitioner=v1.fixed_size_partitioner(2))
        v1.get_variable("plain", [4])
        session.run(v1.global_variables_initializer())
        prefix = v1.train.Saver().save(session, str(tmp_path / "model"))
    _same_as_tensorflow(prefix)
    slices = [len(Bundle(prefix).entries[k].slices) for k in ("rows", "cube", "wide", "plain")]
    assert slices == [3, 4, 2, 0]
    assert ckptkit.read_tensor(prefix, "rows").shape == (20_000, 2)
    assert ckptkit.verify(prefix, full=True).ok


def _partitioned(directory) -> str:
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        v1.get_variable("p", [10, 3], partitioner=v1.fixed_size_partitioner(3))
        session.run(v1.global_variables_initializer())
        return str(v1.train.Saver().save(session, str(directory / "model")))


def test_a_damaged_partitioned_variable_is_refused_with_what_is_wrong(tmp_path) -> None:
    """Parts missing, mis-shaped, overlapping or randomly damaged: a typed error naming it.

    Only ckptkit's reader opens these files (TensorFlow's aborts on some of them).
    """
    prefix = _partitioned(tmp_path)
    index = tmp_path / "model.index"
    pristine = index_table.entries(index.read_bytes())
    parts = [i for i, (key, _) in enumerate(pristine) if key.startswith(b"\0")]

    def damaged(entries) -> str:
        index.write_bytes(index_table.table(entries))
        with pytest.raises(ckptkit.CorruptCheckpointError) as raised:
            ckptkit.read_tensor(prefix, "p")
        assert "model" in str(raised.value)
        return str(raised.value)

    assert "slice p[4:7,0:3] is not stored" in damaged(
        [e for i, e in enumerate(pristine) if i != parts[1]]
    )
    entries = list(pristine)
    part = BundleEntryProto.FromString(entries[parts[1]][1])
    part.shape.dim[0].size, part.size = 2, 24
    entries[parts[1]] = (entries[parts[1]][0], part.SerializeToString())
    assert "slice p[4:7,0:3] is stored as float32 [2, 3]" in damaged(entries)
    # The middle part moved up a row: the rows still add up, but overlap and leave a gap.
    entries = list(pristine)
    whole = BundleEntryProto.FromString(entries[-1][1])
    whole.slices[1].extent[0].start = 3
    entries[-1] = (entries[-1][0], whole.SerializeToString())
    moved = entries.pop(parts[1])[1]
    entries.insert(parts[1], (slice_key("p", [(3, 3), (0, 3)]), moved))
    entries[1:4] = sorted(entries[1:4])
    assert "its index gives 'p' overlapping slices" in damaged(entries)
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(200):
        entries = list(pristine)
        i = int(rng.choice([*parts, len(entries) - 1]))
        value = bytearray(entries[i][1])
        for _ in range(int(rng.integers(1, 4))):
            value[int(rng.integers(len(value)))] = int(rng.integers(256))
        entries[i] = (entries[i][0], bytes(value))
        index.write_bytes(index_table.table(entries))
        try:
            outcomes.add(ckptkit.read_tensor(prefix, "p").shape)
        except ckptkit.CkptkitError:
            outcomes.add("typed error")
    assert "typed error" in outcomes


@pytest.mark.parametrize("step", [6, 9, 10])
def test_checkpoints_of_an_older_tensorflow_read_as_tensorflows_reader_reads_them(step) -> None:
    """tests/fixtures/estimator: a DNNClassifier's checkpoints, written by TensorFlow 2.15."""
    prefix = str(FIXTURES / "estimator" / "model_dir" / f"model.ckpt-{step}")
    _same_as_tensorflow(prefix)


@pytest.mark.parametrize("name", ["zoo", "partitioned/model"])
def test_checkpoints_of_tensorflow_2_15_read_as_its_reader_read_them(name, tmp_path) -> None:
    """tests/fixtures/tf215 (Keras 2, a v1 Saver): as TensorFlow 2.15 read them, and today's."""
    prefix = str(FIXTURES / "tf215" / name)
    expected = json.loads((FIXTURES / "tf215" / "expected.json").read_text())["checkpoints"]
    ours = Bundle(prefix)
    assert sorted(ours.entries) == sorted(expected[name])
    for key, then in expected[name].items():
        entry, value = ours.entries[key], ours.read(key)
        assert (entry.dtype_name, list(entry.shape)) == (then["dtype"], then["shape"]), key
        if entry.dtype_name == "string":
            data = json.dumps([v.hex() for v in value.reshape(-1)]).encode()
        else:
            data = value.tobytes()
        assert hashlib.sha256(data).hexdigest() == then["sha256"], key
    _same_as_tensorflow(prefix)
    if name == "zoo":  # Keras 2's object graph: the model's weights named, Adam's left out
        names = ckptkit.export_weights(prefix, tmp_path / "w.npz", format="npz")
        assert sorted(n for n in names if n.startswith(("model", "optimizer"))) == [
            "model/layer_with_weights-0/bias",
            "model/layer_with_weights-0/kernel",
        ]


def _same_as_tensorflow(prefix: str) -> None:
    """Names, shapes, dtypes and values (bit for bit) as TensorFlow's reader gives them."""
    theirs = tf.train.load_checkpoint(prefix)
    ours = Bundle(prefix)
    shapes, dtypes = theirs.get_variable_to_shape_map(), theirs.get_variable_to_dtype_map()
    assert sorted(ours.entries) == sorted(shapes)
    for key, entry in ours.entries.items():
        assert list(entry.shape) == shapes[key], key
        assert entry.dtype_name == dtypes[key].name, key
        expected, value = theirs.get_tensor(key), ours.read(key)
        if entry.dtype_name == "string":
            assert np.asarray(expected, dtype=object).tolist() == value.tolist(), key
        else:
            assert value.dtype == np.asarray(expected).dtype or entry.dtype_name == "bfloat16"
            assert value.tobytes() == np.asarray(expected).tobytes(), key


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
        with pytest.raises(Damage, match="crc32c"):
            Bundle(prefix).check(key)  # verify --full's way: no value built
        with pytest.raises(tf.errors.OpError, match="Checksum does not match"):
            tf.train.load_checkpoint(prefix).get_tensor(key)
    data.write_bytes(bytes(body[:10]))
    for read in (Bundle(prefix).read, Bundle(prefix).check):
        with pytest.raises(Damage, match="ends at byte"):
            read("w/.ATTRIBUTES/VARIABLE_VALUE")


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
assert "numpy" not in sys.modules, "listing needs no numpy (0.07-0.09 s to import)"
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
