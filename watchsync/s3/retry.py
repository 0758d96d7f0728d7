"""The one retry policy: tenacity, exponential backoff with jitter, transient errors only."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import botocore.exceptions
import tenacity
from urllib3.exceptions import HTTPError as Urllib3Error

logger = logging.getLogger(__name__)

T = TypeVar("T")

_TRANSIENT_CODES = frozenset(
    {
        "RequestTimeout",
        "RequestTimeoutException",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "InternalError",
        "ServiceUnavailable",
        "BadDigest",  # body changed or was damaged in flight: sending again is right
        "IncompleteBody",
    }
)


def is_transient(exc: BaseException) -> bool:
    """Whether trying again later may succeed: connection trouble, timeouts, 5xx, throttling."""
    if getattr(exc, "transient", False) is True:  # the native client's own verdict
        return True
    if isinstance(exc, botocore.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return False  # an untrusted certificate stays untrusted
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return err.get("Code") in _TRANSIENT_CODES or status >= 500 or status == 429
    return isinstance(
        exc,
        botocore.exceptions.ConnectionError
        | botocore.exceptions.HTTPClientError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ResponseStreamingError
        | Urllib3Error
        | ConnectionError
        | TimeoutError,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one S3 call, e.g. ``RetryPolicy(attempts=5)``."""

    attempts: int = 5
    initial: float = 0.2
    max_wait: float = 10.0

    def call(self, fn: Callable[[], T], *, what: str = "request") -> T:
        """Run ``fn``, retrying transient failures; the last error is re-raised."""
        # The first attempt runs bare: nearly every call succeeds at once, and setting up
        # tenacity's machinery costs about as much CPU as a small native PUT.
        try:
            return fn()
        except Exception as exc:
            if self.attempts <= 1 or not is_transient(exc):
                raise
            self._log(what, exc, 1)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts - 1),
            # Doubled: its first wait is the policy's second.
            wait=tenacity.wait_exponential_jitter(multiplier=2 * self.initial, max=self.max_wait),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=lambda rs: self._log(
                what, rs.outcome.exception() if rs.outcome else None, rs.attempt_number + 1
            ),
            reraise=True,
        )
        retrying.sleep(min(self.max_wait, self.initial + random.uniform(0, 1)))
        return retrying(fn)

    def _log(self, what: str, exc: BaseException | None, attempt: int) -> None:
        logger.warning(
            "retry: %s failed (%s), attempt %d of %d", what, _short(exc), attempt, self.attempts
        )


def _short(exc: BaseException | None) -> str:
    """A one-line description for the retry log."""
    if exc is None:
        return "?"
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", type(exc).__name__))
    return type(exc).__name__
