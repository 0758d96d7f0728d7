"""``--log-format json``: one JSON object per line, for journald and log shippers."""

from __future__ import annotations

import json
import logging
import time

# Fields the agent attaches with ``extra=`` that are worth keeping in the object.
_FIELDS = ("folder", "event", "path", "bytes", "duration", "error")


class JsonFormatter(logging.Formatter):
    """Format records as ``{"time", "level", "logger", "message", ...}``.

    >>> rec = logging.LogRecord("watchsync", logging.INFO, "", 0, "hi %s", ("x",), None)
    >>> JsonFormatter().format(rec)  # doctest: +ELLIPSIS
    '{"time": "...", "level": "info", "logger": "watchsync", "message": "hi x"}'
    """

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                obj[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            obj.setdefault("error", f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}")
        return json.dumps(obj, ensure_ascii=False, default=str)
