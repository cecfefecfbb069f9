"""Another user of the machine tries to hold a ckptkit directory's writer lock.

Usage: other_user.py LOCK_FILE. Drops to uid/gid 65534 (the caller is root), then opens the lock
file read-only, as any user who can read it can, and takes what locks it can: `flock` (which
needs no write access) and an open-file-description write lock. Prints one line per attempt,
then "holding" and waits to be killed, keeping whatever it got. Run by tests/test_attacks.py.
"""

from __future__ import annotations

import fcntl
import os
import signal
import struct
import sys

NOBODY = 65534


def main() -> None:
    path = sys.argv[1]
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    try:
        f = open(path, "rb")  # noqa: SIM115 (held until killed)
    except OSError as e:
        print(f"open: errno {e.errno}", flush=True)
        return
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("flock: held", flush=True)
    try:
        request = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        fcntl.fcntl(f, fcntl.F_OFD_SETLK, request)
        print("write lock: held", flush=True)
    except OSError as e:
        print(f"write lock: errno {e.errno}", flush=True)
    print("holding", flush=True)
    signal.pause()


if __name__ == "__main__":
    main()
