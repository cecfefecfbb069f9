"""Best-k + latest retention through the manager, and restore(best=True)."""

from __future__ import annotations

import os

import pytest
import tensorflow as tf
from pydantic import ValidationError

import ckptkit

# A known metric sequence: step -> val_loss.
LOSSES = {1: 0.9, 2: 0.5, 3: 0.7, 4: 0.2, 5: 0.8, 6: 0.6, 7: 0.3, 8: 0.95, 9: 0.85}


def names(infos: list[ckptkit.CheckpointInfo]) -> list[str]:
    return [os.path.basename(i.path) for i in infos]


def run(
    config, losses: dict[int, float], **retention
) -> tuple[ckptkit.CheckpointConfig, tf.Variable]:
    cfg = config(retention=ckptkit.Retention(**retention))
    value = tf.Variable(0.0)
    mgr = ckptkit.CheckpointManager(cfg, value=value)
    for step, loss in losses.items():
        value.assign(float(step))
        mgr.save(step, metrics={"val_loss": loss, "loss": loss * 2})
    mgr.close()
    return cfg, value


def test_kept_set_is_exactly_the_k_best_and_the_n_newest(config) -> None:
    cfg, _ = run(config, LOSSES, max_to_keep=2, best_k=3, monitor="val_loss")
    mgr = ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0))
    # 3 best: 4 (0.2), 7 (0.3), 2 (0.5); 2 newest: 8, 9.
    assert names(mgr.checkpoints) == ["ckpt-2", "ckpt-4", "ckpt-7", "ckpt-8", "ckpt-9"]
    on_disk = sorted(f for f in os.listdir(cfg.directory) if f.endswith(".index"))
    assert on_disk == [f"ckpt-{s}.index" for s in (2, 4, 7, 8, 9)]
    # The state file lists the same set, for plain TensorFlow.
    state = tf.train.get_checkpoint_state(cfg.directory)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == names(mgr.checkpoints)
    assert os.path.basename(state.model_checkpoint_path) == "ckpt-9"


def test_max_mode_keeps_the_highest(config) -> None:
    accuracy = {s: 1.0 - loss for s, loss in LOSSES.items()}
    cfg = config(retention=ckptkit.Retention(max_to_keep=1, best_k=2, monitor="val_accuracy"))
    mgr = ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0))
    for step, acc in accuracy.items():
        mgr.save(step, metrics={"val_accuracy": acc})
    assert names(mgr.checkpoints) == ["ckpt-4", "ckpt-7", "ckpt-9"]
    best = mgr.best
    assert best is not None
    assert best.step == 4


def test_ranking_survives_a_new_manager(config) -> None:
    # The metric values come back from the manifests, so the next run keeps ranking correctly.
    cfg, _ = run(
        config, dict(list(LOSSES.items())[:5]), max_to_keep=1, best_k=2, monitor="val_loss"
    )
    mgr = ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0))
    assert names(mgr.checkpoints) == ["ckpt-2", "ckpt-4", "ckpt-5"]
    mgr.save(6, metrics={"val_loss": 0.1})
    assert names(mgr.checkpoints) == ["ckpt-4", "ckpt-6"]


def test_checkpoints_without_the_metric_are_kept_only_as_newest(config) -> None:
    cfg = config(retention=ckptkit.Retention(max_to_keep=1, best_k=1, monitor="val_loss"))
    mgr = ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0))
    mgr.save(1, metrics={"val_loss": 0.5})
    mgr.save(2)  # e.g. a mid-epoch save before validation ran
    mgr.save(3)
    assert names(mgr.checkpoints) == ["ckpt-1", "ckpt-3"]


def test_restore_best_loads_the_best_one(config) -> None:
    cfg, _ = run(config, LOSSES, max_to_keep=2, best_k=3, monitor="val_loss")
    value = tf.Variable(-1.0)
    result = ckptkit.CheckpointManager(cfg, value=value).restore(best=True)
    assert result.step == 4
    assert value.numpy() == 4.0


def test_restore_best_skips_a_damaged_best_for_the_next_best(config) -> None:
    cfg, _ = run(config, LOSSES, max_to_keep=2, best_k=3, monitor="val_loss")
    os.remove(os.path.join(cfg.directory, "ckpt-4.data-00000-of-00001"))
    value = tf.Variable(-1.0)
    with pytest.warns(ckptkit.CheckpointSkippedWarning, match="ckpt-4"):
        result = ckptkit.CheckpointManager(cfg, value=value).restore(best=True)
    assert result.step == 7
    assert value.numpy() == 7.0


def test_restore_best_needs_a_monitor_and_ranked_checkpoints(config) -> None:
    cfg, _ = run(config, {1: 0.5}, max_to_keep=2)
    with pytest.raises(TypeError, match="monitor"):
        ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0)).restore(best=True)
    other = cfg.model_copy(update={"retention": ckptkit.Retention(monitor="val_auc")})
    with pytest.raises(ckptkit.CheckpointNotFoundError, match="val_auc"):
        ckptkit.CheckpointManager(other, value=tf.Variable(0.0)).restore(best=True)
    with pytest.raises(TypeError, match="not several"):
        ckptkit.CheckpointManager(cfg, value=tf.Variable(0.0)).restore(step=1, best=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"best_k": 2}, "set monitor"),
        ({"best_k": 0, "monitor": "val_loss"}, "greater than 0"),
        ({"best_k": 2, "monitor": "val_custom"}, "set mode='min' or mode='max'"),
        ({"monitor": "loss", "mode": "sideways"}, "'auto', 'min' or 'max'"),
    ],
)
def test_bad_retention_is_refused_with_what_to_do(kwargs, message) -> None:
    with pytest.raises(ValidationError, match=message):
        ckptkit.Retention(**kwargs)
