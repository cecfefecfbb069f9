"""Crafted and random inputs: the only outcomes allowed are success or a typed ckptkit error."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ckptkit
from ckptkit import Retention
from ckptkit.manifest import manifest_path


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
