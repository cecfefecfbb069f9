"""The `ckptkit` command (exit codes, stdout JSON, one-line errors); in-process but for one test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from helpers import Net, make_model
from helpers import cli as run

import ckptkit
from ckptkit import progress
from ckptkit.cli import main


@pytest.fixture
def directory(config):
    cfg = config()
    net = Net()
    mgr = ckptkit.CheckpointManager(cfg, net=net, step=tf.Variable(0, dtype=tf.int64))
    mgr.save(10)
    net.l2.bias.assign([3.0])
    mgr.save(20)
    return cfg.directory


def test_the_command_runs_as_a_process(directory) -> None:
    """The one real process: the entry point, pure JSON on stdout, nothing on stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "ckptkit", "ls", directory, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert [row["step"] for row in json.loads(done.stdout)] == [10, 20]
    assert done.stderr == ""


def test_a_reader_that_stops_reading_ends_the_command_quietly(config) -> None:
    """`ckptkit ... --json | head -1`: no BrokenPipeError traceback, exit status 0."""
    cfg = config()
    many = {f"v{i}": tf.Variable(float(i)) for i in range(2000)}  # JSON past a pipe's buffer
    ckptkit.CheckpointManager(cfg, **many).save(1)
    reader = subprocess.Popen(
        [sys.executable, "-m", "ckptkit", "inspect", cfg.directory, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert reader.stdout is not None
    assert reader.stdout.readline() == "{\n"
    reader.stdout.close()  # as `head -1` does
    _, err = reader.communicate(timeout=120)
    assert reader.returncode == 0
    assert err == ""


def test_ls_json_is_pure_json(directory) -> None:
    done = run("ls", directory, "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(os.path.basename(r["path"]), r["step"]) for r in rows] == [
        ("ckpt-10", 10),
        ("ckpt-20", 20),
    ]
    assert all(r["size_bytes"] > 0 for r in rows)
    assert done.stderr == ""


@pytest.mark.parametrize(("columns", "row"), [(None, r"^(\d+) +\d"), ("200", r"^│ (\d+) ")])
def test_ls_table_lists_newest_last(directory, capsys, monkeypatch, columns, row) -> None:
    """Piped: plain aligned columns, one row a line; on a terminal, a rich table."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert main(["ls", directory]) == 0
    out = capsys.readouterr().out
    assert re.findall(row, out, flags=re.MULTILINE) == ["10", "20"]
    assert "2 checkpoint(s)" in out
    if columns is None:
        assert out.splitlines()[0].split() == ["step", "size", "time", "metrics", "path"]


def test_ls_all_shows_checkpoints_the_state_file_leaves_out(directory, capsys) -> None:
    # A hand-edited state file that lists only ckpt-20: ckpt-10 is on disk, whole, unlisted.
    with open(os.path.join(directory, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "ckpt-20"\n')
    assert main(["ls", directory, "--json"]) == 0
    assert [r["step"] for r in json.loads(capsys.readouterr().out)] == [20]
    assert main(["ls", directory, "--all", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["step"], r["listed"]) for r in rows] == [(20, True), (10, False)]
    assert main(["ls", directory, "--all"]) == 0
    out = capsys.readouterr().out
    assert "ckpt-10 (not in the state file)" in out
    assert "1 checkpoint(s), 1 not in the state file" in out


def test_inspect_json_schema(directory) -> None:
    done = run("inspect", directory, "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["format"] == "object-based"
    assert data["path"].endswith("ckpt-20")
    kernel = next(v for v in data["variables"] if v["key"].startswith("net/l1/kernel"))
    assert kernel == {
        "key": "net/l1/kernel/.ATTRIBUTES/VARIABLE_VALUE",
        "shape": [3, 5],
        "dtype": "float32",
        "size_bytes": 60,
        "object_paths": ["net/l1/kernel"],
        "name": "kernel",
    }


def test_inspect_table_shows_totals_and_object_tree(directory, capsys) -> None:
    assert main(["inspect", directory]) == 0
    out = capsys.readouterr().out
    assert "format: object-based" in out
    assert "variable(s)" in out
    assert "object tree" in out
    assert "kernel" in out


def test_inspect_tensor(directory, capsys) -> None:
    assert main(["inspect", directory, "--tensor", "net/l2/bias", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["value"] == [3.0]
    assert main(["inspect", directory, "--tensor", "net/l2/bias"]) == 0
    assert "[3.]" in capsys.readouterr().out


def test_diff_json(directory) -> None:
    done = run(
        "diff", os.path.join(directory, "ckpt-10"), os.path.join(directory, "ckpt-20"), "--json"
    )
    assert done.returncode == 1, done.stderr  # they differ
    data = json.loads(done.stdout)
    assert data["only_in_a"] == data["only_in_b"] == []
    changed = {c["key"]: c for c in data["changed"]}
    assert changed["net/l2/bias/.ATTRIBUTES/VARIABLE_VALUE"]["max_abs_diff"] == 3.0
    assert changed["net/l2/bias/.ATTRIBUTES/VARIABLE_VALUE"]["a"] == {
        "shape": [1],
        "dtype": "float32",
    }


@pytest.mark.parametrize(
    ("make_args", "expect"),
    [
        (lambda d, t: ["ls", str(t / "missing")], "checkpoint directory not found"),
        (lambda d, t: ["inspect", str(t / "missing")], "no checkpoint at"),
        (lambda d, t: ["inspect", str(t / "empty")], "no checkpoint in directory"),
        (lambda d, t: ["inspect", os.path.join(d, "checkpoint")], "is a file but not a checkpoint"),
        (lambda d, t: ["inspect", "GARBAGE"], "truncated, damaged or not a TensorFlow checkpoint"),
        (lambda d, t: ["inspect", d, "--tensor", "nope"], "no key 'nope'"),
        (lambda d, t: ["diff", d, str(t / "missing")], "no checkpoint at"),
    ],
)
def test_errors_are_one_line_on_stderr_with_exit_2(directory, tmp_path, make_args, expect) -> None:
    garbage = tmp_path / "g"
    (tmp_path / "g.index").write_bytes(b"\x00not an sstable" * 20)
    (tmp_path / "empty").mkdir()
    args = [str(garbage) if a == "GARBAGE" else a for a in make_args(directory, tmp_path)]
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expect in lines[0]
    assert "Traceback" not in done.stderr


def test_usage_error_exits_2() -> None:
    done = run("frobnicate")
    assert done.returncode == 2
    assert "invalid choice" in done.stderr


def test_exit_codes_as_unix_tools_have_them(directory, tmp_path, capsys) -> None:
    a, b = (os.path.join(directory, f"ckpt-{s}") for s in (10, 20))
    assert main(["diff", a, a]) == 0
    assert main(["diff", a, b]) == 1
    assert main(["diff", a, str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    for args in (["ls", str(tmp_path / "empty")], ["ls", str(tmp_path / "empty"), "--json"]):
        assert main(args) == 2
        out = capsys.readouterr()
        assert out.out == ""
        assert out.err.strip().splitlines() == [
            f"ckptkit ls: no checkpoint in directory {str(tmp_path / 'empty')!r}: no "
            "'checkpoint' state file lists one, and no checkpoint was found by its files (in a "
            "directory ckptkit writes, only one with a valid manifest counts)"
        ]


def test_diff_compares_keras_files_and_verify_says_why_it_cannot(directory, tmp_path, capsys):
    model = make_model()
    a, b = str(tmp_path / "a.weights.h5"), str(tmp_path / "b.weights.h5")
    model.save_weights(a)
    model.get_layer("l2").bias.assign([1.0, 2.0])
    model.save_weights(b)
    capsys.readouterr()
    assert main(["diff", a, a, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] == []
    assert main(["diff", a, b, "--json"]) == 1
    changed = json.loads(capsys.readouterr().out)["changed"]
    assert [c["key"] for c in changed] == ["layers/dense_1/vars/1"]
    assert changed[0]["max_abs_diff"] == 2.0
    assert main(["diff", a, os.path.join(directory, "ckpt-10")]) == 2
    assert "one is a Keras file" in capsys.readouterr().err
    assert main(["verify", a]) == 2
    assert "records no checksums" in capsys.readouterr().err


def test_inspect_shows_a_keras_model_and_reads_its_object_paths(
    tmp_path, capsys, monkeypatch
) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), verbose=0)  # the optimizer stores the weights first
    directory = str(tmp_path / "run")
    with ckptkit.CheckpointManager(directory, model=model, optimizer=model.optimizer) as mgr:
        mgr.save(1)
    kernel = "model/_functional/_operations/1/_kernel"
    np.testing.assert_array_equal(
        ckptkit.read_tensor(directory, kernel), model.layers[0].kernel.numpy()
    )
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["inspect", directory, "--tensor", kernel]) == 0
    capsys.readouterr()
    assert main(["inspect", directory]) == 0
    tree = capsys.readouterr().out.split("object tree")[1]
    assert "── model" in tree
    assert "_kernel -> optimizer/_trainable_variables/0" in tree
    assert main(["inspect", directory, "--json"]) == 0
    variables = {v["key"]: v for v in json.loads(capsys.readouterr().out)["variables"]}
    stored = variables["optimizer/_trainable_variables/0/.ATTRIBUTES/VARIABLE_VALUE"]
    assert kernel in stored["object_paths"]
    assert stored["name"] == model.layers[0].kernel.path


@pytest.mark.parametrize("columns", ["30", None])  # a narrow terminal; a pipe
def test_tables_never_cut_keys_or_drop_values(tmp_path, capsys, monkeypatch, columns) -> None:
    directory = str(tmp_path / ("a_rather_long_directory_name_" * 3) / "run")
    long_name = "a_variable_with_a_name_longer_than_any_terminal_is_narrow"
    variable = tf.Variable(1.0)
    with ckptkit.CheckpointManager(directory, **{long_name: variable}) as mgr:
        mgr.save(1, metrics={"val_loss": 0.125, "val_accuracy": 0.875})
        variable.assign(2.0)
        mgr.save(2, metrics={"val_loss": 0.25})
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    capsys.readouterr()
    assert main(["ls", directory]) == 0
    listed = capsys.readouterr().out
    for step in (1, 2):
        assert os.path.join(directory, f"ckpt-{step}") in listed
    assert "val_loss=0.125" in listed
    assert "val_accuracy=0.875" in listed
    infos = ckptkit.list_checkpoints(directory)
    assert [i.metrics for i in infos] == [
        {"val_loss": 0.125, "val_accuracy": 0.875},
        {"val_loss": 0.25},
    ]
    assert main(["inspect", directory]) == 0
    assert f"{long_name}/.ATTRIBUTES/VARIABLE_VALUE" in capsys.readouterr().out
    one, two = (os.path.join(directory, f"ckpt-{s}") for s in (1, 2))
    assert main(["diff", one, two]) == 1
    assert f"{long_name}/.ATTRIBUTES/VARIABLE_VALUE" in capsys.readouterr().out


def test_a_long_table_is_printed_as_plain_aligned_columns(config, capsys) -> None:
    cfg = config()
    many = {f"weight_{i:03d}": tf.Variable(tf.zeros((i % 7 + 1,))) for i in range(600)}
    ckptkit.CheckpointManager(cfg, **many).save(1)
    assert main(["inspect", cfg.directory]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("shape"))
    rows = [line for line in lines if line.endswith("/.ATTRIBUTES/VARIABLE_VALUE")]
    assert len(rows) == 601  # every key, save_counter included, none cut
    column = header.index("key")
    assert all(row[column:].startswith(("weight_", "save_counter")) for row in rows)


def test_long_commands_draw_progress_on_stderr_only_when_asked(
    directory, tmp_path, capsys, monkeypatch
) -> None:
    """A bar past `progress.DELAY` (0 here: at once) with --progress; never in --json or unasked."""
    monkeypatch.setattr(progress, "DELAY", 0)
    assert main(["verify", directory, "--full"]) == 0
    plain = capsys.readouterr()
    assert plain.err == ""  # stderr is no terminal here, and nothing asked
    assert main(["verify", directory, "--full", "--progress"]) == 0
    shown = capsys.readouterr()
    assert shown.out == plain.out
    assert "verifying ckpt-10" in shown.err
    assert "verifying ckpt-20" in shown.err
    assert re.search(r"(\d+)/\1 tensors", shown.err)  # the finished bar, printed once
    assert main(["export", directory, "--to", "npz", str(tmp_path / "w.npz"), "--progress"]) == 0
    assert "exporting ckpt-20" in capsys.readouterr().err
    assert main(["verify", directory, "--full", "--progress", "--json"]) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    assert json.loads(quiet.out)["ok"]


def test_an_empty_checkpoint_prints_an_empty_table(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # piped: plain columns
    prefix = tf.train.Checkpoint().write(str(tmp_path / "c"))
    assert main(["inspect", prefix]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["shape", "dtype", "bytes", "key"]
    assert out[2] == "0 variable(s), 0 B in total"
