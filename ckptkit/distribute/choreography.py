"""The order in which the workers of a cluster save and restore, so that they act as one.

A save: every worker writes, since the strategy's reads of distributed variables are
collectives that every worker must join; only the chief commits, the others write to a scratch
folder that goes at once. A restore: the chief picks the checkpoint (walking back past damaged
ones), and every worker loads that one. Each decision goes through `on_chief`, so a failure of
the chief's is raised on every worker and none is left waiting in a collective.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ckptkit.backends.base import Backend, Peers
from ckptkit.commit import CommitPipeline, SaveRequest, write_scratch
from ckptkit.config import Assertion, CheckpointConfig
from ckptkit.distribute.workers import on_chief
from ckptkit.errors import (
    CheckpointNotFoundError,
    CkptkitError,
    CorruptCheckpointError,
    TrackableError,
)
from ckptkit.matching import LeaveOut
from ckptkit.restore import RestorePipeline
from ckptkit.status import RestoreResult

__all__ = ["NO_ASYNC", "cluster_of", "restore_together", "save_together"]

NO_ASYNC = (
    "async saves are not supported under a multi-worker strategy: every worker must read the "
    "variables for the same save at the same point of training (the strategy's reads are "
    "collectives), which a background save cannot promise; set async_save=False"
)


def cluster_of(backend: Backend, config: CheckpointConfig) -> Peers | None:
    """The backend's cluster, with what cannot work across workers refused up front.

    Raises:
        TrackableError: `async_save` on several workers.
    """
    cluster = backend.cluster
    if cluster is not None and cluster.multi_worker and config.async_save:
        raise TrackableError(NO_ASYNC)
    return cluster


def save_together(
    cluster: Peers, request: SaveRequest, pipeline: CommitPipeline, *, reread: Callable[[], None]
) -> None:
    """Every worker writes `request`; the chief commits it.

    Two agreements: that the chief may save (lock, no committed checkpoint of the step), then
    whether its save committed.

    Args:
        cluster: This worker's cluster.
        request: The save, with the backend's `write`.
        pipeline: The manager's save pipeline (the chief's commits).
        reread: Re-reads the directory: the other workers list what the chief committed.
    """
    path, doing = request.path, f"save {request.path}"

    def admit() -> tuple[None, int]:
        pipeline.admit(path, request.step)
        return None, 0

    on_chief(cluster, admit, lambda: None, doing=doing)
    # TensorFlow cannot write a staged directory: there the scratch is in the local tier.
    scratch = os.path.join(pipeline.tier.workspace(), f".workertemp-{cluster.task_id}")
    on_chief(
        cluster,
        lambda: (pipeline.run(request), 0),
        lambda: write_scratch(request, scratch),
        doing=doing,
    )
    if not cluster.is_chief:
        reread()  # the chief has committed: list what it lists


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
