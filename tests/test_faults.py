"""Fault injection with real processes and real files: SIGKILL mid-save, and a full disk.

`CKPTKIT_FAULT_TRIALS` sets the number of random kills (30 by default; `nox -s faults` runs
300); kills timed on a file's appearance and concurrent restores scale with it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from forked import ForkedWorker
from helpers import equal_to, worker_outcome

import ckptkit

WORKERS = Path(__file__).with_name("workers")
sys.path.insert(0, str(WORKERS))

import train_forever  # noqa: E402

pytestmark = pytest.mark.slow  # real kills of worker processes: `nox -s slow`

TRIALS = int(os.environ.get("CKPTKIT_FAULT_TRIALS", "30"))


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


def worker(directory: str, *args: str) -> ForkedWorker:
    return ForkedWorker("train_forever.py", directory, *args)


def assert_nothing_leaks(directory: str) -> None:
    """After a writer's first save, every file belongs to a listed checkpoint, or to a whole
    checkpoint newer than all of them (a save killed between its manifest and its commit)."""
    listed = [c.step for c in ckptkit.list_checkpoints(directory)]
    for name in os.listdir(directory):
        if name in ("checkpoint", ".ckptkit.lock"):
            continue
        step = int(name.split(".")[0].removeprefix("ckpt-"))
        path = os.path.join(directory, f"ckpt-{step}")
        assert step in listed or (step > max(listed) and ckptkit.verify(path).ok), name


@MODES
def test_sigkill_at_random_moments_never_loses_or_breaks_a_checkpoint(tmp_path, mode) -> None:
    """With async saves, the kills land while background writes run and training goes on."""
    directory = str(tmp_path / "run")
    flags = ("--async",) if mode == "async" else ()
    rng = random.Random(20261122)
    committed_before = 0
    newest_listed = None
    killed_mid_save = 0  # trials whose kill left an interrupted save behind
    for trial in range(TRIALS):
        with worker(directory, *flags) as job:
            assert job.stdout is not None
            first = job.stdout.readline().strip()
            expected = "fresh" if newest_listed is None else f"resumed {newest_listed}"
            assert first == expected, f"trial {trial}: the restarted job said {first!r}"
            time.sleep(rng.uniform(0.0, 0.4))
            job.send_signal(signal.SIGKILL)
            rest = job.stdout.read()
        assert job.returncode == -signal.SIGKILL
        committed = [
            int(line.split()[1]) for line in rest.splitlines() if line.startswith("committed")
        ]
        committed_before = max([committed_before, *committed])

        listed = (
            [c.step for c in ckptkit.list_checkpoints(directory)]
            if os.path.isdir(directory)
            else []
        )
        if not listed:
            assert committed_before == 0, f"trial {trial}: committed steps vanished"
            continue
        newest_listed = max(listed)
        listed_names = {f"ckpt-{s}" for s in listed}
        debris = [
            n
            for n in os.listdir(directory)
            if n not in ("checkpoint", ".ckptkit.lock") and n.split(".")[0] not in listed_names
        ]
        killed_mid_save += bool(debris)
        # Nothing reported committed is lost, and every listed checkpoint is complete.
        assert newest_listed >= committed_before, f"trial {trial}: lost step {committed_before}"
        report = ckptkit.verify(directory)
        assert report.ok, (
            f"trial {trial}: {[str(p) for c in report.checkpoints for p in c.problems]}"
        )
        # Restored state is exactly one committed step: no mix of two.
        state = train_forever.variables()
        step = tf.Variable(0, dtype=tf.int64)
        result = ckptkit.CheckpointManager(
            train_forever.config(directory), step=step, **state
        ).restore()
        assert result.step == newest_listed
        assert result.skipped == ()
        assert int(step.numpy()) == newest_listed
        assert equal_to(state, newest_listed), f"trial {trial}: mixed state"
    assert newest_listed is not None
    assert newest_listed > 0
    # The kills must really land inside saves, or this test proves nothing.
    assert killed_mid_save >= TRIALS // 10, f"only {killed_mid_save}/{TRIALS} kills hit a save"
    # What killed saves and killed retentions left is gone after the next writer's first save.
    state = train_forever.variables()
    with ckptkit.CheckpointManager(train_forever.config(directory), **state) as mgr:
        mgr.save(newest_listed + 1)
    assert_nothing_leaks(directory)
    print(f"{TRIALS} kills, {killed_mid_save} of them mid-save, 0 failures")


TIMED = max(10, TRIALS // 3)
# Files that appear in this order during a first save: TensorFlow's temporary folder, the
# renamed data file, the merged index, ckptkit's manifest, the state file (the commit).
MOMENTS = ["ckpt-1_temp", "ckpt-1.data-00000-of-00001", "ckpt-1.index", "ckpt-1.manifest.json"]
MOMENTS += ["checkpoint"]


def test_kills_timed_on_each_file_of_the_first_save_never_block_a_restart(tmp_path) -> None:
    outcomes: Counter[str] = Counter()
    for trial in range(TIMED):
        moment = MOMENTS[trial % len(MOMENTS)]
        directory = str(tmp_path / f"trial{trial}")
        watched = os.path.join(directory, moment)
        with worker(directory, "--mib", "32") as job:  # a save of ~35 MiB takes a while
            assert job.stdout is not None
            assert job.stdout.readline().strip() == "fresh"
            deadline = time.monotonic() + 120
            while not os.path.lexists(watched):  # busy: some moments last a millisecond
                assert time.monotonic() < deadline, f"trial {trial}: {moment} never appeared"
                assert job.poll() is None, f"trial {trial}: the job ended"
            job.send_signal(signal.SIGKILL)
        # The restart resumes step 1 if it was committed, else starts fresh and says so.
        state = train_forever.variables(32)
        step = tf.Variable(0, dtype=tf.int64)
        mgr = ckptkit.CheckpointManager(train_forever.config(directory), step=step, **state)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = mgr.restore_or_initialize()
        said = [str(w.message) for w in caught]
        if result.restored:
            assert result.step == 1, f"trial {trial} ({moment})"
            assert equal_to(state, 1), f"trial {trial} ({moment}): mixed state"
            outcomes["resumed"] += 1
        elif any(name.startswith("ckpt-1.") for name in os.listdir(directory)):
            assert any("starting fresh" in w for w in said), f"trial {trial}: {said}"
            outcomes["fresh past an interrupted save"] += 1
        else:
            outcomes["fresh"] += 1
        mgr.save(2)  # and training goes on
        mgr.close()
        assert [c.step for c in ckptkit.list_checkpoints(directory)][-1] == 2
        assert ckptkit.verify(directory).ok
        assert_nothing_leaks(directory)
    # Both sides of the commit were hit, and some kill left a half-written checkpoint.
    assert outcomes["resumed"] > 0, outcomes
    assert outcomes["fresh past an interrupted save"] > 0, outcomes
    print(f"{TIMED} kills timed on file appearance: {dict(outcomes)}")


READS = max(40, TRIALS * 2)


def test_readers_restore_while_the_writer_saves_and_deletes(tmp_path) -> None:
    directory = str(tmp_path / "run")
    with worker(directory, "--keep", "1") as job:
        assert job.stdout is not None
        assert job.stdout.readline().strip() == "fresh"
        assert job.stdout.readline().startswith("committed")
        kept = train_forever.variables()
        config = train_forever.config(directory)
        stale = ckptkit.CheckpointManager(config, step=tf.Variable(0, dtype=tf.int64), **kept)
        steps = []
        for _ in range(READS):
            state = train_forever.variables()
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # retention is not damage: nothing to warn
                step = tf.Variable(0, dtype=tf.int64)
                result = ckptkit.CheckpointManager(config, step=step, **state).restore()
                again = stale.restore()  # its list is older still
            assert equal_to(state, result.step)
            assert equal_to(kept, again.step)
            steps.append(again.step)
        job.send_signal(signal.SIGKILL)
        job.stdout.read()
    assert steps == sorted(steps)
    assert steps[-1] > steps[0], "the writer did not move on during the reads"
    print(f"{READS} restores from a reader racing retention (max_to_keep=1), 0 failures")


@MODES
def test_a_full_disk_fails_the_save_cleanly_and_training_continues(tmp_path, mode) -> None:
    """In the background, the error is raised by the next call (`wait` here)."""
    directory = tmp_path / "run"
    outcome = worker_outcome("disk_full.py", str(directory), mode)
    assert outcome["error"] == "DiskFullError"
    assert outcome["raised_by"] == ("wait" if mode == "async" else "save")
    assert "ran out of space" in outcome["message"]
    assert "ckpt-2" in outcome["message"]
    assert outcome["listed_after_failure"] == [1]
    # No partial files of the failed save are left; the previous checkpoint is whole.
    assert outcome["files_after_failure"] == [
        ".ckptkit.lock",
        "checkpoint",
        "ckpt-1.data-00000-of-00001",
        "ckpt-1.index",
        "ckpt-1.manifest.json",
    ]
    assert outcome["listed_at_end"] == [1, 2]
    assert ckptkit.verify(str(directory), full=True).ok


def test_fit_raises_when_its_last_background_save_fails(tmp_path) -> None:
    """Keras's own async callback returned normally here (keras#23609); this one must not."""
    directory = tmp_path / "run"
    outcome = worker_outcome("disk_full.py", str(directory), "fit")
    assert outcome["error"] == "DiskFullError", outcome
    assert "ckpt-2" in outcome["message"]
    assert outcome["listed_after_failure"] == [1]  # the first epoch's, whole
    assert ckptkit.verify(str(directory), full=True).ok


def test_a_read_only_directory_is_a_save_error(config) -> None:
    cfg = config()
    mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    mgr.save(1)
    # chmod does not stop root (CI runs as root); the immutable attribute does.
    subprocess.run(["chattr", "+i", cfg.directory], check=True)
    try:
        with pytest.raises(ckptkit.SaveError, match="Nothing was committed"):
            mgr.save(2)
    finally:
        subprocess.run(["chattr", "-i", cfg.directory], check=True)
    assert [c.step for c in mgr.checkpoints] == [1]
    assert ckptkit.verify(cfg.directory).ok


def test_a_directory_that_vanishes_between_saves(config) -> None:
    cfg = config()
    v = tf.Variable(1.0)
    mgr = ckptkit.CheckpointManager(cfg, v=v)
    mgr.save(1)
    for name in os.listdir(cfg.directory):
        os.remove(os.path.join(cfg.directory, name))
    os.rmdir(cfg.directory)
    # Its lock went with the directory: another writer may own the new one, so it stops.
    with pytest.raises(ckptkit.DirectoryLockedError, match="deleted or replaced"):
        mgr.save(2)
    mgr.close()
    mgr = ckptkit.CheckpointManager(cfg, v=v)
    mgr.save(2)  # a new writer recreates it; the vanished checkpoint is not listed
    assert [c.step for c in mgr.checkpoints] == [2]
    v.assign(0.0)
    assert ckptkit.CheckpointManager(cfg, v=v).restore().step == 2
    assert float(v.numpy()) == 1.0
