"""How long ckptkit takes to give up on storage that cannot be asked, with the default Storage.

Not a speed ratio (see bench.py): the bounds promised by `Storage(timeout_secs=20, retries=4)`
(about 100 s a call), measured against a real S3 server on this machine (moto's server mode)
and the test suite's own network faults (`tests/netfaults.py`): a port with no listener, a
server that never answers, a proxy that stops forwarding. Takes about 7 minutes.

Usage: python benchmarks/network_bounds.py   (with the test extras installed: moto)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
os.environ.update(
    AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1"
)
os.environ["CKPTKIT_CACHE_DIR"] = tempfile.mkdtemp()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers import S3Server, fill, state
from netfaults import Proxy, StalledServer, closed_endpoint

import ckptkit


def timed(label: str, call: Callable[[], Any]) -> None:
    started = time.monotonic()
    try:
        outcome = f"returned {call()!r}"
    except Exception as e:  # the outcome is what is measured
        outcome = f"{type(e).__name__}: {str(e)[:100]}"
    print(f"{label}: {time.monotonic() - started:.1f} s -> {outcome}", flush=True)


def command(label: str, endpoint: str, *args: str) -> None:
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ckptkit", *args], env=env, capture_output=True, check=False
    )
    print(f"{label}: {time.monotonic() - started:.1f} s, exit status {done.returncode}", flush=True)


def manager(directory: str, endpoint: str, **variables: Any) -> ckptkit.CheckpointManager:
    options = {"endpoint_url": endpoint}
    config = ckptkit.CheckpointConfig(directory=directory, storage=ckptkit.Storage(options=options))
    return ckptkit.CheckpointManager(config, **(variables or state()))


def main() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = S3Server()
    server.start()
    directory = f"s3://{server.bucket()}/run"
    variables = state()
    with manager(directory, server.endpoint, **variables) as writer:
        for step in (1, 2):
            fill(variables, step)
            writer.save(step)
    refused = closed_endpoint()
    timed(
        "refused: restore_or_initialize",
        lambda: manager(directory, refused).restore_or_initialize(),
    )
    command("refused: ckptkit ls", refused, "ls", directory)
    with StalledServer() as stalled:
        timed("never answers: restore", lambda: manager(directory, stalled.endpoint).restore())
        command("never answers: ckptkit ls", stalled.endpoint, "ls", directory)
        command(
            "never answers: ckptkit ls --timeout 5 --retries 1",
            stalled.endpoint,
            "ls",
            directory,
            "--timeout",
            "5",
            "--retries",
            "1",
        )
    with Proxy(server.endpoint) as proxy:
        variables = state()
        writer = manager(directory, proxy.endpoint, **variables)
        writer.restore_or_initialize()
        proxy.set("stall")
        fill(variables, 3)
        timed("stalls mid-run: sync save", lambda: writer.save(3))
        proxy.set("forward")
    listed = [c.step for c in manager(directory, server.endpoint).checkpoints]
    print(f"listed afterwards: {listed}", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
