"""What a restore found, and the assertion modes applied to it, with a report a person can read.

`RestoreReport` is produced before anything is loaded (see `matching.match`), so an assertion
that fails leaves the program's variables untouched.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast, get_args

from ckptkit.config import Assertion
from ckptkit.errors import RestoreMismatchError, ShapeMismatchError

__all__ = ["Mismatch", "RestoreReport", "RestoreResult", "assertion_mode", "check_assertion"]

_MODES: tuple[str, ...] = get_args(Assertion)


def assertion_mode(value: object, *, default: Assertion | None = None) -> Assertion:
    """`value` as an assertion mode (None: `default`), before anything is read or loaded.

    Raises:
        ValueError: `value` is not one of the modes (a misspelling would run no check at all);
            the message names the modes and the nearest one.
    """
    if value is None and default is not None:
        return default
    if value not in _MODES:
        near = difflib.get_close_matches(str(value), _MODES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(
            f"assertion={value!r} is not an assertion mode{hint}; use one of "
            f"{', '.join(repr(m) for m in _MODES)}"
        )
    return cast(Assertion, value)


_LIST_LIMIT = 20


@dataclass(frozen=True)
class Mismatch:
    """One variable whose shape or dtype differs between checkpoint and program.

    Attributes:
        name: The checkpoint entry (object path, and the variable's own name when it differs).
        checkpoint_shape: Shape stored in the checkpoint.
        checkpoint_dtype: Dtype stored in the checkpoint, e.g. ``"float32"``.
        program_shape: Shape of the program's variable.
        program_dtype: Dtype of the program's variable.
    """

    name: str
    checkpoint_shape: tuple[int, ...]
    checkpoint_dtype: str
    program_shape: tuple[int, ...]
    program_dtype: str

    def __str__(self) -> str:
        return (
            f"{self.name}: checkpoint has "
            f"{spec_text(self.checkpoint_dtype, self.checkpoint_shape)}, program has "
            f"{spec_text(self.program_dtype, self.program_shape)}"
        )


def spec_text(dtype: str, shape: tuple[int, ...]) -> str:
    """``float32[8, 3]``: a value's dtype and shape as reports print them."""
    return f"{dtype}[{', '.join(map(str, shape))}]"


@dataclass(frozen=True)
class RestoreReport:
    """How a checkpoint's values line up with a program's objects.

    Attributes:
        checkpoint: Path of the checkpoint compared.
        matched: Checkpoint entries that have a program object to go to.
        unused_checkpoint_values: Checkpoint entries no program object takes.
        deferred_checkpoint_values: Checkpoint entries waiting for objects not created yet
            (an unbuilt Keras model's or optimizer's variables): TensorFlow loads them when
            those are created. Check with `RestoreResult.assert_restored` then.
        unrestored_objects: Program variables with no value in the checkpoint.
        mismatches: Matched variables whose shape or dtype differ.
        left_out: Checkpoint entries left out on purpose: by a key map (name-based restores),
            or by `restore(exclude=..., skip_mismatch=True)`, each with the reason.
    """

    checkpoint: str
    matched: tuple[str, ...] = ()
    unused_checkpoint_values: tuple[str, ...] = ()
    deferred_checkpoint_values: tuple[str, ...] = ()
    unrestored_objects: tuple[str, ...] = ()
    mismatches: tuple[Mismatch, ...] = ()
    left_out: tuple[str, ...] = ()

    def failures(self, assertion: Assertion) -> list[str]:
        """What `assertion` objects to, one line per kind of problem; empty when it passes."""
        problems = []
        if self.mismatches:
            problems.append(f"{len(self.mismatches)} shape/dtype mismatch(es)")
        if assertion in ("consumed", "existing_objects_matched") and self.unrestored_objects:
            problems.append(f"{len(self.unrestored_objects)} program variable(s) not restored")
        if assertion == "consumed" and self.unused_checkpoint_values:
            problems.append(f"{len(self.unused_checkpoint_values)} checkpoint value(s) unused")
        if assertion == "consumed" and self.deferred_checkpoint_values:
            problems.append(
                f"{len(self.deferred_checkpoint_values)} checkpoint value(s) deferred until "
                "their objects are created"
            )
        if assertion == "nontrivial_match" and not self.matched:
            problems.append("no program variable matched any checkpoint value")
        return problems

    def format(self, *, verbose: bool = False) -> str:
        """A readable multi-line account of the comparison.

        Args:
            verbose: Also list the matched entries (for a key map: ``key -> variable``).
        """
        lines = [f"checkpoint {self.checkpoint}: {len(self.matched)} value(s) matched"]
        sections: list[tuple[str, tuple[Any, ...]]] = [
            ("value(s) matched", self.matched if verbose else ()),
            ("shape/dtype mismatch(es)", self.mismatches),
            ("program variable(s) not restored", self.unrestored_objects),
            ("checkpoint value(s) no program object takes", self.unused_checkpoint_values),
            (
                "checkpoint value(s) deferred: loaded when their objects are created",
                self.deferred_checkpoint_values,
            ),
            ("checkpoint value(s) left out on purpose", self.left_out),
        ]
        for title, items in sections:
            if not items:
                continue
            lines.append(f"{len(items)} {title}:")
            lines.extend(f"  - {item}" for item in items[:_LIST_LIMIT])
            if len(items) > _LIST_LIMIT:
                lines.append(f"  ... and {len(items) - _LIST_LIMIT} more (see the error's .report)")
        return "\n".join(lines)


def check_assertion(
    report: RestoreReport, assertion: Assertion, *, loaded: bool = False, by_name: bool = False
) -> None:
    """Raises when `report` does not satisfy `assertion`.

    Args:
        report: The comparison to judge.
        assertion: The mode to apply.
        loaded: Whether the values were loaded already (a check after restoring), which
            changes only the advice in the message.
        by_name: The values were matched through a key map (advice on the key map).

    Raises:
        ValueError: `assertion` is not an assertion mode.
        ShapeMismatchError: Some matched variable differs in shape or dtype (every mode).
        RestoreMismatchError: The assertion's other conditions do not hold.
    """
    problems = report.failures(assertion_mode(assertion))
    if not problems:
        return
    error = ShapeMismatchError if report.mismatches else RestoreMismatchError
    if loaded:
        hint = (
            "The matching values were loaded. Build models before restoring when a variable is "
            "reported as replaced, so the values go straight into the variables in use."
        )
    elif report.mismatches:
        hint = "Fix the program (or the checkpoint) so the shapes agree; nothing was loaded."
    elif by_name:
        hint = (
            "Nothing was loaded. Extend the key map so each listed value names a variable (or "
            "maps to None to be left out), or use assertion='partial' to load what matched."
        )
    else:
        hint = (
            "Nothing was loaded. Build the model (and its optimizer) before restoring, or "
            "use assertion='existing_objects_matched' for objects created later (deferred "
            "restore) and check with result.assert_restored() once they exist; "
            "assertion='partial' loads a subset on purpose."
        )
    raise error(
        f"restore check {assertion!r} failed: {'; '.join(problems)}.\n{report.format()}\n{hint}",
        report=report,
        assertion=assertion,
    )


@dataclass(frozen=True)
class RestoreResult:
    """The outcome of `CheckpointManager.restore` or `restore_or_initialize`.

    Attributes:
        restored: Whether a checkpoint was loaded (False: the program starts fresh).
        path: The checkpoint loaded, or None.
        step: The step of the checkpoint loaded, or None.
        report: The comparison made before loading, or None when nothing was loaded.
        skipped: Damaged checkpoints passed over for this one, as ``(path, why)``.
        metadata: The `metadata` given to `save` for this checkpoint (from its manifest).
        metrics: The `metrics` given to `save` for this checkpoint (from its manifest).
        tf_status: TensorFlow's own load status (for graph-mode `run_restore_ops`).

    Example:
        >>> RestoreResult(restored=False).step is None
        True
    """

    restored: bool
    path: str | None = None
    step: int | None = None
    report: RestoreReport | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    tf_status: Any = field(default=None, repr=False, compare=False)
    _recheck: Callable[[], RestoreReport] | None = field(default=None, repr=False, compare=False)

    def assert_restored(self, assertion: Assertion = "consumed") -> RestoreReport:
        """Compares the checkpoint with the program as it is now, and applies `assertion`.

        Use it after a deferred restore: restore with ``existing_objects_matched`` before a Keras
        model is built, build it (TensorFlow fills in the pending values as the variables are
        created), then call ``result.assert_restored("consumed")``.

        Returns:
            The fresh report.

        Raises:
            ValueError: `assertion` is not an assertion mode.
            RestoreMismatchError: The program and checkpoint do not match as required.
        """
        assertion = assertion_mode(assertion)
        if self._recheck is None:
            raise RestoreMismatchError(
                "nothing was restored, so there is nothing to check; "
                "test `result.restored` before asserting",
                report=RestoreReport(checkpoint=""),
                assertion=assertion,
            )
        report = self._recheck()
        check_assertion(report, assertion, loaded=True)
        return report
