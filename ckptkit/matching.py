"""Lines a program up with a checkpoint, the way TensorFlow will, without loading.

Object-based checkpoints (`match`): TensorFlow matches objects by walking both graphs from the
root in step, pairing children with the same local name (``model`` -> ``layer`` -> ``kernel``);
an object reached twice is matched once. Doing the same walk here, over plain data, gives a
complete report (every unused value, every unrestored variable, every shape mismatch, by name)
before a single tensor is read.

Name-based checkpoints (`match_names`): values are keyed by variable name
(``dnn/logits/kernel``); a key map renames them first, then each is looked up among the
program's variables.

This module has no TensorFlow: the checkpoint side arrives as `CheckpointGraph`, the program side
as two callables supplied by the backend.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import NamedTuple

from ckptkit.errors import KeyMapError
from ckptkit.keymap import Rename
from ckptkit.status import Mismatch, RestoreReport, spec_text

__all__ = [
    "CheckpointGraph",
    "CheckpointNode",
    "LeaveOut",
    "NameMatch",
    "NamedValue",
    "ValueSpec",
    "match",
    "match_names",
    "walk_paths",
]

# Bookkeeping that tf.train.Checkpoint adds to its root; neither side is judged on it.
IGNORED_ROOT_CHILDREN = frozenset({"save_counter"})


class ValueSpec(NamedTuple):
    """What a saved or live object holds: a variable (shape, dtype) or other state (both None)."""

    shape: tuple[int, ...] | None
    dtype: str | None


class CheckpointNode(NamedTuple):
    """One object of a checkpoint's object graph.

    Attributes:
        path: Its path from the root as its checkpoint key spells it, e.g. ``model/l1/kernel``
            (``""`` for the root and for nodes that hold no values).
        children: ``(local_name, node_id)`` edges.
        value: What it stores, or None for an object that only holds children.
        full_name: The variable's own name when saved, e.g. ``sequential/l1/kernel``.
        slots: ``(original variable node id, slot node id)`` of optimizer slot variables
            hanging off this node.
    """

    path: str
    children: tuple[tuple[str, int], ...]
    value: ValueSpec | None = None
    full_name: str = ""
    slots: tuple[tuple[int, int], ...] = ()

    @property
    def display_name(self) -> str:
        """The path, followed by the variable's own name when that says something more."""
        if self.full_name and self.full_name != self.path:
            return f"{self.path} ({self.full_name})"
        return self.path


@dataclass(frozen=True)
class CheckpointGraph:
    """A checkpoint's object graph; node 0 is the root."""

    path: str
    nodes: Sequence[CheckpointNode]


ChildrenFn = Callable[[object], Mapping[str, object]]
DescribeFn = Callable[[object], "ValueSpec | None"]
NameFn = Callable[[object], str]
WaitingFn = Callable[[object], bool]


def match(
    graph: CheckpointGraph,
    root: object,
    *,
    children: ChildrenFn,
    describe: DescribeFn,
    name_of: NameFn,
    waiting: WaitingFn = lambda obj: False,
    restored_into: Mapping[int, object] | None = None,
) -> RestoreReport:
    """Compares `graph` with the program reachable from `root`.

    A checkpoint value with no program object is deferred when the nearest program object
    on its path is `waiting` (will create its children later, as an unbuilt Keras layer
    does: TensorFlow hands the value over then), else unused.

    Args:
        graph: The checkpoint side.
        root: The program's root object (a `tf.train.Checkpoint`, a module, ...).
        children: Returns an object's named children.
        describe: Returns what an object holds, or None when it holds no state of its own.
        name_of: An object's own name (e.g. a variable's), for the report.
        waiting: Whether an object has yet to create its children (variables).
        restored_into: After a restore, the object each checkpoint node's value was actually
            loaded into. A program object that is not that object (the program replaced the
            variable after the value arrived) counts as not restored.

    Returns:
        The report; nothing is read from or written to either side.
    """
    program = _walk_program(root, children)
    kids_of = {id(entry.obj): entry.kids for entry in program}
    matched: dict[int, object] = {0: root}
    # The nearest matched node on the path to each unmatched node, where TensorFlow parks the
    # value until the object is created.
    parked: dict[int, int] = {}
    queue = deque([0])
    while queue:
        node_id = queue.popleft()
        kids = kids_of.get(id(matched[node_id]), {}) if node_id in matched else {}
        for name, child_id in graph.nodes[node_id].children:
            if child_id in matched or (node_id == 0 and name in IGNORED_ROOT_CHILDREN):
                continue
            child = kids.get(name)
            if child is not None:  # also when parked first: any matched path counts
                parked.pop(child_id, None)
                matched[child_id] = child
                queue.append(child_id)
            elif child_id not in parked:
                parked[child_id] = parked.get(node_id, node_id)
                queue.append(child_id)
    _match_slots(graph, matched)

    taken = {id(obj) for obj in matched.values()}
    ignored = {cid for name, cid in graph.nodes[0].children if name in IGNORED_ROOT_CHILDREN}
    matched_names: list[str] = []
    unused: list[str] = []
    deferred: list[str] = []
    lost: list[str] = []  # loaded into an object the program no longer holds
    mismatches: list[Mismatch] = []
    for node_id, node in enumerate(graph.nodes):
        if node.value is None or node_id in ignored:
            continue
        obj = matched.get(node_id)
        if obj is None:
            owner = matched.get(parked.get(node_id, -1))
            (deferred if owner is not None and waiting(owner) else unused).append(node.display_name)
            continue
        target = restored_into.get(node_id) if restored_into is not None else None
        if target is not None and target is not obj and obj is not _SLOT:
            lost.append(node.display_name)
            continue
        live = describe(obj) if obj is not _SLOT and node.value.shape is not None else None
        mismatch = None if live is None else _mismatch(node, live)
        if mismatch is not None:
            mismatches.append(mismatch)
        else:
            matched_names.append(node.display_name)
    unrestored = [
        _program_name(_path(program, index), name_of(entry.obj))
        for index, entry in enumerate(program)
        if id(entry.obj) not in taken and describe(entry.obj) is not None
    ]
    unrestored.extend(
        f"{name}: its value went to a variable the program replaced afterwards" for name in lost
    )
    return RestoreReport(
        checkpoint=graph.path,
        matched=tuple(matched_names),
        unused_checkpoint_values=tuple(unused),
        deferred_checkpoint_values=tuple(deferred),
        unrestored_objects=tuple(unrestored),
        mismatches=tuple(mismatches),
    )


_SLOT = object()  # Stands in for an optimizer slot variable; TensorFlow creates them on restore.


@dataclass(frozen=True)
class LeaveOut:
    """Checkpoint values a restore leaves out on purpose; the program keeps its own values.

    Attributes:
        skip_mismatch: Leave out every value whose shape or dtype differs from its program
            variable's (fine-tuning into a changed head), instead of refusing the restore.
        exclude: Glob patterns (``fnmatch``, case-sensitive; ``*`` also crosses ``/``) over a
            value's names: its checkpoint path (``model/head/kernel``), the variable's own
            name (``sequential/head/kernel``) and every object path that reaches it.
    """

    skip_mismatch: bool = False
    exclude: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.skip_mismatch or bool(self.exclude)

    def apply(
        self, graph: CheckpointGraph, report: RestoreReport, routes: Mapping[int, Sequence[str]]
    ) -> tuple[RestoreReport, frozenset[int]]:
        """The report without the values left out, and their node ids (not to be loaded).

        Args:
            graph: The checkpoint's object graph.
            report: `match`'s report of `graph` against the program.
            routes: Each node's object paths (`inspection.object_paths`).

        Returns:
            The report with each value left out moved to `RestoreReport.left_out` (named, with
            the reason), so that the assertion judges what remains; and the nodes to skip.
        """
        why: dict[int, str] = {}
        for node_id, node in enumerate(graph.nodes):
            if node.value is None or not self.exclude:
                continue
            names = [node.path, node.full_name, *routes.get(node_id, ())]
            for pattern in self.exclude:
                if any(name and fnmatchcase(name, pattern) for name in names):
                    why[node_id] = f"excluded by {pattern!r}"
                    break
        node_of = {node.display_name: i for i, node in enumerate(graph.nodes) if node.value}
        kept: list[Mismatch] = []
        for mismatch in report.mismatches:
            found = node_of.get(mismatch.name)
            if found is not None and found in why:
                continue  # excluded already
            if found is not None and self.skip_mismatch:
                why[found] = (
                    f"skip_mismatch: checkpoint has "
                    f"{spec_text(mismatch.checkpoint_dtype, mismatch.checkpoint_shape)}, the "
                    f"program keeps its {spec_text(mismatch.program_dtype, mismatch.program_shape)}"
                )
                continue
            kept.append(mismatch)
        gone = {graph.nodes[i].display_name for i in why}
        left = tuple(f"{graph.nodes[i].display_name}: {why[i]}" for i in sorted(why))
        return (
            replace(
                report,
                matched=tuple(n for n in report.matched if n not in gone),
                unused_checkpoint_values=tuple(
                    n for n in report.unused_checkpoint_values if n not in gone
                ),
                deferred_checkpoint_values=tuple(
                    n for n in report.deferred_checkpoint_values if n not in gone
                ),
                mismatches=tuple(kept),
                left_out=report.left_out + left,
            ),
            frozenset(why),
        )


def _match_slots(graph: CheckpointGraph, matched: dict[int, object]) -> None:
    # Legacy optimizers keep slots outside the children edges; TensorFlow creates (or defers) the
    # slot when both the optimizer and the original variable are matched.
    for node_id, node in enumerate(graph.nodes):
        if node_id not in matched:
            continue
        for original_id, slot_id in node.slots:
            if original_id in matched:
                matched.setdefault(slot_id, _SLOT)


class _Visit(NamedTuple):
    obj: object
    parent: int  # index of the parent visit; -1 for the root
    name: str
    kids: Mapping[str, object]


def _walk_program(root: object, children: ChildrenFn) -> list[_Visit]:
    """Breadth-first walk: each object once, reached by its first path.

    Paths are not built here (most are never shown); `_path` builds one on demand.
    """
    seen = {id(root)}
    out: list[_Visit] = []
    queue: deque[tuple[object, int, str]] = deque([(root, -1, "")])
    while queue:
        obj, parent, name = queue.popleft()
        kids = children(obj)
        index = len(out)
        out.append(_Visit(obj, parent, name, kids))
        for child_name, child in kids.items():
            if id(child) in seen or (obj is root and child_name in IGNORED_ROOT_CHILDREN):
                continue
            seen.add(id(child))
            queue.append((child, index, child_name))
    return out


def walk_paths(root: object, children: ChildrenFn) -> list[tuple[str, object]]:
    """Every object reachable from `root` (itself left out) with its first breadth-first path.

    The paths are those TensorFlow writes in a checkpoint (``model/layer/kernel``).
    """
    visits = _walk_program(root, children)
    return [(_path(visits, index), visits[index].obj) for index in range(1, len(visits))]


def _path(visits: list[_Visit], index: int) -> str:
    parts = []
    while index > 0:
        parts.append(visits[index].name)
        index = visits[index].parent
    return "/".join(reversed(parts))


def _mismatch(node: CheckpointNode, live: ValueSpec) -> Mismatch | None:
    saved = node.value
    if saved is None or saved.shape is None or live.shape is None:
        return None
    if saved.shape == live.shape and saved.dtype == live.dtype:
        return None
    return Mismatch(
        name=node.display_name,
        checkpoint_shape=saved.shape,
        checkpoint_dtype=saved.dtype or "?",
        program_shape=live.shape,
        program_dtype=live.dtype or "?",
    )


def _program_name(path: str, own: str) -> str:
    return f"{path} ({own})" if own and own != path else path


class NamedValue(NamedTuple):
    """One variable of a program, as name-based matching sees it.

    Attributes:
        path: Its unique name: the checkpoint key a Saver uses, or its object path from the
            root (``model/_functional/_operations/1/_kernel``).
        own_name: The variable's own name when it differs (``sequential/hidden/kernel``).
        value: Its shape and dtype.
    """

    path: str
    own_name: str
    value: ValueSpec

    @property
    def display_name(self) -> str:
        """The path, with the variable's own name beside it when that says something more."""
        return _program_name(self.path, self.own_name)


@dataclass(frozen=True)
class NameMatch:
    """The outcome of `match_names`.

    Attributes:
        report: What matched, was left unused or out, was not restored, or differs in shape.
        pairs: ``(checkpoint key, program index)`` of the values to load, shapes agreeing.
    """

    report: RestoreReport
    pairs: tuple[tuple[str, int], ...]


def match_names(
    path: str,
    checkpoint: Mapping[str, ValueSpec],
    program: Sequence[NamedValue],
    rename: Rename,
    *,
    loose: bool,
) -> NameMatch:
    """Matches a name-based checkpoint's values with the program's variables by name.

    Each checkpoint key is renamed by `rename`, then looked up: first as a path, then as a
    variable's own name; with `loose`, also as the end of a path or own name on a ``/``
    boundary (``hidden/kernel`` finds ``sequential/hidden/kernel``), when that is unique.

    Args:
        path: The checkpoint, for the report.
        checkpoint: Its values by key.
        program: The program's variables.
        rename: The compiled key map (see `ckptkit.keymap`).
        loose: Allow own names and name endings, not only exact paths.

    Raises:
        KeyMapError: A name fits several variables, or two values go to one variable.
    """
    lookup = _NameIndex(program, loose=loose)
    taken: dict[int, str] = {}
    matched: list[str] = []
    unused: list[str] = []
    left_out: list[str] = []
    mismatches: list[Mismatch] = []
    pairs: list[tuple[str, int]] = []
    for key in sorted(checkpoint):
        target = rename(key)
        if target is None:
            left_out.append(key)
            continue
        index = lookup.find(target, key)
        shown = key if target == key else f"{key} -> {target}"
        if index is None:
            unused.append(shown if target == key else f"{shown} (no such variable)")
            continue
        if index in taken:
            raise KeyMapError(
                f"checkpoint values {taken[index]!r} and {key!r} both map to "
                f"{program[index].display_name}; change the key map so each variable gets one"
            )
        taken[index] = key
        entry = program[index]
        label = (
            key if entry.path == key and not entry.own_name else f"{key} -> {entry.display_name}"
        )
        matched.append(label)
        saved, live = checkpoint[key], entry.value
        if saved.shape is not None and live.shape is not None and saved != live:
            mismatches.append(
                Mismatch(
                    name=label,
                    checkpoint_shape=saved.shape,
                    checkpoint_dtype=saved.dtype or "?",
                    program_shape=live.shape,
                    program_dtype=live.dtype or "?",
                )
            )
        else:
            pairs.append((key, index))
    report = RestoreReport(
        checkpoint=path,
        matched=tuple(matched),
        unused_checkpoint_values=tuple(unused),
        unrestored_objects=tuple(
            entry.display_name for index, entry in enumerate(program) if index not in taken
        ),
        mismatches=tuple(mismatches),
        left_out=tuple(left_out),
    )
    return NameMatch(report, tuple(pairs))


class _NameIndex:
    """Finds a program variable by path, own name or (loosely) name ending."""

    def __init__(self, program: Sequence[NamedValue], *, loose: bool) -> None:
        self._program = program
        self._paths = {entry.path: index for index, entry in enumerate(program)}
        self._loose = loose
        self._own: dict[str, list[int]] = {}
        self._endings: dict[str, list[int]] = {}
        if not loose:
            return
        for index, entry in enumerate(program):
            if entry.own_name:
                self._own.setdefault(entry.own_name, []).append(index)
            endings: set[str] = set()
            for name in (entry.path, entry.own_name):
                parts = name.split("/") if name else []
                endings.update("/".join(parts[i:]) for i in range(1, len(parts)))
            for ending in endings:
                self._endings.setdefault(ending, []).append(index)

    def find(self, name: str, key: str) -> int | None:
        if name in self._paths:
            return self._paths[name]
        for table in (self._own, self._endings):
            found = table.get(name, [])
            if len(found) == 1:
                return found[0]
            if found:
                names = ", ".join(self._program[i].display_name for i in found)
                raise KeyMapError(
                    f"checkpoint value {key!r} maps to {name!r}, which fits several variables "
                    f"({names}); map it to one of those names in full"
                )
        return None
