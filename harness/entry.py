"""What every dqbench entry point does first: the harness and advisor command lines, the worker
(harness/worker.py), the guard (harness/guard.py) and a cell's Ray task (harness/executors/ray_nodes.py).

SIGINT. A shell that starts a job in the background non-interactively (`nohup ./dq run ... &`, a CI runner,
a cron line) starts it with SIGINT ignored, and a Python process keeps an ignored SIGINT ignored: `kill -INT`
and Ctrl-C would then do nothing, and a cell would run to its end. So each entry point puts Python's own
handler back (KeyboardInterrupt: the `finally` blocks stop servers and workers), whatever it inherited, and
Ctrl-C behaves the same however the process was launched. Processes a Python entry point starts inherit a
handled signal as the default action (exec resets handlers, not ignores), so non-Python children (llama-server)
get the default too.

Only the standard library: workers of every environment import this.
"""

from __future__ import annotations

import signal
import threading


def restore_sigint() -> bool:
    """Python's SIGINT handler (KeyboardInterrupt) for this process, whatever it inherited; False where it
    cannot be set (not the main thread: the process's main thread decides)."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return True
