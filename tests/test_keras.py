"""`ckptkit.keras.CheckpointCallback` with real `model.fit`, real files and real kills."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from forked import ForkedWorker
from helpers import Interrupt, cli

import ckptkit
from ckptkit.keras import CheckpointCallback


def run_worker(
    directory: Path, out: Path, *, kill_after: int | None = None, background: bool = False
) -> str:
    """Runs workers/keras_fit.py; SIGKILLs it once it reports `kill_after` trained batches."""
    args = [str(directory), str(out)]
    if background:
        args.append("--async")
    if kill_after is not None:
        args.append("--slow")
    with ForkedWorker("keras_fit.py", *args) as worker:
        assert worker.stdout is not None
        first = worker.stdout.readline().strip()
        if kill_after is not None:
            for line in worker.stdout:
                if line.strip() == f"trained {kill_after}":
                    worker.send_signal(signal.SIGKILL)
                    break
        worker.stdout.read()
    expected = -signal.SIGKILL if kill_after is not None else 0
    assert worker.returncode == expected, f"worker exited with {worker.returncode}"
    return first


def weights(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[np.ndarray]:
    tmp = tmp_path_factory.mktemp("reference")
    assert run_worker(tmp / "run", tmp / "w.npz") == "fresh"
    return weights(tmp / "w.npz")


def step_metadata(directory: Path, step: int) -> dict[str, object]:
    manifest = (directory / f"ckpt-{step}.manifest.json").read_text()
    return dict(json.loads(manifest)["metadata"])


@pytest.mark.slow
@pytest.mark.parametrize("background", [False, True], ids=["sync", "async"])
def test_sigkill_mid_epoch_then_rerun_equals_an_uninterrupted_fit(
    tmp_path, uninterrupted, background
) -> None:
    run = tmp_path / "run"
    kill = {"kill_after": 14, "background": background}
    assert run_worker(run, tmp_path / "killed.npz", **kill) == "fresh"
    newest = ckptkit.list_checkpoints(str(run))[-1]
    assert newest.step is not None
    assert newest.step >= 12
    meta = step_metadata(run, newest.step)
    assert meta["batch"] != 0, "the kill should land mid-epoch for this test to mean anything"

    resumed = run_worker(run, tmp_path / "resumed.npz", background=background)
    assert resumed == f"resumed {newest.step}"
    for a, b in zip(weights(tmp_path / "resumed.npz"), uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)
    # A successful fit removes the backups and leaves nothing, as BackupAndRestore does.
    assert not run.exists()


@pytest.mark.slow
def test_a_corrupted_newest_backup_falls_back_to_the_previous_one(tmp_path, uninterrupted) -> None:
    run = tmp_path / "run"
    run_worker(run, tmp_path / "killed.npz", kill_after=14)
    *_, previous, newest = ckptkit.list_checkpoints(str(run))
    data = Path(f"{newest.path}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])

    assert run_worker(run, tmp_path / "resumed.npz") == f"resumed {previous.step}"
    for a, b in zip(weights(tmp_path / "resumed.npz"), uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------------------------
# In-process fits: options against keras.callbacks.ModelCheckpoint, retention, formats.

X = np.random.RandomState(1).rand(64, 5).astype("float32")
Y = (X.sum(axis=1) > 2.5).astype("int32")
VX = np.random.RandomState(2).rand(32, 5).astype("float32")
VY = (VX.sum(axis=1) > 2.5).astype("int32")


def classifier(kind: str = "sequential", steps_per_execution: int = 1) -> keras.Model:
    keras.utils.set_random_seed(0)
    if kind == "sequential":
        model = keras.Sequential(
            [keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
        )
    elif kind == "functional":
        inputs = keras.Input((5,))
        hidden = keras.layers.Dense(8, activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    else:
        model = Subclassed()
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


class Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = keras.layers.Dense(8, activation="relu")
        self.out = keras.layers.Dense(2)

    def call(self, x):
        return self.out(self.hidden(x))


def fit(model: keras.Model, callbacks: list, epochs: int = 6, **kwargs) -> keras.callbacks.History:
    return model.fit(
        X,
        Y,
        validation_data=(VX, VY),
        epochs=epochs,
        batch_size=16,
        shuffle=False,
        verbose=0,
        callbacks=callbacks,
        **kwargs,
    )


class Inject(keras.callbacks.Callback):
    """Puts a known value of `name` into each epoch's logs (callbacks share the dict)."""

    def __init__(self, name: str, values: list[float]) -> None:
        super().__init__()
        self.name, self.values = name, values

    def on_epoch_end(self, epoch, logs=None) -> None:
        assert logs is not None
        logs[self.name] = self.values[epoch]


SCORES = [0.5, 0.9, 0.2, 0.8, 0.95, 0.1]


@pytest.mark.parametrize(
    ("filename", "options"),
    [
        ("m-{epoch:02d}-{val_loss:.3f}.keras", {"save_best_only": True}),
        ("m-{epoch:02d}.keras", {"save_best_only": True, "monitor": "val_accuracy"}),
        ("m-{epoch:02d}.weights.h5", {"save_best_only": True, "save_weights_only": True}),
        ("m-{epoch:02d}.keras", {"save_best_only": True, "monitor": "val_score"}),
        ("m-{epoch:02d}.keras", {"save_best_only": True, "monitor": "val_score", "mode": "min"}),
        (
            "m-{epoch:02d}.keras",
            {"save_best_only": True, "monitor": "val_score", "initial_value_threshold": 0.85},
        ),
        ("m-{epoch}-{batch}.weights.h5", {"save_weights_only": True, "save_freq": 3}),
        ("m.keras", {}),
    ],
)
def test_same_files_as_model_checkpoint(tmp_path, filename, options) -> None:
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    if options.get("monitor") == "val_score" and options.get("mode") is None:
        options = {**options, "mode": "max"}  # Keras cannot infer an unknown metric either
    callbacks = [
        Inject("val_score", SCORES),
        keras.callbacks.ModelCheckpoint(str(theirs / filename), **options),
        CheckpointCallback(tmp_path / "ckpts", str(ours / filename), **options),
    ]
    fit(classifier(), callbacks)
    assert sorted(os.listdir(ours)) == sorted(os.listdir(theirs))
    assert os.listdir(ours)


def test_auto_mode_is_inferred_as_keras_does(tmp_path) -> None:
    for monitor in ("val_loss", "val_accuracy", "loss", "accuracy"):
        ours = CheckpointCallback(
            tmp_path / monitor,
            str(tmp_path / f"{monitor}.keras"),
            monitor=monitor,
            save_best_only=True,
        )
        theirs = keras.callbacks.ModelCheckpoint(
            str(tmp_path / f"k-{monitor}.keras"), monitor=monitor, save_best_only=True
        )
        fit(classifier(), [ours, theirs], epochs=1)
        expected = "min" if theirs.monitor_op in (keras.ops.less, np.less) else "max"
        assert ours._export_to is not None
        assert ours._export_to.direction == expected, monitor


def test_best_k_and_latest_kept_after_a_fit_with_known_scores(tmp_path) -> None:
    retention = ckptkit.Retention(max_to_keep=1, best_k=2, monitor="val_score", mode="max")
    callback = CheckpointCallback(tmp_path / "run", retention=retention, keep_checkpoints=True)
    fit(classifier(), [Inject("val_score", SCORES), callback])
    infos = ckptkit.list_checkpoints(str(tmp_path / "run"))
    # 4 batches per epoch: epochs 2 (0.9) and 5 (0.95) are the best, epoch 6 the newest.
    assert [i.step for i in infos] == [8, 20, 24]
    manager = ckptkit.CheckpointManager(callback.config, value=tf.Variable(0.0))
    assert manager.best is not None
    assert manager.best.step == 20


def test_after_a_successful_fit_only_the_best_stay(tmp_path) -> None:
    retention = ckptkit.Retention(max_to_keep=2, best_k=1, monitor="val_score", mode="max")
    fit(
        classifier(),
        [Inject("val_score", SCORES), CheckpointCallback(tmp_path, retention=retention)],
    )
    assert [i.step for i in ckptkit.list_checkpoints(str(tmp_path))] == [20]


def test_metrics_and_position_are_in_the_manifest_and_ls(tmp_path) -> None:
    fit(classifier(), [CheckpointCallback(tmp_path, keep_checkpoints=True)], epochs=2)
    manifest = json.loads((tmp_path / "ckpt-8.manifest.json").read_text())
    assert set(manifest["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert manifest["metadata"]["epoch"] == 2
    assert manifest["metadata"]["batch"] == 0
    out = cli("ls", str(tmp_path)).stdout
    assert "val_loss=" in out


def test_plain_tensorflow_restores_the_callbacks_checkpoints(tmp_path) -> None:
    trained = classifier("functional")
    fit(trained, [CheckpointCallback(tmp_path, keep_checkpoints=True)], epochs=2)
    fresh = classifier("functional")
    fresh.optimizer.build(fresh.trainable_variables)
    tf.train.Checkpoint(model=fresh, optimizer=fresh.optimizer).restore(
        tf.train.latest_checkpoint(str(tmp_path))
    ).expect_partial().assert_existing_objects_matched()
    for a, b in zip(trained.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(fresh.optimizer.iterations.numpy()) == 8


@pytest.mark.parametrize("kind", ["sequential", "functional", "subclassed"])
def test_interrupted_fit_resumes_mid_epoch_in_process(tmp_path, kind) -> None:
    reference = classifier(kind)
    fit(reference, [], epochs=3)

    model = classifier(kind)
    with pytest.raises(KeyboardInterrupt):
        fit(model, [CheckpointCallback(tmp_path, save_freq=3), Interrupt(after=7)], epochs=3)
    # A new program: a new model (unbuilt when subclassed) and a new callback.
    model = classifier(kind)
    callback = CheckpointCallback(tmp_path, save_freq=3)
    history = fit(model, [callback], epochs=3)
    assert callback.restored is not None
    assert callback.restored.step == 6  # epoch 2, 2 of its 4 batches done
    assert history.epoch == [1, 2]
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


EVERY_2 = ckptkit.Schedule(every_steps=2)


def test_a_built_model_is_restored_once_on_resume(tmp_path, monkeypatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(classifier(), [CheckpointCallback(tmp_path, save_freq=3), Interrupt(after=7)], 3)
    restores = []
    original = ckptkit.CheckpointManager.restore

    def counted(self, **kwargs):
        restores.append(kwargs)
        return original(self, **kwargs)

    monkeypatch.setattr(ckptkit.CheckpointManager, "restore", counted)
    callback = CheckpointCallback(tmp_path, save_freq=3)
    fit(classifier(), [callback], epochs=3)
    assert callback.restored is not None
    assert callback.restored.step == 6
    assert len(restores) == 1


def test_a_resume_with_several_steps_per_execution_skips_what_was_trained(tmp_path) -> None:
    # Two batches per call, four per epoch: saved after the first call of epoch 2 (step 6).
    reference = classifier(steps_per_execution=2)
    fit(reference, [], epochs=3)
    model = classifier(steps_per_execution=2)
    with pytest.raises(KeyboardInterrupt):
        fit(model, [CheckpointCallback(tmp_path, schedule=EVERY_2), Interrupt(after=3)], epochs=3)
    assert step_metadata(tmp_path, 6) == {"epoch": 1, "batch": 2}
    model = classifier(steps_per_execution=2)
    callback = CheckpointCallback(tmp_path, schedule=EVERY_2)
    fit(model, [callback], epochs=3)
    assert callback.restored is not None
    assert callback.restored.step == 6
    for a, b in zip(reference.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_exports_load_with_keras(tmp_path) -> None:
    model = classifier()
    fit(
        model,
        [
            CheckpointCallback(tmp_path / "c", str(tmp_path / "best.keras"), save_best_only=True),
            CheckpointCallback(
                tmp_path / "d", str(tmp_path / "last.weights.h5"), save_weights_only=True
            ),
        ],
        epochs=2,
    )
    loaded = keras.models.load_model(tmp_path / "best.keras")
    np.testing.assert_allclose(loaded.predict(VX, verbose=0), model.predict(VX, verbose=0))
    other = classifier()
    other.load_weights(tmp_path / "last.weights.h5")
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")]


def test_the_best_value_survives_a_restart(tmp_path) -> None:
    scores = [0.9, 0.5, 0.6, 0.7]
    options = {"monitor": "val_score", "mode": "max", "save_best_only": True}
    with pytest.raises(KeyboardInterrupt):
        fit(
            classifier(),
            [
                Inject("val_score", scores),
                CheckpointCallback(tmp_path / "c", str(tmp_path / "e{epoch}.keras"), **options),
                Interrupt(after=6),
            ],
            epochs=4,
        )
    callback = CheckpointCallback(tmp_path / "c", str(tmp_path / "e{epoch}.keras"), **options)
    fit(classifier(), [Inject("val_score", scores), callback], epochs=4)
    # Keras's ModelCheckpoint would forget 0.9 and export epoch 3 after the restart.
    assert sorted(f for f in os.listdir(tmp_path) if f.endswith(".keras")) == ["e1.keras"]


def test_a_time_schedule_saves_on_batches(tmp_path) -> None:
    ticks = iter(range(0, 10_000, 7))
    callback = CheckpointCallback(
        tmp_path,
        schedule=ckptkit.Schedule(every_secs=20),
        clock=lambda: float(next(ticks)),
        keep_checkpoints=True,
    )
    fit(classifier(), [callback], epochs=2)
    # The clock advances 7 s per batch: a save every third batch after the first.
    assert [i.step for i in ckptkit.list_checkpoints(str(tmp_path))] == [4, 7]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"save_freq": "batch"}, "save_freq must be 'epoch' or a positive number"),
        ({"save_freq": 0}, "save_freq must be"),
        ({"save_freq": 5, "schedule": ckptkit.Schedule(every_steps=5)}, "not both"),
        (
            {
                "directory": ckptkit.CheckpointConfig(
                    directory="d", schedule=ckptkit.Schedule(every_secs=5)
                ),
                "save_freq": 5,
            },
            "not both",
        ),
        ({"filepath": "m.h5", "save_weights_only": True}, "must end in '.weights.h5'"),
        ({"filepath": "m.weights.h5"}, "must end in '.keras'"),
        ({"filepath": "m.ckpt"}, "must end in '.keras'"),
        ({"save_best_only": True}, "no filepath was given"),
        ({"mode": "up"}, "mode must be one of"),
    ],
)
def test_bad_arguments_are_refused_with_what_to_do(tmp_path, kwargs, message) -> None:
    kwargs = {"directory": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=message):
        CheckpointCallback(**kwargs)


@pytest.mark.parametrize(
    ("save_freq", "epochs", "batches", "steps_per_execution"),
    [(15, 9, 5, 1), (7, 4, 5, 1), (6, 4, 6, 2)],
)
def test_save_freq_counts_the_batches_of_this_fit_as_model_checkpoint(
    tmp_path, save_freq, epochs, batches, steps_per_execution
) -> None:
    """A model trained before (6 epochs) saves first `save_freq` batches into the next fit."""
    model = classifier()
    model.compile(
        optimizer=keras.optimizers.SGD(0.5),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
    )
    x, y = X[: batches * 8], Y[: batches * 8]  # batches of 8
    model.fit(x, y, batch_size=8, epochs=6, shuffle=False, verbose=0)
    prior = int(model.optimizer.iterations.numpy())
    assert prior == 6 * batches
    theirs = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "k-{epoch}-{batch}.weights.h5"), save_weights_only=True, save_freq=save_freq
    )
    ours = CheckpointCallback(
        tmp_path / "ours",
        str(tmp_path / "o-{epoch}-{batch}.weights.h5"),
        save_weights_only=True,
        save_freq=save_freq,
        keep_checkpoints=True,
        retention=ckptkit.Retention(max_to_keep=None),
    )
    model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0, callbacks=[theirs, ours])
    theirs_written = sorted(n.removeprefix("k-") for n in os.listdir(tmp_path) if n[:2] == "k-")
    ours_written = sorted(n.removeprefix("o-") for n in os.listdir(tmp_path) if n[:2] == "o-")
    assert theirs_written, "ModelCheckpoint wrote nothing: the comparison would mean nothing"
    assert ours_written == theirs_written
    saved = ckptkit.list_checkpoints(str(tmp_path / "ours"))
    assert len(saved) == len(theirs_written)
    for info in saved:  # each named by the optimizer's step, with the batches done in its epoch
        assert info.step is not None
        meta = step_metadata(tmp_path / "ours", info.step)
        assert info.step == prior + int(meta["epoch"]) * batches + int(meta["batch"])  # type: ignore[call-overload]


def test_a_placeholder_not_logged_names_the_logged_ones(tmp_path) -> None:
    callback = CheckpointCallback(tmp_path / "c", str(tmp_path / "m-{val_f1:.2f}.keras"))
    with pytest.raises(KeyError, match="val_loss"):
        fit(classifier(), [callback], epochs=1)


def test_run_config_schedule_saves_as_the_estimator(tmp_path) -> None:
    # RunConfig(save_checkpoints_steps=3): the start, every 3 steps, and the end of training.
    cfg = ckptkit.CheckpointConfig.from_run_config(
        {"model_dir": str(tmp_path / "run"), "save_checkpoints_steps": 3, "keep_checkpoint_max": 10}
    )
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((10, 3), np.float32), np.zeros((10, 2), np.float32)
    callback = CheckpointCallback(cfg, keep_checkpoints=True)
    model.fit(x, y, batch_size=2, epochs=2, verbose=0, shuffle=False, callbacks=[callback])
    names = [Path(info.path).name for info in ckptkit.list_checkpoints(str(tmp_path / "run"))]
    assert names == [f"model.ckpt-{step}" for step in (0, 3, 6, 9, 10)]


def test_a_directory_that_is_not_a_path_is_named() -> None:
    with pytest.raises(ValueError, match=r"directory must be a checkpoint directory.*=None"):
        CheckpointCallback(None)


def test_a_warning_during_fit_points_at_the_fit_call(tmp_path) -> None:
    run = str(tmp_path / "run")
    fit(classifier(), [CheckpointCallback(run, save_freq=2, keep_checkpoints=True)], epochs=1)
    newest = ckptkit.list_checkpoints(run)[-1]
    data = Path(f"{newest.path}.data-00000-of-00001")
    data.write_bytes(data.read_bytes()[:10])
    with pytest.warns(ckptkit.CheckpointSkippedWarning) as caught:
        fit(classifier(), [CheckpointCallback(run, save_freq=2, resume_finished=True)], epochs=2)
    assert {w.filename for w in caught} == {__file__}


def test_a_finished_fit_leaves_only_what_the_user_asked_for(tmp_path) -> None:
    fit(classifier(), [CheckpointCallback(tmp_path / "run", save_freq=3)], epochs=2)
    assert not (tmp_path / "run").exists()
    fit(classifier(), [CheckpointCallback(tmp_path / "never", save_freq=100)], epochs=1)
    assert not (tmp_path / "never").exists()  # locked when fit started, never saved
    run = tmp_path / "with-export"
    fit(classifier(), [CheckpointCallback(run, str(run / "last.keras"))], epochs=2)
    assert os.listdir(run) == ["last.keras"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    fit(classifier(), [CheckpointCallback(mine)], epochs=2)
    assert os.listdir(mine) == ["notes.txt"]


def test_rerunning_a_fit_that_kept_nothing_trains_from_scratch(tmp_path) -> None:
    first = classifier()
    fit(first, [CheckpointCallback(tmp_path / "run")], epochs=2)
    again = classifier()
    history = fit(again, [CheckpointCallback(tmp_path / "run")], epochs=2)
    assert history.epoch == [0, 1]
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "options",
    [
        {"retention": ckptkit.Retention(max_to_keep=1, best_k=1, monitor="val_loss")},
        {"keep_checkpoints": True},
    ],
    ids=["best_k", "keep_checkpoints"],
)
def test_rerunning_a_finished_fit_that_kept_checkpoints_stops_and_says_why(
    tmp_path, options
) -> None:
    run = tmp_path / "run"
    fit(classifier(), [CheckpointCallback(run, **options)], epochs=3)
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    kept = [Path(i.path).name for i in ckptkit.list_checkpoints(str(run))]
    assert kept
    model = classifier()
    untrained = model.get_weights()
    with pytest.raises(ckptkit.CheckpointExistsError, match="resume_finished=True") as caught:
        fit(model, [CheckpointCallback(run, **options)], epochs=3)
    assert all(name in str(caught.value) for name in kept)
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    for a, b in zip(untrained, model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    with pytest.warns(UserWarning, match=r"fit\(epochs=3\) has no epoch left to train"):
        history = fit(classifier(), [CheckpointCallback(run, resume_finished=True, **options)], 3)
    assert history.epoch == []
    history = fit(classifier(), [CheckpointCallback(run, resume_finished=True, **options)], 5)
    newest = int(step_metadata(run, ckptkit.list_checkpoints(str(run))[-1].step or 0)["epoch"])  # type: ignore[call-overload]
    assert history.epoch[0] >= 1
    assert history.epoch[-1] == 4
    assert newest == 5
