"""Crafted and random inputs: the only outcomes allowed are success or a typed ckptkit error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckptkit
from ckptkit import Retention, cli
from ckptkit.storage.manifest import manifest_path


def make_run(directory: Path, steps: tuple[int, ...] = (1, 2)) -> ckptkit.CheckpointConfig:
    cfg = ckptkit.CheckpointConfig(directory=str(directory), retention=Retention(max_to_keep=1))
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,)))) as mgr:
        for step in steps:
            mgr.save(step)
    return cfg


def test_state_file_paths_outside_the_directory_are_neither_read_nor_deleted(tmp_path) -> None:
    victim = make_run(tmp_path / "victim", (7,))
    victim_files = sorted(os.listdir(victim.directory))
    for i, hostile in enumerate((os.path.join(victim.directory, "ckpt-7"), "../victim/ckpt-7")):
        cfg = make_run(tmp_path / f"run{i}", (1,))
        state = Path(cfg.directory) / "checkpoint"
        state.write_text(
            f'model_checkpoint_path: "{hostile}"\nall_model_checkpoint_paths: "{hostile}"\n'
            'all_model_checkpoint_paths: "ckpt-1"\n'
        )
        with pytest.warns(UserWarning, match="points outside the directory"):
            mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,))))
        assert [c.step for c in mgr.checkpoints] == [1]
        with pytest.warns(UserWarning, match="points outside the directory"):
            mgr.save(2)  # retention (max_to_keep=1) must not reach the victim
        mgr.close()
        assert sorted(os.listdir(victim.directory)) == victim_files
    # Opting in follows the path.
    state.write_text(f'all_model_checkpoint_paths: "{os.path.join(victim.directory, "ckpt-7")}"\n')
    trusting = cfg.model_copy(update={"allow_outside_paths": True})
    assert [
        c.step
        for c in ckptkit.CheckpointManager(trusting, v=tf.Variable(tf.zeros((4,)))).checkpoints
    ] == [7]


def test_absolute_paths_from_another_machine_resolve_inside_the_directory(tmp_path) -> None:
    cfg = make_run(tmp_path / "run", (3,))
    (Path(cfg.directory) / "checkpoint").write_text(
        'model_checkpoint_path: "/home/someone/old/run/ckpt-3"\n'
        'all_model_checkpoint_paths: "/home/someone/old/run/ckpt-3"\n'
    )
    with pytest.warns(UserWarning, match="using .*ckpt-3"):
        mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,))))
    assert mgr.restore().path == os.path.join(cfg.directory, "ckpt-3")


def test_a_manifest_naming_files_elsewhere_is_damage(tmp_path) -> None:
    cfg = make_run(tmp_path / "run", (1,))
    path = manifest_path(os.path.join(cfg.directory, "ckpt-1"))
    body = json.loads(Path(path).read_text())
    body["files"]["../../../etc/passwd"] = {"size": 1, "crc32": None}
    Path(path).write_text(json.dumps(body))
    report = ckptkit.verify(cfg.directory)
    assert not report.ok
    assert "damaged" in str(report.checkpoints[0].problems[0])


TARGETS = ["index", "manifest", "state"]


def corrupt(directory: str, target: str, data: bytes, mutate: bool) -> None:
    path = {
        "index": os.path.join(directory, "ckpt-2.index"),
        "manifest": manifest_path(os.path.join(directory, "ckpt-2")),
        "state": os.path.join(directory, "checkpoint"),
    }[target]
    if mutate:  # flip bytes of the real file at positions drawn from `data`
        original = bytearray(Path(path).read_bytes())
        for i in range(0, len(data) - 1, 2):
            original[data[i] * 257 % len(original)] ^= data[i + 1] or 1
        data = bytes(original)
    Path(path).write_bytes(data)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> str:
    return make_run(tmp_path_factory.mktemp("pristine") / "run").directory


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=st.sampled_from(TARGETS), data=st.binary(max_size=600), mutate=st.booleans())
def test_fuzzed_files_give_typed_errors_only(pristine, target, data, mutate) -> None:
    work = tempfile.mkdtemp()
    try:
        directory = os.path.join(work, "run")
        shutil.copytree(pristine, directory)
        corrupt(directory, target, data, mutate)
        cfg = ckptkit.CheckpointConfig(directory=directory)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # garbage state files warn; that is fine here
            for action in (
                lambda: ckptkit.inspect(directory),
                lambda: ckptkit.verify(directory, full=True),
                lambda: ckptkit.list_checkpoints(directory),
                lambda: ckptkit.CheckpointManager(
                    cfg, v=tf.Variable(tf.zeros((4,)))
                ).restore_or_initialize(),
            ):
                with contextlib.suppress(ckptkit.CkptkitError):
                    action()
    finally:
        shutil.rmtree(work)


# --- Special files: links, FIFOs, directories and devices where files are expected ----------


def bounded(action, *, seconds: float = 60.0):
    """Runs `action` in a thread; fails (instead of hanging the suite) if it blocks."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = action()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise AssertionError(f"{action} blocked for {seconds} s (opened a FIFO?)")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome.get("value")


SPECIAL = ["fifo", "link to a directory", "link to a file", "dangling link", "directory", "device"]
TARGETS = {
    "index": "ckpt-2.index",
    "data": "ckpt-2.data-00000-of-00001",
    "manifest": "ckpt-2.manifest.json",
    "state": "checkpoint",
    "lock": ".ckptkit.lock",
    "temp folder": "ckpt-3_temp",
}


def plant(path: Path, kind: str, outside: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "link to a directory":
        path.symlink_to(outside, target_is_directory=True)
    elif kind == "link to a file":
        path.symlink_to(outside / "precious.txt")
    elif kind == "dangling link":
        path.symlink_to(outside / "nothing")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("x")
    else:
        path.symlink_to("/dev/zero")


def restore_or_initialize(cfg: ckptkit.CheckpointConfig, v: tf.Variable) -> ckptkit.RestoreResult:
    """A job's start; its writer lock is released for the writer the test makes next."""
    with ckptkit.CheckpointManager(cfg, v=v) as mgr:
        return mgr.restore_or_initialize()


@pytest.mark.parametrize("kind", SPECIAL)
@pytest.mark.parametrize("target", list(TARGETS))
def test_special_files_in_place_of_checkpoint_files(tmp_path, target, kind) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    cfg = ckptkit.CheckpointConfig(
        directory=str(tmp_path / "run"), retention=Retention(max_to_keep=None)
    )
    with ckptkit.CheckpointManager(cfg, v=tf.Variable(tf.zeros((4,)))) as mgr:
        mgr.save(1)
        mgr.save(2)
    plant(Path(cfg.directory, TARGETS[target]), kind, outside)
    damaged_ckpt2 = target in ("index", "data", "manifest")
    # A directory where a file must be written is the one thing a save cannot get past.
    refused = {"lock": "writer lock", "state": "a directory is in the way.*checkpoint"}.get(target)
    refused = refused if target == "lock" or kind == "directory" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped checkpoints and ignored state files warn
        listed = bounded(lambda: [c.step for c in ckptkit.list_checkpoints(cfg.directory)])
        report = bounded(lambda: ckptkit.verify(cfg.directory, full=True))
        v = tf.Variable(tf.fill((4,), -1.0))
        restored = bounded(lambda: restore_or_initialize(cfg, v))
        writer = ckptkit.CheckpointManager(
            cfg.model_copy(update={"retention": Retention(max_to_keep=1)}), v=v
        )
        if refused:
            with pytest.raises(ckptkit.SaveError, match=refused):
                bounded(lambda: writer.save(3))
        else:
            bounded(lambda: writer.save(3))  # retention deletes ckpt-1 and ckpt-2
        writer.close()
    missing_index = (target, kind) == ("index", "dangling link")  # listed as a deleted index is
    assert listed == ([1] if missing_index else [1, 2])
    assert [c.ok for c in report.checkpoints] == [True, not damaged_ckpt2]
    assert restored.step == (1 if damaged_ckpt2 else 2)
    assert sorted(os.listdir(outside)) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me"
    if not refused:
        # Without a usable state file, checkpoints older than the writer may be kept (as
        # TensorFlow keeps those it finds); whatever is kept is listed and whole.
        after = [c.step for c in ckptkit.list_checkpoints(cfg.directory)]
        assert after[-1] == 3
        assert after == [3] or target == "state"
        unlisted = {f"ckpt-{s}" for s in (1, 2) if s not in after} | {"ckpt-3_temp"}
        assert not [n for n in os.listdir(cfg.directory) if n.split(".")[0] in unlisted]
        assert ckptkit.verify(cfg.directory, full=True).ok


# --- Directory names that are glob patterns or rich markup ----------------------------------

ODD_NAMES = ["exp[lr=0.1]", "a*b", "what?", "back\\slash", "with space", "[*?]\\ mixed ∂"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_odd_directory_names_work_everywhere(tmp_path, name, capsys, monkeypatch) -> None:
    directory = str(tmp_path / name / "run")
    cfg = ckptkit.CheckpointConfig(directory=directory, retention=Retention(max_to_keep=2))
    v = tf.Variable(tf.zeros((4,)))
    with ckptkit.CheckpointManager(cfg, v=v) as mgr:
        for step in (1, 2, 3):
            v.assign(tf.fill((4,), float(step)))
            mgr.save(step)
    names = sorted(os.listdir(directory))
    assert names == sorted(
        [".ckptkit.lock", "checkpoint"]
        + [f"ckpt-{s}{x}" for s in (2, 3) for x in (".index", ".data-00000-of-00001")]
        + [f"ckpt-{s}.manifest.json" for s in (2, 3)]
    )
    manifest = json.loads(Path(directory, "ckpt-3.manifest.json").read_text())
    assert sorted(manifest["files"]) == ["ckpt-3.data-00000-of-00001", "ckpt-3.index"]
    assert ckptkit.verify(directory, full=True).ok
    v.assign(tf.zeros((4,)))
    assert ckptkit.CheckpointManager(cfg, v=v).restore().step == 3
    assert float(v[0]) == 3.0
    assert ckptkit.inspect(directory).path == os.path.join(directory, "ckpt-3")

    monkeypatch.setenv("COLUMNS", "1000")
    assert cli.main(["ls", directory, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [os.path.join(directory, f"ckpt-{s}") for s in (2, 3)]
    for command in (["ls", directory], ["verify", directory], ["inspect", directory]):
        assert cli.main(command) == 0
        assert os.path.join(directory, "ckpt-3") in capsys.readouterr().out
