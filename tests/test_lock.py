"""One writer per directory; readers are never blocked; a killed writer blocks nobody."""

from __future__ import annotations

import os
import signal

import keras
import numpy as np
import pytest
import tensorflow as tf
from forked import ForkedWorker

import ckptkit
from ckptkit.keras import CheckpointCallback


def test_a_second_writer_gets_a_clear_error(config) -> None:
    cfg = config()
    first = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    second = ckptkit.CheckpointManager(cfg, v=tf.Variable(2.0))
    first.save(1)
    with pytest.raises(ckptkit.DirectoryLockedError, match=f"pid {os.getpid()}"):
        second.save(2)
    assert [c.step for c in first.checkpoints] == [1]  # nothing interleaved
    # A reader is never blocked by the writer.
    assert ckptkit.CheckpointManager(cfg, v=tf.Variable(0.0)).restore().step == 1
    first.close()
    second.save(2)
    assert [c.step for c in second.checkpoints] == [1, 2]


def test_a_second_writer_is_told_when_it_starts_before_it_trains(config, tmp_path) -> None:
    cfg = config()
    first = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    assert not first.restore_or_initialize().restored  # a fresh directory: created, locked
    second = ckptkit.CheckpointManager(cfg, v=tf.Variable(2.0))
    with pytest.raises(ckptkit.DirectoryLockedError, match=f"pid {os.getpid()}"):
        second.restore_or_initialize()
    first.save(1)
    first.close()
    assert second.restore_or_initialize().step == 1
    second.close()

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = model.get_weights()
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as holder:
        holder.restore_or_initialize()
        with pytest.raises(ckptkit.DirectoryLockedError):
            model.fit(
                np.ones((8, 2)),
                np.ones((8, 1)),
                epochs=2,
                verbose=0,
                callbacks=[CheckpointCallback(cfg.directory)],
            )
    for a, b in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # stopped before the first batch


def test_the_context_manager_releases_the_lock(config) -> None:
    cfg = config()
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as mgr:
        mgr.save(1)
    ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)).save(2)


@pytest.mark.slow
def test_a_writer_in_another_process_holds_the_lock_until_it_is_killed(tmp_path) -> None:
    directory = str(tmp_path / "run")
    with ForkedWorker("train_forever.py", directory) as worker:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "fresh"
        assert worker.stdout.readline().startswith("committed")
        cfg = ckptkit.CheckpointConfig(directory=directory)
        mgr = ckptkit.CheckpointManager(cfg, other=tf.Variable(0.0))
        with pytest.raises(ckptkit.DirectoryLockedError, match=f"pid {worker.pid}"):
            mgr.save(10_000)
        worker.send_signal(signal.SIGKILL)
        worker.stdout.read()
    assert worker.returncode == -signal.SIGKILL
    mgr.save(10_000)  # the dead writer's lock went with its process
    assert mgr.latest is not None
    assert mgr.latest.step == 10_000


def test_a_stale_manager_rereads_the_directory_when_it_becomes_the_writer(config) -> None:
    cfg = config()
    stale = ckptkit.CheckpointManager(cfg, v=tf.Variable(2.0))  # reads an empty directory
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as other:
        other.save(1)
    with pytest.raises(ckptkit.CheckpointExistsError, match="ckpt-1"):
        stale.save(1)  # does not overwrite what the other writer committed
    stale.save(2)
    assert [c.step for c in stale.checkpoints] == [1, 2]
    assert float(ckptkit.read_tensor(os.path.join(cfg.directory, "ckpt-1"), "v")) == 1.0
