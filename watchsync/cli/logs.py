"""Log formatting: ``--log-format json`` (one JSON object per line, for journald and log
shippers) and the redaction both formats apply.

Nothing the agent logs itself carries a secret, but botocore at DEBUG (``--debug``) logs
request headers: ``Authorization: AWS4-HMAC-SHA256 Credential=AKIA.../..., Signature=...``
and session tokens.  :func:`redact` blanks those, and the literal values of the AWS secret
variables, whatever logger they came from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from typing import IO

__all__ = [
    "JournalFormatter",
    "JsonFormatter",
    "TextFormatter",
    "redact",
    "syslog_priority",
    "under_journald",
]

# Fields the agent attaches with ``extra=`` that are worth keeping in the object.
_FIELDS = ("folder", "event", "path", "bytes", "duration", "error")

REDACTED = "REDACTED"
_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
_PATTERNS = (
    # SigV4 header and presigned-URL forms: Signature=..., X-Amz-Signature=...
    re.compile(r"(?i)(signature=)[0-9a-f]+"),
    # Credential=AKID/date/region/s3/aws4_request (header) or X-Amz-Credential=AKID%2F...
    re.compile(r"(?i)(credential=)[^/\s,&'\"%]+"),
    # Session tokens in headers ({'X-Amz-Security-Token': b'...'}) and query strings.
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"&\s,}]+"),
)

_ANY = re.compile(r"(?i)signature=|credential=|x-amz-security-token")


def redact(text: str, env: Mapping[str, str] = os.environ) -> str:
    """Blank request signatures, access key ids, session tokens and secret values.

    >>> redact("Credential=AKIAXX/20240101/us-east-1/s3/aws4_request, Signature=ab12", env={})
    'Credential=REDACTED/20240101/us-east-1/s3/aws4_request, Signature=REDACTED'
    """
    for name in _SECRET_VARS:
        secret = env.get(name, "")
        if len(secret) >= 8 and secret in text:
            text = text.replace(secret, REDACTED)
    if _ANY.search(text) is None:  # most lines: one scan instead of one per pattern
        return text
    for pattern in _PATTERNS:
        text = pattern.sub(r"\g<1>" + REDACTED, text)
    return text


class TextFormatter(logging.Formatter):
    """``logging.Formatter`` with :func:`redact` applied to the whole line."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """Format records as ``{"time", "level", "logger", "message", ...}``, redacted.

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
            "message": redact(record.getMessage()),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                obj[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            obj.setdefault("error", redact(f"{type(exc).__name__}: {exc}"))
            obj["traceback"] = redact(self.formatException(record.exc_info))
        return json.dumps(obj, ensure_ascii=False, default=str)


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level (journald reads it from a ``<N>`` prefix).

    >>> [syslog_priority(n) for n in (logging.DEBUG, logging.INFO, logging.WARNING)]
    [7, 6, 4]
    >>> syslog_priority(logging.ERROR), syslog_priority(logging.CRITICAL)
    (3, 2)
    """
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    return 6 if levelno >= logging.INFO else 7


def under_journald(env: Mapping[str, str], stream: IO[str]) -> bool:
    """Whether ``stream`` is the one systemd connected to the journal: ``JOURNAL_STREAM``
    names its device and inode (a stderr redirected elsewhere by the service keeps the
    variable but is another file, and gets ordinary lines).

    >>> import sys
    >>> under_journald({}, sys.stderr)
    False
    """
    dev, _, ino = env.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError):  # io.UnsupportedOperation: a stream with no descriptor
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


class JournalFormatter(logging.Formatter):
    """Lines for journald: each one prefixed with its syslog priority (``<4>``), so that
    ``journalctl -p warning`` filters, around another formatter's text (which, for text
    lines, leaves out the time: the journal keeps its own).

    >>> rec = logging.LogRecord("watchsync", logging.WARNING, "", 0, "careful", (), None)
    >>> JournalFormatter(TextFormatter("%(levelname)s %(message)s")).format(rec)
    '<4>WARNING careful'
    """

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        # A traceback's lines too: each line is an entry of its own in the journal.
        return "\n".join(prefix + line for line in self.inner.format(record).splitlines() or [""])
