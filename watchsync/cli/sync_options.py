"""``watchsync sync``'s arguments turned into a :class:`~watchsync.cli.sync_command.SyncRequest`:
the values aws takes in its own forms (``--metadata`` as ``k=v,...`` or JSON, ``--grants``,
``--sse-c-key`` with ``fileb://``), checked before anything is transferred."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from watchsync.cli.sync_command import SyncRequest
from watchsync.core.errors import UsageError, WatchsyncError
from watchsync.core.filters import Filters
from watchsync.core.model import Direction
from watchsync.s3.location import S3Settings, S3Url, parse_metadata

# aws's --grants permissions and the request parameters they set.
_GRANTS = {
    "read": "GrantRead",
    "readacl": "GrantReadACP",
    "writeacl": "GrantWriteACP",
    "full": "GrantFullControl",
}


def sync_request(args: argparse.Namespace) -> SyncRequest:
    """Validate ``sync`` arguments into a request; a bad value or combination raises
    :class:`UsageError` (aws's code 255: nothing was tried)."""
    from watchsync.agent.config import parse_size

    src_s3, dst_s3 = _is_s3(args.src), _is_s3(args.dst)
    if src_s3 and dst_s3:
        raise UsageError(
            "sync between two S3 locations is not supported: one of SRC and DST must be "
            "a local directory"
        )
    if not src_s3 and not dst_s3:
        raise UsageError("sync needs one local directory and one s3:// URL, got two local paths")
    direction = Direction.DOWN if src_s3 else Direction.UP
    local, url = (args.dst, args.src) if src_s3 else (args.src, args.dst)
    if args.sse_kms_key_id and args.sse != "aws:kms":
        raise UsageError("--sse-kms-key-id needs --sse aws:kms")
    _pair(args.sse_c, args.sse_c_key, "--sse-c", "--sse-c-key")
    _pair(
        args.sse_c_copy_source,
        args.sse_c_copy_source_key,
        "--sse-c-copy-source",
        "--sse-c-copy-source-key",
    )
    if args.checksum_algorithm not in (None, "CRC32C"):
        raise UsageError(
            f"--checksum-algorithm {args.checksum_algorithm}: watchsync sends CRC32C only "
            "(--no-checksum sends none)"
        )
    if args.case_conflict != "ignore":
        raise UsageError(
            f"--case-conflict {args.case_conflict}: not supported; every key is downloaded "
            "under its own name (as with ignore)"
        )
    try:
        bwlimit = parse_size(args.bwlimit) if args.bwlimit else None
    except WatchsyncError as exc:
        raise UsageError(f"--bwlimit: {exc}") from exc
    settings = S3Settings(
        endpoint_url=args.endpoint_url,
        profile=args.profile,
        region=args.region,
        max_concurrency=args.max_concurrency or 16,
        sse=args.sse,
        sse_kms_key_id=args.sse_kms_key_id,
        storage_class=args.storage_class,
        bwlimit=bwlimit,
        checksum=args.checksum is not False,
        keep_mode=bool(args.keep_mode),
        acl=args.acl,
        grants=parse_grants(args.grants or ()),
        cache_control=args.cache_control,
        content_type=args.content_type,
        content_disposition=args.content_disposition,
        content_encoding=args.content_encoding,
        content_language=args.content_language,
        expires=_expires(args.expires),
        metadata=parse_metadata(args.metadata) if args.metadata is not None else (),
        guess_mime_type=args.guess_mime_type,
        website_redirect=args.website_redirect,
        request_payer=args.request_payer,
        sse_c=args.sse_c,
        sse_c_key=read_blob(args.sse_c_key, "--sse-c-key") if args.sse_c_key else None,
        page_size=args.page_size or None,
        verify_ssl=args.verify_ssl,
        ca_bundle=args.ca_bundle,
        sign_requests=args.sign_requests,
    )
    settings = replace(
        settings,
        connect_timeout=args.cli_connect_timeout or settings.connect_timeout,
        read_timeout=args.cli_read_timeout or settings.read_timeout,
    )
    return SyncRequest(
        local=local,
        url=S3Url.parse(url),
        direction=direction,
        delete=args.delete,
        dry_run=args.dryrun,
        size_only=args.size_only,
        exact_timestamps=args.exact_timestamps,
        follow_symlinks=args.follow_symlinks,
        filters=Filters.of(expand_rules(args.filter_rules)),
        s3=settings,
        max_delete=args.max_delete,
        max_delete_percent=args.max_delete_percent,
        force_delete=args.force_delete,
        force_archived=args.force_glacier_transfer,
        quiet_archived=args.ignore_glacier_warnings,
    )


def _is_s3(arg: str) -> bool:
    """Whether an argument is meant as an S3 URL; a malformed one is an error here, so that
    ``s3:/b/x`` is not taken for a local path."""
    if arg[:3].lower() == "s3:":
        S3Url.parse(arg)  # raises for anything but s3://bucket[/prefix]
        return True
    return False


def _pair(first: object, second: object, first_flag: str, second_flag: str) -> None:
    """aws's rule for a flag that needs its partner."""
    if first and not second:
        raise UsageError(f"if {first_flag} is specified, {second_flag} must be specified as well")
    if second and not first:
        raise UsageError(f"if {second_flag} is specified, {first_flag} must be specified as well")


def _expires(text: str | None) -> str | None:
    if text is None:
        return None
    from watchsync.s3.client import http_date  # botocore reads every form aws takes

    try:
        return http_date(text)
    except ValueError:
        raise UsageError(
            f"--expires: not a date and time: {text!r} (e.g. 2030-01-01T00:00:00Z)"
        ) from None


def parse_grants(grants: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--grants read=uri=http://acs.amazonaws.com/groups/global/AllUsers ...`` as the
    request parameters aws sets, with aws's messages for a bad one.

    >>> parse_grants(["read=id=abc"])
    (('GrantRead', 'id=abc'),)
    """
    out = []
    for grant in grants:
        permission, eq, grantee = grant.partition("=")
        if not eq:
            raise UsageError("grants should be of the form permission=principal")
        if permission not in _GRANTS:
            raise UsageError("permission must be one of: read|readacl|writeacl|full")
        out.append((_GRANTS[permission], grantee))
    return tuple(out)


def read_blob(value: str, flag: str) -> bytes:
    """A binary argument as aws reads it: ``fileb://PATH`` (the file's bytes),
    ``file://PATH`` (its text), else the text itself (UTF-8).

    >>> read_blob("0123", "--sse-c-key")
    b'0123'
    """
    for scheme, binary in (("fileb://", True), ("file://", False)):
        if value.startswith(scheme):
            path = os.path.expanduser(value[len(scheme) :])
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                raise UsageError(f"{flag}: cannot read {path}: {exc.strerror or exc}") from None
            return data if binary else data.decode("utf-8").encode("utf-8")
    return value.encode("utf-8")


def expand_rules(rules: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The filter rules in the order given, each ``--exclude-from FILE`` replaced by an
    ``exclude`` per pattern in the file (one a line; blank lines and ``#`` comments skipped).

    >>> expand_rules([("exclude", "*.tmp"), ("include", "a.tmp")])
    [('exclude', '*.tmp'), ('include', 'a.tmp')]
    """
    out: list[tuple[str, str]] = []
    for kind, value in rules:
        if kind != "exclude-from":
            out.append((kind, value))
            continue
        try:
            text = Path(value).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(f"--exclude-from: cannot read {value}: {why or exc}") from None
        for line in text.splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                out.append(("exclude", line.rstrip("\r")))
    return out
