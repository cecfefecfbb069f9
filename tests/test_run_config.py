"""`CheckpointConfig.from_run_config`: the Estimator's RunConfig fields, defaults and saver hook.

The expected values come from a real `tf.estimator.RunConfig` and `DNNClassifier` run under
TensorFlow 2.15 (tests/fixtures/estimator/expected.json, see tests/fixtures/README.md).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest
import tensorflow as tf
from pydantic import ValidationError

import ckptkit
from ckptkit.run_config import RunConfigFields

EXPECTED = json.loads(
    (Path(__file__).parent / "fixtures" / "estimator" / "expected.json").read_text()
)


@pytest.mark.parametrize(
    "case", EXPECTED["run_configs"], ids=lambda c: json.dumps(c["given"], sort_keys=True)
)
def test_fields_resolve_as_the_estimators_run_config(case: dict) -> None:
    given = {"model_dir": "/tmp/m", **case["given"]}
    if "error" in case:
        with pytest.raises(ValidationError, match="cannot both be set"):
            RunConfigFields.read(given)
        return
    resolved = RunConfigFields.read(given)
    for name, value in case["resolved"].items():
        assert getattr(resolved, name) == value, name


def test_defaults_are_the_estimators() -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config({"model_dir": "/tmp/m"})
    assert cfg.directory == "/tmp/m"
    assert cfg.prefix == "model.ckpt"
    assert (cfg.schedule.every_steps, cfg.schedule.every_secs) == (None, 600.0)
    assert cfg.schedule.save_first_step
    assert cfg.schedule.save_last_step
    assert (cfg.retention.max_to_keep, cfg.retention.keep_every_n_hours) == (5, 10000.0)


def test_steps_replace_the_default_seconds() -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": "/tmp/m", "save_checkpoints_steps": 100}
    )
    assert (cfg.schedule.every_steps, cfg.schedule.every_secs) == (100, None)


def test_both_explicitly_none_turns_periodic_saves_off() -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": "/tmp/m", "save_checkpoints_steps": None, "save_checkpoints_secs": None}
    )
    assert not cfg.schedule.periodic
    assert cfg.schedule.save_last_step


def test_keep_checkpoint_max_zero_keeps_all() -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config({"model_dir": "/m", "keep_checkpoint_max": 0})
    assert cfg.retention.max_to_keep is None


def test_reads_a_run_config_object_and_ignores_its_other_fields() -> None:
    run_config = types.SimpleNamespace(
        model_dir="/tmp/m",
        save_checkpoints_steps=None,
        save_checkpoints_secs=30,
        keep_checkpoint_max=2,
        keep_checkpoint_every_n_hours=1,
        tf_random_seed=0,
    )
    cfg = ckptkit.CheckpointConfig.from_run_config(run_config)
    assert (cfg.schedule.every_secs, cfg.retention.max_to_keep) == (30, 2)
    dumped = {**vars(run_config), "session_config": None, "save_summary_steps": 100}
    assert ckptkit.CheckpointConfig.from_run_config(dumped) == cfg


def test_overrides_set_other_fields() -> None:
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": "/m"}, restore=ckptkit.RestorePolicy(assertion="consumed")
    )
    assert cfg.restore.assertion == "consumed"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"save_checkpoints_steps": 10}, "model_dir is required"),
        ({"model_dir": None}, "model_dir is required"),
        ({"model_dir": "/m", "save_checkpoint_steps": 10}, "save_checkpoint_steps"),
        ({"model_dir": "/m", "save_checkpoints_steps": 0}, "save_checkpoints_steps"),
        ({"model_dir": "/m", "keep_checkpoint_max": -1}, "keep_checkpoint_max"),
    ],
)
def test_bad_fields_are_named(given: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ckptkit.CheckpointConfig.from_run_config(given)


def test_an_object_without_the_fields_is_refused() -> None:
    with pytest.raises(TypeError, match=r"has no attribute\(s\) \['save_checkpoints_steps'"):
        ckptkit.CheckpointConfig.from_run_config(types.SimpleNamespace(model_dir="/m"))


def test_a_custom_loop_saves_the_steps_the_estimator_saved(tmp_path: Path) -> None:
    # The Estimator: RunConfig(save_checkpoints_steps=3, keep_checkpoint_max=3), 10 steps.
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": str(tmp_path), "save_checkpoints_steps": 3, "keep_checkpoint_max": 3}
    )
    step = tf.Variable(0, dtype=tf.int64)
    saved = []
    with ckptkit.CheckpointManager(cfg, step=step) as mgr:
        mgr.restore_or_initialize()
        saved.append(mgr.maybe_save(step))  # the hook's save when training starts
        for _ in range(10):
            step.assign_add(1)
            saved.append(mgr.maybe_save(step))
        saved.append(mgr.finish(step))
        assert mgr.finish(step) is None  # saved already
        kept = [info.path.rsplit("/", 1)[-1] for info in mgr.checkpoints]
    steps = [int(p.rsplit("-", 1)[-1]) for p in saved if p is not None]
    assert steps == EXPECTED["saved_steps"]
    assert kept == EXPECTED["kept"]


def test_finish_without_save_last_step_saves_nothing(config) -> None:
    with ckptkit.CheckpointManager(config(), step=tf.Variable(3)) as mgr:
        assert mgr.finish(3) is None
        assert mgr.checkpoints == []
