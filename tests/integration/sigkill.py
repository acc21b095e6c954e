"""Start a command, SIGKILL it as soon as a condition on its files holds (no sleeps as timing)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def kill_when(args: list[str], ready: Callable[[], bool], env: dict[str, str], timeout: float = 600) -> None:
    """Run ``args`` and SIGKILL it once ``ready()`` is true; fails if it ends first."""
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
