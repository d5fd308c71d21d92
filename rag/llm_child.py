"""The embedded LLM server's process: arrange to die with the app, then run llama-cpp-python's server.

Set here rather than in a `preexec_fn`, which is unsafe in a threaded parent (the fork may copy a held lock).
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """SIGTERM when the thread that started us ends; the app starts us from a thread that lives as long as it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # not Linux: the app's atexit hook still stops us
        return
    parent = int(os.environ.get("RAG_PARENT_PID", "0") or 0)
    if parent and os.getppid() != parent:  # the parent died before the signal was armed
        sys.exit(1)


def main() -> None:
    _die_with_parent()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
