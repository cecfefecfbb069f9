"""Async saves in-process: what a checkpoint holds, when it is listed, and where errors go.

Kills, a full disk and preemption with async saves run in worker processes: test_faults.py,
test_preemption.py and test_keras.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import ENV, cli, equal_to, fill, make_model, state

import ckptkit
from ckptkit.keras import CheckpointCallback


def _returns(call: Callable[[], object]) -> None:
    """Runs `call` on a thread; fails unless it returns while this thread holds up commits."""
    thread = threading.Thread(target=call)
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "save() waited for its commit"


def _values(objects: list[object]) -> list[np.ndarray]:
    return [np.array(v.numpy(), copy=True) for v in objects]


def test_training_after_save_returns_never_reaches_the_checkpoint(config) -> None:
    """Saved many times in a row, each checkpoint holds the values at its save() call.

    A Keras 3 model and optimizer (TF's own async save fails on the second save of one),
    a tf.data iterator and a tf.Variable changed by sparse updates, all trained on at once.
    """
    model = make_model()
    model.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).random((32, 3), dtype=np.float32)
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    iterator = iter(tf.data.Dataset.range(1000))
    table = tf.Variable(tf.zeros((64,)))
    cfg = config(async_save=True, retention=ckptkit.Retention(max_to_keep=None))
    mgr = ckptkit.CheckpointManager(
        cfg, model=model, optimizer=model.optimizer, it=iterator, table=table
    )
    objects = [*model.weights, *model.optimizer.variables, table]
    expected = {}
    for step in range(1, 13):
        mgr.save(step)
        expected[step] = (_values(objects), int(next(iterator)))  # what a resume reads next
        # Training changes everything while the save is in flight.
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        table.scatter_add(tf.IndexedSlices(tf.ones((2,)), tf.constant([step, 2 * step])))
        table.assign_add(tf.ones((64,)))
    mgr.close()
    assert [c.step for c in mgr.checkpoints] == list(range(1, 13))
    for step, (values, position) in expected.items():
        fresh = make_model()
        fresh.compile(optimizer="adam", loss="mse")
        fresh.optimizer.build(fresh.trainable_variables)
        fresh_it = iter(tf.data.Dataset.range(1000))
        fresh_table = tf.Variable(tf.zeros((64,)))
        reader = ckptkit.CheckpointManager(
            cfg.directory,
            model=fresh,
            optimizer=fresh.optimizer,
            it=fresh_it,
            table=fresh_table,
        )
        reader.restore(step=step, assertion="consumed")
        got = _values([*fresh.weights, *fresh.optimizer.variables, fresh_table])
        assert all(np.array_equal(a, b) for a, b in zip(values, got, strict=True)), step
        assert int(next(fresh_it)) == position, step
    # Plain TensorFlow reads them too.
    plain = tf.train.Checkpoint(table=tf.Variable(tf.zeros((64,))))
    plain.read(os.path.join(cfg.directory, "ckpt-12")).expect_partial()
    assert np.array_equal(plain.table.numpy(), expected[12][0][-1])


def test_nothing_is_listed_before_its_commit(config) -> None:
    """Held between its files and its commit, a background save is listed nowhere."""
    cfg = config(async_save=True)
    variables = state()
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    fill(variables, 1)
    mgr.save(1)
    assert mgr.wait() == os.path.join(cfg.directory, "ckpt-1")
    committing = mgr._pipeline._committing  # the step after the manifest, before the state
    with committing:
        fill(variables, 2)
        _returns(lambda: mgr.save(2))
        fill(variables, 3)
        manifest = os.path.join(cfg.directory, "ckpt-2.manifest.json")
        deadline = time.monotonic() + 60
        while not os.path.exists(manifest):
            assert time.monotonic() < deadline, "the background save never wrote its files"
            time.sleep(0.01)
        assert mgr.in_flight == os.path.join(cfg.directory, "ckpt-2")
        assert [mgr.latest] == mgr.checkpoints
        assert [c.step for c in mgr.checkpoints] == [1]
        assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1]
        assert tf.train.latest_checkpoint(cfg.directory).endswith("ckpt-1")
        assert "ckpt-2" not in cli("ls", cfg.directory).stdout
        reader_vars = state()
        assert ckptkit.CheckpointManager(cfg.directory, **reader_vars).restore().step == 1
        assert equal_to(reader_vars, 1)
    assert mgr.wait() == os.path.join(cfg.directory, "ckpt-2")
    assert mgr.in_flight is None
    assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1, 2]
    assert ckptkit.CheckpointManager(cfg.directory, **reader_vars).restore().step == 2
    assert equal_to(reader_vars, 2)
    mgr.close()


def test_a_background_failure_is_raised_typed_by_the_next_call(config) -> None:
    cfg = config(async_save=True, schedule=ckptkit.Schedule(every_steps=10))
    variables = state()
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    mgr.save(1)
    mgr.wait()
    # chmod does not stop root (CI runs as root); the immutable attribute does.
    subprocess.run(["chattr", "+i", cfg.directory], check=True)
    try:
        assert mgr.save(2) == os.path.join(cfg.directory, "ckpt-2")  # returns: it failed later
        while mgr.in_flight is not None:
            time.sleep(0.01)
        # Raised by a maybe_save on a step that does not save, then never again.
        with pytest.raises(ckptkit.SaveError, match=r"ckpt-2.*Nothing was committed"):
            mgr.maybe_save(3)
        assert mgr.maybe_save(4) is None
        mgr.save(5)
        with pytest.raises(ckptkit.SaveError, match="ckpt-5"):
            mgr.wait()
        mgr.save(6)
        with pytest.raises(ckptkit.SaveError, match="ckpt-6"):
            mgr.save(7)  # the next save raises the previous one's error, and does not save
    finally:
        subprocess.run(["chattr", "-i", cfg.directory], check=True)
    assert [c.step for c in mgr.checkpoints] == [1]
    fill(variables, 8)
    mgr.save(8)
    mgr.close()
    assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1, 8]
    files = [f"ckpt-{s}{x}" for s in (1, 8) for x in (".data-00000-of-00001", ".index")]
    files += ["ckpt-1.manifest.json", "ckpt-8.manifest.json", ".ckptkit.lock", "checkpoint"]
    assert sorted(os.listdir(cfg.directory)) == sorted(files)  # nothing of 2, 5, 6 is left
    assert ckptkit.verify(cfg.directory, full=True).ok


def test_close_waits_for_the_save_in_flight_and_raises_its_error(config) -> None:
    cfg = config(async_save=True)
    variables = state()
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        mgr.save(1)
    assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1]
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    mgr.save(2)
    mgr.wait()
    subprocess.run(["chattr", "+i", cfg.directory], check=True)
    try:
        mgr.save(3)
        with pytest.raises(ckptkit.SaveError, match="ckpt-3"):
            mgr.close()
    finally:
        subprocess.run(["chattr", "-i", cfg.directory], check=True)
    # The lock was released all the same: another writer takes the directory.
    with ckptkit.CheckpointManager(cfg, **variables) as other:
        other.save(3)
    # A with block's own error is raised; the save's error is a warning beside it.
    subprocess.run(["chattr", "+i", cfg.directory], check=True)
    try:
        with (  # noqa: PT012, PT031
            pytest.warns(UserWarning, match=r"while closing after KeyError.*ckpt-4"),
            pytest.raises(KeyError),
            ckptkit.CheckpointManager(cfg, **variables) as third,
        ):
            third.save(4)
            raise KeyError("the training loop's own error")
    finally:
        subprocess.run(["chattr", "-i", cfg.directory], check=True)


def test_a_save_still_running_when_the_wait_runs_out_is_left_uncommitted(config) -> None:
    cfg = config(async_save=True, async_timeout_secs=0.001)
    variables = {"big": tf.Variable(tf.ones((1 << 24,)))}  # 64 MiB: a write takes a while
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    mgr.save(1)
    mgr.wait()
    mgr.save(2)
    thread = mgr._pipeline._thread
    with pytest.raises(ckptkit.SaveError, match=r"ckpt-2 was still being written after 0 s"):
        mgr.close()
    assert thread is not None
    thread.join(60)  # TensorFlow's write goes on; the save finds itself abandoned
    assert [c.step for c in ckptkit.list_checkpoints(cfg.directory)] == [1]
    assert not [n for n in os.listdir(cfg.directory) if n.startswith("ckpt-2")]
    with ckptkit.CheckpointManager(cfg, **variables) as other:
        assert other.restore().step == 1


def test_graph_mode_saves_synchronously_and_says_so(config) -> None:
    cfg = config(async_save=True)
    with tf.Graph().as_default():
        v = tf.compat.v1.get_variable("v", initializer=1.0)
        with tf.compat.v1.Session() as sess:
            sess.run(v.initializer)
            with pytest.warns(UserWarning, match="save synchronously"):
                mgr = ckptkit.CheckpointManager.for_session(cfg, sess)
            assert mgr.config.async_save is False
            mgr.save(1)
            assert [c.step for c in mgr.checkpoints] == [1]  # committed when save returned
            with pytest.raises(ckptkit.TrackableError, match="save synchronously"):
                mgr.save(2, async_save=True)
            mgr.close()


def test_the_per_call_switch_overrides_the_config(config) -> None:
    variables = state()
    mgr = ckptkit.CheckpointManager(config(), **variables)
    with mgr._pipeline._committing:  # a synchronous save would wait here: this one returns
        _returns(lambda: mgr.save(1, async_save=True))
        assert mgr.in_flight is not None
    mgr.wait()
    mgr.close()
    cfg = config(async_save=True, directory=mgr.directory + "-2")
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    mgr.save(1, async_save=False)
    assert mgr.in_flight is None
    assert [c.step for c in mgr.checkpoints] == [1]
    mgr.close()


def test_the_keras_callback_saves_in_the_background(tmp_path) -> None:
    x = np.random.default_rng(1).random((40, 3), dtype=np.float32)
    y = x.sum(axis=1, keepdims=True)

    def run(name: str, **kwargs: object) -> list[np.ndarray]:
        keras.utils.set_random_seed(3)
        model = make_model()
        model.compile(optimizer="adam", loss="mse")
        callback = CheckpointCallback(tmp_path / name, save_freq=2, keep_checkpoints=True, **kwargs)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])
        assert callback.manager is not None
        assert callback.manager.in_flight is None
        return [w.numpy() for w in model.weights]

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights = run("async", async_save=True)
    directory = str(tmp_path / "async")
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [2, 4, 6, 8, 10]
    assert ckptkit.verify(directory, full=True).ok
    # Saving in the background changes nothing of the training, and the newest checkpoint
    # holds the final weights.
    synchronous = run("sync")
    assert all(np.array_equal(a, b) for a, b in zip(weights, synchronous, strict=True))
    fresh = make_model()
    ckptkit.CheckpointManager(directory, model=fresh).restore(assertion="partial")
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(weights, fresh.weights, strict=True))


EXITING = """
import sys
import tensorflow as tf
import ckptkit

big = tf.Variable(tf.ones((1 << 24,)))  # 64 MiB: the write outlasts the last line
cfg = ckptkit.CheckpointConfig(directory=sys.argv[1], async_save=True)
mgr = ckptkit.CheckpointManager(cfg, big=big)
mgr.save(1)
mgr.close()
big.assign_add(tf.ones((1 << 24,)))
mgr.save(2)  # the same manager, after close: exit still waits for its save
print(mgr.in_flight, flush=True)
"""


@pytest.mark.slow
def test_interpreter_exit_waits_for_the_save_in_flight(tmp_path) -> None:
    directory = str(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-c", EXITING, directory],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
        check=True,
    )
    assert done.stdout.strip() == os.path.join(directory, "ckpt-2")  # in flight at the end
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [1, 2]
    assert ckptkit.verify(directory, full=True).ok
    big = tf.Variable(tf.zeros((1 << 24,)))
    ckptkit.CheckpointManager(directory, big=big).restore()
    assert float(big[0]) == float(big[-1]) == 2.0


EXITING_AFTER_A_FAILED_SAVE = """
import atexit, resource, signal, sys
import tensorflow as tf
import ckptkit

atexit.register(print, "an exit handler of the program ran", flush=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
w = tf.Variable(tf.ones((1 << 20,)))  # 4 MiB
mgr = ckptkit.CheckpointManager(ckptkit.CheckpointConfig(directory=sys.argv[1], async_save=True), w=w)
mgr.save(1)
mgr.wait()
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, resource.RLIM_INFINITY))
mgr.save(2)  # fails in the background; the script never waits
print("the script ended normally", flush=True)
"""


@pytest.mark.slow
def test_a_failed_async_save_at_exit_fails_the_process(tmp_path) -> None:
    directory = str(tmp_path / "run")
    done = subprocess.run(
        [sys.executable, "-c", EXITING_AFTER_A_FAILED_SAVE, directory],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "the script ended normally",
        "an exit handler of the program ran",
    ]
    message = [line for line in done.stderr.splitlines() if line.startswith("ckptkit: at exit")]
    assert len(message) == 1
    assert f"the last async save to {directory} did not commit" in message[0]
    assert "ckpt-2" in message[0]
    assert "space" in message[0] or "too large" in message[0]  # the cause
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [1]
