"""Errors and their exit codes.

Each class's docstring is its message template; ``exit_code`` is what the CLI returns when
the error ends a run.  ``FileError`` is the per-file, non-fatal kind: it is reported and
counted, and the run goes on.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_PARTIAL = 1  # some files failed or were skipped
EXIT_USAGE = 2  # usage, configuration or connection error


class WatchsyncError(Exception):
    """watchsync failed."""

    exit_code = EXIT_USAGE

    def __str__(self) -> str:
        return " ".join(str(a) for a in self.args) or (self.__doc__ or "").strip()


class UsageError(WatchsyncError):
    """Invalid arguments."""


class ConfigError(WatchsyncError):
    """Invalid configuration."""


class RemoteError(WatchsyncError):
    """The S3 endpoint could not be used (unreachable, bad credentials, missing bucket)."""


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


class PathBlocked(FileError):
    """A file stands where a directory is needed, or a directory where a file is (a type
    change not finished yet, or S3 keys ``a`` and ``a/b`` both present)."""


class PreconditionFailed(WatchsyncError):
    """A conditional write or delete found another version of the object than expected."""


class NotFound(WatchsyncError):
    """The object does not exist (any more)."""


class ConditionalWritesUnsupported(WatchsyncError):
    """The server rejects conditional writes (If-Match / If-None-Match)."""
