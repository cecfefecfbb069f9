"""`ckptkit.compat.CheckpointManager`: TensorFlow's class from the caller's side, ckptkit's inside."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from forked import ForkedWorker

import ckptkit
import ckptkit.compat


def calls(make: Callable[..., Any], directory: str) -> list[Any]:
    """The same calls on a manager `make` builds; what each returned, paths by name."""

    def name(path: str | None) -> str | None:
        return None if path is None else os.path.basename(path)

    value, step = tf.Variable(0.0), tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(value=value, step=step)
    manager = make(checkpoint, directory, 3, step_counter=step, checkpoint_interval=4)
    seen: list[Any] = [isinstance(manager, tf.train.CheckpointManager)]
    seen.append(manager.restore_or_initialize())
    for at in range(1, 14):
        step.assign(at)
        value.assign(float(at))
        seen.append(name(manager.save()))  # due at 1, 5, 9, 13
    seen.append(name(manager.save()))  # the same step again: nothing
    step.assign(14)
    seen.append(name(manager.save(check_interval=False)))
    step.assign(15)
    seen.append(name(manager.save(checkpoint_number=100, check_interval=False)))
    seen.append(name(manager.latest_checkpoint))
    seen.append([name(p) for p in manager.checkpoints])
    seen.append(manager.checkpoint_interval)
    seen.append(os.path.abspath(manager.directory) == os.path.abspath(directory))
    manager.sync()
    state = tf.train.get_checkpoint_state(directory)
    seen.append([name(p) for p in state.all_model_checkpoint_paths])
    # A restart: a new manager restores the newest and counts the interval from its step.
    # (ckptkit's manager holds the directory's writer lock until closed, or its process ends.)
    if isinstance(manager, ckptkit.compat.CheckpointManager):
        manager.manager.close()
    value.assign(-1.0)
    again = make(checkpoint, directory, 3, step_counter=step, checkpoint_interval=4)
    seen.append(name(again.restore_or_initialize()))
    seen.append(float(value.numpy()))
    seen.append(name(again.save()))  # step 15 was saved last: nothing
    step.assign(19)
    seen.append(name(again.save()))
    return seen


def test_the_same_calls_return_the_same_as_tensorflows_manager(tmp_path) -> None:
    theirs = calls(tf.train.CheckpointManager, str(tmp_path / "tf"))
    ours = calls(ckptkit.compat.CheckpointManager, str(tmp_path / "ckptkit"))
    assert ours == theirs
    assert theirs[2:7] == ["ckpt-1", None, None, None, "ckpt-2"]  # due at steps 1 and 5
    # Every save went through ckptkit: manifests, and ckptkit's listing agrees.
    listed = ckptkit.list_checkpoints(str(tmp_path / "ckptkit"))
    final = tf.train.get_checkpoint_state(str(tmp_path / "tf")).all_model_checkpoint_paths
    assert [os.path.basename(c.path) for c in listed] == [os.path.basename(p) for p in final]
    assert all(os.path.exists(f"{c.path}.manifest.json") for c in listed)
    assert ckptkit.verify(str(tmp_path / "ckptkit")).ok


def test_a_save_through_either_view_is_listed_by_the_other(tmp_path) -> None:
    value = tf.Variable(1.0)
    manager = ckptkit.CheckpointManager(str(tmp_path), value=value)
    adapter = manager.as_tf_manager()
    assert isinstance(adapter, tf.train.CheckpointManager)
    manager.save(10)
    path = adapter.save()
    assert path is not None
    assert os.path.basename(path) == "ckpt-2"  # TensorFlow's numbering: by save_counter
    assert [c.path for c in manager.checkpoints] == adapter.checkpoints
    assert adapter.latest_checkpoint == manager.latest.path if manager.latest else False


def test_what_tensorflows_class_does_and_this_one_refuses(tmp_path) -> None:
    checkpoint = tf.train.Checkpoint(value=tf.Variable(1.0))
    adapter = ckptkit.compat.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=2)
    adapter.save(checkpoint_number=5)
    with pytest.raises(ckptkit.CheckpointExistsError, match="ckpt-5"):
        adapter.save(checkpoint_number=5)  # TensorFlow would replace the committed one
    with pytest.raises(NotImplementedError, match="experimental_io_device"):
        adapter.save(options=tf.train.CheckpointOptions(experimental_io_device="/cpu:0"))
    with pytest.raises(ValueError, match="max_to_keep"):
        ckptkit.compat.CheckpointManager(checkpoint, str(tmp_path), max_to_keep=0)
    with pytest.raises(ValueError, match="step_counter"):
        ckptkit.compat.CheckpointManager(checkpoint, str(tmp_path), 2, checkpoint_interval=3)


def test_an_async_save_through_the_options_and_init_fn_on_a_fresh_start(tmp_path) -> None:
    value = tf.Variable(1.0)
    started = []
    adapter = ckptkit.compat.CheckpointManager(
        tf.train.Checkpoint(value=value),
        str(tmp_path),
        max_to_keep=None,
        init_fn=lambda: started.append(True),
    )
    assert adapter.restore_or_initialize() is None
    assert started == [True]
    options = tf.train.CheckpointOptions(experimental_enable_async_checkpoint=True)
    path = adapter.save(options=options)
    value.assign(2.0)  # after save() returned: not in the checkpoint
    adapter.sync()
    assert path is not None
    np.testing.assert_equal(ckptkit.read_tensor(path, "value"), 1.0)
    adapter.manager.close()


@pytest.mark.slow
def test_tensorflows_preemption_handler_saves_through_ckptkit_on_sigterm(tmp_path) -> None:
    directory = str(tmp_path / "run")
    with ForkedWorker("tf_preemption_handler.py", directory) as worker:
        for line in worker.stdout:
            if '"step": 20' in line:
                worker.send_signal(signal.SIGTERM)
                break
        worker.stdout.read()
    assert worker.returncode == 42  # TensorFlow's exit after its preemption save, off GCE
    (saved,) = ckptkit.list_checkpoints(directory)  # through ckptkit: listed, with a manifest
    assert os.path.exists(f"{saved.path}.manifest.json")
    assert ckptkit.verify(directory).ok
    stored = int(ckptkit.read_tensor(saved.path, "step"))
    assert stored >= 20
    with ForkedWorker("tf_preemption_handler.py", directory, "--steps", "0") as again:
        said = json.loads(again.stdout.readline())
        again.stdout.read()
    assert said == {"start": stored, "value": float(stored)}  # restored by the handler
