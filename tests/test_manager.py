from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import Net, make_model

import ckptkit
from ckptkit import Retention, Schedule


def test_fresh_start_then_resume_restores_every_object(config) -> None:
    cfg = config(schedule=Schedule(every_steps=5))
    net, step = Net(), tf.Variable(0, dtype=tf.int64)
    it = iter(tf.data.Dataset.range(100))
    mgr = ckptkit.CheckpointManager(cfg, net=net, step=step, iterator=it)
    assert mgr.restore_or_initialize() == ckptkit.RestoreResult(restored=False)
    assert mgr.latest is None
    for _ in range(12):
        next(it)
        step.assign_add(1)
        net.l1.kernel.assign_add(tf.ones_like(net.l1.kernel))
        mgr.maybe_save(step)
    assert [c.step for c in mgr.checkpoints] == [5, 10]
    mgr.close()  # the job ends; a new one starts

    net2, step2 = Net(), tf.Variable(0, dtype=tf.int64)
    it2 = iter(tf.data.Dataset.range(100))
    mgr2 = ckptkit.CheckpointManager(cfg, net=net2, step=step2, iterator=it2)
    result = mgr2.restore_or_initialize()
    assert result.restored
    assert result.step == 10
    assert result.path == os.path.join(cfg.directory, "ckpt-10")
    assert int(step2.numpy()) == 10
    np.testing.assert_array_equal(net2.l1.kernel.numpy(), np.full((3, 5), 10.5, np.float32))
    assert int(next(it2).numpy()) == 10  # the iterator continues where it was saved


def test_checkpoint_info_reports_size_and_time(config) -> None:
    mgr = ckptkit.CheckpointManager(config(), net=Net())
    path = mgr.save(3)
    info = mgr.latest
    assert info is not None
    assert info.path == path
    assert info.step == 3
    on_disk = sum(os.path.getsize(f) for f in tf.io.gfile.glob(path + ".*"))
    assert info.size_bytes == on_disk > 0
    assert abs(info.time - os.path.getmtime(path + ".index")) < 60


def test_retention_deletes_old_files_after_commit(config) -> None:
    cfg = config(retention=Retention(max_to_keep=2))
    mgr = ckptkit.CheckpointManager(cfg, net=Net())
    for step in (1, 2, 3, 4):
        mgr.save(step)
    assert [c.step for c in mgr.checkpoints] == [3, 4]
    left = sorted(f for f in os.listdir(cfg.directory) if f.endswith(".index"))
    assert left == ["ckpt-3.index", "ckpt-4.index"]


def test_retention_survives_a_new_manager(config) -> None:
    cfg = config(retention=Retention(max_to_keep=2))
    ckptkit.CheckpointManager(cfg, net=Net()).save(1)
    ckptkit.CheckpointManager(cfg, net=Net()).save(2)
    mgr = ckptkit.CheckpointManager(cfg, net=Net())
    mgr.save(3)
    assert [c.step for c in mgr.checkpoints] == [2, 3]
    assert not os.path.exists(os.path.join(cfg.directory, "ckpt-1.index"))


def test_restore_a_given_step_and_a_given_path(config, tmp_path) -> None:
    cfg = config(retention=Retention(max_to_keep=None))
    step = tf.Variable(0, dtype=tf.int64)
    mgr = ckptkit.CheckpointManager(cfg, step=step)
    for value in (1, 2, 3):
        step.assign(value)
        mgr.save(value)
    assert mgr.restore(step=2).step == 2
    assert int(step.numpy()) == 2
    assert mgr.restore(path=os.path.join(cfg.directory, "ckpt-1")).step == 1
    assert int(step.numpy()) == 1
    assert mgr.restore().step == 3
    with pytest.raises(ckptkit.CheckpointNotFoundError, match=r"step 7 .* available: \[1, 2, 3\]"):
        mgr.restore(step=7)
    with pytest.raises(ckptkit.CheckpointNotFoundError, match="no checkpoint at"):
        mgr.restore(path=str(tmp_path / "missing" / "ckpt-1"))


def test_restore_with_nothing_saved_says_what_to_do(config) -> None:
    mgr = ckptkit.CheckpointManager(config(), net=Net())
    with pytest.raises(ckptkit.CheckpointNotFoundError, match="restore_or_initialize"):
        mgr.restore()


def test_a_committed_checkpoint_is_never_overwritten(config) -> None:
    step = tf.Variable(1.0)
    mgr = ckptkit.CheckpointManager(config(), step=step)
    path = mgr.save(5)
    step.assign(99.0)
    with pytest.raises(ckptkit.CheckpointExistsError, match="ckpt-5"):
        mgr.save(5)
    assert mgr.maybe_save(5) is None
    assert ckptkit.read_tensor(path, "step") == 1.0


@pytest.mark.parametrize("bad", [-1, 2.5, "ten", None])
def test_bad_step_is_a_typed_error(config, bad: object) -> None:
    mgr = ckptkit.CheckpointManager(config(), net=Net())
    with pytest.raises(ckptkit.InvalidStepError, match="non-negative integer"):
        mgr.save(bad)


def test_step_may_be_a_variable_or_tensor(config) -> None:
    mgr = ckptkit.CheckpointManager(config(), net=Net())
    assert mgr.save(tf.Variable(4, dtype=tf.int64)).endswith("ckpt-4")
    assert mgr.save(tf.constant(6)).endswith("ckpt-6")
    assert mgr.save(np.int32(8)).endswith("ckpt-8")


def test_objects_tensorflow_cannot_track_are_refused(config) -> None:
    with pytest.raises(ckptkit.TrackableError, match="step"):
        ckptkit.CheckpointManager(config(), net=Net(), step=5)
    with pytest.raises(TypeError, match="objects to checkpoint"):
        ckptkit.CheckpointManager(config())


def test_an_existing_tf_checkpoint_can_be_driven(config) -> None:
    net = Net()
    root = tf.train.Checkpoint(net=net)
    mgr = ckptkit.CheckpointManager(config(), checkpoint=root)
    assert mgr.checkpoint is root
    mgr.save(1)
    assert ckptkit.CheckpointManager(config(), net=Net()).restore(assertion="consumed").restored


def test_time_schedule_with_an_injected_clock(config) -> None:
    now = [0.0]
    mgr = ckptkit.CheckpointManager(
        config(schedule=Schedule(every_secs=30)), clock=lambda: now[0], net=Net()
    )
    saved = []
    for step in range(1, 10):
        now[0] += 10
        if mgr.maybe_save(step):
            saved.append(step)
    assert saved == [4, 7]


def test_save_into_an_unwritable_place_is_a_save_error(config, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    mgr = ckptkit.CheckpointManager(config(directory=str(blocker / "sub")), net=Net())
    with pytest.raises(ckptkit.SaveError, match="Nothing was committed"):
        mgr.save(1)
    assert mgr.latest is None


def test_keras_model_and_optimizer_round_trip(config) -> None:
    model = make_model()
    model.compile(optimizer="adam", loss="mse")
    x, y = np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32)
    model.fit(x, y, epochs=2, verbose=0)
    mgr = ckptkit.CheckpointManager(config(), model=model, optimizer=model.optimizer)
    mgr.save(2)

    fresh = make_model()
    fresh.compile(optimizer="adam", loss="mse")
    fresh.optimizer.build(fresh.trainable_variables)
    result = ckptkit.CheckpointManager(config(), model=fresh, optimizer=fresh.optimizer).restore(
        assertion="consumed"
    )
    assert result.report is not None
    assert not result.report.unused_checkpoint_values
    for a, b in zip(model.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(fresh.optimizer.iterations.numpy()) == 2


def test_a_garbage_state_file_falls_back_to_the_files_with_a_warning(config) -> None:
    cfg = config()
    mgr = ckptkit.CheckpointManager(cfg, net=Net())
    mgr.save(1)
    mgr.save(2)
    with open(os.path.join(cfg.directory, "checkpoint"), "w") as f:
        f.write("model_checkpoint_path: {{{ not a proto")
    with pytest.warns(UserWarning, match="state file .* unparsable"):
        again = ckptkit.CheckpointManager(cfg, net=Net())
    assert [c.step for c in again.checkpoints] == [1, 2]
    assert again.restore().step == 2


@pytest.mark.parametrize("as_path", [str, Path])
def test_a_path_is_shorthand_for_the_default_config_of_that_directory(tmp_path, as_path) -> None:
    directory = tmp_path / "run"
    mgr = ckptkit.CheckpointManager(as_path(directory), v=tf.Variable(1.0))
    mgr.save(1)
    assert mgr.config == ckptkit.CheckpointConfig(directory=str(directory))
    assert [c.step for c in mgr.checkpoints] == [1]
    mgr.close()


def test_a_config_that_is_neither_a_path_nor_a_config_is_named() -> None:
    with pytest.raises(ValueError, match=r"config must be a checkpoint directory.*config=None"):
        ckptkit.CheckpointManager(None, v=tf.Variable(1.0))


# --- Retention as tf.train.CheckpointManager does it -----------------------------------------


def surviving(directory: Path) -> list[str]:
    return sorted(p.name.removesuffix(".index") for p in directory.glob("*.index"))


def test_retention_never_deletes_checkpoints_written_under_another_prefix(tmp_path) -> None:
    results = {}
    for who in ("tf", "ckptkit"):
        directory = tmp_path / who
        plain = tf.train.Checkpoint(v=tf.Variable(1.0))
        plain.save(str(directory / "unusual_prefix"))
        plain.save(str(directory / "unusual_prefix"))
        if who == "tf":
            mgr = tf.train.CheckpointManager(plain, str(directory), max_to_keep=2)
            for step in (1, 2, 3):
                mgr.save(checkpoint_number=step)
        else:
            cfg = ckptkit.CheckpointConfig(
                directory=str(directory), retention=Retention(max_to_keep=2)
            )
            with ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)) as ours:
                for step in (1, 2, 3):
                    ours.save(step)
        results[who] = surviving(directory)
    assert (
        results["tf"]
        == results["ckptkit"]
        == [
            "ckpt-2",
            "ckpt-3",
            "unusual_prefix-1",
            "unusual_prefix-2",
        ]
    )


def test_the_keep_every_n_hours_window_starts_when_the_manager_is_created(tmp_path) -> None:
    hours = 2.0 / 3600  # a checkpoint is preserved every 2 s
    v = tf.Variable(1.0)
    plain = tf.train.CheckpointManager(
        tf.train.Checkpoint(v=v),
        str(tmp_path / "tf"),
        max_to_keep=1,
        keep_checkpoint_every_n_hours=hours,
    )
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path / "ckptkit"),
        retention=Retention(max_to_keep=1, keep_every_n_hours=hours),
    )
    ours = ckptkit.CheckpointManager(cfg, v=v)
    time.sleep(1.5)  # the first save comes 1.5 s after the window opened (at creation - 1 s)
    plain.save(checkpoint_number=1)
    plain.save(checkpoint_number=2)
    ours.save(1)
    ours.save(2)
    ours.close()
    assert surviving(tmp_path / "tf") == surviving(tmp_path / "ckptkit") == ["ckpt-1", "ckpt-2"]


def test_a_clock_that_went_back_restarts_the_window_and_warns(tmp_path, caplog) -> None:
    results = {}
    for who in ("tf", "ckptkit"):
        directory = tmp_path / who
        v = tf.Variable(1.0)
        seed = tf.train.CheckpointManager(
            tf.train.Checkpoint(v=v), str(directory), max_to_keep=None
        )
        seed.save(checkpoint_number=1)
        seed.save(checkpoint_number=2)
        state = directory / "checkpoint"  # the last preservation was an hour in the future
        state.write_text(_future(state.read_text()))
        if who == "tf":
            mgr = tf.train.CheckpointManager(
                tf.train.Checkpoint(v=v), str(directory), max_to_keep=1
            )
            mgr.save(checkpoint_number=3)
            mgr.save(checkpoint_number=4)
        else:
            cfg = ckptkit.CheckpointConfig(
                directory=str(directory), retention=Retention(max_to_keep=1)
            )
            with pytest.warns(UserWarning, match="behind the last preserved checkpoint timestamp"):
                ours = ckptkit.CheckpointManager(cfg, v=v)
            ours.save(3)
            ours.save(4)
            ours.close()
        results[who] = surviving(directory)
    assert results["tf"] == results["ckptkit"] == ["ckpt-1", "ckpt-2", "ckpt-4"]


def _future(state_text: str) -> str:
    """The state file's text with its last-preserved mark an hour from now."""
    lines = [ln for ln in state_text.splitlines() if not ln.startswith("last_preserved_timestamp")]
    return "\n".join([*lines, f"last_preserved_timestamp: {time.time() + 3600}"]) + "\n"
