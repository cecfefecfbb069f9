"""Real Estimator artifacts (tests/fixtures/estimator) read, restored and migrated to Keras 3.

The fixture is a DNNClassifier model_dir written by TensorFlow 2.15's tf.estimator, with the
logits it predicted for a fixed input (see tests/fixtures/README.md).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import cli as run

import ckptkit

FIXTURE = Path(__file__).parent / "fixtures" / "estimator"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
PROBE = np.array(EXPECTED["probe"], np.float32)
LOGITS = np.array(EXPECTED["logits"], np.float32)
RULES = [(r"dnn/(.*)", r"\1"), (r"global_step|training/.*", None)]
RULES_TEXT = "dnn/(.*) => \\1\nglobal_step|training/.* => -\n"
v1 = tf.compat.v1


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy, so no test can change the committed fixture."""
    return Path(shutil.copytree(FIXTURE / "model_dir", tmp_path / "model_dir"))


def keras_dnn() -> keras.Model:
    """The Keras 3 model equivalent to DNNClassifier(hidden_units=[8, 4], n_classes=3)."""
    return keras.Sequential(
        name="classifier",
        layers=[
            keras.Input((4,)),
            keras.layers.Dense(8, activation="relu", name="hiddenlayer_0"),
            keras.layers.Dense(4, activation="relu", name="hiddenlayer_1"),
            keras.layers.Dense(3, name="logits"),
        ],
    )


def test_cli_reads_the_model_dir(model_dir: Path) -> None:
    listed = run("ls", str(model_dir), "--json")
    assert listed.returncode == 0, listed.stderr
    assert [Path(r["path"]).name for r in json.loads(listed.stdout)] == EXPECTED["kept"]
    inspected = json.loads(run("inspect", str(model_dir), "--json").stdout)
    assert inspected["format"] == "name-based"
    assert {v["key"]: v["shape"] for v in inspected["variables"]} == EXPECTED["variables"]
    verified = run("verify", str(model_dir), "--full")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "3 checkpoint(s), 0 damaged" in verified.stdout
    diffed = json.loads(
        run(
            "diff", str(model_dir / "model.ckpt-6"), str(model_dir / "model.ckpt-10"), "--json"
        ).stdout
    )
    assert "dnn/logits/kernel" in {c["key"] for c in diffed["changed"]}


def test_absolute_paths_from_another_machine_are_resolved_and_said(model_dir: Path) -> None:
    state = model_dir / "checkpoint"
    state.write_text(
        "\n".join(
            ['model_checkpoint_path: "/home/trainer/run7/model.ckpt-10"']
            + [f'all_model_checkpoint_paths: "/home/trainer/run7/{n}"' for n in EXPECTED["kept"]]
        )
    )
    with pytest.warns(UserWarning, match="points outside it.*run7/model.ckpt-10"):
        infos = ckptkit.list_checkpoints(str(model_dir))
    assert [Path(i.path).parent for i in infos] == [model_dir] * 3
    listed = run("ls", str(model_dir))
    assert listed.returncode == 0
    assert "points outside it" in listed.stderr


def test_damaged_checkpoint_in_the_model_dir_is_reported(model_dir: Path) -> None:
    data = model_dir / "model.ckpt-10.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])
    done = run("verify", str(model_dir), "--full")
    assert done.returncode == 1
    assert "model.ckpt-10" in done.stdout


def test_the_estimators_graph_restores_from_its_meta_file(model_dir: Path) -> None:
    graph = tf.Graph()
    with graph.as_default(), v1.Session(graph=graph) as session:
        cfg = ckptkit.CheckpointConfig(directory=str(model_dir), prefix="model.ckpt")
        mgr = ckptkit.CheckpointManager.for_session(cfg, session)
        result = mgr.restore(assertion="consumed")
        assert result.step == 10
        kernel = graph.get_tensor_by_name("dnn/logits/kernel/Read/ReadVariableOp:0")
        reader = tf.train.load_checkpoint(str(model_dir))
        np.testing.assert_array_equal(session.run(kernel), reader.get_tensor("dnn/logits/kernel"))


def test_migrated_keras_model_predicts_what_the_estimator_predicted(model_dir: Path) -> None:
    model = keras_dnn()
    result = ckptkit.migrate(model_dir, key_map=RULES, model=model, assertion="consumed")
    assert result.step == 10
    assert len(result.report.matched) == 6
    assert (
        "dnn/logits/kernel -> model/_functional/_operations/3/_kernel (classifier/logits/kernel)"
        in (result.report.matched)
    )
    assert len(result.report.left_out) == 9  # global_step and the Adagrad state
    np.testing.assert_allclose(model.predict(PROBE, verbose=0), LOGITS, rtol=1e-6, atol=1e-6)


def test_migration_into_a_tf_module_with_a_dict_and_a_callable(model_dir: Path) -> None:
    class Head(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(tf.zeros((4, 3)))
            self.b = tf.Variable(tf.zeros((3,)))
            self.step = tf.Variable(0, dtype=tf.int64)

    head = Head()
    table = {"dnn/logits/kernel": "head/w", "dnn/logits/bias": "head/b", "global_step": "step"}
    result = ckptkit.migrate(
        model_dir, key_map=table, assertion="existing_objects_matched", head=head
    )
    assert int(head.step) == 10
    reader = tf.train.load_checkpoint(str(model_dir))
    np.testing.assert_array_equal(head.w.numpy(), reader.get_tensor("dnn/logits/kernel"))
    assert len(result.report.unused_checkpoint_values) == 12

    other = Head()
    ckptkit.migrate(
        model_dir,
        key_map=lambda name: {"dnn/logits/bias": "b"}.get(name),
        assertion="partial",
        head=other,
    )
    np.testing.assert_array_equal(other.b.numpy(), reader.get_tensor("dnn/logits/bias"))
    assert not other.w.numpy().any()


@pytest.mark.parametrize("assertion", ["consumed", "existing_objects_matched"])
def test_migration_assertions_name_what_is_missing_and_load_nothing(
    model_dir: Path, assertion: str
) -> None:
    model = keras_dnn()
    before = [w.numpy() for w in model.weights]
    rules = [(r"dnn/hiddenlayer_0/(.*)", r"hiddenlayer_0/\1"), (r"global_step|training/.*", None)]
    with pytest.raises(ckptkit.RestoreMismatchError, match="not restored") as info:
        ckptkit.migrate(model_dir, key_map=rules, model=model, assertion=assertion)
    assert "model/_functional/_operations/3/bias (classifier/logits/bias)" in (
        info.value.unrestored_objects
    )
    for old, new in zip(before, model.weights, strict=True):
        np.testing.assert_array_equal(old, new.numpy())


def test_migration_shape_mismatch_is_named(model_dir: Path) -> None:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="hiddenlayer_0")])
    with pytest.raises(
        ckptkit.ShapeMismatchError, match=r"hiddenlayer_0/kernel.*float32\[4, 8\].*float32\[4, 5\]"
    ):
        ckptkit.migrate(model_dir, key_map=RULES, model=model, assertion="partial")


def test_migration_refuses_unbuilt_models_and_ambiguous_names(model_dir: Path) -> None:
    unbuilt = keras.Sequential([keras.layers.Dense(3)])
    with pytest.raises(ckptkit.TrackableError, match="model is not built"):
        ckptkit.migrate(model_dir, key_map=RULES, model=unbuilt)
    with pytest.raises(ckptkit.KeyMapError, match="fits several variables"):
        ckptkit.migrate(model_dir, key_map={"dnn/logits/bias": "bias"}, model=keras_dnn())


def test_restoring_name_based_into_tf2_points_to_migrate(model_dir: Path, tmp_path: Path) -> None:
    mgr = ckptkit.CheckpointManager(
        ckptkit.CheckpointConfig(directory=str(tmp_path / "new")), model=keras_dnn()
    )
    with pytest.raises(ckptkit.FormatError, match=r"ckptkit\.migrate"):
        mgr.restore(path=str(model_dir))


def test_convert_for_a_program_loads_with_plain_tf_train_checkpoint(
    model_dir: Path, tmp_path: Path
) -> None:
    result = ckptkit.convert(model_dir, tmp_path / "converted", key_map=RULES, model=keras_dnn())
    assert result.path == str(tmp_path / "converted" / "ckpt-10")
    fresh = keras_dnn()
    latest = tf.train.latest_checkpoint(str(tmp_path / "converted"))
    tf.train.Checkpoint(model=fresh).restore(latest).assert_consumed()
    np.testing.assert_allclose(fresh.predict(PROBE, verbose=0), LOGITS, rtol=1e-6, atol=1e-6)


def test_cli_convert_without_a_program_writes_the_mapped_paths(
    model_dir: Path, tmp_path: Path
) -> None:
    # The object paths of keras_dnn() in a tf.train.Checkpoint(model=...), as
    # `ckptkit inspect` shows them; Keras keeps a Dense kernel under "_kernel".
    rules = tmp_path / "rules.txt"
    rules.write_text(
        "# DNNClassifier -> keras.Sequential object paths\n"
        + "".join(
            f"dnn/{layer}/kernel => model/_functional/_operations/{i}/_kernel\n"
            f"dnn/{layer}/bias => model/_functional/_operations/{i}/bias\n"
            for i, layer in enumerate(["hiddenlayer_0", "hiddenlayer_1", "logits"], start=1)
        )
    )
    out = tmp_path / "converted"
    done = run(
        "convert",
        str(model_dir),
        str(out),
        "--map",
        str(rules),
        "--map",
        "global_step|training/.* => -",
    )
    assert done.returncode == 0, done.stderr
    assert "6 value(s) matched" in done.stdout
    assert "dnn/logits/kernel -> model/_functional/_operations/3/_kernel" in done.stdout
    fresh = keras_dnn()
    tf.train.Checkpoint(model=fresh).restore(tf.train.latest_checkpoint(str(out))).assert_consumed()
    np.testing.assert_allclose(fresh.predict(PROBE, verbose=0), LOGITS, rtol=1e-6, atol=1e-6)


def test_cli_convert_with_a_program_and_errors(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "dnn_program.py").write_text(
        "import keras\n\n"
        "def build():\n"
        "    return keras.Sequential([keras.Input((4,)),\n"
        "        keras.layers.Dense(8, activation='relu', name='hiddenlayer_0'),\n"
        "        keras.layers.Dense(4, activation='relu', name='hiddenlayer_1'),\n"
        "        keras.layers.Dense(3, name='logits')])\n"
    )
    out = tmp_path / "converted"
    args = ["convert", str(model_dir), str(out), "--program", "dnn_program:build"]
    done = run(
        *args,
        "--map",
        RULES_TEXT.splitlines()[0],
        "--map",
        RULES_TEXT.splitlines()[1],
        "--json",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["step"] == 10
    assert len(report["matched"]) == 6
    assert len(report["left_out"]) == 9

    failed = run(*args[:-2], "--program", "dnn_program:build", cwd=tmp_path)  # no key map
    assert failed.returncode == 2
    assert "not restored" in failed.stderr
    assert "model/_functional/_operations/3/bias (sequential" in failed.stderr
    assert "Extend the key map" in failed.stderr
    bad_rule = run("convert", str(model_dir), str(out), "--map", "dnn/(.* -> x", cwd=tmp_path)
    assert bad_rule.returncode == 2
    assert "expected 'PATTERN => REPLACEMENT'" in bad_rule.stderr
    bad_program = run(*args[:-2], "--program", "nowhere:build", cwd=tmp_path)
    assert bad_program.returncode == 2
    assert "No module named 'nowhere'" in bad_program.stderr
