"""Worker processes forked from one that has imported TensorFlow, Keras and ckptkit already.

The slow tests start about a hundred worker processes; a fresh interpreter pays seconds of
TensorFlow import for each. `ForkedWorker` forks them from a multiprocessing fork server
instead: each is still a process of its own, killed for real, that runs its script as
``__main__`` with its own arguments and environment. The tests of a fresh interpreter's own
start and exit (`test_examples`, `test_async`'s exit test, `test_cli`) start real ones.
"""

from __future__ import annotations

import atexit
import io
import multiprocessing
import os
import runpy
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

WORKERS = Path(__file__).with_name("workers")

# A process that imports TensorFlow and ckptkit once and forks every `ForkedWorker`. Its first
# TensorFlow op runs after the fork, so no runtime state is shared (numpy's thread pool, the
# only other thread there, is fork-safe).
_FORKSERVER = multiprocessing.get_context("forkserver")
_FORKSERVER.set_forkserver_preload(["tensorflow", "keras", "ckptkit.manager", "ckptkit.keras"])


class ForkedWorker:
    """``python tests/workers/<script> ARGS`` in a process forked from one that imported TensorFlow.

    A worker that starts in a fraction of a second instead of the seconds of a TensorFlow
    import. It is still a process of its own, killed for real, that runs the script as
    ``__main__`` and its exit hooks as an interpreter exit would. Used as a `subprocess.Popen`
    with ``text=True, stdout=PIPE, stderr=PIPE`` is (`stderr` is read when it ends).

    Args:
        script: The file name in ``tests/workers``.
        *args: Its command-line arguments.
        env: Variables set in the worker's environment on top of this process's (as it is
            now: the fork server's was copied when it started).
    """

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        out_r, out_w = _FORKSERVER.Pipe(duplex=False)
        err_r, err_w = _FORKSERVER.Pipe(duplex=False)
        self._process = _FORKSERVER.Process(
            target=_run_forked,
            args=(str(WORKERS / script), args, {**os.environ, **(env or {})}, out_w, err_w),
        )
        self._process.start()
        self.pid = self._process.pid
        out_w.close()
        err_w.close()
        self.stdout = _text(out_r)
        self._err: list[str] = []
        self._drain = threading.Thread(target=_read_all, args=(_text(err_r), self._err))
        self._drain.start()

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait(self) -> int | None:
        self._process.join()
        return self._process.exitcode

    def kill(self) -> None:
        if self._process.exitcode is None:
            self._process.kill()

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Its remaining stdout and its stderr once it has ended; kills it at the timeout."""
        out: list[str] = []
        if not self.stdout.closed:  # else read by an earlier call
            reader = threading.Thread(target=_read_all, args=(self.stdout, out))
            reader.start()
            reader.join(timeout)
            if reader.is_alive():
                self.kill()
                reader.join()
                raise subprocess.TimeoutExpired(str(WORKERS), timeout or 0.0)
        self._process.join()
        self._drain.join()
        return "".join(out), self._err[0]

    def __enter__(self) -> ForkedWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stdout.close()
        self._process.join()
        self._drain.join()


def _read_all(stream: io.TextIOWrapper, into: list[str]) -> None:
    with stream:
        into.append(stream.read())


def _text(connection: Any) -> io.TextIOWrapper:
    """A text stream over the read end of a pipe, which it then owns."""
    stream = open(os.dup(connection.fileno()), encoding="utf-8")  # noqa: SIM115
    connection.close()
    return stream


def _run_forked(
    path: str, args: tuple[str, ...], env: dict[str, str], stdout: Any, stderr: Any
) -> None:
    """In the forked worker: stdout and stderr on the pipes, the script as ``__main__``."""
    for stream, fd in ((stdout, 1), (stderr, 2)):
        os.dup2(stream.fileno(), fd)
        stream.close()
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    finally:
        atexit._run_exitfuncs()  # what the interpreter runs at exit; the fork ends in os._exit
