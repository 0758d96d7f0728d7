"""The one retry policy: tenacity, exponential backoff with jitter, and only what failures.py
says may pass (no answer, transient)."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from watchsync.s3.failures import classify, retried

logger = logging.getLogger(__name__)

T = TypeVar("T")


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
            if self.attempts <= 1 or not retried(exc):
                raise
            self._log(what, exc, 1)
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts - 1),
            # Doubled: its first wait is the policy's second.
            wait=tenacity.wait_exponential_jitter(multiplier=2 * self.initial, max=self.max_wait),
            retry=tenacity.retry_if_exception(retried),
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
    """A one-line description for the retry log: S3's error code, or what failed."""
    return "?" if exc is None else classify(exc).code
