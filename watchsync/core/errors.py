"""Errors and their exit codes.

Each class's docstring is its message template; ``exit_code`` is what the CLI returns when
the error ends a run.  ``FileError`` is the per-file, non-fatal kind: it is reported and
counted, and the run goes on.

:class:`Failure` is the one vocabulary for what went wrong talking to S3: the adapters in
``watchsync/s3/`` turn every SDK, awscrt and connection error into one, and everyone above
them decides on its :class:`FailureKind` alone, never on an SDK exception's shape.
"""

from __future__ import annotations

import enum

EXIT_OK = 0
EXIT_PARTIAL = 1  # some files failed or were skipped
EXIT_USAGE = 2  # usage, configuration or connection error

# aws s3 sync's return codes (awscli/topics/return-codes.rst), which sync keeps.
AWS_OK = 0
AWS_FAILED = 1  # a transfer failed, or an S3 error ended the run ("fatal error: ...")
AWS_SKIPPED = 2  # a file was skipped (and nothing failed); also an unparsable command line
AWS_CANCELLED = 130  # Ctrl-C
AWS_INVALID = 255  # the command could not start: a bad value, a missing source, no profile


class WatchsyncError(Exception):
    """watchsync failed."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args) or (self.__doc__ or "").strip()


class UsageError(WatchsyncError):
    """Invalid arguments."""


class ConfigError(WatchsyncError):
    """Invalid configuration."""


class LockedError(WatchsyncError):
    """Another agent already serves this folder pair."""


class FileError(WatchsyncError):
    """A single file could not be synced; the run goes on."""

    exit_code = EXIT_PARTIAL

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class StillChanging(FileError):
    """A file changed during each of its sends: what was read last is stored and recorded,
    and the file's next change (which the watcher or the next pass sees) sends it again."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "kept changing while it was uploaded; will try again later")


class PathBlocked(FileError):
    """A file stands where a directory is needed, or a directory where a file is (a type
    change not finished yet, or S3 keys ``a`` and ``a/b`` both present)."""


class Deferred(FileError):
    """A file's action waits for a retry already scheduled (and reported when it was):
    counted as not done, not reported again."""


class FailureKind(enum.Enum):
    """What a failed S3 request means to the caller: what it may do next."""

    UNREACHABLE = "unreachable"  # no answer at all: refused, reset, timed out, DNS
    TRANSIENT = "transient"  # may pass: 5xx, throttling, a body cut short or damaged
    REFUSED = "refused"  # a permanent no: AccessDenied, NoSuchBucket, bad credentials, TLS
    PRECONDITION = "precondition"  # a conditional write or delete lost: another version
    NOT_FOUND = "not found"  # the object does not exist (any more)
    UNSUPPORTED = "unsupported"  # the server rejects conditional requests (NotImplemented)
    LOCAL = "local"  # our own side: the file, the disk, the state database, a bug

    @property
    def retried(self) -> bool:
        """Whether trying again later may succeed.

        >>> FailureKind.TRANSIENT.retried, FailureKind.REFUSED.retried
        (True, False)
        """
        return self in (FailureKind.UNREACHABLE, FailureKind.TRANSIENT)


class Failure(WatchsyncError):
    """An S3 request failed.

    ``kind`` is what callers decide on; ``code`` is S3's error code (its HTTP status when
    the answer had none, else the name of what failed), for metrics; ``text`` is one line
    for humans, without request signatures.  ``str()`` is ``message`` when one was given
    (the whole line a run ends with), else ``text``.

    >>> f = Failure(FailureKind.REFUSED, "AccessDenied", "AccessDenied: Access Denied")
    >>> f.kind.value, str(f)
    ('refused', 'AccessDenied: Access Denied')
    """

    def __init__(self, kind: FailureKind, code: str, text: str, *, message: str = "") -> None:
        super().__init__(kind, code, text)
        self.kind = kind
        self.code = code
        self.text = text
        self.message = message

    def __str__(self) -> str:
        return self.message or self.text

    def __repr__(self) -> str:
        return f"Failure({self.kind.value}, {self.code!r}, {self.text!r})"


def failure_of(exc: BaseException) -> Failure:
    """``exc`` as a :class:`Failure`: itself, or anything else as :attr:`FailureKind.LOCAL`
    (whatever did not come from S3 came from our own side).

    >>> failure_of(OSError(28, "No space left on device")).text
    '[Errno 28] No space left on device'
    >>> failure_of(ValueError()).code
    'ValueError'
    """
    if isinstance(exc, Failure):
        return exc
    name = type(exc).__name__
    lines = str(exc).splitlines()
    return Failure(FailureKind.LOCAL, name, lines[0] if lines else name)
