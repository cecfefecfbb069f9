from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import Net, make_model

import ckptkit


@pytest.fixture
def two_checkpoints(config):
    cfg = config()
    net = Net()
    mgr = ckptkit.CheckpointManager(cfg, net=net, step=tf.Variable(1, dtype=tf.int64))
    first = mgr.save(1)
    net.l1.kernel.assign_add(tf.fill((3, 5), 0.25))
    second = mgr.save(2)
    return first, second


def test_inspect_lists_keys_shapes_dtypes_and_bytes(two_checkpoints) -> None:
    _, second = two_checkpoints
    contents = ckptkit.inspect(second)
    assert contents.format == "object-based"
    assert contents.path == second
    by_key = {v.key: v for v in contents.variables}
    kernel = by_key["net/l1/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert (kernel.shape, kernel.dtype, kernel.size_bytes) == ((3, 5), "float32", 60)
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" not in by_key
    expected = {k: tuple(s) for k, s in tf.train.list_variables(second)}
    expected.pop("_CHECKPOINTABLE_OBJECT_GRAPH")
    assert {v.key: v.shape for v in contents.variables} == expected
    assert contents.total_bytes == sum(v.size_bytes for v in contents.variables)


def test_inspect_a_directory_means_its_newest_checkpoint(two_checkpoints) -> None:
    _, second = two_checkpoints
    assert ckptkit.inspect(os.path.dirname(second)).path == second
    assert ckptkit.inspect(second + ".index").path == second


def test_inspect_a_name_based_checkpoint(tmp_path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.Variable(tf.ones((2, 3)), name="dnn/hiddenlayer_0/kernel")
        tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "model.ckpt"), global_step=1000)
    contents = ckptkit.inspect(str(tmp_path))
    assert contents.format == "name-based"
    assert contents.path == path
    assert [(v.key, v.shape) for v in contents.variables] == [
        ("dnn/hiddenlayer_0/kernel", (2, 3)),
        ("global_step", ()),
    ]


def test_read_tensor_by_full_key_or_object_path(two_checkpoints) -> None:
    _, second = two_checkpoints
    np.testing.assert_array_equal(
        ckptkit.read_tensor(second, "net/l1/kernel"), np.full((3, 5), 0.75)
    )
    assert ckptkit.read_tensor(second, "step/.ATTRIBUTES/VARIABLE_VALUE") == 1
    with pytest.raises(ckptkit.CheckpointKeyError, match=r"no key 'net/l9' .* e.g. net/l1/bias"):
        ckptkit.read_tensor(second, "net/l9")


def test_diff_reports_value_changes_with_max_abs_diff(two_checkpoints) -> None:
    first, second = two_checkpoints
    result = ckptkit.diff(first, second)
    assert result.only_in_a == result.only_in_b == ()
    changed = {c.key: c for c in result.changed}
    kernel = changed["net/l1/kernel/.ATTRIBUTES/VARIABLE_VALUE"]
    assert kernel.max_abs_diff == pytest.approx(0.25)
    assert "net/l1/bias/.ATTRIBUTES/VARIABLE_VALUE" not in changed
    assert ckptkit.diff(second, second).changed == ()


def test_diff_reports_added_removed_and_reshaped_keys(tmp_path) -> None:
    a = tf.train.Checkpoint(x=tf.Variable([1.0, 2.0]), gone=tf.Variable(1)).write(
        str(tmp_path / "a")
    )
    b = tf.train.Checkpoint(x=tf.Variable([1.0, 2.0, 3.0]), new=tf.Variable(1)).write(
        str(tmp_path / "b")
    )
    result = ckptkit.diff(a, b)
    assert result.only_in_a == ("gone/.ATTRIBUTES/VARIABLE_VALUE",)
    assert result.only_in_b == ("new/.ATTRIBUTES/VARIABLE_VALUE",)
    (change,) = result.changed
    assert change.a == ((2,), "float32")
    assert change.b == ((3,), "float32")
    assert change.max_abs_diff is None


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        ("missing", ckptkit.CheckpointNotFoundError, "no checkpoint at"),
        ("garbage", ckptkit.CorruptCheckpointError, r"ckpt-2\.index.*truncated, damaged"),
        ("truncated", ckptkit.CorruptCheckpointError, r"ckpt-2\.index"),
        ("empty-dir", ckptkit.CheckpointNotFoundError, "no checkpoint in directory"),
        ("not-a-checkpoint", ckptkit.CheckpointNotFoundError, "is a file but not a checkpoint"),
        ("unreadable", ckptkit.CorruptCheckpointError, r"ckpt-2\.index"),
    ],
)
def test_bad_inputs_give_typed_errors_naming_the_path(
    two_checkpoints, tmp_path, damage, error, match
) -> None:
    _, second = two_checkpoints
    index = second + ".index"
    target = second
    if damage == "missing":
        target = str(tmp_path / "nowhere" / "ckpt-1")
    elif damage == "garbage":
        with open(index, "wb") as f:
            f.write(os.urandom(300))
    elif damage == "truncated":
        size = os.path.getsize(index)
        with open(index, "r+b") as f:
            f.truncate(size // 2)
    elif damage == "empty-dir":
        target = str(tmp_path / "empty")
        os.mkdir(target)
    elif damage == "not-a-checkpoint":
        target = str(tmp_path / "notes.txt")
        with open(target, "w") as f:
            f.write("hello")
    elif damage == "unreadable":
        # Root ignores file modes, so make the index something that cannot be read as a file.
        os.remove(index)
        os.mkdir(index)
    with pytest.raises(error, match=match):
        ckptkit.inspect(target)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_keras_native_files_are_listed_and_read(tmp_path, suffix) -> None:
    model = make_model()
    model.compile(optimizer="adam", loss="mse")
    path = str(tmp_path / f"m{suffix}")
    if suffix == ".keras":
        model.save(path)
    else:
        model.save_weights(path)
    contents = ckptkit.inspect(path)
    assert contents.format == "keras"
    layer_weights = [v for v in contents.variables if v.key.startswith("layers/")]
    assert sorted(v.shape for v in layer_weights) == sorted(w.shape for w in model.get_weights())
    kernel = ckptkit.read_tensor(path, "layers/dense/vars/0")
    np.testing.assert_array_equal(kernel, model.get_weights()[0])
    with pytest.raises(ckptkit.CheckpointKeyError, match="layers/dense/vars/0"):
        ckptkit.read_tensor(path, "layers/nope")


def test_a_damaged_keras_file_is_a_format_error(tmp_path) -> None:
    bad = tmp_path / "m.keras"
    bad.write_text("not a zip")
    with pytest.raises(ckptkit.FormatError, match=r"m\.keras is not a readable Keras file"):
        ckptkit.inspect(str(bad))
    with pytest.raises(ckptkit.CheckpointNotFoundError, match="no Keras file"):
        ckptkit.inspect(str(tmp_path / "missing.weights.h5"))
