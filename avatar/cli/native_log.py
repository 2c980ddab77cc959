"""Hide the C++ log lines MediaPipe/TFLite print straight to file descriptor 2.

They ("W0000 ... inference_feedback_manager.cc ...", "INFO: Created TensorFlow
Lite XNNPACK delegate") bypass Python and cannot be turned off by environment
variables in mediapipe 0.10.21. The CLI points fd 2 at a pipe, drops those
lines, and forwards everything else; Python's own ``sys.stderr`` (progress
bars, messages) writes to a copy of the original stderr and is untouched.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import sys
import threading

NOISE = re.compile(rb"^(?:[WI]0000 |INFO: Created TensorFlow Lite|WARNING: All log messages before absl)")


def filter_native_stderr() -> None:
    """Install the filter for the rest of the process (idempotent; a no-op where fd 2 is odd)."""
    if getattr(sys, "_avatar_native_filter", False):
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return
    sys.stderr = io.TextIOWrapper(os.fdopen(os.dup(original), "wb", buffering=0),
                                  encoding="utf-8", errors="replace", line_buffering=True,
                                  write_through=True)
    sys._avatar_native_filter = True

    def pump() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not NOISE.match(line):
                    os.write(original, line)

    thread = threading.Thread(target=pump, name="native-stderr-filter", daemon=True)
    thread.start()

    def restore() -> None:
        os.dup2(original, 2)  # closes the pipe's last writer, so the pump drains and ends
        thread.join(timeout=1.0)

    atexit.register(restore)
