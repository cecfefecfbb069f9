"""The v1 Saver backend: graph-mode sessions, through the same CheckpointManager API."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import ckptkit
from ckptkit.session_hook import CheckpointHook

v1 = tf.compat.v1


class Graph:
    """A tiny graph-mode program: a global step, two variables, a train op adding ones."""

    def __init__(self, *, extra: bool = False, kernel_shape: tuple[int, ...] = (2, 3)) -> None:
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.step = v1.train.get_or_create_global_step()
            init = v1.zeros_initializer()
            self.kernel = v1.get_variable("dense/kernel", shape=kernel_shape, initializer=init)
            self.bias = v1.get_variable("dense/bias", shape=(3,), initializer=init)
            ops = [self.kernel.assign_add(tf.ones(kernel_shape)), self.bias.assign_add([1, 2, 3])]
            if extra:
                self.extra = v1.get_variable("extra", shape=(), initializer=init)
            self.train = tf.group(*ops, self.step.assign_add(1))
            self.init = v1.global_variables_initializer()
        self.session = v1.Session(graph=self.graph)
        self.session.run(self.init)

    def values(self) -> tuple[int, np.ndarray, np.ndarray]:
        return tuple(self.session.run([self.step, self.kernel, self.bias]))  # type: ignore[return-value]

    def close(self) -> None:
        self.session.close()


@pytest.fixture
def graphs():
    made: list[Graph] = []

    def make(**kwargs) -> Graph:
        made.append(Graph(**kwargs))
        return made[-1]

    yield make
    for g in made:
        g.close()


def train(g: Graph, mgr: ckptkit.CheckpointManager, steps: int) -> list[str]:
    saved = []
    for _ in range(steps):
        g.session.run(g.train)
        path = mgr.maybe_save(g.step)  # a graph variable: run in the session
        if path is not None:
            saved.append(os.path.basename(path))
    return saved


def saved_once(tmp_path: Path, graphs) -> ckptkit.CheckpointConfig:
    """A directory with one checkpoint (step 1) of the default graph."""
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path))
    g = graphs()
    g.session.run(g.train)
    with ckptkit.CheckpointManager.for_session(cfg, g.session) as mgr:
        mgr.save(1)
    return cfg


def test_round_trip_retention_and_tensorflows_own_reader(tmp_path: Path, graphs) -> None:
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path),
        prefix="model.ckpt",
        schedule=ckptkit.Schedule(every_steps=3),
        retention=ckptkit.Retention(max_to_keep=2),
    )
    g = graphs()
    with ckptkit.CheckpointManager.for_session(cfg, g.session) as mgr:
        assert not mgr.restore_or_initialize().restored
        assert train(g, mgr, 10) == ["model.ckpt-3", "model.ckpt-6", "model.ckpt-9"]
        kept = [info.path for info in mgr.checkpoints]
        expected = g.values()
    assert kept == [str(tmp_path / "model.ckpt-6"), str(tmp_path / "model.ckpt-9")]
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["checkpoint", ".ckptkit.lock"]
        + [f"model.ckpt-{s}.{ext}" for s in (6, 9) for ext in ("index", "meta", "manifest.json")]
        + [f"model.ckpt-{s}.data-00000-of-00001" for s in (6, 9)]
    )
    state = v1.train.get_checkpoint_state(str(tmp_path))
    assert state.model_checkpoint_path == kept[-1]
    assert list(state.all_model_checkpoint_paths) == kept
    assert tf.train.latest_checkpoint(str(tmp_path)) == kept[-1]

    g2 = graphs()
    with ckptkit.CheckpointManager.for_session(cfg, g2.session) as mgr:
        result = mgr.restore(assertion="consumed")
    assert (result.path, result.step) == (kept[-1], 9)
    assert len(result.report.matched) == 3
    step, kernel, bias = g2.values()
    assert step == 9
    np.testing.assert_array_equal(kernel, np.full((2, 3), 9.0))
    np.testing.assert_array_equal(bias, [9, 18, 27])
    assert expected[0] == 10  # the last step was not saved (no save_last_step)

    g3 = graphs()  # a plain Saver reads what ckptkit wrote
    with g3.graph.as_default():
        v1.train.Saver().restore(g3.session, tf.train.latest_checkpoint(str(tmp_path)))
    assert g3.values()[0] == 9


def test_meta_graph_restores_without_the_python_code(tmp_path: Path, graphs) -> None:
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path), prefix="model.ckpt")
    g = graphs()
    g.session.run(g.train)
    with ckptkit.CheckpointManager.for_session(cfg, g.session) as mgr:
        mgr.save(g.step)
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        mgr = ckptkit.CheckpointManager.for_session(cfg, session)
        result = mgr.restore(assertion="consumed")
        assert result.step == 1
        kernel = graph.get_tensor_by_name("dense/kernel/Read/ReadVariableOp:0")
        np.testing.assert_array_equal(session.run(kernel), np.ones((2, 3)))
        train_op = graph.get_operation_by_name(g.train.name)  # the imported train op runs
        session.run(train_op)
        assert session.run(graph.get_tensor_by_name("global_step/Read/ReadVariableOp:0")) == 2


def test_meta_graph_can_be_turned_off(tmp_path: Path, graphs) -> None:
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path))
    g = graphs()
    with ckptkit.CheckpointManager.for_session(cfg, g.session, meta_graph=False) as mgr:
        mgr.save(0)
    assert not list(tmp_path.glob("*.meta"))


def test_assertions_name_missing_and_unused_variables(tmp_path: Path, graphs) -> None:
    cfg = saved_once(tmp_path, graphs)

    bigger = graphs(extra=True)
    mgr = ckptkit.CheckpointManager.for_session(cfg, bigger.session)
    with pytest.raises(ckptkit.RestoreMismatchError, match="program variable") as info:
        mgr.restore()  # existing_objects_matched: 'extra' has no value
    assert info.value.unrestored_objects == ("extra",)
    assert bigger.values()[0] == 0  # nothing was loaded
    with bigger.graph.as_default():
        bigger.session.run(bigger.extra.assign(7.0))
    result = mgr.restore(assertion="partial")
    assert result.report.unrestored_objects == ("extra",)
    assert bigger.values()[0] == 1
    assert bigger.session.run(bigger.extra) == 7.0  # left as it was

    subset = graphs()
    with subset.graph.as_default():
        var_list = [subset.kernel, subset.step]
    mgr = ckptkit.CheckpointManager.for_session(cfg, subset.session, var_list=var_list)
    with pytest.raises(ckptkit.RestoreMismatchError, match="unused") as info:
        mgr.restore(assertion="consumed")
    assert info.value.unused_checkpoint_values == ("dense/bias",)
    mgr.restore(assertion="existing_objects_matched")
    np.testing.assert_array_equal(subset.values()[1], np.ones((2, 3)))


def test_shape_mismatch_is_named_and_nothing_loads(tmp_path: Path, graphs) -> None:
    cfg = saved_once(tmp_path, graphs)
    other = graphs(kernel_shape=(4, 3))
    mgr = ckptkit.CheckpointManager.for_session(cfg, other.session)
    with pytest.raises(
        ckptkit.ShapeMismatchError, match=r"dense/kernel: checkpoint has float32\[2, 3\]"
    ):
        mgr.restore(assertion="partial")
    assert other.values()[0] == 0


def test_damaged_newest_checkpoint_is_skipped(tmp_path: Path, graphs) -> None:
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path), schedule=ckptkit.Schedule(every_steps=1)
    )
    g = graphs()
    with ckptkit.CheckpointManager.for_session(cfg, g.session) as mgr:
        train(g, mgr, 2)
    data = next(tmp_path.glob("ckpt-2.data-*"))
    data.write_bytes(data.read_bytes()[:-4])
    g2 = graphs()
    mgr = ckptkit.CheckpointManager.for_session(cfg, g2.session)
    with mgr, pytest.warns(ckptkit.CheckpointSkippedWarning, match="ckpt-2"):
        result = mgr.restore()
    assert result.step == 1
    assert g2.values()[0] == 1


def test_a_plain_saver_directory_moved_from_another_machine(tmp_path: Path, graphs) -> None:
    original = tmp_path / "original"
    g = graphs()
    with g.graph.as_default():
        saver = v1.train.Saver(max_to_keep=2)  # absolute paths in its state file
        for _ in range(3):
            g.session.run(g.train)
            saver.save(g.session, str(original / "model.ckpt"), global_step=g.step)
    moved = tmp_path / "moved"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    cfg = ckptkit.CheckpointConfig(directory=str(moved), prefix="model.ckpt")
    g2 = graphs()
    with pytest.warns(UserWarning, match="points outside it") as caught:
        mgr = ckptkit.CheckpointManager.for_session(cfg, g2.session)
    assert any(str(original / "model.ckpt-3") in str(w.message) for w in caught)
    assert [c.step for c in mgr.checkpoints] == [2, 3]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = mgr.restore(assertion="consumed")
    assert result.path == str(moved / "model.ckpt-3")
    assert g2.values()[0] == 3
    mgr.close()


def test_the_hook_resumes_and_saves_as_the_estimator(tmp_path: Path) -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": str(tmp_path), "save_checkpoints_steps": 3, "keep_checkpoint_max": 3}
    )

    def run(last_step: int) -> CheckpointHook:
        with tf.Graph().as_default():
            step = v1.train.get_or_create_global_step()
            w = v1.get_variable("w", shape=(), initializer=v1.zeros_initializer())
            train_op = tf.group(w.assign_add(1.0), step.assign_add(1))
            hook = CheckpointHook(cfg)
            stop = v1.train.StopAtStepHook(last_step=last_step)
            with v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
                while not session.should_stop():
                    session.run(train_op)
        return hook

    first = run(10)
    assert first.restored is not None
    assert not first.restored.restored
    assert first.manager is not None
    assert [c.step for c in first.manager.checkpoints] == [6, 9, 10]  # saved 0, 3, 6, 9, 10
    second = run(14)
    assert second.restored is not None
    assert second.restored.step == 10
    assert second.manager is not None
    assert [c.step for c in second.manager.checkpoints] == [10, 12, 14]
    assert tf.train.load_checkpoint(str(tmp_path)).get_tensor("w") == 14.0


def test_hook_without_a_global_step_is_refused(tmp_path: Path) -> None:
    hook = CheckpointHook(ckptkit.CheckpointConfig(directory=str(tmp_path)))
    with tf.Graph().as_default(), pytest.raises(TypeError, match="needs a global step"):
        hook.begin()


def test_manager_for_session_has_no_tf_train_checkpoint(tmp_path: Path, graphs) -> None:
    mgr = ckptkit.CheckpointManager.for_session(
        ckptkit.CheckpointConfig(directory=str(tmp_path)), graphs().session
    )
    with pytest.raises(TypeError, match="saves a graph"):
        _ = mgr.checkpoint


def test_partial_restore_in_a_finalized_graph_says_what_to_do(tmp_path: Path, graphs) -> None:
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path))
    g = graphs()
    with ckptkit.CheckpointManager.for_session(cfg, g.session) as mgr:
        mgr.save(0)
    bigger = graphs(extra=True)
    mgr = ckptkit.CheckpointManager.for_session(cfg, bigger.session)
    bigger.graph.finalize()  # as MonitoredTrainingSession does
    with pytest.raises(ckptkit.TrackableError, match="pass var_list="):
        mgr.restore(assertion="partial")


def test_a_hook_reused_after_a_failed_run_works_in_the_new_graph(tmp_path: Path) -> None:
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path), schedule=ckptkit.Schedule(every_steps=1)
    )
    hook = CheckpointHook(cfg)

    def run(fail: bool) -> None:
        with tf.Graph().as_default():
            step = v1.train.get_or_create_global_step()
            train_op = step.assign_add(1)
            stop = v1.train.StopAtStepHook(last_step=2)
            with v1.train.MonitoredTrainingSession(hooks=[hook, stop]) as session:
                while not session.should_stop():
                    session.run(train_op)
                    if fail:
                        raise RuntimeError("the training step failed")

    with pytest.raises(RuntimeError, match="the training step failed"):
        run(fail=True)
    run(fail=False)  # the global step is looked up again in the new graph
    assert hook.manager is not None
    assert [c.step for c in hook.manager.checkpoints] == [1, 2]


@pytest.mark.parametrize("form", ["dict", "list"])
def test_var_list_as_a_dict_or_a_list(tmp_path: Path, graphs, form) -> None:
    g = graphs()
    g.session.run(g.train)
    var_list = (
        {"renamed/kernel": g.kernel, "global_step": g.step}
        if form == "dict"
        else [g.kernel, g.step]
    )
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path))
    with ckptkit.CheckpointManager.for_session(cfg, g.session, var_list=var_list) as mgr:
        path = mgr.save(1)
    names = {key for key, _ in tf.train.list_variables(path)}
    assert names == (
        {"renamed/kernel", "global_step"} if form == "dict" else {"dense/kernel", "global_step"}
    )
    fresh = graphs()
    restore_list = (
        {"renamed/kernel": fresh.kernel, "global_step": fresh.step}
        if form == "dict"
        else [fresh.kernel, fresh.step]
    )
    mgr = ckptkit.CheckpointManager.for_session(cfg, fresh.session, var_list=restore_list)
    assert mgr.restore(assertion="consumed").step == 1
    step, kernel, _ = fresh.values()
    assert step == 1
    np.testing.assert_array_equal(kernel, np.ones((2, 3)))


def test_graph_mode_writes_one_data_file_per_device_and_says_so(config) -> None:
    cfg = config(max_shard_bytes=1 << 20)
    with tf.Graph().as_default():
        v = tf.compat.v1.get_variable("v", initializer=tf.zeros((1 << 19,)))  # 2 MiB
        with tf.compat.v1.Session() as sess:
            sess.run(v.initializer)
            with pytest.warns(UserWarning, match="write one data file per device"):
                mgr = ckptkit.CheckpointManager.for_session(cfg, sess)
            path = mgr.save(1)
            mgr.close()
    assert [n for n in os.listdir(cfg.directory) if ".data-" in n] == [
        f"{os.path.basename(path)}.data-00000-of-00001"
    ]
