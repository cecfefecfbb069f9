"""Assertion modes, mismatches, deferred and partial restores, the dry run."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import Net, make_model

import ckptkit


@pytest.fixture
def saved(config):
    """A checkpoint of a 4-unit Keras model plus a step variable; returns (config, model)."""
    cfg = config()
    model = make_model(4)
    ckptkit.CheckpointManager(cfg, model=model, step=tf.Variable(7, dtype=tf.int64)).save(7)
    return cfg, model


def test_layer_resized_gives_a_typed_error_naming_both_shapes(saved) -> None:
    cfg, _ = saved
    wider = make_model(10)
    before = [w.numpy().copy() for w in wider.weights]
    mgr = ckptkit.CheckpointManager(cfg, model=wider, step=tf.Variable(0, dtype=tf.int64))
    with pytest.raises(ckptkit.ShapeMismatchError) as caught:
        mgr.restore(assertion="partial")
    message = str(caught.value)
    assert "l1/kernel): checkpoint has float32[3, 4], program has float32[3, 10]" in message
    assert "l1/bias): checkpoint has float32[4], program has float32[10]" in message
    assert "nothing was loaded" in message
    assert isinstance(caught.value, ValueError)
    assert len(caught.value.report.mismatches) == 3
    for w, b in zip(wider.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)  # untouched


def test_the_dry_run_reports_without_loading(saved) -> None:
    cfg, _ = saved
    program = make_model(4, extra_layer=True)
    before = [w.numpy().copy() for w in program.weights]
    mgr = ckptkit.CheckpointManager(cfg, model=program)
    report = mgr.check_compatibility()
    assert any("l3/kernel" in name for name in report.unrestored_objects)
    assert any(name.startswith("step") for name in report.unused_checkpoint_values)
    assert not report.mismatches
    for w, b in zip(program.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)


@pytest.mark.parametrize(
    ("assertion", "fails"),
    [
        ("consumed", True),
        ("existing_objects_matched", True),
        ("nontrivial_match", False),
        ("partial", False),
        ("none", False),
    ],
)
def test_program_with_an_extra_layer(saved, assertion, fails) -> None:
    cfg, original = saved
    program = make_model(4, extra_layer=True)
    mgr = ckptkit.CheckpointManager(cfg, model=program, step=tf.Variable(0, dtype=tf.int64))
    if fails:
        with pytest.raises(ckptkit.RestoreMismatchError, match="not restored") as caught:
            mgr.restore(assertion=assertion)
        assert any("l3/kernel" in n for n in caught.value.unrestored_objects)
        assert "l3/kernel" in str(caught.value)
        return
    result = mgr.restore(assertion=assertion)
    assert result.report is not None
    assert any("l3/bias" in n for n in result.report.unrestored_objects)
    np.testing.assert_array_equal(
        program.layers[0].kernel.numpy(), original.layers[0].kernel.numpy()
    )


@pytest.mark.parametrize(
    ("assertion", "fails"),
    [
        ("consumed", True),
        ("existing_objects_matched", False),
        ("nontrivial_match", False),
        ("partial", False),
    ],
)
def test_partial_restore_of_a_subgraph(saved, assertion, fails) -> None:
    cfg, _ = saved
    step = tf.Variable(0, dtype=tf.int64)
    mgr = ckptkit.CheckpointManager(cfg, step=step)  # only the step, not the model
    if fails:
        with pytest.raises(ckptkit.RestoreMismatchError, match="checkpoint value") as caught:
            mgr.restore(assertion=assertion)
        assert any("l1/kernel" in n for n in caught.value.unused_checkpoint_values)
        assert int(step.numpy()) == 0  # nothing loaded
        return
    result = mgr.restore(assertion=assertion)
    assert int(step.numpy()) == 7
    assert result.report is not None
    assert len(result.report.unused_checkpoint_values) == 4  # the model's weights, named


def test_nontrivial_match_fails_when_nothing_lines_up(saved) -> None:
    cfg, _ = saved
    mgr = ckptkit.CheckpointManager(cfg, other=tf.Variable(1.0))
    with pytest.raises(ckptkit.RestoreMismatchError, match="no program variable matched"):
        mgr.restore(assertion="nontrivial_match")


def test_default_assertion_comes_from_the_config(config, saved) -> None:
    cfg, _ = saved
    strict = cfg.model_copy(update={"restore": ckptkit.RestorePolicy(assertion="consumed")})
    with pytest.raises(ckptkit.RestoreMismatchError):
        ckptkit.CheckpointManager(strict, step=tf.Variable(0, dtype=tf.int64)).restore()


def test_deferred_restore_of_an_unbuilt_keras_model(saved) -> None:
    cfg, original = saved
    unbuilt = make_model(4, build=False)
    step = tf.Variable(0, dtype=tf.int64)
    mgr = ckptkit.CheckpointManager(cfg, model=unbuilt, step=step)
    # Before the build the weights do not exist: they are deferred, so a strict check fails...
    with pytest.raises(ckptkit.RestoreMismatchError, match=r"4 checkpoint value\(s\) deferred"):
        mgr.restore(assertion="consumed")
    # ...while existing_objects_matched loads what exists and defers the rest.
    result = mgr.restore(assertion="existing_objects_matched")
    assert result.report is not None
    assert len(result.report.deferred_checkpoint_values) == 4
    assert result.report.unused_checkpoint_values == ()
    unbuilt(tf.ones((1, 3)))  # creating the variables restores them
    report = result.assert_restored("consumed")
    assert not report.unused_checkpoint_values
    for a, b in zip(original.weights, unbuilt.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_assert_restored_on_a_fresh_start_is_an_error() -> None:
    with pytest.raises(ckptkit.RestoreMismatchError, match="nothing was restored"):
        ckptkit.RestoreResult(restored=False).assert_restored()


def test_report_is_readable_and_bounded(config) -> None:
    cfg = config()
    many = {f"v{i}": tf.Variable(float(i)) for i in range(30)}
    ckptkit.CheckpointManager(cfg, **many).save(1)
    mgr = ckptkit.CheckpointManager(cfg, other=tf.Variable(0.0))
    with pytest.raises(ckptkit.RestoreMismatchError) as caught:
        mgr.restore(assertion="consumed")
    text = str(caught.value)
    assert "30 checkpoint value(s) no program object takes" in text
    assert "... and 10 more" in text
    assert "1 program variable(s) not restored" in text
    assert len(caught.value.unused_checkpoint_values) == 30


def test_dtype_mismatch_is_named(config) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0, dtype=tf.float64)).save(1)
    mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0, dtype=tf.float32))
    with pytest.raises(
        ckptkit.ShapeMismatchError,
        match=r"v \(Variable\): checkpoint has float64\[\], program has float32\[\]",
    ):
        mgr.restore()


def test_name_based_checkpoint_is_a_format_error(tmp_path) -> None:
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.Variable(1.0, name="w")
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            path = saver.save(sess, str(tmp_path / "v1" / "model.ckpt"), global_step=3)
    cfg = ckptkit.CheckpointConfig(directory=str(tmp_path / "v1"))
    mgr = ckptkit.CheckpointManager(cfg, net=Net())
    assert mgr.latest is not None
    assert mgr.latest.path == path
    with pytest.raises(ckptkit.FormatError, match="name-based"):
        mgr.restore()


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = keras.layers.Dense(5)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.l1(x)


def test_a_deferred_restore_that_loses_values_never_passes_the_check(config) -> None:
    # Keras 3 on TF 2.21 creates an unbuilt subclassed model's Dense kernel twice when it is
    # built after a deferred restore: the saved value goes to the first, which the layer drops,
    # so the layer never holds it. The check must say so instead of passing.
    cfg = config()
    keras.utils.set_random_seed(1)
    saved = Subclassed()
    saved(tf.ones((1, 1)))
    ckptkit.CheckpointManager(cfg, net=saved).save(1)

    keras.utils.set_random_seed(2)
    fresh = Subclassed()
    result = ckptkit.CheckpointManager(cfg, net=fresh).restore()
    fresh(tf.ones((1, 1)))
    assert not np.array_equal(fresh.l1.kernel.numpy(), saved.l1.kernel.numpy())
    with pytest.raises(ckptkit.RestoreMismatchError, match="replaced afterwards") as caught:
        result.assert_restored("consumed")
    assert "kernel" in str(caught.value)
    assert "The matching values were loaded" in str(caught.value)


def test_legacy_optimizer_slots_count_as_matched(config) -> None:
    # tf.compat.v1 optimizers keep their slots outside the object graph's children edges.
    cfg = config()
    net, opt = Net(), tf.compat.v1.train.AdamOptimizer(0.1)
    opt.minimize(lambda: tf.reduce_sum(net.l1.kernel), var_list=[net.l1.kernel])
    ckptkit.CheckpointManager(cfg, net=net, opt=opt).save(1)
    assert any(".OPTIMIZER_SLOT" in v.key for v in ckptkit.inspect(cfg.directory).variables)

    net2, opt2 = Net(), tf.compat.v1.train.AdamOptimizer(0.1)
    mgr = ckptkit.CheckpointManager(cfg, net=net2, opt=opt2)
    result = mgr.restore(assertion="existing_objects_matched")
    assert result.report is not None
    # The slots are matched (TensorFlow creates them on restore); only the optimizer's beta
    # powers, which a v1 optimizer creates on its first step, are still pending.
    assert result.report.unused_checkpoint_values == (
        "opt/beta1_power (beta1_power)",
        "opt/beta2_power (beta2_power)",
    )
    slot = opt2.get_slot(net2.l1.kernel, "m")
    np.testing.assert_allclose(slot.numpy(), opt.get_slot(net.l1.kernel, "m").numpy())


def test_the_quick_starts_resume_is_exact_at_restore_time(config) -> None:
    """A built model and a fresh Adam: the optimizer's slots match at restore, not later."""

    def program() -> tuple[keras.Model, keras.optimizers.Optimizer]:
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Dense(10)])
        model.build((None, 4))
        return model, keras.optimizers.Adam()

    model, optimizer = program()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(tf.ones((2, 4))))
    optimizer.apply_gradients(
        zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=True)
    )
    with ckptkit.CheckpointManager(config(), model=model, optimizer=optimizer) as mgr:
        mgr.save(1)

    fresh, fresh_optimizer = program()
    mgr = ckptkit.CheckpointManager(config(), model=fresh, optimizer=fresh_optimizer)
    assert mgr.check_compatibility().unused_checkpoint_values == ()
    result = mgr.restore(assertion="consumed")
    assert result.report is not None
    assert not result.report.unused_checkpoint_values
    for saved, restored in zip(optimizer.variables, fresh_optimizer.variables, strict=True):
        np.testing.assert_array_equal(saved.numpy(), restored.numpy())


def test_values_a_built_model_will_never_take_are_unused_not_deferred(config) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, model=make_model(4), step=tf.Variable(1)).save(1)
    unbuilt_layer = keras.Sequential([keras.layers.Dense(4, name="l1")])  # no l2, not built
    report = ckptkit.CheckpointManager(cfg, model=unbuilt_layer).check_compatibility()
    assert report.unused_checkpoint_values == ("step (Variable)",)
    assert len(report.deferred_checkpoint_values) == 4
    built = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="l1")])
    report = ckptkit.CheckpointManager(cfg, model=built).check_compatibility()
    assert report.deferred_checkpoint_values == ()
    assert "step (Variable)" in report.unused_checkpoint_values
    assert len(report.unused_checkpoint_values) > 1


def test_a_mismatched_variable_is_not_listed_as_matched(config) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, v=tf.Variable([1.0, 2.0]), w=tf.Variable(3.0)).save(1)
    report = ckptkit.CheckpointManager(
        cfg, v=tf.Variable([1.0, 2.0, 3.0]), w=tf.Variable(0.0)
    ).check_compatibility()
    assert [m.name for m in report.mismatches] == ["v (Variable)"]
    assert report.matched == ("w (Variable)",)
