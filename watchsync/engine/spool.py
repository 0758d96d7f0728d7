"""An append-only list of strings kept on disk, so deferred deletes don't grow memory."""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Iterator


class Spool:
    """Collect items now, replay them later in the same order.

    >>> with Spool() as s:
    ...     s.add("a"); s.add("b"); list(s)
    ['a', 'b']
    """

    def __init__(self, *, batch: int = 1000) -> None:
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self._buf: list[str] = []
        self._batch = batch
        self.count = 0

    def add(self, item: str) -> None:
        self._buf.append(item)
        self.count += 1
        if len(self._buf) >= self._batch:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._file.seek(0, os.SEEK_END)  # a replay may have left the position mid-file
            pickle.dump(self._buf, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._buf = []

    def __iter__(self) -> Iterator[str]:
        self._flush()
        pos = 0
        while True:
            self._file.seek(pos)  # adds between batches move the shared file position
            try:
                batch: list[str] = pickle.load(self._file)
            except EOFError:
                return
            pos = self._file.tell()
            yield from batch

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
