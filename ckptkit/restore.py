"""The restore pipeline: select, verify, match, load; walk back past damage.

One restore picks its checkpoint (a step, a path, the newest or the best), verifies it as
`RestorePolicy.verify` says, matches it against the program (`Backend.compare`) and checks the
assertion before anything is loaded, then loads it. Without a step or a path, a checkpoint that
fails any of this is skipped for the next newest (or next best), with a
`CheckpointSkippedWarning` naming what was skipped and why; `RestoreResult.skipped` says the
same. A reader racing the writer's retention re-reads the state file when a checkpoint vanishes
under it: a checkpoint deleted by retention is not damage.

The pipeline reads the manager's `DirectoryView` and marks damaged checkpoints there; it calls
back for what belongs to the manager (re-reading the directory, recording the restored step).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ckptkit.backends.base import Backend
from ckptkit.config import Assertion, CheckpointConfig
from ckptkit.errors import (
    CheckpointNotFoundError,
    CheckpointSkippedWarning,
    CorruptCheckpointError,
    FormatError,
    first_line,
)
from ckptkit.matching import LeaveOut
from ckptkit.reading.inspection import forget, load_graph, object_paths
from ckptkit.reading.verification import CheckpointVerdict, verify_checkpoint
from ckptkit.status import RestoreReport, RestoreResult, check_assertion
from ckptkit.storage import layout, tiers
from ckptkit.storage.directory_view import DirectoryView
from ckptkit.storage.manifest import read_manifest
from ckptkit.warn import warn

__all__ = ["RestorePipeline", "ranked"]

_NOTHING = LeaveOut()
_MAX_REREADS = 20  # a reader re-reads the state this often per restore when files vanish


class RestorePipeline:
    """Restores the checkpoints of one directory into one backend's objects.

    Args:
        config: The manager's config (directory, restore policy, retention's monitor).
        view: The manager's view of the directory; damaged checkpoints are marked there.
        backend: Compares checkpoints with the program and loads them.
        reread: Re-reads the directory into `view` unless this manager is its writer (whose
            view is current); returns whether it re-read.
        on_restored: Called with the step of each checkpoint loaded (for the save schedule).
    """

    def __init__(
        self,
        config: CheckpointConfig,
        view: DirectoryView,
        backend: Backend,
        *,
        reread: Callable[[], bool],
        on_restored: Callable[[int], None],
    ) -> None:
        self._config = config
        self._directory = config.directory
        self._view = view
        self._backend = backend
        self._reread = reread
        self._on_restored = on_restored

    def run(
        self,
        step: int | None,
        path: str | None,
        best: bool,
        mode: Assertion,
        leave: LeaveOut = _NOTHING,
    ) -> RestoreResult:
        """Restores the checkpoint of `step`, at `path`, the best or the newest intact one.

        The values `leave` names are not loaded (the program keeps its own), and the
        assertion judges what remains.
        """
        if step is not None or path is not None:
            target = self.select(step, path)
            verdict = self._verify(target)
            if verdict is not None and not verdict.ok:
                raise CorruptCheckpointError(
                    f"checkpoint {target} is damaged: {_why(verdict)}; restore another one "
                    "(ckptkit.verify lists which are intact)"
                )
            return self._load(target, mode, leave, verdict, skipped=())
        if not self._view.entries:
            raise self._nothing_to_restore()
        if best and not ranked(self._view, self._config):
            raise CheckpointNotFoundError(
                f"no checkpoint in {self._directory} has a value of "
                f"{self._config.retention.monitor!r} to rank by; pass it to save(metrics=...)"
            )
        return self._walk_back(best, mode, leave)

    def fresh_start(self) -> RestoreResult:
        """Nothing to restore: warns about what interrupted saves left uncommitted, if any."""
        hidden = self._hidden()
        if hidden:
            warn(CheckpointSkippedWarning(f"starting fresh: {self._directory}{hidden}"))
        left = layout.uncommitted(self._directory, self._config.prefix)
        if left and not hidden:
            warn(
                CheckpointSkippedWarning(
                    f"starting fresh: {self._directory} holds no committed checkpoint. "
                    f"{', '.join(os.path.basename(p) for p in left)}: never committed (a "
                    "save interrupted before its state file was written), not restored; "
                    "the first save removes what ckptkit wrote of it"
                )
            )
        return RestoreResult(restored=False)

    def select(self, step: int | None, path: str | None) -> str:
        """The checkpoint of `step`, at `path`, or the newest one.

        Raises:
            CheckpointNotFoundError: No such checkpoint (or none at all).
        """
        if step is not None and path is not None:
            raise TypeError("pass step or path, not both")
        if path is not None:
            return layout.resolve_checkpoint(os.fspath(path))
        if step is not None:
            for candidate, _ in self._view.entries:
                if layout.parse_step(candidate) == step:
                    return candidate
            have = [layout.parse_step(p) for p, _ in self._view.entries]
            raise CheckpointNotFoundError(
                f"no checkpoint for step {step} in {self._directory}; steps available: {have}"
            )
        newest = self._view.newest
        if newest is None:
            raise self._nothing_to_restore()
        return newest

    def _nothing_to_restore(self) -> CheckpointNotFoundError:
        return CheckpointNotFoundError(
            f"no checkpoint to restore in {self._directory}"
            + (self._hidden() or "; use restore_or_initialize() to start fresh when there is none")
        )

    def _hidden(self) -> str:
        """What the state file leaves out of the checkpoints on disk, and how to get it back."""
        found = layout.unlisted(self._directory, (p for p, _ in self._view.entries))
        if not found:
            return ""
        return (
            "; found on disk but not in the state file: "
            + ", ".join(os.path.basename(p) for p in found)
            + ". They are kept: restore one with restore(path=...), and see them with "
            "`ckptkit ls --all`"
        )

    def _walk_back(self, best: bool, mode: Assertion, leave: LeaveOut) -> RestoreResult:
        """Loads the newest (or best) checkpoint that is intact and fits, skipping the others."""
        skipped: list[tuple[str, str]] = []
        tried: set[str] = set()
        rereads = 0
        while True:
            if best:
                order = list(ranked(self._view, self._config))
            else:
                order = [p for p, _ in reversed(self._view.entries)]
            pending = [p for p in order if p not in tried]
            if not pending:
                break
            target = pending[0]
            tried.add(target)
            verdict = self._verify(target)
            problems = _why(verdict)
            if not problems:
                try:
                    result = self._load(target, mode, leave, verdict, skipped=tuple(skipped))
                except (CorruptCheckpointError, CheckpointNotFoundError) as e:
                    problems = first_line(e)
                else:
                    if skipped:
                        warn(
                            CheckpointSkippedWarning(
                                f"restored {target} after skipping damaged checkpoint(s): "
                                + "; ".join(f"{p} ({why})" for p, why in skipped)
                            )
                        )
                    return result
            if rereads < _MAX_REREADS and self._retired(target):
                rereads += 1
                continue  # deleted by the writer's retention while read: not damage
            skipped.append((target, problems))
            self._view.damaged.add(target)
        raise CorruptCheckpointError(
            f"every {'ranked ' if best else ''}checkpoint in {self._directory} is damaged; "
            "nothing was restored: "
            + "; ".join(f"{p} ({why})" for p, why in skipped)
            + self._hidden()
        )

    def _retired(self, target: str) -> bool:
        """Whether `target`, which failed to load, is no longer committed (re-reads the state).

        A reader races the writer's retention: a checkpoint listed when the reader looked can
        be deleted before it is loaded. Only a reader re-reads; a writer's own list is current.
        """
        return self._reread() and not self._view.listed(target)

    def _verify(self, target: str) -> CheckpointVerdict | None:
        """Verifies `target` as `RestorePolicy.verify` says; None when verification is off."""
        level = self._config.restore.verify
        return None if level == "off" else verify_checkpoint(target, full=level == "full")

    def _load(
        self,
        target: str,
        mode: Assertion,
        leave: LeaveOut,
        verdict: CheckpointVerdict | None,
        *,
        skipped: tuple[tuple[str, str], ...],
    ) -> RestoreResult:
        """Matches `target` against the program, checks the assertion, then loads it."""
        backend = self._backend
        report, status = self._match_and_load(target, mode, leave)
        restored_step = layout.parse_step(target)
        if restored_step is not None:
            self._on_restored(restored_step)
        manifest = read_manifest(target) if verdict is None else verdict.manifest
        return RestoreResult(
            restored=True,
            path=target,
            step=restored_step,
            report=report,
            skipped=skipped,
            metadata={} if manifest is None else dict(manifest.metadata),
            metrics={} if manifest is None else dict(manifest.metrics),
            tf_status=status,
            _recheck=lambda: _leaving(target, backend.compare(target, status), leave)[0],
        )

    def _match_and_load(
        self, target: str, mode: Assertion, leave: LeaveOut
    ) -> tuple[RestoreReport, Any]:
        """The match report and TensorFlow's load status of `target`.

        A staged checkpoint read from its local copy is read again from the remote one when
        that fails: a damaged cache is no verdict on the remote copy (which the manifest
        check cannot tell apart when a byte flips and sizes stay).
        """
        try:
            return self._match_and_load_once(target, mode, leave)
        except CorruptCheckpointError:
            if not tiers.evict_copy(target):
                raise
            forget(target)
            return self._match_and_load_once(target, mode, leave)

    def _match_and_load_once(
        self, target: str, mode: Assertion, leave: LeaveOut
    ) -> tuple[RestoreReport, Any]:
        report, nodes = _leaving(target, self._backend.compare(target), leave)
        check_assertion(report, mode)
        return report, self._backend.restore(target, expect_partial=mode != "none", leave_out=nodes)


def _leaving(
    target: str, report: RestoreReport, leave: LeaveOut
) -> tuple[RestoreReport, frozenset[int]]:
    """`report` without what `leave` leaves out, and the object-graph nodes not to load.

    Raises:
        FormatError: `leave` asks for something and `target` has no object graph.
    """
    if not leave:
        return report, frozenset()
    graph = load_graph(target)
    if graph is None:
        raise FormatError(
            f"exclude= and skip_mismatch= need an object-based checkpoint; {target} is "
            "name-based (a tf.compat.v1 Saver's): use a key map that maps what to leave out "
            "to None (ckptkit.migrate)"
        )
    return leave.apply(graph, report, object_paths(graph))


def ranked(view: DirectoryView, config: CheckpointConfig) -> tuple[str, ...]:
    """The checkpoints of `view` with a value of `Retention.monitor`, best first.

    Raises:
        TypeError: The config's `Retention` has no `monitor`.
    """
    direction = config.retention.direction
    if direction is None:
        raise TypeError(
            "ranking checkpoints needs the metric to rank by: set "
            "CheckpointConfig(retention=Retention(monitor='val_loss', ...))"
        )
    return view.ranked(direction)


def _why(verdict: CheckpointVerdict | None) -> str:
    """What verification found wrong ("" when intact or not verified)."""
    return "" if verdict is None else "; ".join(str(p) for p in verdict.problems)
