"""Data safety in directories that are damaged, raced or tampered with (real files, real TF).

Each test here reproduces a hole an adversarial run found: lost checkpoints, writes outside the
directory, restarts that refused to start, leaks, races and untyped errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
import tensorflow as tf
from helpers import equal_to, fill, state, worker_outcome
from pydantic import ValidationError

import ckptkit
from ckptkit import Retention


def saved(cfg: ckptkit.CheckpointConfig, steps: tuple[int, ...]) -> None:
    variables = state()
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        for step in steps:
            fill(variables, step)
            mgr.save(step)


def files_of(directory: str) -> list[str]:
    return sorted(os.listdir(directory))


def steps_listed(directory: str) -> list[int | None]:
    return [c.step for c in ckptkit.list_checkpoints(directory)]


@pytest.fixture
def run(config) -> ckptkit.CheckpointConfig:
    """Checkpoints at steps 1, 2, 3 (kept all); every variable equals its step."""
    cfg = config(retention=Retention(max_to_keep=None))
    saved(cfg, (1, 2, 3))
    return cfg


@pytest.fixture
def outside(tmp_path) -> Path:
    """A directory outside the checkpoint directory, with a file that must survive."""
    victim = tmp_path / "outside"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


# --- 1. an empty state file ----------------------------------------------------------------


@pytest.mark.parametrize("content", [b"", b"\n  \n", b"\x00\x01garbage"])
def test_an_empty_or_garbage_state_file_falls_back_to_the_manifests(run, content) -> None:
    Path(run.directory, "checkpoint").write_bytes(content)
    with pytest.warns(UserWarning, match="ignoring the state file"):
        assert steps_listed(run.directory) == [1, 2, 3]
    variables = state()
    with pytest.warns(UserWarning, match="ignoring the state file"):
        mgr = ckptkit.CheckpointManager(run, **variables)
    assert mgr.restore().step == 3
    assert equal_to(variables, 3)
    with pytest.warns(UserWarning, match="ignoring the state file"):
        mgr.save(4)  # the first save of a writer sweeps leftovers: nothing committed is one
    assert [c.step for c in mgr.checkpoints] == [1, 2, 3, 4]
    assert ckptkit.verify(run.directory, full=True).ok


# --- 2, 3. links ---------------------------------------------------------------------------


def test_retention_removes_a_linked_data_file_as_a_name_and_leaves_its_target(
    config, outside
) -> None:
    cfg = config(retention=Retention(max_to_keep=1))
    variables = state()
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    mgr.save(1)
    data = Path(cfg.directory, "ckpt-1.data-00000-of-00001")
    data.unlink()
    data.symlink_to(outside, target_is_directory=True)
    mgr.save(2)  # retention deletes ckpt-1
    assert files_of(str(outside)) == ["precious.txt"]
    assert not data.is_symlink()
    assert [c.step for c in mgr.checkpoints] == [2]


def test_leftover_cleanup_removes_a_linked_temp_folder_and_leaves_its_target(
    config, outside
) -> None:
    cfg = config()
    saved(cfg, (1,))
    Path(cfg.directory, "ckpt-2_temp").symlink_to(outside, target_is_directory=True)
    Path(cfg.directory, "ckpt-3.pending").touch()  # an interrupted save of ckptkit's
    Path(cfg.directory, "ckpt-3.index").symlink_to(outside / "precious.txt")
    saved(cfg, (4,))
    assert files_of(str(outside)) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me"
    assert not {"ckpt-2_temp", "ckpt-3.index"} & set(files_of(cfg.directory))
    assert steps_listed(cfg.directory) == [1, 4]


@pytest.mark.parametrize("dangling", [False, True])
def test_a_linked_lock_file_is_refused_and_its_target_untouched(config, outside, dangling) -> None:
    cfg = config()
    os.makedirs(cfg.directory)
    target = outside / ("nothing-here" if dangling else "precious.txt")
    Path(cfg.directory, ".ckptkit.lock").symlink_to(target)
    mgr = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    with pytest.raises(ckptkit.SaveError, match=r"writer lock .*\.ckptkit\.lock.*symbolic link"):
        mgr.save(1)
    assert files_of(str(outside)) == ["precious.txt"]
    assert (outside / "precious.txt").read_text() == "keep me"
    assert mgr.latest is None


# --- 4. a kill during the first save -------------------------------------------------------


@pytest.mark.parametrize("index", ["empty", "cut short", "whole but unlisted"])
def test_a_first_save_killed_before_its_commit_restarts_fresh_and_says_so(
    config, tmp_path, index
) -> None:
    cfg = config()
    donor = config(directory=str(tmp_path / "donor"))
    saved(donor, (1,))
    os.makedirs(cfg.directory)
    # The first save took the lock, marked ckpt-1 as in progress, then died.
    Path(cfg.directory, ".ckptkit.lock").touch()
    Path(cfg.directory, "ckpt-1.pending").touch()
    for name in ("ckpt-1.index", "ckpt-1.data-00000-of-00001"):
        shutil.copy(os.path.join(donor.directory, name), cfg.directory)
    index_file = Path(cfg.directory, "ckpt-1.index")
    if index == "empty":
        index_file.write_bytes(b"")
    elif index == "cut short":
        index_file.write_bytes(index_file.read_bytes()[:50])
    assert steps_listed(cfg.directory) == []
    variables = state()
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    with pytest.warns(ckptkit.CheckpointSkippedWarning, match=r"starting fresh.*ckpt-1"):
        assert not mgr.restore_or_initialize().restored
    assert equal_to(variables, 0)
    fill(variables, 1)
    mgr.save(1)
    assert [c.step for c in mgr.checkpoints] == [1]
    assert ckptkit.verify(cfg.directory, full=True).ok


def test_a_foreign_checkpoint_is_never_taken_for_a_leftover(config) -> None:
    # A plain TensorFlow checkpoint without state file, beside a ckptkit lock (a writer takes
    # it in any directory): it is restored as TensorFlow would find it, and nothing of it is
    # deleted.
    cfg = config()
    os.makedirs(cfg.directory)
    Path(cfg.directory, ".ckptkit.lock").touch()
    tf.train.Checkpoint(v=tf.Variable(7.0)).write(os.path.join(cfg.directory, "ckpt-5"))
    before = files_of(cfg.directory)
    v = tf.Variable(0.0)
    mgr = ckptkit.CheckpointManager(cfg, v=v)
    assert mgr.restore_or_initialize().step == 5
    assert float(v) == 7.0
    mgr.save(6)
    assert set(before) <= set(files_of(cfg.directory))
    assert float(ckptkit.read_tensor(os.path.join(cfg.directory, "ckpt-5"), "v")) == 7.0


# --- 5. leaks of retention cut short -------------------------------------------------------


@pytest.mark.parametrize("cut", ["before any deletion", "after the index went"])
def test_checkpoints_left_by_a_killed_retention_are_removed_by_the_next_writer(run, cut) -> None:
    # Retention (max_to_keep=2) marked ckpt-1 dropped, committed a state file without it, and
    # was killed before (or while) removing its files.
    ckptkit.storage.layout.write_state(
        run.directory,
        tuple((os.path.join(run.directory, f"ckpt-{s}"), float(s)) for s in (2, 3)),
        0.0,
        dropped=(os.path.join(run.directory, "ckpt-1"),),
    )
    if cut == "after the index went":
        os.remove(os.path.join(run.directory, "ckpt-1.index"))
    # A checkpoint under the same prefix that ckptkit did not write (no manifest) stays.
    tf.train.Checkpoint(v=tf.Variable(0.0)).write(os.path.join(run.directory, "ckpt-0"))
    saved(run.model_copy(update={"retention": Retention(max_to_keep=None)}), (4,))
    names = files_of(run.directory)
    assert not [n for n in names if n.startswith("ckpt-1.")]
    assert "ckpt-0.index" in names
    assert steps_listed(run.directory) == [2, 3, 4]
    assert ckptkit.verify(run.directory).ok


def test_retention_leaves_no_mark_behind(config) -> None:
    cfg = config(retention=Retention(max_to_keep=1))
    saved(cfg, (1, 2, 3))
    assert files_of(cfg.directory) == [
        ".ckptkit.lock", "checkpoint", "ckpt-3.data-00000-of-00001", "ckpt-3.index",
        "ckpt-3.manifest.json",
    ]  # fmt: skip


def write_state_listing(directory: str, *names: str) -> None:
    """Replaces the state file by hand, as a user editing it would."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [
        f'all_model_checkpoint_paths: "{n}"' for n in names
    ]
    Path(directory, "checkpoint").write_text("\n".join(lines) + "\n")


@pytest.fixture
def hundreds(config) -> ckptkit.CheckpointConfig:
    """Committed, intact ckpt-100, -200, -300 (max_to_keep=3); every variable equals its step."""
    cfg = config(retention=Retention(max_to_keep=3))
    saved(cfg, (100, 200, 300))
    return cfg


def test_a_state_file_naming_a_missing_checkpoint_loses_nothing(hundreds) -> None:
    d = hundreds.directory
    write_state_listing(d, "ckpt-999999")
    before = files_of(d)
    variables = state()
    mgr = ckptkit.CheckpointManager(hundreds, **variables)
    with pytest.raises(
        ckptkit.CorruptCheckpointError,
        match=r"found on disk but not in the state file: ckpt-100, ckpt-200, ckpt-300\. "
        r"They are kept: restore one with restore\(path=\.\.\.\)",
    ):
        mgr.restore_or_initialize()
    fill(variables, 301)
    mgr.save(301)
    assert set(before) < set(files_of(d))  # nothing deleted
    # The documented way back: restore one of them by path, and train on.
    assert mgr.restore(path=os.path.join(d, "ckpt-300")).step == 300
    assert equal_to(variables, 300)
    assert ckptkit.verify(os.path.join(d, "ckpt-100"), full=True).ok


def test_a_hand_rollback_of_the_state_file_resumes_there_and_deletes_nothing(hundreds) -> None:
    # TensorFlow's usual rollback: edit `checkpoint` to list only the checkpoint to go back to.
    d = hundreds.directory
    write_state_listing(d, "ckpt-200")
    variables = state()
    with ckptkit.CheckpointManager(hundreds, **variables) as mgr:
        assert mgr.restore_or_initialize().step == 200
        assert equal_to(variables, 200)
        for step in (201, 300):  # ckpt-300 is saved again: the new one replaces the old
            fill(variables, step)
            mgr.save(step)
        assert [c.step for c in mgr.checkpoints] == [200, 201, 300]
    assert "ckpt-100.index" in files_of(d)  # not listed, never deleted
    assert ckptkit.verify(d, full=True).ok
    again = state()
    ckptkit.CheckpointManager(hundreds, **again).restore(step=300)
    assert equal_to(again, 300)


def test_a_whole_checkpoint_killed_before_its_commit_is_not_a_leftover(run) -> None:
    # Killed after its manifest, before the state file: intact, not committed, not deleted.
    ckptkit.storage.layout.write_state(
        run.directory,
        tuple((os.path.join(run.directory, f"ckpt-{s}"), float(s)) for s in (1, 2)),
        0.0,
    )
    variables = state()
    mgr = ckptkit.CheckpointManager(run, **variables)
    assert mgr.restore().step == 2
    fill(variables, 5)
    mgr.save(5)
    assert "ckpt-3.manifest.json" in files_of(run.directory)
    assert [c.step for c in mgr.checkpoints] == [1, 2, 5]


# --- 6. a reader racing the writer's retention ---------------------------------------------


def test_a_reader_restores_the_newer_checkpoint_when_retention_deleted_its_pick(config) -> None:
    cfg = config(retention=Retention(max_to_keep=1))
    written = state()
    writer = ckptkit.CheckpointManager(cfg, **written)
    fill(written, 1)
    writer.save(1)
    variables = state()
    reader = ckptkit.CheckpointManager(cfg, **variables)  # lists ckpt-1
    fill(written, 2)
    writer.save(2)  # deletes ckpt-1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a vanished checkpoint is not damage: no warning
        result = reader.restore()
    assert result.step == 2
    assert result.skipped == ()
    assert equal_to(variables, 2)


# --- 7. a writer whose lock is no longer the directory's ------------------------------------


@pytest.mark.parametrize("removed", ["the directory", "the lock file"])
def test_a_writer_that_lost_its_lock_stops_instead_of_overwriting(config, removed) -> None:
    cfg = config()
    first = ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0))
    first.save(1)
    if removed == "the directory":
        shutil.rmtree(cfg.directory)
    else:
        os.remove(os.path.join(cfg.directory, ".ckptkit.lock"))
    with pytest.raises(ckptkit.DirectoryLockedError, match="deleted or replaced"):
        first.save(2)
    second = ckptkit.CheckpointManager(cfg, v=tf.Variable(5.0))
    second.save(5)  # the new writer takes the new lock
    with pytest.raises(ckptkit.DirectoryLockedError, match="deleted or replaced"):
        first.save(6)
    expected = [5] if removed == "the directory" else [1, 5]
    assert steps_listed(cfg.directory) == expected
    assert not any(n.startswith(("ckpt-2", "ckpt-6")) for n in files_of(cfg.directory))
    first.close()


# --- 10, 12. typed errors --------------------------------------------------------------------


def test_a_directory_in_place_of_the_lock_file_is_a_save_error(config) -> None:
    cfg = config()
    os.makedirs(os.path.join(cfg.directory, ".ckptkit.lock"))
    with pytest.raises(ckptkit.SaveError, match=r"\.ckptkit\.lock.*regular file"):
        ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)).save(1)


def test_a_lock_file_that_cannot_be_opened_is_a_save_error(config) -> None:
    cfg = config()
    saved(cfg, (1,))
    lock = os.path.join(cfg.directory, ".ckptkit.lock")
    # Root ignores permission bits (CI runs as root); the immutable attribute stops it too.
    subprocess.run(["chattr", "+i", lock], check=True)
    try:
        with pytest.raises(ckptkit.SaveError, match="cannot take the writer lock") as caught:
            ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)).save(2)
        assert not isinstance(caught.value, ckptkit.DiskFullError)
    finally:
        subprocess.run(["chattr", "-i", lock], check=True)
    assert steps_listed(cfg.directory) == [1]


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_no_inode_left_for_the_lock_file_is_a_disk_full_error(tmp_path) -> None:
    with tmpfs(tmp_path / "mnt", "size=1m,nr_inodes=3") as mnt:
        directory = mnt / "run"
        directory.mkdir()
        for i in range(4):  # use up the inodes
            with contextlib.suppress(OSError):
                (mnt / f"f{i}").touch()
        cfg = ckptkit.CheckpointConfig(directory=str(directory))
        with pytest.raises(ckptkit.DiskFullError, match=r"\.ckptkit\.lock.*inodes"):
            ckptkit.CheckpointManager(cfg, v=tf.Variable(1.0)).save(1)


@pytest.mark.slow
def test_a_full_disk_while_writing_the_state_file_leaves_no_temporary_file(tmp_path) -> None:
    directory = tmp_path / "run"
    outcome = worker_outcome("state_write_fails.py", str(directory))
    assert outcome["error"] == "DiskFullError"
    assert outcome["listed"] == list(range(1, 41))
    left = os.listdir(directory)
    assert not [n for n in left if ".tmp-" in n or n.startswith("ckpt-41")]
    assert "ckpt-1.dropped" not in left  # still listed: the retention mark is taken back


@contextlib.contextmanager
def unreadable(path: str):
    """Makes `path` unreadable for this process, also when it runs as root."""
    os.chmod(path, 0)
    if os.geteuid() != 0:
        yield
        return
    parents = [p for p in Path(path).parents if p != Path("/")]
    modes = {p: p.stat().st_mode for p in parents}
    for p in parents:  # nobody must reach the other files
        os.chmod(p, modes[p] | 0o055)
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        for p, mode in modes.items():
            os.chmod(p, mode)


@pytest.mark.parametrize("kind", ["unreadable", "a directory"])
def test_an_index_that_cannot_be_read_is_damage_and_restore_walks_back(run, kind) -> None:
    index = os.path.join(run.directory, "ckpt-3.index")
    if kind == "a directory":
        os.remove(index)
        os.mkdir(index)
        guard = contextlib.nullcontext()
    else:
        guard = unreadable(index)
    variables = state()
    with guard:
        report = ckptkit.verify(run.directory)
        with pytest.warns(ckptkit.CheckpointSkippedWarning, match="ckpt-3"):
            result = ckptkit.CheckpointManager(run, **variables).restore()
    assert [c.ok for c in report.checkpoints] == [True, True, False]
    assert "ckpt-3.index" in str(report.checkpoints[2].problems[0])
    assert result.step == 2
    assert equal_to(variables, 2)


def test_a_nul_byte_in_a_path_is_a_typed_error(run) -> None:
    with pytest.raises(ValidationError, match="NUL byte"):
        ckptkit.CheckpointConfig(directory="runs/a\x00b")
    bad = run.directory + "\x00x"
    for call in (ckptkit.verify, ckptkit.inspect, ckptkit.list_checkpoints):
        with pytest.raises(ckptkit.CheckpointNotFoundError, match="NUL byte"):
            call(bad)


# --- 13. strict booleans -----------------------------------------------------------------


@pytest.mark.parametrize("field", ["durable", "allow_outside_paths"])
@pytest.mark.parametrize("value", ["yes", "1", 1, "true"])
def test_safety_switches_take_only_real_booleans(field, value) -> None:
    with pytest.raises(ValidationError, match=field):
        ckptkit.CheckpointConfig(directory="runs/x", **{field: value})
    loaded = ckptkit.CheckpointConfig.model_validate_json(
        json.dumps({"directory": "runs/x", field: True})
    )
    assert getattr(loaded, field) is True
