"""The one failure vocabulary: every SDK, awscrt and connection error, classified once
(watchsync/s3/failures.py) into a Failure whose kind the rest of watchsync decides on; the
retry policy and the adapters' boundary go by the same classification."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from awscrt.exceptions import AwsCrtError
from awscrt.s3 import S3ResponseError
from botocore.stub import Stubber
from urllib3.exceptions import ProtocolError

from watchsync.core.errors import Failure, FailureKind, failure_of
from watchsync.core.model import Condition
from watchsync.s3 import native
from watchsync.s3.failures import EndpointGone, answer, classify, retried
from watchsync.s3.location import S3Url
from watchsync.s3.retry import RetryPolicy
from watchsync.s3.transfer import Transfer

K = FailureKind


def client_error(status: int, code: str, message: str = "", op: str = "PutObject") -> Any:
    """A ClientError as botocore raises it for an error answer."""
    error = {"Code": code, "Message": message} if code else {}
    response: Any = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(response, op)


def crt_answer(status: int, body: bytes) -> native.CrtError:
    """An error answer as the native client's future fails with it, translated."""
    return native._error_from_crt(
        S3ResponseError(
            code=14343,
            name="AWS_ERROR_S3_INVALID_RESPONSE_STATUS",
            message="m",
            status_code=status,
            headers=[],
            body=body,
        )
    )


def crt_error(name: str) -> native.CrtError:
    """A failure below HTTP as the native client's future fails with it, translated."""
    return native._error_from_crt(AwsCrtError(1, name, "m"))


URL = "http://127.0.0.1:9"
CERT = "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"


@pytest.mark.parametrize(
    ("exc", "kind", "code"),
    [
        # no answer at all
        (botocore.exceptions.EndpointConnectionError(endpoint_url=URL), K.UNREACHABLE, None),
        (botocore.exceptions.ConnectTimeoutError(endpoint_url=URL), K.UNREACHABLE, None),
        (botocore.exceptions.ReadTimeoutError(endpoint_url=URL), K.UNREACHABLE, None),
        (botocore.exceptions.ConnectionClosedError(endpoint_url=URL), K.UNREACHABLE, None),
        (ConnectionResetError(104, "reset"), K.UNREACHABLE, None),
        (crt_error("AWS_IO_SOCKET_CONNECTION_REFUSED"), K.UNREACHABLE, None),
        (native.CrtError(0, native.TIMEOUT, "no answer within 1 s"), K.UNREACHABLE, "Timeout"),
        # may pass
        (client_error(503, "SlowDown", "Please reduce your request rate."), K.TRANSIENT, None),
        (client_error(500, "InternalError"), K.TRANSIENT, None),
        (client_error(400, "RequestTimeout"), K.TRANSIENT, None),
        (client_error(400, "BadDigest"), K.TRANSIENT, None),
        (client_error(429, ""), K.TRANSIENT, "429"),
        (botocore.exceptions.ResponseStreamingError(error="reset"), K.TRANSIENT, None),
        (ProtocolError("Connection broken"), K.TRANSIENT, None),
        (botocore.exceptions.SSLError(endpoint_url=URL, error=OSError("EOF")), K.TRANSIENT, None),
        (crt_answer(503, b"<Error><Code>SlowDown</Code></Error>"), K.TRANSIENT, "SlowDown"),
        (crt_answer(500, b""), K.TRANSIENT, "500"),
        # a permanent no
        (client_error(403, "AccessDenied", "Access Denied"), K.REFUSED, "AccessDenied"),
        (client_error(404, "NoSuchBucket"), K.REFUSED, "NoSuchBucket"),
        (client_error(403, "", op="HeadObject"), K.REFUSED, "403"),
        (botocore.exceptions.SSLError(endpoint_url=URL, error=OSError(CERT)), K.REFUSED, None),
        (botocore.exceptions.NoCredentialsError(), K.REFUSED, None),
        (crt_answer(403, b"<Error><Code>AccessDenied</Code></Error>"), K.REFUSED, "AccessDenied"),
        (crt_answer(404, b"<Error><Code>NoSuchBucket</Code></Error>"), K.REFUSED, "NoSuchBucket"),
        (crt_error("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"), K.REFUSED, None),
        # a conditional request lost
        (client_error(412, "PreconditionFailed"), K.PRECONDITION, "PreconditionFailed"),
        (client_error(409, "ConditionalRequestConflict"), K.PRECONDITION, None),
        (
            crt_answer(412, b"<Error><Code>PreconditionFailed</Code></Error>"),
            K.PRECONDITION,
            "PreconditionFailed",
        ),
        # gone
        (client_error(404, "NoSuchKey", op="GetObject"), K.NOT_FOUND, "NoSuchKey"),
        (client_error(404, "404", "Not Found", op="HeadObject"), K.NOT_FOUND, "404"),
        (client_error(404, "", op="HeadObject"), K.NOT_FOUND, "404"),
        # conditional requests rejected
        (client_error(501, "NotImplemented", "If-Match"), K.UNSUPPORTED, "NotImplemented"),
        (crt_answer(501, b"<Error><Code>NotImplemented</Code></Error>"), K.UNSUPPORTED, None),
        # our own side
        (OSError(28, "No space left on device"), K.LOCAL, "OSError"),
        (crt_error("AWS_ERROR_FILE_INVALID_PATH"), K.LOCAL, None),
        (ValueError("a bug"), K.LOCAL, "ValueError"),
    ],
    ids=lambda v: v.value if isinstance(v, FailureKind) else None,
)
def test_classification(exc: BaseException, kind: FailureKind, code: str | None) -> None:
    failure = classify(exc)
    assert failure.kind is kind, repr(failure)
    if code is not None:
        assert failure.code == code
    assert failure.text and "\n" not in failure.text
    assert classify(failure) is failure  # a Failure stays itself
    assert retried(exc) is kind.retried


def test_the_text_is_one_line_for_humans() -> None:
    assert classify(client_error(403, "AccessDenied", "Access Denied")).text == (
        "AccessDenied: Access Denied"
    )
    ssl = classify(botocore.exceptions.SSLError(endpoint_url=URL, error=OSError(CERT)))
    assert ssl.text.endswith("(a private CA: point AWS_CA_BUNDLE or the profile's ca_bundle at it)")
    assert classify(crt_answer(503, b"<Error><Code>SlowDown</Code></Error>")).code == "SlowDown"


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("PreconditionFailed", K.PRECONDITION),
        ("NoSuchKey", K.NOT_FOUND),
        ("AccessDenied", K.REFUSED),
        ("InternalError", K.TRANSIENT),
    ],
)
def test_delete_objects_per_key_errors(code: str, kind: FailureKind) -> None:
    assert answer(code, "m").kind is kind


def test_anything_else_is_our_own_side() -> None:
    failure = failure_of(OSError(5, "Input/output error"))
    assert (failure.kind, failure.text) == (K.LOCAL, "[Errno 5] Input/output error")
    refused = Failure(K.REFUSED, "AccessDenied", "AccessDenied: Access Denied")
    assert failure_of(refused) is refused


def test_retries_follow_the_kind() -> None:
    calls: list[int] = []

    def failing(exc: BaseException) -> Any:
        def fn() -> None:
            calls.append(1)
            raise exc

        return fn

    policy = RetryPolicy(attempts=3, initial=0.0, max_wait=0.0)
    with pytest.raises(botocore.exceptions.ClientError):
        policy.call(failing(client_error(503, "SlowDown")))
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(botocore.exceptions.ClientError):
        policy.call(failing(client_error(403, "AccessDenied")))
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(EndpointGone):  # no answer, but the verdict on every attempt
        policy.call(failing(EndpointGone("S3 endpoint x stopped answering")))
    assert len(calls) == 1


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _transfer(client: Any, root: Path) -> Transfer:
    return Transfer(client, S3Url.parse("s3://bucket/p"), root, retry=RetryPolicy(attempts=1))


def test_no_sdk_exception_leaves_the_transfer(tmp_path: Path) -> None:
    """The boundary: S3's answers and a dead endpoint both leave as a Failure, with the
    SDK's exception only as its cause."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{_closed_port()}",
        region_name="us-east-1",
        aws_access_key_id="k",
        aws_secret_access_key="s",
        config=botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=2),
    )
    (tmp_path / "a.txt").write_bytes(b"a")
    with Stubber(client) as stub, _transfer(client, tmp_path) as t:
        stub.add_client_error("copy_object", "PreconditionFailed", http_status_code=412)
        stub.add_client_error("head_object", "403", http_status_code=403)
        stub.add_client_error("put_object", "NotImplemented", http_status_code=501)
        stub.add_response(
            "delete_objects",
            {"Errors": [{"Key": "p/x", "Code": "PreconditionFailed", "Message": "m"}]},
        )
        with pytest.raises(Failure) as info:
            t.copy("a.txt", "b.txt", condition=Condition("e"))
        assert info.value.kind is K.PRECONDITION
        assert isinstance(info.value.__cause__, botocore.exceptions.ClientError)
        with pytest.raises(Failure) as info:
            t.head("a.txt")
        assert info.value.kind is K.REFUSED
        with pytest.raises(Failure) as info:
            t.upload("a.txt", condition=Condition("e"))
        assert info.value.kind is K.UNSUPPORTED
        [(path, failure)] = t.delete_remote(["x"], conditions={"x": Condition("e")})
        assert (path, failure.kind) == ("x", K.PRECONDITION)
    with _transfer(client, tmp_path) as t, pytest.raises(Failure) as info:
        t.head("a.txt")  # nothing listens there
    assert info.value.kind is K.UNREACHABLE
    assert isinstance(info.value.__cause__, botocore.exceptions.EndpointConnectionError)
    client.close()
