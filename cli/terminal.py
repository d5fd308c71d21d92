"""Signs of life on a terminal: one status line on stderr, rewritten in place and cleared before output."""

from __future__ import annotations

import sys
from typing import TextIO


class StatusLine:
    """Shows what is happening right now; silent when stderr is not a terminal (pipes, logs, tests)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r\033[K{text}")
            self.stream.flush()
            self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False
