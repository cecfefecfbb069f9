"""Manifest, verify, walk-back restore and leftovers of interrupted saves (real files)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tensorflow as tf
from helpers import cli, equal_to, fill, state

import ckptkit
from ckptkit import Retention


@pytest.fixture
def run(config):
    """A directory with checkpoints at steps 1, 2, 3; every variable equals its step."""
    cfg = config(retention=Retention(max_to_keep=None))
    variables = state()
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    for step in (1, 2, 3):
        fill(variables, step)
        mgr.save(step, metrics={"loss": 1.0 / step}, metadata={"note": f"step {step}"})
    return cfg


def newest(cfg, suffix: str) -> str:
    return os.path.join(cfg.directory, f"ckpt-3{suffix}")


def test_manifest_records_files_versions_and_user_data(run) -> None:
    manifest = json.loads(Path(newest(run, ".manifest.json")).read_text())
    assert manifest["step"] == 3
    assert manifest["tensorflow"] == tf.__version__
    assert manifest["ckptkit"] == ckptkit.__version__
    assert manifest["metrics"] == {"loss": pytest.approx(1 / 3)}
    assert manifest["metadata"] == {"note": "step 3"}
    assert set(manifest["files"]) == {"ckpt-3.index", "ckpt-3.data-00000-of-00001"}
    assert manifest["files"]["ckpt-3.index"]["size"] == os.path.getsize(newest(run, ".index"))
    assert manifest["files"]["ckpt-3.index"]["crc32"] is not None


def test_a_restore_gives_the_checkpoints_metadata_and_metrics(run) -> None:
    result = ckptkit.CheckpointManager(run, **state()).restore(step=2)
    assert result.metadata == {"note": "step 2"}
    assert result.metrics == {"loss": 0.5}
    assert ckptkit.RestoreResult(restored=False).metadata == {}


@pytest.mark.parametrize(
    ("metadata", "metrics"),
    [({"x": object()}, None), (None, {"loss": float("nan")}), (None, {"l": "high"})],
)
def test_metadata_must_be_json(config, metadata, metrics) -> None:
    mgr = ckptkit.CheckpointManager(config(), **state())
    with pytest.raises(ckptkit.InvalidMetadataError, match="must be JSON"):
        mgr.save(1, metadata=metadata, metrics=metrics)
    assert mgr.latest is None
    assert not os.path.exists(os.path.join(config().directory, "ckpt-1.index"))


def test_an_intact_directory_verifies(run) -> None:
    report = ckptkit.verify(run.directory, full=True)
    assert report.ok
    assert [os.path.basename(c.path) for c in report.checkpoints] == ["ckpt-1", "ckpt-2", "ckpt-3"]
    assert all(c.has_manifest for c in report.checkpoints)


def truncate(path: str) -> None:
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def flip_a_bit(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))


DAMAGE = {
    "truncated data": (".data-00000-of-00001", truncate, "size mismatch"),
    "deleted data": (".data-00000-of-00001", os.remove, "missing"),
    "flipped bit in data": (".data-00000-of-00001", flip_a_bit, "unreadable"),
    "truncated index": (".index", truncate, "size mismatch"),
    "flipped bit in index": (".index", flip_a_bit, "checksum mismatch"),
    "deleted index": (".index", os.remove, "missing"),
    "garbage manifest": (".manifest.json", lambda p: Path(p).write_text("{not json"), "damaged"),
    "flipped bit in manifest": (".manifest.json", flip_a_bit, "damaged"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_verify_names_the_bad_file_and_restore_walks_back(run, kind) -> None:
    suffix, damage, reason = DAMAGE[kind]
    damage(newest(run, suffix))
    full = kind == "flipped bit in data"  # only reading the tensors finds a flipped data bit
    report = ckptkit.verify(run.directory, full=full)
    assert not report.ok
    bad = [c for c in report.checkpoints if not c.ok]
    assert [os.path.basename(c.path) for c in bad] == ["ckpt-3"]
    assert reason in str(bad[0].problems[0])
    assert bad[0].problems[0].file.startswith(newest(run, ""))

    variables = state()
    mgr = ckptkit.CheckpointManager(run, **variables)
    with pytest.warns(ckptkit.CheckpointSkippedWarning, match="ckpt-3"):
        result = mgr.restore_or_initialize(assertion="consumed")
    assert result.step == 2
    assert [os.path.basename(p) for p, _ in result.skipped] == ["ckpt-3"]
    assert equal_to(variables, 2)
    # Training goes on: step 3 is saved again in place of the damaged one.
    fill(variables, 3)
    mgr.save(3)
    assert ckptkit.verify(run.directory).ok
    assert [c.step for c in mgr.checkpoints] == [1, 2, 3]


def test_cheap_verification_misses_a_flipped_data_bit_but_restore_still_walks_back(run) -> None:
    flip_a_bit(newest(run, ".data-00000-of-00001"))
    assert ckptkit.verify(run.directory).ok  # sizes and the index are fine
    variables = state()
    with pytest.warns(ckptkit.CheckpointSkippedWarning, match="ckpt-3"):
        result = ckptkit.CheckpointManager(run, **variables).restore()
    assert result.step == 2  # TensorFlow's crc32c check failed on load
    assert equal_to(variables, 2)


def test_a_named_damaged_checkpoint_is_an_error_not_a_walk_back(run) -> None:
    os.remove(newest(run, ".index"))
    mgr = ckptkit.CheckpointManager(run, **state())
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"ckpt-3\.index: missing"):
        mgr.restore(step=3)
    truncate(os.path.join(run.directory, "ckpt-2.data-00000-of-00001"))
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"ckpt-2\.data.*size mismatch"):
        mgr.restore(step=2)


def test_when_every_checkpoint_is_damaged_nothing_is_restored(run) -> None:
    for step in (1, 2, 3):
        truncate(os.path.join(run.directory, f"ckpt-{step}.index"))
    variables = state()
    fill(variables, 42)
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"every checkpoint .* is damaged"):
        ckptkit.CheckpointManager(run, **variables).restore_or_initialize()
    assert equal_to(variables, 42)


def test_state_file_pointing_at_missing_files(run) -> None:
    for name in os.listdir(run.directory):
        if name.startswith("ckpt-3."):
            os.remove(os.path.join(run.directory, name))
    report = ckptkit.verify(run.directory)
    assert [c.ok for c in report.checkpoints] == [True, True, False]
    variables = state()
    mgr = ckptkit.CheckpointManager(run, **variables)
    assert [c.step for c in mgr.checkpoints] == [1, 2]
    with pytest.warns(ckptkit.CheckpointSkippedWarning, match=r"ckpt-3\.index: missing"):
        assert mgr.restore().step == 2
    assert equal_to(variables, 2)


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_lost_or_garbage_state_file_falls_back_to_the_files(run, damage) -> None:
    state_file = os.path.join(run.directory, "checkpoint")
    variables = state()
    if damage == "deleted":
        os.remove(state_file)
        result = ckptkit.CheckpointManager(run, **variables).restore()
    else:
        Path(state_file).write_bytes(b"\xff\xfe" + os.urandom(62))
        with pytest.warns(UserWarning, match="state file"):
            result = ckptkit.CheckpointManager(run, **variables).restore()
    assert result.step == 3
    assert equal_to(variables, 3)


def test_leftovers_of_interrupted_saves_are_removed_by_the_next_writer(run) -> None:
    d = run.directory
    os.makedirs(os.path.join(d, "ckpt-4_temp"))
    Path(os.path.join(d, "ckpt-4_temp", "part-00000-of-00001.index")).write_text("x")
    Path(os.path.join(d, "ckpt-4.index.tempstate123")).write_text("x")
    Path(os.path.join(d, "checkpoint.tmp-abc")).write_text("x")
    Path(os.path.join(d, "ckpt-5.pending")).touch()  # a ckptkit save in progress...
    Path(os.path.join(d, "ckpt-5.index")).write_text("killed before its commit")
    Path(os.path.join(d, "ckpt-5.data-00000-of-00001")).write_text("x")
    Path(os.path.join(d, "other-7.index")).write_text("not ours")
    before = set(os.listdir(d))

    reader = ckptkit.CheckpointManager(run, **state())
    reader.restore()
    assert set(os.listdir(d)) == before  # restoring never deletes anything

    writer = ckptkit.CheckpointManager(run, **state())
    writer.save(6)
    left = set(os.listdir(d))
    assert not {"ckpt-4_temp", "ckpt-4.index.tempstate123", "checkpoint.tmp-abc"} & left
    assert not {"ckpt-5.pending", "ckpt-5.index", "ckpt-5.data-00000-of-00001"} & left
    assert "other-7.index" in left
    assert {f"ckpt-{s}.index" for s in (1, 2, 3, 6)} <= left
    assert ckptkit.verify(d).ok


def test_cli_verify_exit_codes_and_json(run) -> None:
    assert cli("verify", run.directory).returncode == 0
    truncate(newest(run, ".data-00000-of-00001"))
    done = cli("verify", run.directory, "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert data["ok"] is False
    bad = [c for c in data["checkpoints"] if not c["ok"]]
    assert bad[0]["problems"][0]["file"].endswith("ckpt-3.data-00000-of-00001")
    assert "size mismatch" in bad[0]["problems"][0]["reason"]
    table = cli("verify", run.directory)
    assert table.returncode == 1
    assert "DAMAGED" in table.stdout
    assert cli("verify", os.path.join(run.directory, "nope")).returncode == 2


def test_ls_json_shows_manifest_metrics(run) -> None:
    done = cli("ls", run.directory, "--json")
    rows = json.loads(done.stdout)
    assert [r["metrics"]["loss"] for r in rows] == pytest.approx([1.0, 0.5, 1 / 3])
    assert rows[-1]["metadata"] == {"note": "step 3"}


def test_warnings_point_at_the_callers_line(run) -> None:
    truncate(newest(run, ".index"))
    with pytest.warns(ckptkit.CheckpointSkippedWarning) as caught:
        ckptkit.CheckpointManager(run, **state()).restore_or_initialize()
    assert [w.filename for w in caught] == [__file__]
    Path(run.directory, "checkpoint").write_text("")
    with pytest.warns(UserWarning, match="state file") as caught:
        ckptkit.CheckpointManager(run, **state())
    assert {w.filename for w in caught} == {__file__}
