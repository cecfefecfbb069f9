"""The order in which the workers of a cluster save and restore, so that they act as one.

A save: every worker takes the values together, since the strategy's reads of distributed
variables are collectives that every worker must join; only the chief writes the checkpoint and
commits it (a synchronous save's other workers write to a scratch folder that goes at once; an
async save's write nothing). A restore: the chief picks the checkpoint (walking back past
damaged ones), and every worker loads that one. Each decision goes through `on_chief`, so a
failure of the chief's is raised on every worker and none is left waiting in a collective.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from ckptkit.backends.base import Peers
from ckptkit.commit import CommitPipeline, SaveRequest, write_scratch
from ckptkit.config import Assertion
from ckptkit.distribute.workers import on_chief
from ckptkit.errors import (
    CheckpointNotFoundError,
    CkptkitError,
    CorruptCheckpointError,
)
from ckptkit.matching import LeaveOut
from ckptkit.restore import RestorePipeline
from ckptkit.status import RestoreResult

__all__ = ["ClusterSaves", "restore_together"]


class ClusterSaves:
    """The saves of one worker of a cluster, each taken at the same point by every worker.

    A save is two agreements: that the chief may save (lock, no committed checkpoint of the
    step), then whether its save committed. A synchronous save makes them before and after the
    writes: every worker writes (the strategy's reads are collectives), the chief into the
    directory, the others into a scratch folder that goes at once. An async save makes the
    first, then every worker takes the values (`Backend.snapshot`: the strategy's reads,
    collectives included, happen there, on the caller's thread) and training goes on; the chief
    writes and commits in the background, alone, since the other workers' copies would be
    thrown away. The second agreement waits for the next save (which makes it together with
    its own first), `wait`, `close`, a preemption save or a rollback (`settle`): there every
    worker learns whether that commit happened, and raises the same error class when it did
    not, so no worker trains on alone. Until then the other workers list the checkpoints as of
    the last agreement.

    Args:
        cluster: This worker's cluster.
        pipeline: The manager's save pipeline (the chief's commits).
        reread: Re-reads the directory: the other workers list what the chief committed.
    """

    def __init__(
        self, cluster: Peers, pipeline: CommitPipeline, *, reread: Callable[[], None]
    ) -> None:
        self._cluster = cluster
        self._pipeline = pipeline
        self._reread = reread
        self.unsettled: str | None = None  # the async save not yet agreed on

    def settle(self, timeout: float | None = None) -> None:
        """Every worker learns whether the chief committed the async save in flight.

        Args:
            timeout: How long the chief waits for it (`CommitPipeline.wait`).

        Raises:
            SaveError: It failed, or did not finish in `timeout` (on the other workers, the
                same class, saying that the chief failed); `DiskFullError` when out of space.
            DirectoryLockedError: Another writer took the directory meanwhile.
            WorkerLostError: A worker stopped answering.
        """
        settling = self._settling(timeout)
        self._agree(settling)
        self._catch_up(settling)

    def _settling(self, timeout: float | None) -> list[tuple[str, Callable[[], object]]]:
        """The chief's part of `settle`, as a step of `_agree` (none when nothing is in flight)."""
        path, self.unsettled = self.unsettled, None
        if path is None:
            return []
        return [(f"commit {path}", lambda: self._pipeline.wait(timeout))]

    def _catch_up(self, settled: list[tuple[str, Callable[[], object]]]) -> None:
        """After an agreement that `settled` a commit: the other workers list what it listed."""
        if settled and not self._cluster.is_chief:
            self._reread()

    def _agree(self, steps: list[tuple[str, Callable[[], object]]]) -> None:
        """Runs `steps` (what each does, and how) on the chief, in one agreement (all-reduce)."""
        if not steps:
            return

        def chief() -> tuple[None, int]:
            for _, step in steps:
                step()
            return None, 0

        doing = ", then ".join(what for what, _ in steps)
        on_chief(self._cluster, chief, lambda: None, doing=doing)

    def save(
        self, request: SaveRequest, *, snapshot: Callable[[], Callable[[str], str]] | None
    ) -> None:
        """Saves `request` on every worker; the chief commits it.

        Args:
            request: The save, with the backend's `write`.
            snapshot: For an async save, the backend's `snapshot`; None saves now.

        Raises:
            CkptkitError: As `CommitPipeline.admit` and `run` raise (on the other workers, the
                same class); first, the error of the async save before (`settle`).
        """
        cluster, pipeline, path = self._cluster, self._pipeline, request.path
        doing = f"save {path}"
        # One agreement: the save before committed, and the chief may save this one.
        settling = self._settling(None)
        self._agree([*settling, (doing, lambda: pipeline.admit(path, request.step))])
        if snapshot is not None:
            self._catch_up(settling)
            with cluster.answering(doing):
                taken = replace(request, write=snapshot())
            if cluster.is_chief:
                pipeline.start(taken)
            self.unsettled = path
            return
        # TensorFlow cannot write a staged directory: there the scratch is in the local tier.
        scratch = os.path.join(pipeline.tier.workspace(), f".workertemp-{cluster.task_id}")
        on_chief(
            cluster,
            lambda: (pipeline.run(request), 0),
            lambda: write_scratch(request, scratch),
            doing=doing,
        )
        if not cluster.is_chief:
            self._reread()  # the chief has committed: list what it lists


def restore_together(
    cluster: Peers,
    restorer: RestorePipeline,
    step: int | None,
    path: str | None,
    best: bool,
    mode: Assertion,
    leave: LeaveOut,
    *,
    reread: Callable[[], None],
    start: Callable[[], RestoreResult | None] | None = None,
) -> RestoreResult:
    """The chief picks the checkpoint (walking back past damaged ones); every worker loads it.

    Args:
        cluster: This worker's cluster.
        restorer: The manager's restore pipeline.
        step: As for `CheckpointManager.restore`.
        path: Likewise; every worker restores the path it was given.
        best: Likewise.
        mode: The assertion to check.
        leave: What to leave out (`RestorePipeline.run`).
        reread: Re-reads the directory (the other workers look for the chief's choice).
        start: For `restore_or_initialize`, run first on the chief: a fresh start (for every
            worker) when the directory is empty, else None.

    Raises:
        CorruptCheckpointError: Another worker could not restore what this one did.
    """

    def chief() -> tuple[RestoreResult, int]:
        if start is not None:
            fresh = start()
            if fresh is not None:
                return fresh, 0
        result = restorer.run(step, path, best, mode, leave)
        if path is not None:
            return result, 1  # every worker restores the path it was given
        if result.step is None:
            raise CheckpointNotFoundError(
                f"{result.path} has no step in its name, and the other workers find the "
                "chief's checkpoint by its step; restore it with path= on every worker"
            )
        return result, result.step + 1

    result, chosen = on_chief(cluster, chief, lambda: None, doing="restore")
    if chosen == 0:
        return RestoreResult(restored=False)  # a fresh start, on every worker
    error: CkptkitError | None = None
    if not cluster.is_chief:
        try:
            if step is None and path is None:
                reread()
                step = chosen - 1
            result = restorer.run(step, path, False, mode, leave)
        except CkptkitError as e:
            error = e
    with cluster.answering("restore"):
        failed = cluster.count(error is not None)
    if error is not None:
        raise error
    assert result is not None
    if failed:
        raise CorruptCheckpointError(
            f"{failed} other worker(s) could not restore {result.path}, which this worker "
            f"({cluster.task}) restored; their output says why. Check that every worker "
            "sees the same directory"
        )
    return result
