"""S3 locations, the shared client, and streaming listings.  No decisions are made here."""

from __future__ import annotations

import email.utils
import secrets
from datetime import UTC
from typing import TYPE_CHECKING, Any

import boto3
import botocore
import botocore.exceptions
import botocore.session
from botocore.config import Config
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from watchsync.core.errors import FailureKind, UsageError
from watchsync.s3 import native
from watchsync.s3.failures import classify
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.timestamps import mtime_ns as mtime_ns
from watchsync.s3.timestamps import parse_timestamp as parse_timestamp

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client as S3Client
else:
    S3Client = Any


def make_client(settings: S3Settings) -> S3Client:
    """One client shared by every thread, its connection pool sized to the concurrency.

    botocore's own retries are switched off: transient errors are retried once, by the
    caller's tenacity policy, so attempts do not multiply.
    """
    core = botocore.session.get_session()
    # Listings carry a LastModified per object; botocore's default parser (dateutil) was
    # over half the CPU of a no-op reconcile.
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )
    try:
        session = boto3.session.Session(
            botocore_session=core, profile_name=settings.profile, region_name=settings.region
        )
    except botocore.exceptions.ProfileNotFound as exc:
        raise UsageError(str(exc)) from exc
    config = Config(
        signature_version=None if settings.sign_requests else botocore.UNSIGNED,
        max_pool_connections=settings.max_concurrency + 4,
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3=_s3_options(settings),
        tcp_keepalive=True,
        # TCP's 16-bit sum lets damaged bytes through and plain http has nothing else, so
        # bodies carry a CRC both ways unless turned off (``--no-checksum``).
        request_checksum_calculation="when_supported" if settings.checksum else "when_required",
        response_checksum_validation="when_supported" if settings.checksum else "when_required",
    )
    try:
        client: S3Client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            config=config,
            # None: botocore's own choice (AWS_CA_BUNDLE, the profile's ca_bundle)
            verify=settings.ca_bundle or (None if settings.verify_ssl else False),
        )
    except botocore.exceptions.InvalidRegionError as exc:
        raise UsageError(f"invalid region {session.region_name!r}: {exc}") from exc
    except ValueError as exc:  # botocore's "Invalid endpoint: ..."
        raise UsageError(
            f"invalid endpoint URL {settings.endpoint_url!r} (expected http(s)://host[:port])"
        ) from exc
    return client


def _s3_options(settings: S3Settings) -> _S3Dict:
    """botocore's S3 options.  Under ``--bwlimit`` payloads go unsigned, as the native
    client's always do: botocore would otherwise read each body once more to hash it before
    sending it, and the pacing (which charges the first read) would then run ahead of the
    wire.  What protects the bytes is the CRC32C every upload carries."""
    options: _S3Dict = {"addressing_style": "path" if settings.endpoint_url else "auto"}
    if settings.bwlimit:
        options["payload_signing_enabled"] = False
    return options


def http_date(text: str) -> str:
    """An ``--expires`` value as the HTTP date the Expires header carries, from any form
    botocore takes (ISO 8601, epoch seconds, an HTTP date); ValueError when it is none.

    >>> http_date("2030-01-01T00:00:00Z")
    'Tue, 01 Jan 2030 00:00:00 GMT'
    """
    try:
        when = botocore_parse_timestamp(text)
    except (ValueError, OverflowError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return email.utils.format_datetime(when.astimezone(UTC), usegmt=True)


def aws_message(exc: BaseException) -> str:
    """What aws-cli prints for ``exc`` (after ``fatal error:`` or ``upload failed: ...``):
    botocore's own text of the SDK error a :class:`Failure` was raised from (``An error
    occurred (NoSuchBucket) when calling the ListObjectsV2 operation: ...``, ``Could not
    connect to the endpoint URL: "..."``), the native client's answers put the same way,
    else the failure's own line.

    >>> aws_message(botocore.exceptions.EndpointConnectionError(endpoint_url="http://h/b"))
    'Could not connect to the endpoint URL: "http://h/b"'
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, botocore.exceptions.ClientError):
            # As aws words it: without the retry count botocore adds when retries are ours.
            err = seen.response.get("Error", {})
            code, message = err.get("Code") or "Unknown", err.get("Message") or "Unknown"
            operation = seen.operation_name
            return f"An error occurred ({code}) when calling the {operation} operation: {message}"
        if isinstance(seen, botocore.exceptions.BotoCoreError):
            return classify(seen).text if "CERTIFICATE_VERIFY_FAILED" in str(seen) else str(seen)
        if isinstance(seen, native.CrtError) and seen.status:
            said = seen.message
            return f"An error occurred ({seen.code}) when calling the PutObject operation: {said}"
        seen = seen.__cause__
    return str(exc)


def probe_bucket(client: S3Client, where: S3Url) -> list[str]:
    """Exists, can be listed, can be written: in that order, as the agent needs them.

    HeadBucket comes first because some servers (SeaweedFS) create a missing bucket on the
    first PutObject, which would hide a typo in the bucket name.
    """
    try:
        client.head_bucket(Bucket=where.bucket)
    except Exception as exc:
        failure = classify(exc)
        if failure.kind is FailureKind.LOCAL:
            raise
        if failure.kind is FailureKind.NOT_FOUND or failure.code == "NoSuchBucket":
            return [f"bucket {where.bucket} does not exist (NoSuchBucket)"]
        if failure.code in ("403", "AccessDenied"):
            return [f"no access to bucket {where.bucket} (AccessDenied)"]
        return [f"cannot reach bucket {where.bucket}: {failure.text}"]
    for what, step in (("cannot list", _list_one), ("cannot write", _write_probe)):
        try:
            step(client, where)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind is FailureKind.LOCAL:
                raise
            return [f"{what} {where.url()}: {failure.text}"]
    return []


def _list_one(client: S3Client, where: S3Url) -> None:
    """One key of the prefix, to see that it can be listed."""
    client.list_objects_v2(Bucket=where.bucket, Prefix=where.key(""), MaxKeys=1)


def _write_probe(client: S3Client, where: S3Url) -> None:
    """A throwaway object written and deleted, to see that the prefix can be written."""
    probe = where.key(f".watchsync-probe-{secrets.token_hex(6)}")
    client.put_object(Bucket=where.bucket, Key=probe, Body=b"watchsync check")
    client.delete_object(Bucket=where.bucket, Key=probe)
