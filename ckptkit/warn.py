"""Warnings that point at the user's line, not at ckptkit's (or Keras's, or TensorFlow's).

A warning's location is where a user looks first, and the filter that silences it matches on
it. ckptkit warns from deep inside its own calls, and from Keras callbacks that `model.fit`
runs, so a fixed ``stacklevel`` would name a line in ckptkit or Keras. `warn` walks up to the
first frame outside those packages: the user's ``mgr.restore()`` or ``model.fit(...)``.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["warn"]

_PACKAGES = ("ckptkit", "keras", "tensorflow", "tf_keras")


def _package_dirs() -> tuple[str, ...]:
    found = []
    for name in _PACKAGES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            found.append(os.path.dirname(os.path.abspath(path)) + os.sep)
    return tuple(found)


def warn(message: str | Warning, category: type[Warning] = UserWarning) -> None:
    """Issues a warning attributed to the nearest caller outside ckptkit, Keras and TensorFlow."""
    inside = _package_dirs()
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is the frame that called this function
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame = frame.f_back
        level += 1
    if isinstance(message, Warning):
        warnings.warn(message, stacklevel=level)
    else:
        warnings.warn(message, category, stacklevel=level)
