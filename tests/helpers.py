"""Small helpers shared by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from watchsync.core.errors import Failure, FailureKind

T = TypeVar("T")


@contextmanager
def fails_with(kind: FailureKind) -> Iterator[None]:
    """The block raises a :class:`Failure` of ``kind``, as the adapters raise them."""
    with pytest.raises(Failure) as info:
        yield
    assert info.value.kind is kind, repr(info.value)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10,
    interval: float = 0.02,
    message: str = "",
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that value.

    Raises ``AssertionError`` (with ``message`` and the last value seen) when ``timeout``
    seconds pass first.  ``predicate`` runs at least once, and once more at the deadline.

    >>> wait_until(lambda: 42)
    42
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {message or predicate!r} "
                f"(last value: {value!r})"
            )
        time.sleep(interval)
