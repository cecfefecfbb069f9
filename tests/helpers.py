"""Helpers shared by test modules (import them from here, not from conftest)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from forked import ForkedWorker

from ckptkit.cli import main

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the ``ckptkit`` command in this process: its exit status, stdout and stderr.

    The same `main` that ``python -m ckptkit`` runs (`test_cli` runs one real process too),
    without paying for a new interpreter and TensorFlow import per call.
    """
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with (
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("always")  # printed to stderr, as in a process of its own
            warnings.showwarning = _print_warning
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse's usage errors
                code = e.code if isinstance(e.code, int) else 2
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(["ckptkit", *args], code, out.getvalue(), err.getvalue())


def _print_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def worker_outcome(script: str, *args: str, timeout: float = 300) -> dict[str, Any]:
    """Runs ``tests/workers/<script>`` to completion; returns the JSON object it printed last."""
    worker = ForkedWorker(script, *args)
    out, err = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, f"{script} exited with {worker.returncode}: {err[-2000:]}"
    outcome: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return outcome


def free_cluster(**jobs: int) -> dict[str, list[str]]:
    """A cluster spec with that many tasks per job, on 127.0.0.1 ports free now."""
    cluster: dict[str, list[str]] = {}
    for job, tasks in jobs.items():
        for _ in range(tasks):
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                cluster.setdefault(job, []).append(f"127.0.0.1:{probe.getsockname()[1]}")
    return cluster


def start_task(
    cluster: dict[str, list[str]], job: str, index: int, script: str, *args: str
) -> ForkedWorker:
    """Starts ``tests/workers/<script>`` as task `index` of `job`, its `TF_CONFIG` saying so."""
    task = {"cluster": cluster, "task": {"type": job, "index": index}}
    return ForkedWorker(script, *args, env={"TF_CONFIG": json.dumps(task)})


def start_cluster(script: str, *args: str, workers: int = 2) -> list[ForkedWorker]:
    """Starts ``tests/workers/<script>`` as each worker of a cluster on 127.0.0.1 ports."""
    cluster = free_cluster(worker=workers)
    return [start_task(cluster, "worker", i, script, *args) for i in range(workers)]


def finish_cluster(processes: list[ForkedWorker], timeout: float = 180) -> list[Any]:
    """Waits for every worker; returns each one's exit code and JSON lines, in worker order.

    A worker still running at the timeout is killed, with the others, and the test fails.
    """
    outcomes = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
            outcomes.append((process.returncode, lines, err))
    finally:
        for process in processes:
            process.kill()
            process.communicate()
    return outcomes


def state() -> dict[str, tf.Variable]:
    """Two small variables to checkpoint."""
    return {"a": tf.Variable(tf.zeros((64,))), "b": tf.Variable(tf.zeros((8, 8)))}


def fill(variables: dict[str, tf.Variable], step: int) -> None:
    """Sets every element of every variable to `step`."""
    for v in variables.values():
        v.assign(tf.fill(v.shape, float(step)))


def equal_to(variables: dict[str, tf.Variable], step: int) -> bool:
    """Whether every element of every variable is `step` (one step's values, not a mix)."""
    return all(bool(tf.reduce_all(v == float(step))) for v in variables.values())


def make_model(units: int = 4, *, extra_layer: bool = False, build: bool = True) -> keras.Model:
    """A small Sequential model; deterministic weights from a fixed seed."""
    keras.utils.set_random_seed(0)
    layers = [keras.layers.Dense(units, name="l1"), keras.layers.Dense(2, name="l2")]
    if extra_layer:
        layers.append(keras.layers.Dense(2, name="l3"))
    model = keras.Sequential(layers)
    if build:
        model(tf.ones((1, 3)))
    return model


class Interrupt(keras.callbacks.Callback):
    """Stops fit with an exception after `after` batches, as a crash would."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.seen = after, 0

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.seen += 1
        if self.seen == self.after:
            raise KeyboardInterrupt


class Net(tf.Module):
    """The TF guide's kind of module: named sub-modules holding variables."""

    def __init__(self, units: int = 5) -> None:
        super().__init__()
        self.l1 = Dense(3, units)
        self.l2 = Dense(units, 1)


class Dense(tf.Module):
    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.kernel = tf.Variable(tf.fill((n_in, n_out), 0.5), name="kernel")
        self.bias = tf.Variable(tf.zeros((n_out,)), name="bias")


class S3Server:
    """A real S3 endpoint: moto's server mode on a free 127.0.0.1 port, stoppable and restartable.

    The objects live in this process's moto backend, so they outlast a stop: a restart on
    the same port is a network outage that ends, not a new server.
    """

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._buckets = 0

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()

    def bucket(self) -> str:
        """A new, empty bucket's name."""
        import boto3

        self._buckets += 1
        name = f"bucket-{self._buckets}"
        boto3.client("s3", endpoint_url=self.endpoint).create_bucket(Bucket=name)
        return name

    def client(self) -> Any:
        """An s3fs filesystem of its own, to look at and damage objects as another program."""
        import s3fs

        return s3fs.S3FileSystem(endpoint_url=self.endpoint, skip_instance_cache=True)
