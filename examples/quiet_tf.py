"""Imports TensorFlow without the C++ start-up lines it prints on stderr.

TensorFlow 2.21 prints them (oneDNN, CUDA probing, absl's "before InitializeLog" notice) before
any log level applies, so `TF_CPP_MIN_LOG_LEVEL` cannot hide them: this module hides file
descriptor 2 while TensorFlow is first imported, then restores it. Import it before anything
that imports TensorFlow (ckptkit does); the `ckptkit` command does the same.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.stderr.flush()
_saved = os.dup(2)
try:
    with open(os.devnull, "w") as _devnull:
        os.dup2(_devnull.fileno(), 2)
        import tensorflow  # noqa: F401
finally:
    os.dup2(_saved, 2)
    os.close(_saved)
