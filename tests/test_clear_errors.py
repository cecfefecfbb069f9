"""A wrong input gets a clear error, never silence: paths as `pathlib.Path`, misspelled
assertion modes, a directory that cannot be written, a second manager in one process, and a
clock that stepped back."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from helpers import equal_to, fill, state

import ckptkit
from ckptkit import Retention
from ckptkit.storage import layout


@pytest.fixture
def saved(config) -> ckptkit.CheckpointConfig:
    cfg = config()
    variables = state()
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        for step in (1, 2):
            fill(variables, step)
            mgr.save(step)
    return cfg


def test_every_public_path_argument_takes_a_pathlib_path(saved, tmp_path) -> None:
    d = Path(saved.directory)
    assert [c.step for c in ckptkit.list_checkpoints(d)] == [1, 2]
    assert ckptkit.inspect(d).format == "object-based"
    assert ckptkit.read_tensor(d / "ckpt-1", "a").shape == (64,)
    assert ckptkit.verify(d).ok
    assert not ckptkit.diff(d / "ckpt-1", d / "ckpt-1").changed
    assert ckptkit.CheckpointConfig.from_run_config({"model_dir": d}).directory == str(d)
    assert ckptkit.Storage(cache_dir=tmp_path).cache_dir == str(tmp_path)
    variables = state()
    assert ckptkit.CheckpointManager(saved, **variables).restore(path=d / "ckpt-1").step == 1
    assert ckptkit.migrate(d / "ckpt-2", assertion="partial", **state()).step == 2


@pytest.mark.parametrize("call", ["restore", "restore_or_initialize", "assert_restored"])
def test_a_misspelled_assertion_is_an_error_not_a_skipped_check(saved, call) -> None:
    mgr = ckptkit.CheckpointManager(saved, **state())
    result = mgr.restore()
    action = {
        "restore": lambda: mgr.restore(assertion="consumd"),
        "restore_or_initialize": lambda: mgr.restore_or_initialize(assertion="consumd"),
        "assert_restored": lambda: result.assert_restored("consumd"),  # type: ignore[arg-type]
    }[call]
    with pytest.raises(ValueError, match=r"'consumd' is not an assertion mode \(did you mean"):
        action()


def test_a_second_manager_in_this_process_is_told_to_close_the_first(saved) -> None:
    first = ckptkit.CheckpointManager(saved, **state())
    first.restore_or_initialize()
    with pytest.raises(
        ckptkit.DirectoryLockedError, match=r"in this process .* close\(\) the first"
    ):
        ckptkit.CheckpointManager(saved, **state()).restore_or_initialize()
    first.close()


@pytest.fixture
def read_only(saved):
    """`saved`'s directory, not writable by this process (as uid 65534 when running as root)."""
    top = tempfile.mkdtemp()
    os.chmod(top, 0o755)
    directory = os.path.join(top, "run")
    shutil.copytree(saved.directory, directory)
    os.remove(os.path.join(directory, ".ckptkit.lock"))
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            os.chmod(os.path.join(root, name), 0o755 if name in dirs else 0o644)
    os.chmod(directory, 0o555)
    as_root = os.geteuid() == 0
    if as_root:  # root writes anywhere: become a user who cannot
        os.setegid(65534)
        os.seteuid(65534)
    try:
        yield saved.model_copy(update={"directory": directory})
    finally:
        if as_root:
            os.seteuid(0)
            os.setegid(0)
        os.chmod(directory, 0o755)
        shutil.rmtree(top)


def test_a_read_only_directory_is_reported_before_training_and_still_restores(read_only) -> None:
    variables = state()
    with pytest.raises(ckptkit.SaveError, match=r"checkpoint directory .*run is not writable"):
        ckptkit.CheckpointManager(read_only, **variables).restore_or_initialize()
    # Reading needs no writing.
    assert ckptkit.CheckpointManager(read_only, **variables).restore().step == 2
    assert equal_to(variables, 2)
    assert ckptkit.verify(read_only.directory).ok
    assert [c.step for c in ckptkit.list_checkpoints(read_only.directory)] == [1, 2]


def test_a_clock_stepped_back_deletes_nothing_tensorflow_keeps(config) -> None:
    # Three checkpoints stamped a day ahead of the clock (NTP stepped it back by a day), and
    # the window mark with them: tf.train.CheckpointManager treats them as preserved.
    cfg = config(retention=Retention(max_to_keep=2, keep_every_n_hours=10000.0))
    variables = state()
    keep_all = cfg.model_copy(update={"retention": Retention(max_to_keep=None)})
    with ckptkit.CheckpointManager(keep_all, **variables) as mgr:
        for step in (1, 2, 3):
            mgr.save(step)
    ahead = time.time() + 86400
    paths = [os.path.join(cfg.directory, f"ckpt-{s}") for s in (1, 2, 3)]
    layout.write_state(cfg.directory, tuple((p, ahead + i) for i, p in enumerate(paths)), ahead + 2)
    with pytest.warns(UserWarning, match="behind the last preserved"):
        mgr = ckptkit.CheckpointManager(cfg, **variables)
    assert mgr.restore_or_initialize().step == 3
    for step in (4, 5, 6):
        mgr.save(step)
    mgr.close()
    left = {c.step for c in ckptkit.list_checkpoints(cfg.directory)}
    assert {1, 2, 3} <= left
    assert all(os.path.exists(p + ".index") for p in paths)
