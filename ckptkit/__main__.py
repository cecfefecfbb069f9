"""``python -m ckptkit``: the same as the ``ckptkit`` command."""

from ckptkit.cli import main

raise SystemExit(main())
