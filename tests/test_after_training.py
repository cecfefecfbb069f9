"""After training: fine-tune into a changed model (skip_mismatch, exclude, init_from)."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import ckptkit
import ckptkit.keras
from ckptkit.cli import main

X = np.random.default_rng(0).random((16, 5), dtype=np.float32)
Y = np.arange(16) % 3


def classifier(classes: int, *, built: bool = True, seed: int = 0) -> keras.Model:
    """A body layer and a head of `classes` outputs, compiled with Adam."""
    keras.utils.set_random_seed(seed)
    layers = [keras.layers.Dense(8, name="body"), keras.layers.Dense(classes, name="head")]
    model = keras.Sequential(([keras.Input((5,))] if built else []) + layers, name="classifier")
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
    assert "(classifier/head/kernel): skip_mismatch: checkpoint has float32[8, 3]" in left
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


# ---------------------------------------------------------------------------------------------
# Averaging checkpoints.


def averaged_state() -> dict[str, tf.Variable]:
    return {
        "w": tf.Variable(tf.zeros((4, 3))),
        "half": tf.Variable(tf.zeros((5,), tf.float16)),
        "brain": tf.Variable(tf.zeros((2, 2), tf.bfloat16)),
        "count": tf.Variable(0, dtype=tf.int64),
    }


@pytest.fixture
def three_saved(config) -> tuple[str, list[dict[str, np.ndarray]]]:
    """Checkpoints at steps 3, 6 and 9 of random values; returns the directory and values."""
    cfg = config()
    variables = averaged_state()
    rng = np.random.default_rng(3)
    saved = []
    with ckptkit.CheckpointManager(cfg, **variables) as manager:
        for step in (3, 6, 9):
            values = {
                name: rng.normal(size=v.shape).astype(v.dtype.as_numpy_dtype)
                for name, v in variables.items()
                if v.dtype.is_floating
            }
            values["count"] = np.int64(step * 10)
            for name, value in values.items():
                variables[name].assign(value)
            manager.save(step)
            saved.append(values)
    return cfg.directory, saved


def test_average_is_the_mean_of_every_float_and_the_newest_of_the_rest(
    three_saved, tmp_path
) -> None:
    directory, saved = three_saved
    result = ckptkit.average(directory, output=tmp_path / "avg" / "ckpt-avg")
    assert result.path == str(tmp_path / "avg" / "ckpt-avg")
    assert [os.path.basename(p) for p in result.sources] == ["ckpt-3", "ckpt-6", "ckpt-9"]
    restored = averaged_state()
    ckptkit.CheckpointManager(str(tmp_path / "avg"), **restored).restore(
        path=result.path, assertion="consumed"
    )
    for name in ("w", "half", "brain"):
        dtype = restored[name].dtype.as_numpy_dtype
        expected = np.mean([s[name].astype(np.float64) for s in saved], axis=0).astype(dtype)
        np.testing.assert_array_equal(restored[name].numpy(), expected)
    assert int(restored["count"].numpy()) == 90  # the newest one's
    contents = ckptkit.inspect(result.path)
    assert {v.key.partition("/.ATTRIBUTES")[0] for v in contents.variables} >= {"w", "count"}
    assert sorted(k.partition("/.ATTRIBUTES")[0] for k in result.averaged) == [
        "brain",
        "half",
        "w",
    ]


def test_average_chooses_by_last_steps_or_paths(three_saved, tmp_path) -> None:
    directory, saved = three_saved
    last = ckptkit.average(directory, last=2, output=tmp_path / "last")
    steps = ckptkit.average(directory, steps=[6, 9], output=tmp_path / "steps")
    paths = ckptkit.average(
        [f"{directory}/ckpt-6", f"{directory}/ckpt-9.index"], output=tmp_path / "paths"
    )
    expected = ((saved[1]["w"].astype(np.float64) + saved[2]["w"]) / 2).astype(np.float32)
    for result in (last, steps, paths):
        assert [os.path.basename(p) for p in result.sources] == ["ckpt-6", "ckpt-9"]
        np.testing.assert_array_equal(ckptkit.read_tensor(result.path, "w"), expected)
    with pytest.raises(ckptkit.CheckpointNotFoundError, match=r"step\(s\) \[7\]"):
        ckptkit.average(directory, steps=[6, 7], output=tmp_path / "none")
    with pytest.raises(ValueError, match="last or steps, not both"):
        ckptkit.average(directory, last=2, steps=[6], output=tmp_path / "none")


def test_average_refuses_checkpoints_that_differ_and_writes_nothing(three_saved, tmp_path) -> None:
    directory, _ = three_saved
    wider = {**averaged_state(), "w": tf.Variable(tf.zeros((4, 4)))}
    ckptkit.CheckpointManager(str(tmp_path / "wider"), **wider).save(1)
    fewer = {k: v for k, v in averaged_state().items() if k != "half"}
    ckptkit.CheckpointManager(str(tmp_path / "fewer"), **fewer).save(1)
    output = tmp_path / "out" / "avg"
    newest = f"{directory}/ckpt-9"
    with pytest.raises(ckptkit.IncompatibleCheckpointsError, match=r"'w/.*float32\[4, 3\] in"):
        ckptkit.average([newest, str(tmp_path / "wider")], output=output)
    with pytest.raises(ckptkit.IncompatibleCheckpointsError, match=r"holds 'half/.* does not"):
        ckptkit.average([newest, str(tmp_path / "fewer")], output=output)
    assert not output.parent.exists()


def test_average_replaces_an_output_only_when_asked(three_saved, tmp_path) -> None:
    directory, saved = three_saved
    output = tmp_path / "avg"
    ckptkit.average(directory, steps=[3], output=output)
    with pytest.raises(ckptkit.CheckpointExistsError, match="overwrite=True"):
        ckptkit.average(directory, steps=[9], output=output)
    np.testing.assert_array_equal(ckptkit.read_tensor(str(output), "w"), saved[0]["w"])
    ckptkit.average(directory, steps=[9], output=output, overwrite=True)
    np.testing.assert_array_equal(ckptkit.read_tensor(str(output), "w"), saved[2]["w"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("avg")) == [
        "avg.data-00000-of-00001",
        "avg.index",
    ]
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_the_average_command(three_saved, tmp_path, capsys) -> None:
    directory, saved = three_saved
    output = str(tmp_path / "avg")
    assert main(["average", directory, "--steps", "3,9", "-o", output]) == 0
    assert "wrote" in capsys.readouterr().out
    expected = ((saved[0]["w"].astype(np.float64) + saved[2]["w"]) / 2).astype(np.float32)
    np.testing.assert_array_equal(ckptkit.read_tensor(output, "w"), expected)
    assert main(["average", directory, "--last", "2", "-o", output, "--json"]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main(["average", directory, "--last", "2", "-o", output, "--overwrite", "--json"]) == 0
    said = json.loads(capsys.readouterr().out)
    assert [os.path.basename(p) for p in said["sources"]] == ["ckpt-6", "ckpt-9"]
    assert main(["average", directory, "--steps", "3,x", "-o", output]) == 2
    assert "--steps takes steps separated by commas" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Export for serving.


def test_export_writes_the_best_checkpoint_and_leaves_the_program_as_it_was(
    config, tmp_path
) -> None:
    cfg = config().model_copy(
        update={"retention": ckptkit.Retention(max_to_keep=None, monitor="loss")}
    )
    model = classifier(3)
    manager = ckptkit.CheckpointManager(cfg, model=model, optimizer=model.optimizer)
    outputs = {}
    for step, loss in ((1, 0.9), (2, 0.2), (3, 0.5)):  # step 2 is the best
        model.fit(X, Y, epochs=1, verbose=0)
        manager.save(step, metrics={"loss": loss})
        outputs[step] = model.predict(X, verbose=0)
    model.fit(X, Y, epochs=1, verbose=0)  # training has gone on since
    live = [w.numpy().copy() for w in model.weights + model.optimizer.variables]
    result = manager.export(tmp_path / "served", best=True)
    assert result.step == 2
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(X).numpy(), outputs[2], rtol=1e-6, atol=1e-6)
    for variable, before in zip(model.weights + model.optimizer.variables, live, strict=True):
        np.testing.assert_array_equal(variable.numpy(), before)  # put back
    assert manager.latest is not None
    assert manager.latest.step == 3  # nothing was saved or removed
    with pytest.raises(ckptkit.CheckpointExistsError, match="overwrite=True"):
        manager.export(tmp_path / "served")
    assert manager.export(tmp_path / "served", overwrite=True).step == 3
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(X).numpy(), outputs[3], rtol=1e-6, atol=1e-6)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    manager.close()


def test_export_a_module_with_its_signature(config, tmp_path) -> None:
    class Scale(tf.Module):
        def __init__(self) -> None:
            self.factor = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            return x * self.factor

    module = Scale()
    manager = ckptkit.CheckpointManager(config(), scale=module, step=tf.Variable(0))
    module.factor.assign(3.0)
    manager.save(1)
    module.factor.assign(5.0)
    manager.export(tmp_path / "served", signatures={"serving_default": module.__call__})
    served = tf.saved_model.load(str(tmp_path / "served"))
    out = served.signatures["serving_default"](tf.constant([1.0, 2.0]))
    np.testing.assert_array_equal(next(iter(out.values())).numpy(), [3.0, 6.0])
    assert module.factor.numpy() == 5.0
    with pytest.raises(ckptkit.TrackableError, match="name="):
        ckptkit.CheckpointManager(config(), a=Scale(), b=Scale()).export(tmp_path / "x")


def test_fit_exports_its_best_checkpoint_when_it_ends(tmp_path) -> None:
    outputs: list[np.ndarray] = []

    class Record(keras.callbacks.Callback):
        """The model's output after each epoch (run after the checkpoint callback)."""

        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            outputs.append(self.model.predict(X, verbose=0))

    model = classifier(3)
    callback = ckptkit.keras.CheckpointCallback(
        tmp_path / "run", monitor="val_loss", export_best_to=tmp_path / "served"
    )
    history = model.fit(
        X, Y, epochs=4, verbose=0, validation_data=(X[:8], Y[:8]), callbacks=[callback, Record()]
    )
    best_epoch = int(np.argmin(history.history["val_loss"]))
    assert callback.exported is not None
    assert callback.exported.metrics["val_loss"] == min(history.history["val_loss"])
    served = tf.saved_model.load(str(tmp_path / "served"))
    np.testing.assert_allclose(served.serve(X).numpy(), outputs[best_epoch], rtol=1e-6, atol=1e-6)
    assert not (tmp_path / "run").exists()  # the backups went after the export, as always


def test_a_resumed_fit_says_from_which_epoch_and_step_once(tmp_path, capsys) -> None:
    def fit(epochs: int) -> None:
        callback = ckptkit.keras.CheckpointCallback(
            tmp_path / "run", keep_checkpoints=True, resume_finished=True, verbose=1
        )
        classifier(3).fit(X, Y, epochs=epochs, verbose=0, callbacks=[callback])

    fit(2)
    capsys.readouterr()
    fit(3)
    out = capsys.readouterr().out.splitlines()
    said = [line for line in out if line.startswith("CheckpointCallback: resumed")]
    assert len(said) == 1
    assert said[0].startswith("CheckpointCallback: resumed from epoch 3 (step 2,")


def test_the_command_reads_a_tensor_by_any_name_a_report_prints(config, capsys) -> None:
    cfg = config()
    ckptkit.CheckpointManager(cfg, v=tf.Variable([1.0, 2.0], name="weights")).save(1)
    for name in ("v", "v/.ATTRIBUTES/VARIABLE_VALUE", "weights", "v (weights)"):
        assert main(["inspect", cfg.directory, "--tensor", name]) == 0
        assert "[1. 2.]" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("ckptkit ")
