"""Writes a SavedModel for serving: a Keras model's `export`, else `tf.saved_model.save`.

A Keras 3 model's `export` writes the serving endpoint ``serve`` (inputs as the model was
built), loaded back with ``tf.saved_model.load(path).serve(x)``. A `tf.Module` (or any
trackable) is saved with the `tf.function` signatures given.
"""

from __future__ import annotations

import inspect
from typing import Any

import keras
import tensorflow as tf

from ckptkit.errors import TrackableError

__all__ = ["servable", "write_saved_model"]


def servable(trackables: dict[str, Any], name: str | None) -> tuple[str, Any]:
    """The object of `trackables` to export: `name`'s, else the one Keras model or module.

    Raises:
        TrackableError: No such name, no single object to choose, or an unbuilt model.
    """
    if name is not None:
        if name not in trackables:
            raise TrackableError(
                f"no object named {name!r} to export; the manager holds {sorted(trackables)}"
            )
        _check_built(trackables[name])
        return name, trackables[name]
    for kind in (keras.Model, tf.Module):
        found = [(n, obj) for n, obj in trackables.items() if isinstance(obj, kind)]
        if len(found) == 1:
            _check_built(found[0][1])
            return found[0]
        if found:
            raise TrackableError(
                f"several objects could be exported ({', '.join(n for n, _ in found)}); "
                "pass export(..., name=...)"
            )
    raise TrackableError(
        f"nothing to export among {sorted(trackables)}: export takes a Keras model or a "
        "tf.Module (with tf.function signatures)"
    )


def _check_built(obj: Any) -> None:
    if isinstance(obj, keras.Model) and not obj.built:
        raise TrackableError(
            "an unbuilt Keras model has no inputs to serve: build it (or call it once) "
            "before exporting"
        )


def write_saved_model(obj: Any, path: str, signatures: Any) -> None:
    """Writes `obj` as a SavedModel at `path` (a folder that does not exist yet).

    Raises:
        TrackableError: `signatures` for a Keras model.
    """
    if isinstance(obj, keras.Model):
        if signatures is not None:
            raise TrackableError(
                "a Keras model is exported with its own serving endpoint `serve`; "
                "signatures= is for a tf.Module"
            )
        quiet = {"verbose": False} if "verbose" in inspect.signature(obj.export).parameters else {}
        obj.export(path, **quiet)
        return
    tf.saved_model.save(obj, path, signatures=signatures)
