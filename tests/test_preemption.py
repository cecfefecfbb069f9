"""SIGTERM / SIGINT: save at the next step boundary, exit cleanly, resume from exactly there."""

from __future__ import annotations

import os
import signal
import time

import pytest
import tensorflow as tf
from forked import ForkedWorker

import ckptkit


def start(directory: str, *extra: str) -> ForkedWorker:
    return ForkedWorker("preemptible.py", directory, *extra)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_termination_signal_saves_at_the_next_step_and_exits(tmp_path, sig) -> None:
    directory = str(tmp_path / "run")
    with start(directory) as worker:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "fresh"
        assert worker.stdout.readline().startswith("step")
        time.sleep(0.2)
        worker.send_signal(sig)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 128 + sig, err
    assert "Traceback" not in err
    last_step = int([line for line in out.splitlines() if line.startswith("step")][-1].split()[1])
    # The only checkpoint is the one the signal asked for, taken at the step the loop was on.
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [last_step]
    assert ckptkit.verify(directory).ok

    with start(directory) as again:
        assert again.stdout is not None
        assert again.stdout.readline().strip() == f"resumed {last_step}"
        assert again.stdout.readline().strip() == f"step {last_step + 1}"
        again.kill()
        again.communicate()


@pytest.mark.slow
def test_a_signal_during_a_background_save_commits_it_then_saves_the_step(tmp_path) -> None:
    directory = str(tmp_path / "run")
    with start(directory, "--async") as worker:
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "fresh"
        before = [worker.stdout.readline() for _ in range(4)]
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    # A signal caught inside the 4th step's maybe_save saves that step: no line follows then.
    steps = [line for line in [*before, *out.splitlines()] if line.startswith("step")]
    last_step = int(steps[-1].split()[1])
    # The save in flight was committed, not lost, and the signal's step is the newest.
    assert [c.step for c in ckptkit.list_checkpoints(directory)][-2:] == [last_step - 1, last_step]
    assert ckptkit.verify(directory, full=True).ok
    assert not [n for n in os.listdir(directory) if n.endswith((".pending", "_temp"))]
    weights, step = tf.Variable(tf.zeros((1 << 22,))), tf.Variable(0, dtype=tf.int64)
    assert ckptkit.CheckpointManager(directory, w=weights, step=step).restore().step == last_step
    assert float(weights[0]) == float(weights[-1]) == last_step


@pytest.mark.slow
def test_without_exit_training_goes_on_and_the_flag_says_why(tmp_path) -> None:
    directory = str(tmp_path / "run")
    with start(directory, "--no-exit") as worker:
        assert worker.stdout is not None
        worker.stdout.readline()
        worker.stdout.readline()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    assert out.strip().splitlines()[-1] == "saved after SIGTERM"


def test_handlers_are_restored_by_close(config) -> None:
    before = signal.getsignal(signal.SIGTERM)
    mgr = ckptkit.CheckpointManager(
        config(preemption=ckptkit.Preemption(signals=("SIGTERM",))), v=tf.Variable(1.0)
    )
    assert signal.getsignal(signal.SIGTERM) != before
    mgr.close()
    assert signal.getsignal(signal.SIGTERM) == before


def test_under_a_single_process_strategy_a_signal_saves_at_the_next_step(config) -> None:
    # One process: ckptkit's own catcher (TensorFlow's handler is for multi-worker clusters).
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        v = tf.Variable(1.0)
        mgr = ckptkit.CheckpointManager(
            config(preemption=ckptkit.Preemption(signals=("SIGUSR1",), exit=False)), v=v
        )
    try:
        signal.raise_signal(signal.SIGUSR1)
        assert mgr.maybe_save(7).endswith("ckpt-7")
        assert mgr.preempted == "SIGUSR1"
    finally:
        mgr.close()
