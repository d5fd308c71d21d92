"""What `rag ingest` tells a person at a terminal while it works, on stderr; nothing when progress is off.

Into a log (stderr not a terminal) the same notes go, and a line a minute instead of the bar. The bar counts chunks
embedded, because that is what moves: a run of a few large files would otherwise sit at 0/N files for minutes. Its total is the chunks the parser has found so far, which grows until parsing ends.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

LOG_EVERY_S = 60.0


class IngestProgress:
    """show: True a bar, False nothing, None a bar on a terminal and else (a log file) a line a minute."""

    def __init__(self, show: bool | None, on_file: Callable[[int, int], None] | None = None) -> None:
        terminal = sys.stderr.isatty()
        self.show = show is not False
        self.bar = terminal if show is None else show
        self.on_file = on_file
        self.found = 0  # written by the parser thread only, read by the writer
        self.embedded_count = 0
        self.files_done = 0
        self.files_total = 0
        # the file being embedded (the parser runs ahead of the embedder), or the page OCR is reading
        self.current = ""
        self._bar: Any = None
        self._next_line = time.monotonic() + LOG_EVERY_S

    def note(self, message: str) -> None:
        if self.show:
            print(message, file=sys.stderr, flush=True)

    def working_on(self, source: str) -> None:
        self.current = source

    def ocr_page(self, source: str, page: int, pages: int) -> None:
        """A page of `source` is being read by OCR (seconds a page): the bar says which; a log, when a file starts."""
        self.current = f"{source}, OCR of page {page}/{pages}"
        if self._bar is not None:
            self._bar.set_postfix_str(
                f"files {self.files_done}/{self.files_total}, OCR {source} page {page}/{pages}"
            )
        elif page == 1:
            self.note(f"reading {source} by OCR ({pages} page{'s' if pages > 1 else ''})")

    def start(self, files: int) -> None:
        self.files_total = files
        if self.bar:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.found or None,
                unit=" chunks",
                desc="embedding",
                postfix=f"files 0/{files}",
                dynamic_ncols=True,
            )

    def chunks_found(self, count: int) -> None:
        self.found += count

    def embedded(self, count: int) -> None:
        self.embedded_count += count
        if self._bar is not None:
            self._bar.total = max(self.found, self._bar.n + count)
            self._bar.update(count)
        elif self.show and time.monotonic() >= self._next_line:
            self._next_line = time.monotonic() + LOG_EVERY_S  # after a stall, not a burst of catch-up lines
            self.note(
                f"embedded {self.embedded_count} of {max(self.found, self.embedded_count)} chunks found so far, "
                f"files {self.files_done}/{self.files_total}"
            )

    def files_finished(self, count: int) -> None:
        for _ in range(count):
            self.files_done += 1
            if self.on_file:
                self.on_file(self.files_done, self.files_total)
        if count:
            self._set_files()

    def _set_files(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"files {self.files_done}/{self.files_total}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
