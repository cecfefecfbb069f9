"""No lock-in: plain TensorFlow reads ckptkit directories, and ckptkit reads plain ones."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf
from helpers import Net

import ckptkit
from ckptkit import Retention


def trained_net(offset: float) -> Net:
    net = Net()
    net.l1.kernel.assign_add(tf.fill(net.l1.kernel.shape, offset))
    return net


def test_plain_tensorflow_reads_a_ckptkit_directory(config) -> None:
    cfg = config(retention=Retention(max_to_keep=3))
    mgr = ckptkit.CheckpointManager(cfg, net=trained_net(1.0), step=tf.Variable(4, dtype=tf.int64))
    for step in (1, 2, 3, 4):
        mgr.save(step)

    assert tf.train.latest_checkpoint(cfg.directory) == os.path.join(cfg.directory, "ckpt-4")
    state = tf.train.get_checkpoint_state(cfg.directory)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == [
        "ckpt-2",
        "ckpt-3",
        "ckpt-4",
    ]

    net, step = Net(), tf.Variable(0, dtype=tf.int64)
    root = tf.train.Checkpoint(net=net, step=step)
    plain = tf.train.CheckpointManager(root, **cfg.tf_manager_kwargs())
    assert plain.latest_checkpoint == os.path.join(cfg.directory, "ckpt-4")
    assert [os.path.basename(p) for p in plain.checkpoints] == ["ckpt-2", "ckpt-3", "ckpt-4"]
    root.restore(plain.latest_checkpoint).assert_consumed()
    np.testing.assert_array_equal(net.l1.kernel.numpy(), np.full((3, 5), 1.5, np.float32))
    assert int(step.numpy()) == 4


@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_data_split_into_files_of_max_shard_bytes_reads_everywhere(tmp_path, background) -> None:
    mib = 1 << 18  # float32 elements
    values = {f"w{i}": tf.Variable(tf.random.normal((mib,), seed=i)) for i in range(3)}
    values["big"] = tf.Variable(tf.random.normal((3 * mib,), seed=9))  # sliced across files
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path / "run"), max_shard_bytes=1 << 20, async_save=background
    )
    with ckptkit.CheckpointManager(cfg, **values) as mgr:
        path = mgr.save(1)
    data = [n for n in os.listdir(cfg.directory) if n.startswith("ckpt-1.data-")]
    assert len(data) >= 6  # 3 + 3 values of 1 MiB, and the object graph
    assert all(os.path.getsize(os.path.join(cfg.directory, n)) <= 1 << 20 for n in data)
    assert ckptkit.verify(path, full=True).ok
    for name, variable in values.items():
        expected = variable.numpy()
        np.testing.assert_array_equal(ckptkit.read_tensor(path, name), expected)
        key = f"{name}/.ATTRIBUTES/VARIABLE_VALUE"
        np.testing.assert_array_equal(tf.train.load_checkpoint(path).get_tensor(key), expected)
    fresh = {name: tf.Variable(tf.zeros_like(v)) for name, v in values.items()}
    tf.train.Checkpoint(**fresh).restore(path).assert_consumed()
    np.testing.assert_array_equal(fresh["big"].numpy(), values["big"].numpy())
    again = {name: tf.Variable(tf.zeros_like(v)) for name, v in values.items()}
    restored = ckptkit.CheckpointManager(cfg.directory, **again).restore(assertion="consumed")
    assert restored.step == 1
    np.testing.assert_array_equal(again["w2"].numpy(), values["w2"].numpy())


def test_a_directory_moved_elsewhere_still_works(config, tmp_path) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, net=trained_net(2.0)).save(1)
    moved = tmp_path / "moved"
    os.rename(cfg.directory, moved)
    assert tf.train.latest_checkpoint(str(moved)) == str(moved / "ckpt-1")
    net = Net()
    ckptkit.CheckpointManager(cfg.model_copy(update={"directory": str(moved)}), net=net).restore()
    assert float(net.l1.kernel.numpy()[0, 0]) == 2.5


def test_ckptkit_reads_a_plain_checkpoint_manager_directory(tmp_path) -> None:
    directory = str(tmp_path / "plain")
    root = tf.train.Checkpoint(net=trained_net(3.0), step=tf.Variable(9, dtype=tf.int64))
    plain = tf.train.CheckpointManager(root, directory, max_to_keep=2)
    for number in (100, 200, 300):
        plain.save(checkpoint_number=number)

    cfg = ckptkit.CheckpointConfig(directory=directory, retention=Retention(max_to_keep=2))
    net, step = Net(), tf.Variable(0, dtype=tf.int64)
    mgr = ckptkit.CheckpointManager(cfg, net=net, step=step)
    assert [c.step for c in mgr.checkpoints] == [200, 300]
    result = mgr.restore(assertion="consumed")
    assert result.step == 300
    assert float(net.l1.kernel.numpy()[0, 0]) == 3.5
    assert int(step.numpy()) == 9
    # ckptkit carries on in the same directory with the same retention.
    mgr.save(400)
    assert [c.step for c in mgr.checkpoints] == [300, 400]
    assert not tf.io.gfile.exists(os.path.join(directory, "ckpt-200.index"))


def test_ckptkit_reads_a_write_only_directory_without_state_file(tmp_path) -> None:
    directory = tmp_path / "written"
    tf.train.Checkpoint(net=trained_net(4.0)).write(str(directory / "weights-5"))
    assert not (directory / "checkpoint").exists()

    infos = ckptkit.list_checkpoints(str(directory))
    assert [(os.path.basename(i.path), i.step) for i in infos] == [("weights-5", 5)]
    cfg = ckptkit.CheckpointConfig(directory=str(directory), prefix="weights")
    net = Net()
    mgr = ckptkit.CheckpointManager(cfg, net=net)
    assert [c.step for c in mgr.checkpoints] == [5]
    # A checkpoint made by write() has no save_counter; ckptkit does not count that against it.
    result = mgr.restore_or_initialize(assertion="consumed")
    assert result.step == 5
    assert float(net.l1.kernel.numpy()[0, 0]) == 4.5


def test_any_tf_io_gfile_filesystem_works(tmp_path) -> None:
    directory = f"ram://{tmp_path.name}/run"
    cfg = ckptkit.CheckpointConfig(directory=directory, retention=Retention(max_to_keep=2))
    v = tf.Variable(0.0)
    with ckptkit.CheckpointManager(cfg, v=v) as mgr:  # its lease keeps other writers out
        for step in (1, 2, 3):
            v.assign(float(step))
            mgr.save(step)
        assert [c.step for c in mgr.checkpoints] == [2, 3]
    assert tf.train.latest_checkpoint(directory) == f"{directory}/ckpt-3"
    v.assign(0.0)
    assert ckptkit.CheckpointManager(cfg, v=v).restore_or_initialize(assertion="consumed").step == 3
    assert float(v.numpy()) == 3.0
    assert ckptkit.inspect(directory).variables[-1].key == "v/.ATTRIBUTES/VARIABLE_VALUE"
    assert not tf.io.gfile.exists(f"{directory}/ckpt-1.index")
