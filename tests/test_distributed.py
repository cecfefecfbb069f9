"""tf.distribute: every worker saves, the chief alone commits; every worker restores the same one.

The multi-worker tests start real clusters of worker processes (`tests/workers/cluster_worker.py`,
MultiWorkerMirroredStrategy on 127.0.0.1 ports, CPU); each start costs seconds, so each test
runs the cluster a few times with the scenarios in a row.
"""

from __future__ import annotations

import json
import os
import signal
import time

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import Interrupt, finish_cluster, free_cluster, start_cluster, start_task

import ckptkit
from ckptkit.keras import CheckpointCallback


def run_cluster(directory: str, *args: str) -> list[tuple[int, list[dict], str]]:
    return finish_cluster(start_cluster("cluster_worker.py", directory, *args))


def only(outcomes: list, key: str) -> list[list]:
    """Each worker's values of `key`, in order."""
    return [[line[key] for line in lines if key in line] for _, lines, _ in outcomes]


MODES = pytest.mark.parametrize("mode", [(), ("--async",)], ids=["sync", "async"])


@pytest.mark.slow
@MODES
def test_the_chief_commits_and_every_worker_walks_back_to_the_same_checkpoint(
    tmp_path, mode
) -> None:
    directory = str(tmp_path / "run")
    first = run_cluster(directory, "--steps", "6", "--every-steps", "2", *mode)
    for code, lines, err in first:
        assert code == 0, err
        assert lines[0] == {"restored": None, "values": [0.0, 0.0, 0.0]}
        # The sum a SyncOnRead variable reads as is taken over both workers.
        assert lines[-1] == {"done": 6, "values": [6.0, 12.0, 6.0], "listed": [2, 4, 6]}
    assert only(first, "saved") == [[2, 4, 6], [2, 4, 6]]
    # Only the chief's files: no worker's scratch, no second writer's leftovers.
    names = sorted(os.listdir(directory))
    assert names == sorted(
        [".ckptkit.lock", "checkpoint"]
        + [
            f"ckpt-{s}.{x}"
            for s in (2, 4, 6)
            for x in ("index", "data-00000-of-00001", "manifest.json")
        ]
    )
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [2, 4, 6]
    assert tf.train.latest_checkpoint(directory).endswith("ckpt-6")

    with open(os.path.join(directory, "ckpt-6.index"), "r+b") as index:
        index.truncate(20)  # damaged after its commit
    second = run_cluster(directory, "--steps", "8", "--every-steps", "2", *mode)
    for code, lines, err in second:
        assert code == 0, err
        assert lines[0] == {"restored": 4, "values": [4.0, 8.0, 4.0]}
        assert lines[-1]["done"] == 8
        assert lines[-1]["values"] == [8.0, 16.0, 8.0]
    assert only(second, "saved") == [[6, 8], [6, 8]]  # the damaged 6 replaced by a good one
    assert ckptkit.verify(directory).ok


@pytest.mark.slow
def test_a_time_schedule_saves_at_the_chiefs_steps_on_every_worker(tmp_path) -> None:
    directory = str(tmp_path / "run")
    # Worker 1's clock runs 0.15 s behind the chief's; on its own clock it would save at other
    # steps than the chief, and the two workers' saves would pair up the wrong collectives.
    outcomes = run_cluster(
        directory, "--steps", "40", "--step-secs", "0.03", "--every-secs", "0.3", "--late", "0.15"
    )
    for code, _, err in outcomes:
        assert code == 0, err
    saved = only(outcomes, "saved")
    assert saved[0]
    assert saved[0] == saved[1]
    listed = [c.step for c in ckptkit.list_checkpoints(directory)]
    assert listed == saved[0][-3:]


@pytest.mark.slow
def test_what_the_chief_cannot_do_every_worker_fails_with_the_same_error(tmp_path) -> None:
    directory = str(tmp_path / "run")
    holder = ckptkit.CheckpointManager(directory, v=tf.Variable(1.0))
    holder.restore_or_initialize()  # takes the writer lock, as a job in training would
    try:
        locked = run_cluster(directory, "--steps", "2", "--every-steps", "1")
    finally:
        holder.close()
    for code, lines, err in locked:
        assert code == 3, err
        assert lines[-1]["error"] == "DirectoryLockedError"
    assert "is being written by another checkpoint manager" in locked[0][1][-1]["message"]
    assert "the chief could not restore" in locked[1][1][-1]["message"]

    # The chief's disk fills up in its save, after both workers wrote their part.
    full = run_cluster(
        directory, "--steps", "2", "--every-steps", "1", "--mib", "4", "--chief-file-limit", "1"
    )
    for code, lines, err in full:
        assert code == 3, err
        assert lines[-1]["error"] == "DiskFullError"
    assert "the chief could not save" in full[1][1][-1]["message"]
    assert ckptkit.list_checkpoints(directory) == []
    assert sorted(os.listdir(directory)) == [".ckptkit.lock"]  # nothing half-written is left

    # Async: the chief's background write fails; every worker raises it at the next save.
    full = run_cluster(
        directory,
        *("--steps", "2", "--every-steps", "1", "--mib", "4", "--chief-file-limit", "1"),
        "--async",
    )
    for code, lines, err in full:
        assert code == 3, err
        assert lines[-1]["error"] == "DiskFullError"
        assert [line["saved"] for line in lines if "saved" in line] == [1]  # 2 is not begun
    assert f"the chief could not commit {directory}/ckpt-1" in full[1][1][-1]["message"]
    assert ckptkit.list_checkpoints(directory) == []
    assert sorted(os.listdir(directory)) == [".ckptkit.lock"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("victim", "how"),
    [(0, signal.SIGKILL), (1, signal.SIGKILL), (0, signal.SIGSTOP), (1, signal.SIGSTOP)],
    ids=["chief-killed", "worker-killed", "chief-frozen", "worker-frozen"],
)
def test_a_worker_lost_in_a_save_is_named_and_the_committed_checkpoints_stay(
    tmp_path, victim, how
) -> None:
    directory = str(tmp_path / "run")
    workers = start_cluster(
        "cluster_worker.py", directory, "--every-steps", "3", "--mib", "64", "--forever"
    )
    survivor = workers[1 - victim]
    try:
        seen = 0
        for line in workers[0].stdout:
            if '"saving"' in line:
                seen += 1
                if seen == 3:  # both workers are past step 9's collective, before its commit
                    workers[victim].send_signal(how)
                    break
        lost = time.monotonic()
        out, err = survivor.communicate(timeout=120)
        noticed = time.monotonic() - lost
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
    said = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    assert survivor.returncode == 3, err[-3000:]
    assert said["error"] == "WorkerLostError", said
    assert f"worker worker:{victim} stopped answering during save" in said["message"]
    assert f"this worker (worker:{1 - victim}) stops too" in said["message"]
    assert noticed < 60  # TensorFlow's heartbeat timeout is 10 s

    committed = [c.step for c in ckptkit.list_checkpoints(directory)]
    assert committed
    assert set(committed) <= {3, 6, 9}
    assert ckptkit.verify(directory).ok  # whatever was listed is whole

    outcomes = run_cluster(
        directory, "--steps", str(committed[-1] + 3), "--every-steps", "3", "--mib", "64"
    )
    for code, lines, err in outcomes:
        assert code == 0, err
        assert lines[0]["restored"] == committed[-1]
        assert lines[-1]["done"] == committed[-1] + 3
    assert ckptkit.verify(directory).ok
    assert not [n for n in os.listdir(directory) if n.startswith(".workertemp")]


@pytest.mark.slow
@pytest.mark.parametrize("victim", [0, 1], ids=["chief-killed", "worker-killed"])
def test_a_worker_killed_while_the_chief_writes_in_the_background_leaves_whole_commits(
    tmp_path, victim
) -> None:
    directory = str(tmp_path / "run")
    workers = start_cluster(
        "cluster_worker.py", directory, "--every-steps", "3", "--mib", "256", "--forever", "--async"
    )
    try:
        for line in workers[0].stdout:
            if '"saved": 9' in line:  # every worker took step 9's values; the chief writes them
                workers[victim].kill()
                break
        outcomes = finish_cluster(workers, timeout=120)
    finally:
        for worker in workers:
            worker.kill()
    code, _, err = outcomes[1 - victim]
    assert code != 0, err[-3000:]  # the survivor's next collective fails
    committed = [c.step for c in ckptkit.list_checkpoints(directory)]
    # A chief killed mid-write commits nothing of it; a chief that outlives the other worker
    # finishes its write (it holds every value) and commits it before exiting.
    assert committed == ([3, 6] if victim == 0 else [3, 6, 9])
    assert ckptkit.verify(directory).ok

    outcomes = run_cluster(
        directory, "--steps", "12", "--every-steps", "3", "--mib", "256", "--async"
    )
    for code, lines, err in outcomes:
        assert code == 0, err
        assert lines[0]["restored"] == committed[-1]
        assert lines[-1] == {"done": 12, "values": [12.0, 24.0, 12.0], "listed": [6, 9, 12]}
    assert ckptkit.verify(directory).ok
    assert not [n for n in os.listdir(directory) if "pending" in n or "temp" in n]


@pytest.mark.slow
def test_a_worker_frozen_before_a_restore_is_named_by_the_chief(tmp_path) -> None:
    workers = start_cluster("cluster_worker.py", str(tmp_path / "run"), "--freeze-at-restore")
    started = time.monotonic()
    try:
        out, err = workers[0].communicate(timeout=120)
        noticed = time.monotonic() - started
    finally:
        for worker in workers:
            worker.kill()
            worker.communicate()
    said = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    assert workers[0].returncode == 3, err[-3000:]
    assert said["error"] == "WorkerLostError", said
    assert "worker worker:1 stopped answering during restore" in said["message"]
    assert "restart every worker" in said["message"]
    assert noticed < 60


def test_a_single_process_strategy_saves_and_restores_async_too(tmp_path) -> None:
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        v = tf.Variable(tf.zeros((4,)))
    config = ckptkit.CheckpointConfig(directory=str(tmp_path / "run"), async_save=True)
    with ckptkit.CheckpointManager(config, v=v) as manager:
        v.assign(tf.fill((4,), 1.0))
        manager.save(1)
        v.assign(tf.fill((4,), 2.0))  # after save() returned: not in checkpoint 1
        manager.wait()
        manager.restore()
    assert v.numpy().tolist() == [1.0] * 4


@pytest.mark.slow
@MODES
def test_a_signal_to_one_worker_saves_every_worker_at_the_same_step(tmp_path, mode) -> None:
    directory = str(tmp_path / "run")
    # Saves every 2 steps: an async one may be in flight when the preemption save comes.
    workers = start_cluster(
        "cluster_worker.py",
        directory,
        *("--forever", "--preemption", "--step-secs", "0.05", "--every-steps", "2", *mode),
    )
    try:
        assert workers[1].stdout is not None
        for line in workers[1].stdout:
            if '"step": 5' in line:
                workers[1].send_signal(signal.SIGTERM)
                break
        outcomes = finish_cluster(workers, timeout=60)
    finally:
        for worker in workers:
            worker.kill()
    for code, _, err in outcomes:
        assert code == 128 + signal.SIGTERM, err
        assert "Traceback" not in err
    # Worker 1 printed its lines up to the signal to the loop above; the chief's are all here.
    last = [line["step"] for line in outcomes[0][1] if "step" in line][-1]
    committed = [c.step for c in ckptkit.list_checkpoints(directory)]
    assert committed[-1] == last
    assert committed[:-1] == [s for s in range(2, last) if s % 2 == 0][-2:]
    assert ckptkit.verify(directory).ok

    again = run_cluster(directory, "--steps", str(last + 2), "--every-steps", "1000")
    for code, lines, err in again:
        assert code == 0, err
        assert lines[0] == {"restored": last, "values": [last, 2.0 * last, last]}
        assert lines[-1]["done"] == last + 2


def test_fit_under_a_single_host_strategy_resumes_mid_epoch_bitwise(tmp_path) -> None:
    def model() -> keras.Model:
        keras.utils.set_random_seed(0)
        with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
            built = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
            built.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return built

    data = np.random.default_rng(0).random((64, 5), dtype=np.float32)
    target = data[:, :2] * 2.0

    def fit(net: keras.Model, callbacks: list) -> None:
        net.fit(
            data, target, epochs=2, batch_size=16, shuffle=False, verbose=0, callbacks=callbacks
        )

    reference = model()
    fit(reference, [])
    interrupted = model()
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, [CheckpointCallback(tmp_path, save_freq=2), Interrupt(after=6)])
    resumed = model()
    callback = CheckpointCallback(tmp_path, save_freq=2)
    fit(resumed, [callback])
    assert callback.restored is not None
    assert callback.restored.step == 6
    for a, b in zip(reference.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_parameter_server_coordinator_saves_alone_and_restores(tmp_path) -> None:
    directory = str(tmp_path / "run")
    cluster = free_cluster(chief=1, worker=1, ps=1)
    servers = [start_task(cluster, job, 0, "ps_cluster.py", "server") for job in ("worker", "ps")]
    try:
        runs = []
        for _ in range(2):
            coordinator = start_task(cluster, "chief", 0, "ps_cluster.py", "coordinator", directory)
            runs.append(finish_cluster([coordinator])[0])
    finally:
        for server in servers:
            server.kill()
            server.communicate()
    (code, first, err), (again, second, err_again) = runs
    assert code == 0, err
    assert again == 0, err_again
    assert first == [{"restored": None, "value": 0.0, "saved": 5, "final": 5.0}]
    assert second == [{"restored": 5, "value": 5.0, "saved": 10, "final": 10.0}]
    assert [c.step for c in ckptkit.list_checkpoints(directory)] == [5, 10]
    assert ckptkit.verify(directory).ok
