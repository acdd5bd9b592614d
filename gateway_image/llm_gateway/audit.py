"""The audit log: one JSON line per request, appended in one write so a crash loses no finished line."""

from __future__ import annotations

import os
import sys
from typing import Any

import orjson


class AuditLog:
    def __init__(self, path: str) -> None:
        self.path = path
        if path == "-":
            self._fd = sys.stdout.fileno()
            self._owns_fd = False
        else:
            # O_APPEND makes each os.write land whole at the end, even with several writers.
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            self._owns_fd = True

    def write(self, record: dict[str, Any]) -> None:
        # One unbuffered write of a few hundred bytes: microseconds, no need for a thread.
        os.write(self._fd, orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._owns_fd:
            os.close(self._fd)
            self._owns_fd = False
