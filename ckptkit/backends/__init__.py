"""One module per TensorFlow checkpoint API; each implements `Backend`."""

from ckptkit.backends.base import Backend

__all__ = ["Backend"]
