"""ckptkit in one minute: train, crash for real, resume, and look at the checkpoints.

1. Starts `custom_training_loop.py` in a child process (saving every 10 steps, keeping 3).
2. SIGKILLs it mid-run, as a preempted VM or an out-of-memory killer would.
3. Shows `ckptkit ls` on what the crash left behind.
4. Starts it again: it resumes from the newest checkpoint and finishes.
5. Shows `ckptkit ls` and `ckptkit inspect` of the result.

    python examples/demo.py [--dir runs/demo]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

LOOP = Path(__file__).with_name("custom_training_loop.py")
TOTAL_STEPS = 60
KILL_AFTER_STEP = 35


def banner(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def run_cli(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ckptkit", *args], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="runs/demo", help="checkpoint directory (emptied first)")
    args = parser.parse_args()
    shutil.rmtree(args.dir, ignore_errors=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    loop = [sys.executable, str(LOOP), "--dir", args.dir, "--steps", str(TOTAL_STEPS)]

    banner(f"training to step {TOTAL_STEPS}, killing the process after step {KILL_AFTER_STEP}")
    child = subprocess.Popen(
        [*loop, "--sleep", "0.05"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert child.stdout is not None
    for line in child.stdout:
        print("  " + line.rstrip(), flush=True)
        if line.startswith("step ") and int(line.split()[1]) >= KILL_AFTER_STEP:
            child.send_signal(signal.SIGKILL)
            break
    child.wait()
    if child.returncode != -signal.SIGKILL:
        print(f"the training process ended on its own (exit {child.returncode})", file=sys.stderr)
        return 1
    print(f"  ** killed with SIGKILL (exit {child.returncode}) **")

    banner(f"what the crash left: ckptkit ls {args.dir}")
    run_cli("ls", args.dir)

    banner("starting again: it resumes from the newest checkpoint")
    resumed = subprocess.run(
        [*loop, "--expect-resume"], capture_output=True, text=True, env=env, check=False
    )
    lines = resumed.stdout.splitlines()
    for line in [*lines[:3], "  ...", *lines[-2:]]:
        print("  " + line)
    if resumed.returncode != 0:
        print(resumed.stderr, file=sys.stderr)
        return 1

    banner(f"after the resumed run: ckptkit ls {args.dir}")
    run_cli("ls", args.dir)
    banner(f"ckptkit inspect {args.dir}")
    run_cli("inspect", args.dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
