"""After training: fine-tune into a changed model (skip_mismatch, exclude, init_from)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import ckptkit
import ckptkit.keras

X = np.random.default_rng(0).random((16, 5), dtype=np.float32)
Y = np.arange(16) % 3


def classifier(classes: int, *, built: bool = True, seed: int = 0) -> keras.Model:
    """A body layer and a head of `classes` outputs, compiled with Adam."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(8, name="body"), keras.layers.Dense(classes, name="head")]
    model = keras.Sequential(([keras.Input((5,))] if built else []) + layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def weights(layer: keras.layers.Layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()]


@pytest.fixture
def trained(config) -> tuple[ckptkit.CheckpointConfig, keras.Model]:
    """A 3-class classifier trained one epoch and saved at step 1."""
    cfg = config()
    model = classifier(3)
    model.fit(X, Y, epochs=1, verbose=0)
    with ckptkit.CheckpointManager(cfg, model=model, optimizer=model.optimizer) as manager:
        manager.save(1)
    return cfg, model


def test_a_new_head_keeps_its_values_and_the_body_loads_exactly(trained) -> None:
    cfg, old = trained
    new = classifier(10, seed=1)
    head = weights(new.get_layer("head"))
    manager = ckptkit.CheckpointManager(cfg, model=new, optimizer=new.optimizer)
    result = manager.restore(skip_mismatch=True, assertion="consumed")
    for a, b in zip(weights(new.get_layer("body")), weights(old.get_layer("body")), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights(new.get_layer("head")), head, strict=True):
        np.testing.assert_array_equal(a, b)  # the program's own
    assert int(new.optimizer.iterations.numpy()) == int(old.optimizer.iterations.numpy())
    assert result.report is not None
    left = "\n".join(result.report.left_out)
    assert "(sequential/head/kernel): skip_mismatch: checkpoint has float32[8, 3]" in left
    assert "the program keeps its float32[8, 10]" in left
    assert len(result.report.left_out) == 6  # kernel, bias and their two Adam slots each
    assert not result.report.mismatches
    assert "6 checkpoint value(s) left out on purpose" in result.report.format()
    result.assert_restored("consumed")  # judged on what remains, again after the restore
    new.fit(X, Y % 10, epochs=1, verbose=0)  # and training goes on


def test_without_the_flags_a_changed_head_still_refuses_and_loads_nothing(trained) -> None:
    cfg, _ = trained
    new = classifier(10, seed=1)
    before = [w.numpy().copy() for w in new.weights]
    manager = ckptkit.CheckpointManager(cfg, model=new, optimizer=new.optimizer)
    with pytest.raises(ckptkit.ShapeMismatchError, match="6 shape/dtype mismatch"):
        manager.restore()
    for w, b in zip(new.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)


def test_exclude_leaves_out_what_it_matches_even_when_it_fits(trained) -> None:
    cfg, old = trained
    same = classifier(3, seed=1)
    body = weights(same.get_layer("body"))
    manager = ckptkit.CheckpointManager(cfg, model=same, optimizer=same.optimizer)
    result = manager.restore(exclude=["*/body/*", "*_body_*"])
    for a, b in zip(weights(same.get_layer("body")), body, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(weights(same.get_layer("head")), weights(old.get_layer("head")), strict=True):
        np.testing.assert_array_equal(a, b)
    assert result.report is not None
    reasons = sorted(line.rpartition(": ")[2] for line in result.report.left_out)
    assert reasons == ["excluded by '*/body/*'"] * 2 + ["excluded by '*_body_*'"] * 4


def test_an_object_path_pattern_excludes_what_it_reaches(config) -> None:
    cfg = config()

    def net(width: int) -> tf.Module:
        root = tf.Module()
        root.body, root.head = tf.Module(), tf.Module()
        root.body.w = tf.Variable(tf.ones((3, 3)))
        root.head.w = tf.Variable(tf.ones((3, width)))
        root.shared = root.head.w  # a shorter route: TensorFlow keys the value by this one
        return root

    ckptkit.CheckpointManager(cfg, net=net(2)).save(1)
    new = net(2)
    new.body.w.assign(tf.zeros((3, 3)))
    new.head.w.assign(tf.zeros((3, 2)))
    result = ckptkit.CheckpointManager(cfg, net=new).restore(
        exclude=["net/head/*"], assertion="consumed"
    )
    np.testing.assert_array_equal(new.body.w.numpy(), np.ones((3, 3)))
    np.testing.assert_array_equal(new.head.w.numpy(), np.zeros((3, 2)))
    assert result.report is not None
    assert [line.rpartition(": ")[2] for line in result.report.left_out] == [
        "excluded by 'net/head/*'"
    ]


def test_an_unbuilt_model_gets_the_body_when_built_and_keeps_its_excluded_head(trained) -> None:
    cfg, old = trained
    new = classifier(10, built=False, seed=1)
    manager = ckptkit.CheckpointManager(cfg, model=new, optimizer=new.optimizer)
    manager.restore(exclude=["*head*"])
    new.build((None, 5))  # TensorFlow hands the body's values over now; the head's stay out
    for a, b in zip(weights(new.get_layer("body")), weights(old.get_layer("body")), strict=True):
        np.testing.assert_array_equal(a, b)
    assert weights(new.get_layer("head"))[0].shape == (8, 10)


def test_a_tf_module_with_a_resized_variable(config) -> None:
    cfg = config()
    old = tf.Module()
    old.w, old.b = tf.Variable(tf.ones((4, 2))), tf.Variable(tf.fill((2,), 3.0))
    ckptkit.CheckpointManager(cfg, net=old).save(1)
    new = tf.Module()
    new.w, new.b = tf.Variable(tf.zeros((4, 6))), tf.Variable(tf.zeros((2,)))
    result = ckptkit.CheckpointManager(cfg, net=new).restore_or_initialize(skip_mismatch=True)
    assert result.restored
    np.testing.assert_array_equal(new.w.numpy(), np.zeros((4, 6)))
    np.testing.assert_array_equal(new.b.numpy(), [3.0, 3.0])
    assert result.report is not None
    assert [line.partition(" ")[0] for line in result.report.left_out] == ["net/w"]


def test_the_restore_policy_carries_the_defaults(config, trained) -> None:
    cfg, old = trained
    policy = ckptkit.RestorePolicy(skip_mismatch=True, exclude=("*body*",))
    new = classifier(10, seed=1)
    body = weights(new.get_layer("body"))
    manager = ckptkit.CheckpointManager(
        cfg.model_copy(update={"restore": policy}), model=new, optimizer=new.optimizer
    )
    manager.restore()
    for a, b in zip(weights(new.get_layer("body")), body, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ckptkit.ShapeMismatchError):
        manager.restore(skip_mismatch=False, exclude=[])  # the arguments override the policy
    with pytest.raises(TypeError, match="list of glob patterns"):
        manager.restore(exclude="*head*")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1 character"):
        ckptkit.RestorePolicy(exclude=("",))
    del old


class Weights(keras.callbacks.Callback):
    """Records the model's weights when `fit` begins (after the callbacks before it)."""

    def on_train_begin(self, logs: object = None) -> None:
        self.at_start = {layer.name: weights(layer) for layer in self.model.layers}


def test_fit_starts_from_another_runs_checkpoint_with_a_new_head(tmp_path) -> None:
    pretrain = classifier(3)
    pretrain.fit(
        X,
        Y,
        epochs=2,
        verbose=0,
        callbacks=[ckptkit.keras.CheckpointCallback(tmp_path / "pretrain", keep_checkpoints=True)],
    )
    new = classifier(10, seed=1)
    head = weights(new.get_layer("head"))
    seen = Weights()
    callback = ckptkit.keras.CheckpointCallback(
        tmp_path / "finetune", init_from=tmp_path / "pretrain", skip_mismatch=True
    )
    new.fit(X, (Y * 3) % 10, epochs=1, verbose=0, callbacks=[callback, seen])
    for a, b in zip(seen.at_start["body"], weights(pretrain.get_layer("body")), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(seen.at_start["head"], head, strict=True):
        np.testing.assert_array_equal(a, b)
    assert callback.initialized is not None
    assert callback.initialized.path is not None
    assert callback.initialized.path.endswith("ckpt-2")  # 2 epochs of one batch
    assert callback.initialized.report is not None
    assert len(callback.initialized.report.left_out) == 6  # kernel, bias, their Adam slots
    assert int(new.optimizer.iterations.numpy()) == 1  # its own optimizer, from zero


def test_init_from_refuses_a_checkpoint_with_nothing_of_the_model(tmp_path, config) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, other=tf.Variable(1.0)).save(1)
    callback = ckptkit.keras.CheckpointCallback(tmp_path / "run", init_from=cfg.directory)
    with pytest.raises(ckptkit.RestoreMismatchError, match="no program variable matched"):
        classifier(3).fit(X, Y, epochs=1, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match="no init_from was given"):
        ckptkit.keras.CheckpointCallback(tmp_path / "run", skip_mismatch=True)
