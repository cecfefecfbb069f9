"""Checkpoints in object storage: s3:// staged through fsspec against a real S3 server (moto's
server mode on loopback), and the gfile protocol on ram:// (no local endpoint reaches
TensorFlow's GCS client)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
from forked import WORKERS, ForkedWorker
from helpers import cli, equal_to, fill, state

import ckptkit
from ckptkit import progress
from ckptkit.errors import (
    CheckpointSkippedWarning,
    DirectoryLockedError,
    SaveError,
    UploadError,
)
from ckptkit.storage import routes, tiers


def _config(directory: str, cache, **storage) -> ckptkit.CheckpointConfig:
    return ckptkit.CheckpointConfig(
        directory=directory,
        retention=ckptkit.Retention(max_to_keep=2),
        restore=ckptkit.RestorePolicy(assertion="consumed"),
        storage=ckptkit.Storage(cache_dir=str(cache), **storage),
    )


def _objects(s3_server, directory: str) -> list[str]:
    bucket_path = directory.removeprefix("s3://")
    return sorted(os.path.basename(p) for p in s3_server.client().ls(bucket_path, detail=False))


def _save_steps(directory: str, cache, steps, **storage) -> None:
    variables = state()
    with ckptkit.CheckpointManager(_config(directory, cache, **storage), **variables) as mgr:
        for step in steps:
            fill(variables, step)
            mgr.save(step)


def test_round_trip_retention_and_cache(s3_server, s3_dir, tmp_path) -> None:
    _save_steps(s3_dir, tmp_path / "cache", (1, 2, 3))

    # Committed remotely: state file, manifests, files; retention removed step 1's objects.
    objects = _objects(s3_server, s3_dir)
    assert "checkpoint" in objects
    assert not [o for o in objects if o.startswith("ckpt-1")]
    assert {"ckpt-3.index", "ckpt-3.manifest.json", "ckpt-2.index"} <= set(objects)
    assert ".ckptkit.lease" not in objects  # released by close()
    # The local tier keeps the newest one only (keep_local=1).
    assert sorted(os.listdir(tmp_path / "cache")) == [
        ".ckptkit-source",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
        "ckpt-3.manifest.json",
    ]

    # From the cache: the local copy matches the remote manifest, so nothing is downloaded.
    local_data = tmp_path / "cache" / "ckpt-3.data-00000-of-00001"
    before = local_data.stat().st_ino
    variables = state()
    with ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "cache"), **variables) as mgr:
        assert mgr.restore_or_initialize().step == 3
    assert equal_to(variables, 3)
    assert local_data.stat().st_ino == before

    # A damaged local copy is not trusted: it is downloaded again, checked, then restored.
    local_data.write_bytes(b"garbage")
    variables = state()
    with ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "cache"), **variables) as mgr:
        assert mgr.restore_or_initialize().step == 3
    assert equal_to(variables, 3)
    assert local_data.stat().st_size > 100

    # From remote into an empty cache; an older step on request.
    variables = state()
    mgr = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "fresh"), **variables)
    assert [c.step for c in mgr.checkpoints] == [2, 3]
    assert mgr.restore(step=2).step == 2  # a reader takes no lease
    assert equal_to(variables, 2)
    assert (tmp_path / "fresh" / "ckpt-2.index").exists()


def test_async_save_uploads_in_the_background(s3_server, s3_dir, tmp_path) -> None:
    variables = state()
    cfg = _config(s3_dir, tmp_path / "cache").model_copy(update={"async_save": True})
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        fill(variables, 1)
        mgr.save(1)
        fill(variables, 99)  # training goes on; the save has its own values
        assert mgr.wait() == f"{s3_dir}/ckpt-1"
    restored = state()
    ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "other"), **restored).restore()
    assert equal_to(restored, 1)


def test_second_writer_is_refused_until_the_lease_is_released(s3_dir, tmp_path) -> None:
    variables = state()
    first = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "a"), **variables)
    first.save(1)
    second = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "b"), **variables)
    with pytest.raises(DirectoryLockedError, match=rf"pid {os.getpid()} on .*\.ckptkit\.lease"):
        second.save(2)
    first.close()
    assert second.save(2) == f"{s3_dir}/ckpt-2"
    second.close()


def test_a_writer_whose_lease_was_taken_stops_writing(s3_server, s3_dir, tmp_path) -> None:
    variables = state()
    mgr = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "a"), **variables)
    mgr.save(1)
    s3_server.client().rm_file(s3_dir.removeprefix("s3://") + "/.ckptkit.lease")
    other = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "b"), **variables)
    other.save(2)  # finds no lease, takes it
    with pytest.raises(DirectoryLockedError, match="no longer holds the writer lease"):
        mgr.save(3)
    other.close()
    assert [c.step for c in ckptkit.list_checkpoints(s3_dir)] == [1, 2]


def test_damaged_or_missing_objects_are_walked_back(s3_server, s3_dir, tmp_path) -> None:
    _save_steps(s3_dir, tmp_path / "cache", (1, 2, 3))
    client = s3_server.client()
    prefix = s3_dir.removeprefix("s3://")
    client.pipe_file(f"{prefix}/ckpt-3.data-00000-of-00001", b"cut short")
    client.rm_file(f"{prefix}/ckpt-2.index")
    report = ckptkit.verify(s3_dir)
    assert not report.ok
    assert [c.ok for c in report.checkpoints] == [False, False]

    # Steps 2 and 3 are kept with max_to_keep=2, both damaged: a restore says so.
    variables = state()
    mgr = ckptkit.CheckpointManager(_config(s3_dir, tmp_path / "fresh"), **variables)
    with pytest.raises(ckptkit.CorruptCheckpointError, match=r"every checkpoint .* is damaged"):
        mgr.restore()
    mgr.close()


def test_restore_walks_back_past_a_damaged_object(s3_server, s3_dir, tmp_path) -> None:
    variables = state()
    cfg = _config(s3_dir, tmp_path / "cache").model_copy(
        update={"retention": ckptkit.Retention(max_to_keep=3)}
    )
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        for step in (1, 2):
            fill(variables, step)
            mgr.save(step)
    s3_server.client().rm_file(s3_dir.removeprefix("s3://") + "/ckpt-2.data-00000-of-00001")
    restored = state()
    fresh = cfg.model_copy(update={"storage": ckptkit.Storage(cache_dir=str(tmp_path / "f"))})
    with pytest.warns(CheckpointSkippedWarning, match=r"ckpt-2.data-00000-of-00001: missing"):
        result = ckptkit.CheckpointManager(fresh, **restored).restore_or_initialize()
    assert result.step == 1
    assert equal_to(restored, 1)


def test_server_down_mid_upload_loses_nothing(s3_server, s3_dir, tmp_path) -> None:
    variables = {"big": tf.Variable(tf.zeros([8 << 20]))}  # 32 MiB: an upload takes a while
    fast_fail = {"config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2}}
    cfg = _config(s3_dir, tmp_path / "cache", options=fast_fail)
    mgr = ckptkit.CheckpointManager(cfg, **variables)
    variables["big"].assign(tf.fill([8 << 20], 1.0))
    mgr.save(1)
    staged_index = tmp_path / "cache" / "ckpt-2.index"

    def stop_once_staged() -> None:
        deadline = time.monotonic() + 60
        while not staged_index.exists() and time.monotonic() < deadline:
            time.sleep(0.001)
        s3_server.stop()

    stopper = threading.Thread(target=stop_once_staged)
    stopper.start()
    variables["big"].assign(tf.fill([8 << 20], 2.0))
    try:
        with pytest.raises(SaveError, match=rf"{s3_dir}/ckpt-2") as raised:
            mgr.save(2)
    finally:
        stopper.join()
        s3_server.start()
    assert isinstance(raised.value, UploadError), raised.value
    assert "staged copy stays" in str(raised.value)
    assert staged_index.exists()  # the staged copy stays
    assert [c.step for c in mgr.checkpoints] == [1]
    assert [c.step for c in ckptkit.list_checkpoints(s3_dir)] == [1]

    # The network is back: the next save goes through, and the next writer clears step 2.
    variables["big"].assign(tf.fill([8 << 20], 3.0))
    mgr.save(3)
    mgr.close()
    with ckptkit.CheckpointManager(cfg, **variables) as again:
        again.save(4)
    assert not [o for o in _objects(s3_server, s3_dir) if o.startswith("ckpt-2")]
    restored = {"big": tf.Variable(tf.zeros([8 << 20]))}
    fresh = cfg.model_copy(update={"storage": ckptkit.Storage(cache_dir=str(tmp_path / "f"))})
    assert ckptkit.CheckpointManager(fresh, **restored).restore(step=3).step == 3
    assert float(restored["big"][-1]) == 3.0


def test_cli_reads_s3_urls(s3_dir, tmp_path) -> None:
    _save_steps(s3_dir, tmp_path / "cache", (1, 2))
    listing = cli("ls", s3_dir)
    assert listing.returncode == 0, listing.stderr
    assert "ckpt-1" in listing.stdout
    assert "ckpt-2" in listing.stdout
    shown = cli("inspect", s3_dir, "--json")
    assert shown.returncode == 0, shown.stderr
    assert "a/.ATTRIBUTES/VARIABLE_VALUE" in shown.stdout
    verified = cli("verify", s3_dir, "--full")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    compared = cli("diff", f"{s3_dir}/ckpt-1", f"{s3_dir}/ckpt-2")
    assert compared.returncode == 1, compared.stderr  # the values differ
    assert "a/.ATTRIBUTES/VARIABLE_VALUE" in compared.stdout


def test_reading_s3_urls_needs_no_tensorflow(s3_dir, tmp_path) -> None:
    """A fresh process with an empty cache: every read downloads, none imports TensorFlow."""
    _save_steps(s3_dir, tmp_path / "cache", (1, 2))
    code = f"""
import sys
import ckptkit
from ckptkit.cli import main

d = {s3_dir!r}
assert [i.step for i in ckptkit.list_checkpoints(d)] == [1, 2]
assert ckptkit.inspect(d).variables
ckptkit.read_tensor(d, "a/.ATTRIBUTES/VARIABLE_VALUE")
ckptkit.diff(d + "/ckpt-1", d + "/ckpt-2")
assert ckptkit.verify(d, full=True).ok
for args in (["ls", d], ["inspect", d], ["verify", d, "--full"]):
    main([*args, "--json"])
print("tensorflow" in sys.modules)
"""
    env = {**os.environ, "CKPTKIT_CACHE_DIR": str(tmp_path / "fresh-cache")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("concurrency", [1, 8])
def test_transfers_show_progress_at_any_concurrency(
    s3_dir, tmp_path, capsys, monkeypatch, concurrency
) -> None:
    """Uploads and downloads draw a bar (past `progress.DELAY`, 0 here) when one is shown."""
    monkeypatch.setattr(progress, "DELAY", 0)
    cfg = _config(s3_dir, tmp_path / "cache", max_concurrency=concurrency, keep_local=0)
    variables = state()
    with progress.shown(), ckptkit.CheckpointManager(cfg, **variables) as mgr:
        fill(variables, 3)
        mgr.save(3)
    assert "uploading ckpt-3" in capsys.readouterr().err
    fresh = state()
    with progress.shown(), ckptkit.CheckpointManager(cfg, **fresh) as mgr:
        assert mgr.restore().step == 3  # downloaded: keep_local=0 left no local copy
    assert "downloading ckpt-3" in capsys.readouterr().err
    assert equal_to(fresh, 3)


def test_a_checkpoint_in_several_files_goes_both_ways_at_once(s3_server, s3_dir, tmp_path) -> None:
    """max_shard_bytes splits the data; the files upload and download together, values intact."""
    cfg = _config(s3_dir, tmp_path / "cache", max_concurrency=4, keep_local=0).model_copy(
        update={"max_shard_bytes": 1 << 20}
    )
    values = {f"w{i}": tf.Variable(tf.random.normal((1 << 18,), seed=i)) for i in range(4)}
    with ckptkit.CheckpointManager(cfg, **values) as mgr:
        mgr.save(1)
    data = [n for n in _objects(s3_server, s3_dir) if n.startswith("ckpt-1.data-")]
    assert len(data) >= 4
    fresh = {name: tf.Variable(tf.zeros_like(v)) for name, v in values.items()}
    with ckptkit.CheckpointManager(cfg, **fresh) as mgr:
        assert mgr.restore().step == 1  # keep_local=0: every file downloaded
    for name, variable in values.items():
        np.testing.assert_array_equal(fresh[name].numpy(), variable.numpy())


def test_gfile_protocol_on_ram(tmp_path) -> None:
    """gs:// goes through tf.io.gfile as ram:// does: same commit by single files, same lease."""
    directory = f"ram://{tmp_path.name}/remote"
    variables = state()
    cfg = _config(directory, tmp_path / "unused")
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        for step in (1, 2, 3):
            fill(variables, step)
            mgr.save(step)
        assert tf.io.gfile.exists(f"{directory}/.ckptkit.lease")
        with pytest.raises(DirectoryLockedError):
            ckptkit.CheckpointManager(cfg, **variables).save(9)
    assert not tf.io.gfile.exists(f"{directory}/.ckptkit.lease")
    assert tf.train.latest_checkpoint(directory) == f"{directory}/ckpt-3"
    assert not os.path.exists(tmp_path / "unused")  # TensorFlow wrote there itself: no staging


def test_transport_must_reach_the_url() -> None:
    with pytest.raises(ValueError, match="transport='gfile' cannot reach 's3://b/run'"):
        ckptkit.CheckpointConfig(directory="s3://b/run", storage=ckptkit.Storage(transport="gfile"))
    with pytest.raises(ValueError, match="cache_dir must be a local folder"):
        ckptkit.Storage(cache_dir="s3://b/cache")


def test_local_tier_path_is_per_url(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CKPTKIT_CACHE_DIR", str(tmp_path / "root"))
    assert tiers.cache_dir("s3://a/run") != tiers.cache_dir("s3://a/run2")
    assert tiers.local_copy("s3://a/run/ckpt-3").endswith("/ckpt-3")


def test_two_endpoints_never_share_cached_copies(tmp_path, monkeypatch) -> None:
    # The same bucket and path on two servers are two stores.
    monkeypatch.setenv("CKPTKIT_CACHE_DIR", str(tmp_path / "root"))
    url = "s3://same-bucket/run"
    folders = []
    for endpoint in ("http://127.0.0.1:1111", "http://127.0.0.1:2222"):
        routes.register(url, ckptkit.Storage(options={"endpoint_url": endpoint}))
        folders.append(tiers.cache_dir(url))
    assert folders[0] != folders[1]
    # One explicit cache folder for both: the first one's copies are dropped, not served.
    shared = tmp_path / "shared"
    for endpoint, step in (("http://127.0.0.1:1111", 1), ("http://127.0.0.1:2222", None)):
        routes.register(
            url, ckptkit.Storage(options={"endpoint_url": endpoint}, cache_dir=str(shared))
        )
        folder = tiers.cache_dir(url)
        if step is not None:
            tf.train.Checkpoint(v=tf.Variable(1.0)).write(os.path.join(folder, "ckpt-1"))
    assert not [n for n in os.listdir(shared) if n.startswith("ckpt-1")]
    assert (shared / ".ckptkit-source").read_text() == f"{url} via http://127.0.0.1:2222"


def _start_writer(directory: str, cache, *args: str) -> ForkedWorker:
    return ForkedWorker("train_forever.py", directory, "--cache", str(cache), *args)


def _worker_state(mib: int) -> dict[str, tf.Variable]:
    """The variables train_forever.py saves."""
    sys.path.insert(0, str(WORKERS))
    from train_forever import variables

    return {"step": tf.Variable(0, dtype=tf.int64), **variables(mib)}


def _kill(process: ForkedWorker) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.stdout is not None
    process.stdout.close()


def _wait_for(process: ForkedWorker, line: str) -> None:
    assert process.stdout is not None
    for got in process.stdout:
        if got.strip() == line:
            return
    pytest.fail(f"the writer ended (status {process.wait()}) before printing {line!r}")


@pytest.mark.slow
def test_lease_of_a_killed_writer_expires(s3_dir, tmp_path) -> None:
    writer = _start_writer(s3_dir, tmp_path / "w", "--lease-secs", "3")
    _wait_for(writer, "committed 1")
    _kill(writer)
    killed_at = time.monotonic()
    cfg = _config(s3_dir, tmp_path / "cache", lease_secs=3)
    mgr = ckptkit.CheckpointManager(cfg, **_worker_state(0))
    with pytest.raises(DirectoryLockedError, match=rf"pid {writer.pid} .* expires in \d+ s"):
        mgr.save(100)
    time.sleep(max(0.0, killed_at + 3.5 - time.monotonic()))
    assert mgr.restore_or_initialize().restored
    mgr.save(100)
    mgr.close()


@pytest.mark.slow
def test_kill_during_upload_keeps_the_previous_checkpoint(s3_server, s3_dir, tmp_path) -> None:
    cache = tmp_path / "w"
    writer = _start_writer(s3_dir, cache, "--mib", "48", "--lease-secs", "2")
    _wait_for(writer, "committed 1")
    staged = cache / "ckpt-2.index"
    deadline = time.monotonic() + 120
    while not staged.exists() and time.monotonic() < deadline:
        time.sleep(0.001)
    _kill(writer)  # TensorFlow has written step 2 locally: it is uploading
    assert "ckpt-2.manifest.json" not in _objects(s3_server, s3_dir)
    assert [c.step for c in ckptkit.list_checkpoints(s3_dir)] == [1]

    time.sleep(2.5)  # the killed writer's lease expires
    variables = _worker_state(48)
    cfg = _config(s3_dir, tmp_path / "cache")
    with ckptkit.CheckpointManager(cfg, **variables) as mgr:
        assert mgr.restore_or_initialize().step == 1
        assert float(variables["v3"][0]) == 1.0
        mgr.save(5)  # the next writer's first save clears what the killed upload left
    assert not [o for o in _objects(s3_server, s3_dir) if o.startswith("ckpt-2")]
