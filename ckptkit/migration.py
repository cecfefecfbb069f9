"""Moving name-based checkpoints (v1 Saver, Estimator) into TF2 programs.

`migrate` loads a checkpoint keyed by variable names (``dnn/hiddenlayer_0/kernel``,
``global_step``) into a `tf.Module` or Keras 3 model, through a key map (see
`ckptkit.keymap`), after checking it as a restore would: every mapped value, unused value,
unrestored variable and shape mismatch is named before anything is loaded. `convert` does the
same and then writes the program as an object-based checkpoint, which plain
`tf.train.Checkpoint` restores afterwards; without a program, it builds one whose object paths
are the key map's targets.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import tensorflow as tf

from ckptkit import progress
from ckptkit.backends.object_based import ObjectBasedBackend
from ckptkit.backends.tf_internals import AutoTrackable
from ckptkit.config import Assertion, CheckpointConfig
from ckptkit.errors import KeyMapError, TrackableError
from ckptkit.keymap import KeyMap, Rename, compile_key_map
from ckptkit.manager import CheckpointManager
from ckptkit.matching import ValueSpec, match_names
from ckptkit.reading import inspection
from ckptkit.reading.inspection import VALUE_SUFFIX
from ckptkit.status import RestoreResult, check_assertion
from ckptkit.storage import layout

__all__ = ["convert", "migrate"]


def migrate(
    source: str | os.PathLike[str],
    *,
    key_map: KeyMap | None = None,
    assertion: Assertion = "existing_objects_matched",
    **trackables: Any,
) -> RestoreResult:
    r"""Restores a name-based checkpoint into TF2 objects through a key map.

    Each checkpoint name is renamed by `key_map`, then looked up among the variables of
    `trackables`: as an object path (``model/_functional/_operations/1/_kernel``), as a
    variable's own name (``sequential/hidden/kernel``), or as a unique ending of either
    (``hidden/kernel``). Names mapped to None (optimizer slots, ``global_step``) are left out
    and reported as such::

        result = ckptkit.migrate(
            "model_dir/model.ckpt-1000",
            key_map=[(r"dnn/hiddenlayer_(\d+)/(.*)", r"hidden\1/\2"),
                     (r"dnn/logits/(.*)", r"logits/\1"),
                     (r"global_step|training/.*", None)],
            model=keras_model,
        )
        print(result.report.format())

    Args:
        source: A checkpoint prefix, its ``.index`` file, or a directory (its newest).
        key_map: A mapping, a list of ``(regex, replacement)`` rules, or a callable; None
            keeps the names as they are.
        assertion: As for `CheckpointManager.restore`; the default requires every variable of
            the program to get a value. Values are loaded at once (there is no deferred
            restore here), so build Keras models first.
        **trackables: The objects to load into, by name (``model=...``, ``optimizer=...``).

    Returns:
        The checkpoint, its step, and the report (``matched`` lists ``key -> path (name)``).

    Raises:
        CheckpointNotFoundError: Nothing at `source`.
        CorruptCheckpointError: The checkpoint cannot be read.
        KeyMapError: The key map is malformed, or sends a value to several variables or two
            values to one variable.
        ShapeMismatchError: A mapped value and its variable differ in shape or dtype; nothing
            was loaded.
        RestoreMismatchError: The assertion failed; nothing was loaded.
        TrackableError: A Keras model is not built yet.
    """
    prefix, reader = inspection.open_reader(os.fspath(source))
    backend = _backend(trackables)
    program = backend.variables()
    keys = _names(prefix)
    values = {name: spec for name, (_, spec) in keys.items()}
    found = match_names(
        prefix, values, [named for named, _ in program], compile_key_map(key_map), loose=True
    )
    check_assertion(found.report, assertion, by_name=True)
    with progress.task(f"loading {os.path.basename(prefix)}", len(found.pairs)) as advance:
        for key, index in found.pairs:
            program[index][1].assign(inspection.get_tensor(reader, prefix, keys[key][0]))
            advance(1)
    report = found.report
    return RestoreResult(
        restored=True,
        path=prefix,
        step=layout.parse_step(prefix),
        report=report,
        _recheck=lambda: report,  # values were assigned, nothing is pending
    )


def convert(
    source: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    *,
    key_map: KeyMap | None = None,
    assertion: Assertion = "consumed",
    **trackables: Any,
) -> RestoreResult:
    """Re-encodes a name-based checkpoint as an object-based one in directory `destination`.

    With `trackables`, the checkpoint is migrated into them (see `migrate`) and they are
    saved, so that ``tf.train.Checkpoint(model=model).restore(tf.train.latest_checkpoint(
    destination))`` loads it in a program without ckptkit. Without them, the key map's
    targets are taken as object paths (``model/_functional/_operations/1/_kernel``, as
    ``ckptkit inspect`` shows them for a checkpoint of the program) and a checkpoint with
    exactly those paths is written.

    `destination` is written as a ckptkit directory (state file, manifest) with one
    checkpoint ``ckpt-<step>``, the step taken from the source's name, else its
    ``global_step``, else 0.

    Args:
        source: The name-based checkpoint (prefix, ``.index`` file or directory).
        destination: A directory for the converted checkpoint; it must not hold one for
            the same step.
        key_map: As for `migrate`.
        assertion: As for `migrate`; by default every value must be used or left out by the
            key map, and every variable restored.
        **trackables: The program to convert for, by name; none: build it from the paths.

    Returns:
        As `migrate`, with `path` the converted checkpoint.
    """
    prefix, reader = inspection.open_reader(os.fspath(source))
    if not trackables:
        trackables = _tree_of(prefix, compile_key_map(key_map))
    result = migrate(prefix, key_map=key_map, assertion=assertion, **trackables)
    config = CheckpointConfig(directory=os.fspath(destination))
    with CheckpointManager(config, **trackables) as manager:
        written = manager.save(_step_of(prefix, reader), metadata={"converted_from": prefix})
    assert written is not None  # no Recovery here: a save is refused only under one
    return dataclasses.replace(result, path=written, step=layout.parse_step(written))


def _backend(trackables: Mapping[str, Any]) -> ObjectBasedBackend:
    if not trackables:
        raise TypeError("pass the objects to load into by name, e.g. model=keras_model")
    unbuilt = [name for name, obj in trackables.items() if getattr(obj, "built", True) is False]
    if unbuilt:
        raise TrackableError(
            f"{', '.join(unbuilt)} is not built, so it has no variables to load into yet; "
            "build it first (call it on a batch, or model.build(input_shape))"
        )
    return ObjectBasedBackend(trackables)


def _names(prefix: str) -> dict[str, tuple[str, ValueSpec]]:
    """``{name: (key, spec)}``: an object-based checkpoint's keys lose their value suffix."""
    return {
        v.key.removesuffix(VALUE_SUFFIX): (v.key, ValueSpec(v.shape, v.dtype))
        for v in inspection.inspect(prefix).variables
    }


def _step_of(prefix: str, reader: Any) -> int:
    step = layout.parse_step(prefix)
    if step is not None:
        return step
    if reader.has_tensor("global_step"):
        return int(reader.get_tensor("global_step"))
    return 0


def _tree_of(prefix: str, rename: Rename) -> dict[str, Any]:
    """Objects nested as the mapped names say (``model/a/b`` -> ``model.a.b``).

    The leaves are variables of the checkpoint's shapes and dtypes; `migrate` fills them in.
    """
    roots: dict[str, Any] = {}
    for name, (_, spec) in _names(prefix).items():
        target = rename(name)
        if target is None:
            continue
        *parents, leaf = target.split("/")
        if not parents or "" in parents or not leaf:
            raise KeyMapError(
                f"{name!r} maps to {target!r}, which is not an object path; map it to a path "
                "such as 'model/layer/kernel' (the first part names the object), or to None "
                "('=> -' in a rules file) to leave it out"
            )
        node = roots.setdefault(parents[0], AutoTrackable())
        for part in parents[1:]:
            node = _child(node, part, target)
        if hasattr(node, leaf):
            raise KeyMapError(
                f"two checkpoint values, or a value and an object, map to {target!r}; "
                "change the key map so each path is used once"
            )
        zeros = tf.zeros(spec.shape or (), spec.dtype or "float32")
        setattr(node, leaf, tf.Variable(zeros, name=target))
    return roots


def _child(node: Any, part: str, target: str) -> Any:
    child = getattr(node, part, None)
    if child is None:
        child = AutoTrackable()
        setattr(node, part, child)
    elif not isinstance(child, AutoTrackable):
        raise KeyMapError(
            f"{target!r} runs through {part!r}, which another value maps to; change the key "
            "map so no path is both a value and a parent"
        )
    return child
