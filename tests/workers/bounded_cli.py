"""Runs ``ckptkit ARGS`` with at most LIMIT_MIB more address space than the process has now.

Usage: bounded_cli.py LIMIT_MIB ARGS... Prints the exit status and the peak resident memory as
JSON on the last line. A command whose memory grows with what a crafted file claims, rather
than with its size, hits the limit (a MemoryError, which the CLI must turn into a typed error
with exit status 2). Run by tests/test_attacks.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys

from ckptkit.cli import main


def address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


def run() -> None:
    limit, args = int(sys.argv[1]) << 20, sys.argv[2:]
    resource.setrlimit(resource.RLIMIT_AS, (address_space() + limit, resource.RLIM_INFINITY))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10
    print(json.dumps({"status": status, "peak_mib": peak, "out_chars": len(out.getvalue())}))


if __name__ == "__main__":
    run()
