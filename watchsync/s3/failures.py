"""What an SDK, awscrt or connection error means: the one classification behind every
:class:`~watchsync.core.errors.Failure` that leaves ``watchsync/s3/``, the retry policy's
"transient" and the reachability watch's "no answer".  The S3 error codes each kind stands
for are written here and nowhere else.

Only the adapters (this package) use it; everyone above decides on a Failure's kind (the
import contract in pyproject.toml keeps it so).
"""

from __future__ import annotations

from typing import NoReturn

import botocore.exceptions
from urllib3.exceptions import HTTPError as Urllib3Error

from watchsync.core.errors import Failure, FailureKind
from watchsync.s3 import native

PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
UNSUPPORTED_CODES = frozenset({"NotImplemented", "501"})
TRANSIENT_CODES = frozenset(
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
        # The body did not match its checksum: the file changed after it was summed, or
        # the bytes were damaged in flight.  Sent again, it is read and summed afresh.
        "BadDigest",
        "XAmzContentChecksumMismatch",
        "IncompleteBody",
    }
)

# No answer at all: the request never reached S3, or nothing came back in time.
_NO_ANSWER = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    ConnectionError,
    TimeoutError,
)
# Trouble on the way that another attempt may not meet: a body cut short, a proxy, HTTP.
_IN_FLIGHT = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    botocore.exceptions.ResponseStreamingError,
    Urllib3Error,
)
# The CRT's network-level error names (no HTTP answer) worth another attempt; TLS ones
# (an untrusted certificate stays untrusted) and malformed requests are not.
_CRT_NETWORK = ("AWS_IO_SOCKET_", "AWS_IO_DNS_", "AWS_ERROR_HTTP_", "AWS_IO_")
_CRT_PERMANENT = ("AWS_IO_TLS_", "AWS_ERROR_HTTP_INVALID_")


class EndpointGone(Failure):
    """The S3 endpoint stopped answering: many attempts in a row found no connection, or
    the agent paused (reachability.py).  Its kind is :attr:`FailureKind.UNREACHABLE` and its
    ``text`` what the last attempt found; ``str()`` is the line that ends a run.  It is the
    verdict on every attempt, so none is retried."""

    def __init__(self, message: str, last: Failure | None = None) -> None:
        code, text = (last.code, last.text) if last is not None else ("EndpointGone", message)
        super().__init__(FailureKind.UNREACHABLE, code, text, message=message)


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` ``exc`` means (``exc`` itself when it is one already); anything
    that is neither S3's answer nor the connection's is :attr:`FailureKind.LOCAL`.

    >>> classify(botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")).kind
    <FailureKind.UNREACHABLE: 'unreachable'>
    """
    if isinstance(exc, Failure):
        return exc
    return Failure(_kind(exc), _code(exc), _text(exc))


def retried(exc: BaseException) -> bool:
    """Whether another attempt may succeed: no answer, 5xx, throttling, a body cut short;
    not once the endpoint was declared gone.

    >>> retried(ConnectionResetError()), retried(EndpointGone("gone"))
    (True, False)
    """
    failure = classify(exc)
    return failure.kind.retried and not isinstance(failure, EndpointGone)


def reraise(exc: BaseException) -> NoReturn:
    """Raise ``exc`` as it leaves the adapters: as its :class:`Failure`, or as it is when
    it is our own side's (a local error the caller wraps at the file boundary, a bug)."""
    failure = classify(exc)
    if failure.kind is FailureKind.LOCAL:
        raise exc
    raise failure from exc


def answer(code: str, message: str = "", *, status: int = 0) -> Failure:
    """The :class:`Failure` of an S3 error answer given as its code (and HTTP status where
    known), as in DeleteObjects' per-key errors.

    >>> answer("PreconditionFailed").kind
    <FailureKind.PRECONDITION: 'precondition'>
    """
    return Failure(_answer_kind(status, code), code, f"{code}: {message}" if message else code)


def _answer_kind(status: int, code: str) -> FailureKind:
    """What an error answer from S3 means, by its code and HTTP status."""
    if code in PRECONDITION_CODES or status == 412:
        return FailureKind.PRECONDITION
    if code in NOT_FOUND_CODES:
        return FailureKind.NOT_FOUND
    if code in UNSUPPORTED_CODES:
        return FailureKind.UNSUPPORTED
    if code in TRANSIENT_CODES or status >= 500 or status in (408, 429):
        return FailureKind.TRANSIENT
    return FailureKind.REFUSED


def _kind(exc: BaseException) -> FailureKind:
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return _answer_kind(status, _code(exc))
    if isinstance(exc, native.CrtError):
        return _crt_kind(exc)
    if isinstance(exc, botocore.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
        return FailureKind.REFUSED  # an untrusted certificate stays untrusted
    if isinstance(exc, _NO_ANSWER):
        return FailureKind.UNREACHABLE
    if isinstance(exc, _IN_FLIGHT):
        return FailureKind.TRANSIENT
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return FailureKind.REFUSED  # no credentials, a bad parameter, a checksum refused
    return FailureKind.LOCAL


def _crt_kind(exc: native.CrtError) -> FailureKind:
    """The native client's errors: an HTTP answer like boto3's, else by the CRT's name."""
    if isinstance(exc, native.CrtFileChanged):
        return FailureKind.LOCAL
    if exc.status:
        return _answer_kind(exc.status, exc.code)
    name = exc.code
    if name == native.TIMEOUT or (
        name.startswith(_CRT_NETWORK) and not name.startswith(_CRT_PERMANENT)
    ):
        return FailureKind.UNREACHABLE
    return FailureKind.REFUSED


def _code(exc: BaseException) -> str:
    """S3's error code (the HTTP status when the body had none, as for HEAD requests), the
    native client's code, else the exception's class name."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = exc.response.get("Error", {}).get("Code")
        if code:
            return str(code)
        return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if isinstance(exc, native.CrtError) and exc.code:
        return exc.code
    return type(exc).__name__


def _text(exc: BaseException) -> str:
    """One line for an S3 or connection error, without request signatures."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        msg = err.get("Message") or ""
        return f"{code}: {msg}".rstrip(": ") if msg else str(code)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, botocore.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in text:
        text += " (a private CA: point AWS_CA_BUNDLE or the profile's ca_bundle at it)"
    return text
