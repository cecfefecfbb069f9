"""Bench case (g): saves to an S3 server on this machine (moto's server mode, its own process).

- Staged save: `CheckpointManager.save` to ``s3://`` (TensorFlow writes the 1 GiB state into the
  local tier, ckptkit uploads the files, then the manifest and the state object), against the
  same work done by hand: `tf.train.Checkpoint.write` to a local folder, then one raw fsspec
  ``put`` of its files. The ratio of the two times is the inverse of the throughput ratio.
  Both write the values in files of one variable each (`max_shard_bytes`, TensorFlow's
  `MaxShardSizePolicy`: 4 data files and the object graph's), so that files move at once;
  ckptkit's save with one file and one part at a time is printed beside (the way before).
- Async: the time an async ``save`` to ``s3://`` blocks training, against an async save to a
  local directory; and the time until each is committed.

Dirty pages are flushed before each timed save; each variant's objects are deleted after it.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import tensorflow as tf
from timing import interleaved, report

import ckptkit


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from moto.server import main; main()",
            "-H",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError("moto's server did not start")


def _async_save(mgr: ckptkit.CheckpointManager, step: int) -> tuple[float, float]:
    """Seconds an async save blocked, and seconds until it was committed."""
    os.sync()
    start = time.perf_counter()
    mgr.save(step, async_save=True)
    blocked = time.perf_counter() - start
    mgr.wait()
    return blocked, time.perf_counter() - start


def _one_at_a_time(config: ckptkit.CheckpointConfig, **update: Any) -> ckptkit.CheckpointConfig:
    """`config` with `Storage.max_concurrency` 1 (one file after another, each in one stream)."""
    storage = config.storage.model_copy(update={"max_concurrency": 1})
    return config.model_copy(update={"storage": storage, **update})


def _cold_restores(
    reps: int,
    store: Any,
    config: ckptkit.CheckpointConfig,
    state: dict[str, tf.Variable],
    root: str,
) -> float:
    """A restore from ``s3://`` with nothing cached, against fsspec's batched get + a restore.

    Also prints ckptkit's figure at `Storage.max_concurrency` 1 (one file after another, each
    in one stream), and fsspec's get with one stream a file: against moto, whose every ranged
    GET reads the whole object, parallel parts cost more than they save, unlike against S3.
    Returns ckptkit's ratio to fsspec's get as it comes (s3fs's default of 10 parts a file;
    ckptkit shares its 8 between the files and their parts).
    """
    latest = ckptkit.list_checkpoints(config.directory)[-1].path
    remote = list(store.ls(os.path.dirname(latest.removeprefix("s3://")), detail=False))
    files = [f for f in remote if os.path.basename(f).startswith(os.path.basename(latest) + ".")]
    local = os.path.join(root, "g-fetched")
    plain = tf.train.Checkpoint(**state)
    serial = _one_at_a_time(config)

    def restore_with(cfg: ckptkit.CheckpointConfig) -> Callable[[], object]:
        def run() -> None:
            shutil.rmtree(cfg.storage.cache_dir or "", ignore_errors=True)  # nothing cached
            with ckptkit.CheckpointManager(cfg, **state) as manager:
                manager.restore(path=latest)

        return run

    def get_then_restore(**get: int) -> Callable[[], object]:
        def run() -> None:
            shutil.rmtree(local, ignore_errors=True)
            os.makedirs(local)
            store.get(files, [os.path.join(local, os.path.basename(f)) for f in files], **get)
            prefix = os.path.join(local, os.path.basename(latest))
            plain.read(prefix).assert_existing_objects_matched()

        return run

    print(f"g cold restore: {len(files)} files, nothing cached")
    return report(
        "g_cold_restore",
        interleaved(
            {
                "ckptkit": restore_with(config),
                "fsspec get+read": get_then_restore(),
                "ckptkit, 1 at a time": restore_with(serial),
                "fsspec get, 1 stream a file": get_then_restore(max_concurrency=1),
            },
            reps,
        ),
    )


def bench_remote(reps: int, root: str, elems: int) -> dict[str, float]:
    """Runs case (g) on a state of 4 float32 variables of `elems` each; returns the ratios."""
    import s3fs  # the ckptkit[s3] extra

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
    )
    server, endpoint = _start_server()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        store = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
        store.mkdir("bench")
        state = {f"v{i}": tf.Variable(tf.random.normal([elems])) for i in range(4)}
        storage = ckptkit.Storage(cache_dir=os.path.join(root, "g-cache"), keep_local=0)
        config = ckptkit.CheckpointConfig(
            directory="s3://bench/ckptkit",
            retention=ckptkit.Retention(max_to_keep=1),
            storage=storage,
            max_shard_bytes=elems * 4,  # a data file per variable
        )
        ours = ckptkit.CheckpointManager(config, **state)
        serial = ckptkit.CheckpointManager(
            _one_at_a_time(config, directory="s3://bench/serial"), **state
        )
        plain = tf.train.Checkpoint(**state)
        sharded = tf.train.CheckpointOptions(
            experimental_sharding_callback=tf.train.experimental.MaxShardSizePolicy(elems * 4)
        )
        counter = iter(range(1, 1_000_000))
        local = os.path.join(root, "g-plain")

        def ckptkit_save() -> None:
            ours.save(next(counter))

        def write_then_put() -> None:
            shutil.rmtree(local, ignore_errors=True)
            plain.write(os.path.join(local, "ckpt"), options=sharded)
            files = [os.path.join(local, n) for n in os.listdir(local)]
            store.put(files, [f"bench/plain/{os.path.basename(f)}" for f in files])

        async_local = ckptkit.CheckpointManager(
            ckptkit.CheckpointConfig(
                directory=os.path.join(root, "g-local"),
                retention=ckptkit.Retention(max_to_keep=1),
            ),
            **state,
        )

        def remote_async() -> tuple[float, float]:
            return _async_save(ours, next(counter))

        def local_async() -> tuple[float, float]:
            return _async_save(async_local, next(counter))

        saves = interleaved(
            {
                "ckptkit": ckptkit_save,
                "write+put": write_then_put,
                "ckptkit, 1 at a time": lambda: serial.save(next(counter)),
            },
            reps,
        )
        save_ratio = saves["ckptkit"] / saves["write+put"]
        print(
            f"g_staged_save  ckptkit {saves['ckptkit']:.2f} s | write+put "
            f"{saves['write+put']:.2f} s (ratio {save_ratio:.3f}; throughput ratio "
            f"{1 / save_ratio:.3f}) | ckptkit, 1 file and part at a time "
            f"{saves['ckptkit, 1 at a time']:.2f} s",
            flush=True,
        )
        timings: dict[str, list[tuple[float, float]]] = {"s3": [], "local": []}
        for rep in range(reps):
            order = [("s3", remote_async), ("local", local_async)][:: 1 if rep % 2 else -1]
            for name, run in order:
                timings[name].append(run())
        blocked = {k: statistics.median(b for b, _ in v) for k, v in timings.items()}
        done = {k: statistics.median(c for _, c in v) for k, v in timings.items()}
        blocked_ratio = blocked["s3"] / blocked["local"]
        print(
            f"g_async        blocked: s3 {blocked['s3'] * 1e3:.1f} ms, local "
            f"{blocked['local'] * 1e3:.1f} ms (ratio {blocked_ratio:.3f}) | until committed: "
            f"s3 {done['s3']:.2f} s, local {done['local']:.2f} s",
            flush=True,
        )
        ours.close()
        serial.close()
        async_local.close()
        cold = _cold_restores(reps, store, config, state, root)
        return {
            "g_staged_save": save_ratio,
            "g_async_blocked": blocked_ratio,
            "g_cold_restore": cold,
        }
    finally:
        server.kill()
        server.wait()
