"""When the network misbehaves: unreachable storage is never taken for empty storage, and
every remote call is bounded (an S3 server on loopback, a port with no listener, a server
that never answers)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
import warnings
from collections import Counter

import pytest
import s3fs
from helpers import equal_to, fill, state
from netfaults import Proxy, StalledServer, closed_endpoint

import ckptkit
from ckptkit.cli import EXIT_UNAVAILABLE, main


def config(
    directory: str, tmp_path, endpoint: str | None = None, **storage
) -> ckptkit.CheckpointConfig:
    options = {} if endpoint is None else {"endpoint_url": endpoint}
    return ckptkit.CheckpointConfig(
        directory=directory,
        retention=ckptkit.Retention(max_to_keep=None),  # every save stays listed
        storage=ckptkit.Storage(options=options, cache_dir=str(tmp_path / "cache"), **storage),
    )


@pytest.fixture
def two_saved(s3_dir, tmp_path) -> str:
    """A remote directory with committed ckpt-1 and ckpt-2."""
    variables = state()
    with ckptkit.CheckpointManager(config(s3_dir, tmp_path), **variables) as mgr:
        for step in (1, 2):
            fill(variables, step)
            mgr.save(step)
    return s3_dir


def test_a_refused_connection_is_unavailable_never_a_fresh_start(two_saved, tmp_path) -> None:
    cfg = config(two_saved, tmp_path, closed_endpoint(), retries=1)
    with pytest.raises(ckptkit.StorageUnavailableError, match=r"cannot reach s3://.*run"):
        ckptkit.CheckpointManager(cfg, **state()).restore_or_initialize()
    # Through the real endpoint, nothing was written beside the two checkpoints.
    through = ckptkit.CheckpointManager(config(two_saved, tmp_path), **state())
    assert [c.step for c in through.checkpoints] == [1, 2]


@pytest.mark.parametrize("command", ["ls", "verify", "inspect"])
def test_the_cli_exits_3_when_storage_cannot_be_asked(
    two_saved, monkeypatch, capsys, command
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed_endpoint())
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec caches filesystems by their arguments
    try:
        assert main([command, two_saved]) == EXIT_UNAVAILABLE
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot reach s3://" in err
    assert "not found" not in err


@pytest.mark.parametrize("command", ["ls", "verify", "inspect"])
def test_the_cli_gives_up_on_a_stalled_server_within_its_timeout(
    two_saved, monkeypatch, capsys, command
) -> None:
    with StalledServer() as stalled:
        monkeypatch.setenv("AWS_ENDPOINT_URL", stalled.endpoint)
        s3fs.S3FileSystem.clear_instance_cache()
        started = time.monotonic()
        try:
            status = main([command, two_saved, "--timeout", "0.5", "--retries", "1"])
        finally:
            s3fs.S3FileSystem.clear_instance_cache()
        took = time.monotonic() - started
    assert status == EXIT_UNAVAILABLE
    assert "cannot reach s3://" in capsys.readouterr().err
    assert took < 2 * 0.5 + 5  # two attempts of 0.5 s, s3fs's backoff, one call


def test_a_stalled_server_fails_restore_and_save_within_their_bound(two_saved, tmp_path) -> None:
    with StalledServer() as stalled:
        cfg = config(two_saved, tmp_path, stalled.endpoint, timeout_secs=0.5, retries=1)
        # The bound: (retries + 1) attempts of timeout_secs, plus s3fs's backoff, per call.
        started = time.monotonic()
        with pytest.raises(ckptkit.StorageUnavailableError, match=r"ReadTimeout|timed out|Timeout"):
            ckptkit.CheckpointManager(cfg, **state()).restore()
        # A bound, not a timing: it had hung for good, then took 4 attempts of a listing
        # (s3fs retries each page inside a retried call) where 2 were promised.
        assert time.monotonic() - started < 2 * 0.5 + 5

    # The stalled attempt left nothing: both checkpoints listed and restorable.
    variables = state()
    assert ckptkit.CheckpointManager(config(two_saved, tmp_path), **variables).restore().step == 2


@pytest.mark.parametrize("damage", ["a flipped byte", "another file of the same size"])
def test_a_damaged_cached_copy_is_read_again_from_the_remote_one(
    two_saved, tmp_path, damage
) -> None:
    cache = tmp_path / "cache"
    data = cache / "ckpt-2.data-00000-of-00001"
    body = bytearray(data.read_bytes())
    if damage == "a flipped byte":
        body[len(body) // 2] ^= 0xFF
    else:
        body = bytearray(len(body))  # zeros, the size kept: the manifest's check passes
    data.write_bytes(bytes(body))
    variables = state()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ckptkit.CheckpointSkippedWarning)  # nothing skipped
        result = ckptkit.CheckpointManager(config(two_saved, tmp_path), **variables).restore()
    assert result.step == 2
    assert equal_to(variables, 2)
    assert data.read_bytes() != bytes(body)  # the bad copy was replaced by the remote one


def test_a_save_that_stalls_fails_within_its_bound_and_lists_nothing(
    s3_server, two_saved, tmp_path
) -> None:
    variables = state()
    with Proxy(s3_server.endpoint) as proxy:
        cfg = config(two_saved, tmp_path / "w", proxy.endpoint, timeout_secs=2, retries=1)
        mgr = ckptkit.CheckpointManager(cfg, **variables)
        assert mgr.restore().step == 2  # through the proxy while it forwards
        proxy.set("stall")
        fill(variables, 3)
        started = time.monotonic()
        with pytest.raises((ckptkit.StorageUnavailableError, ckptkit.SaveError), match="s3://"):
            mgr.save(3)
        assert time.monotonic() - started < 60  # a bound, not a timing: it had hung for good
        proxy.set("forward")
        mgr.close()
    through = ckptkit.CheckpointManager(config(two_saved, tmp_path), **state())
    assert [c.step for c in through.checkpoints] == [1, 2]
    assert through.restore().step == 2


def test_a_writer_cut_off_mid_commit_cannot_unlist_the_next_writers_checkpoint(
    s3_server, s3_dir, tmp_path
) -> None:
    # Writer A's commit (the state object's PUT) is held by the network; its lease renewals
    # too, so the lease expires and writer B takes over and commits ckpt-3. Then A's PUTs
    # land. Unfenced, A's commit would replace B's state file (ckpt-3 would vanish) and A's
    # renewal would take B's lease (B would stop).
    bucket_path = s3_dir.removeprefix("s3://")
    with Proxy(s3_server.endpoint) as proxy:
        a_cfg = config(s3_dir, tmp_path / "a", proxy.endpoint, lease_secs=2.0, timeout_secs=60)
        a_vars = state()
        a = ckptkit.CheckpointManager(a_cfg, **a_vars)
        assert not a.restore_or_initialize().restored
        a.save(1)
        proxy.hold(
            f"PUT /{bucket_path}/checkpoint ".encode(),
            f"PUT /{bucket_path}/.ckptkit.lease ".encode(),
        )
        outcome: list[BaseException | str] = []

        def save_two() -> None:
            try:
                fill(a_vars, 2)
                outcome.append(a.save(2))
            except BaseException as e:
                outcome.append(e)

        writer_a = threading.Thread(target=save_two)
        writer_a.start()
        assert proxy.holding.wait(60)  # A has checked its lease and sent its commit

        b_cfg = config(s3_dir, tmp_path / "b", lease_secs=2.0)
        b_vars = state()
        lease = json.loads(s3_server.client().cat_file(f"{bucket_path}/.ckptkit.lease"))
        time.sleep(max(0.0, lease["expires"] - time.time() + 0.2))  # A's lease runs out
        b = ckptkit.CheckpointManager(b_cfg, **b_vars)
        assert b.restore_or_initialize().step == 1
        fill(b_vars, 3)
        b.save(3)

        proxy.release()  # A's commit and its late lease renewals land now
        writer_a.join(120)
        assert isinstance(outcome[0], ckptkit.DirectoryLockedError), outcome
        assert "changed since this manager read it" in str(outcome[0])
        with contextlib.suppress(ckptkit.CkptkitError):
            a.close()
        # A's late renewals did not take B's lease: B goes on.
        fill(b_vars, 4)
        b.save(4)
        b.close()

    reader = ckptkit.CheckpointManager(config(s3_dir, tmp_path / "r"), **state())
    assert [c.step for c in reader.checkpoints] == [1, 3, 4]
    restored = state()
    ckptkit.CheckpointManager(config(s3_dir, tmp_path / "r"), **restored).restore()
    assert equal_to(restored, 4)


def test_two_managers_of_one_process_reach_one_url_each_their_own_way(
    s3_server, s3_dir, tmp_path
) -> None:
    # A through a proxy, B straight to the server: the same s3:// URL, two endpoints.
    with Proxy(s3_server.endpoint) as proxy:
        a_vars = state()
        a = ckptkit.CheckpointManager(
            config(s3_dir, tmp_path / "a", proxy.endpoint, timeout_secs=5, retries=1), **a_vars
        )
        a.save(1)
        a.close()
        b = ckptkit.CheckpointManager(config(s3_dir, tmp_path / "b"), **state())
        proxy.set("refuse")
        with pytest.raises(ckptkit.StorageUnavailableError, match=r"cannot reach s3://"):
            a.restore()  # A's way is cut: B's settings are not A's
        assert b.restore().step == 1
        b.save(2)
        b.close()


def take_over(cfg: ckptkit.CheckpointConfig, variables: dict) -> ckptkit.CheckpointManager:
    """Writer B's manager, once writer A's lease is released or has expired (within 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        manager = ckptkit.CheckpointManager(cfg, **variables)
        try:
            manager.restore_or_initialize()
            return manager
        except ckptkit.DirectoryLockedError:
            assert time.monotonic() < deadline, "A's lease never expired"
            time.sleep(0.2)  # the lease's expiry is the event: it cannot be waited on


TRIALS = int(os.environ.get("CKPTKIT_PARTITION_TRIALS", "16"))


@pytest.mark.slow
def test_a_save_that_returned_stays_listed_whatever_the_network_did(s3_server, tmp_path) -> None:
    """Randomized partitions: writer A saves through a proxy that stalls, refuses or holds
    its commits at random moments; when A fails, writer B takes the directory over. Every save
    that returned, A's or B's, must be listed at the end; failed ones may be or not."""
    rng = random.Random(20261206)
    events = ["none", "stall", "refuse", "hold the commit", "hold the lease"]
    seen: Counter[str] = Counter()
    for trial in range(TRIALS):
        directory = f"s3://{s3_server.bucket()}/run"
        bucket_path = directory.removeprefix("s3://")
        returned: list[int] = []
        with Proxy(s3_server.endpoint) as proxy:
            cfg = config(
                directory, tmp_path / f"a{trial}", proxy.endpoint,
                lease_secs=1.5, timeout_secs=0.5, retries=1,
            )  # fmt: skip
            a_vars = state()
            a = ckptkit.CheckpointManager(cfg, **a_vars)
            for step in range(1, 6):
                event = rng.choice(events)
                seen[event] += 1
                delay = rng.uniform(0.05, 2.5)
                if event == "stall":
                    proxy.set("stall")
                elif event == "refuse":
                    proxy.set("refuse")
                elif event != "none":
                    name = "checkpoint" if event == "hold the commit" else ".ckptkit.lease"
                    proxy.hold(f"PUT /{bucket_path}/{name} ".encode())
                heal = threading.Timer(delay, lambda: (proxy.set("forward"), proxy.release()))
                heal.start()
                try:
                    fill(a_vars, step)
                    a.save(step)
                    returned.append(step)
                except ckptkit.CkptkitError:
                    break  # A is done: B takes over
                finally:
                    heal.join()
            with contextlib.suppress(ckptkit.CkptkitError):
                a.close()
            # B, on a sound network, once A's lease is released or has expired.
            b_vars = state()
            b_cfg = config(directory, tmp_path / f"b{trial}", lease_secs=1.5)
            b = take_over(b_cfg, b_vars)
            with contextlib.suppress(ckptkit.DirectoryLockedError):
                for step in (100, 101):
                    fill(b_vars, step)
                    b.save(step)
                    returned.append(step)
            with contextlib.suppress(ckptkit.CkptkitError):
                b.close()
        listed = {c.step for c in ckptkit.CheckpointManager(b_cfg, **state()).checkpoints}
        assert set(returned) <= listed, (trial, returned, listed)
    print(f"{TRIALS} trials, events {dict(seen)}")


@pytest.mark.slow
def test_held_requests_that_land_after_a_take_over_unlist_nothing(s3_server, tmp_path) -> None:
    """A's commit and lease renewals are held by the network until B has taken the directory
    over and committed; then they land. Whatever A's timeouts, A's save either returned (and
    stays listed) or failed (`DirectoryLockedError`, or storage it could not reach in time);
    B's saves stay listed."""
    rng = random.Random(20261207)
    for trial in range(max(TRIALS // 2, 1)):
        directory = f"s3://{s3_server.bucket()}/run"
        bucket_path = directory.removeprefix("s3://")
        held = rng.choice([["checkpoint", ".ckptkit.lease"], [".ckptkit.lease"]])
        timeout = rng.choice([1.0, 2.0, 60.0])
        with Proxy(s3_server.endpoint) as proxy:
            a_cfg = config(
                directory, tmp_path / f"a{trial}", proxy.endpoint,
                lease_secs=1.5, timeout_secs=timeout, retries=1,
            )  # fmt: skip
            a_vars = state()
            a = ckptkit.CheckpointManager(a_cfg, **a_vars)
            a.save(1)
            proxy.hold(*(f"PUT /{bucket_path}/{name} ".encode() for name in held))
            outcome: list[BaseException | str | None] = []

            def save_two(
                a: ckptkit.CheckpointManager = a, values: dict = a_vars, outcome: list = outcome
            ) -> None:
                try:
                    fill(values, 2)
                    outcome.append(a.save(2))
                except BaseException as e:
                    outcome.append(e)

            writer_a = threading.Thread(target=save_two)
            writer_a.start()
            assert proxy.holding.wait(30)
            b_cfg = config(directory, tmp_path / f"b{trial}", lease_secs=1.5)
            b_vars = state()
            b = take_over(b_cfg, b_vars)
            for step in (100, 101):
                fill(b_vars, step)
                b.save(step)
            proxy.release()  # A's held requests land now, after B's commits
            writer_a.join(150)
            assert not writer_a.is_alive(), (trial, held, timeout)
            if not isinstance(outcome[0], str):
                # Refused by the fence, or given up on (A's own timeout ran out while its
                # commit was held; the held PUT then lands against B's newer state and fails).
                failed = outcome[0]
                assert isinstance(failed, ckptkit.DirectoryLockedError) or (
                    isinstance(failed, ckptkit.SaveError) and "cannot reach" in str(failed)
                ), outcome
            with contextlib.suppress(ckptkit.CkptkitError):
                a.close()
            fill(b_vars, 102)
            b.save(102)  # A's late renewals did not take B's lease
            b.close()
        listed = {c.step for c in ckptkit.CheckpointManager(b_cfg, **state()).checkpoints}
        returned = {1, 100, 101, 102} | ({2} if isinstance(outcome[0], str) else set())
        assert returned <= listed, (trial, held, timeout, outcome, listed)
