"""Where objects are and how to reach them: ``s3://bucket/prefix`` parsed, and the S3
settings of every command.  Plain values: nothing here imports the SDK, so the config file
and the CLI can use them without loading boto3."""

from __future__ import annotations

import ipaddress
import itertools
import json
import mimetypes
import re
from dataclasses import dataclass, field
from typing import Any

from watchsync.core.errors import UsageError

# The values aws's s3 commands take for --storage-class and --acl.
STORAGE_CLASSES = [
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "GLACIER_IR",
]
ACLS = [
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
]

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Access point ARNs as aws's s3 commands take them (awscli/customizations/s3/utils.py): the
# ARN is the bucket, what follows it the prefix.
_ACCESS_POINTS = (
    re.compile(
        r"^(?P<bucket>arn:(aws).*:s3:[a-z\-0-9]*:[0-9]{12}:accesspoint[:/][^/]+)/?(?P<key>.*)$"
    ),
    re.compile(
        r"^(?P<bucket>arn:(aws).*:s3-outposts:[a-z\-0-9]+:[0-9]{12}:outpost[/:]"
        r"[a-zA-Z0-9\-]{1,63}[/:]accesspoint[/:][a-zA-Z0-9\-]{1,63})[/:]?(?P<key>.*)$"
    ),
)
_UNSUPPORTED_ARNS = (
    (
        re.compile(r"^arn:(aws).*:s3-object-lambda:[a-z\-0-9]+:[0-9]{12}:accesspoint[/:]"),
        "s3 commands do not support S3 Object Lambda resources. Use s3api commands instead.",
    ),
    (
        re.compile(
            r"^arn:(aws).*:s3-outposts:[a-z\-0-9]+:[0-9]{12}:outpost[/:][^/:]+[/:]bucket[/:]"
        ),
        "s3 commands do not support Outpost Bucket ARNs. Use s3control commands instead.",
    ),
)


@dataclass(frozen=True, slots=True)
class S3Url:
    """``s3://bucket/prefix`` split; ``prefix`` is empty or ends with ``/``."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Url:
        """Parse ``s3://bucket[/prefix]``; the one parser for every command and the config.

        The bucket must follow S3's naming rules (3-63 characters of a-z, 0-9, ``.`` and
        ``-``, not an IP address) or be an access point ARN, as aws takes them; the prefix
        may not hold empty, ``.`` or ``..`` segments.

        >>> S3Url.parse("s3://bucket/some/dir")
        S3Url(bucket='bucket', prefix='some/dir/')
        >>> S3Url.parse("s3://arn:aws:s3:eu-west-1:123456789012:accesspoint/ap/dir").bucket
        'arn:aws:s3:eu-west-1:123456789012:accesspoint/ap'
        """
        if not url.startswith("s3://"):
            if url[:3].lower() == "s3:":
                raise UsageError(f"malformed S3 URL {url!r}: expected s3://bucket[/prefix]")
            raise UsageError(f"not an S3 URL: {url!r} (expected s3://bucket[/prefix])")
        path = url[5:]
        for unsupported, why in _UNSUPPORTED_ARNS:
            if unsupported.match(path):
                raise UsageError(why)
        arn = next((m for m in (r.match(path) for r in _ACCESS_POINTS) if m), None)
        if arn is not None:
            bucket, prefix = arn.group("bucket"), arn.group("key")
        else:
            bucket, _, prefix = path.partition("/")
        if not bucket:
            raise UsageError(f"no bucket in {url!r} (expected s3://bucket[/prefix])")
        if arn is None and (
            not _BUCKET_RE.match(bucket)
            or ".." in bucket
            or ".-" in bucket
            or "-." in bucket
            or _is_ipv4(bucket)
        ):
            raise UsageError(
                f"invalid bucket name {bucket!r} in {url!r}: use 3-63 characters of a-z, 0-9, "
                "'.' and '-', starting and ending with a letter or digit"
            )
        prefix = prefix.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise UsageError(f"bad prefix {prefix!r} in {url!r}: empty, '.' or '..' segment")
        return cls(bucket, prefix + "/" if prefix else "")

    @property
    def access_point(self) -> bool:
        """Whether the bucket is an access point ARN (botocore finds its host)."""
        return self.bucket.startswith("arn:")

    def key(self, path: str) -> str:
        """The object key of a relative path."""
        return self.prefix + path

    def url(self, path: str = "") -> str:
        """The ``s3://`` URL of a relative path, as aws prints it."""
        return f"s3://{self.bucket}/{self.prefix}{path}"


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class S3Settings:
    """How to reach and write the bucket: the one settings type of every command.

    ``None`` means boto3's own default chain.  ``bwlimit`` is bytes per second (None:
    unlimited); ``sse`` is ``"AES256"`` or ``"aws:kms"``.  ``checksum``: every upload carries
    a full-object CRC32C that S3 checks before storing, and downloads verify it.
    ``keep_mode``: each upload keeps the file's mode in the object's metadata (its mtime is
    always kept), and downloads restore it.  Credentials are never configured here: boto3's
    chain finds them (``profile``, environment, instance role).  The per-object settings
    (``acl`` to ``sse_c_key``) are aws's flags of the same names, already validated;
    ``expires`` is an HTTP date.
    """

    endpoint_url: str | None = None
    profile: str | None = None
    region: str | None = None
    max_concurrency: int = 16
    sse: str | None = None
    sse_kms_key_id: str | None = None
    storage_class: str | None = None
    bwlimit: int | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    checksum: bool = True
    keep_mode: bool = False
    acl: str | None = None
    grants: tuple[tuple[str, str], ...] = ()  # (GrantRead etc., grantee), as aws maps them
    cache_control: str | None = None
    content_type: str | None = None
    content_disposition: str | None = None
    content_encoding: str | None = None
    content_language: str | None = None
    expires: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    guess_mime_type: bool = True
    website_redirect: str | None = None
    request_payer: str | None = None
    sse_c: str | None = None
    sse_c_key: bytes | None = field(default=None, repr=False)
    page_size: int | None = None  # keys per listing request; None: the server's (S3: 1000)
    verify_ssl: bool = True
    ca_bundle: str | None = None
    sign_requests: bool = True

    def extra_args(self, path: str) -> dict[str, Any]:
        """The parameters of the request that writes ``path``'s object (PutObject,
        CreateMultipartUpload, CopyObject), as aws maps its flags onto them.

        >>> S3Settings(cache_control="max-age=60").extra_args("a.html")
        {'ContentType': 'text/html', 'CacheControl': 'max-age=60'}
        """
        extra: dict[str, Any] = {}
        mime = self.content_type
        if mime is None and self.guess_mime_type:
            mime, _ = mimetypes.guess_type(path)
        for name, value in (
            ("ContentType", mime),
            ("CacheControl", self.cache_control),
            ("ContentDisposition", self.content_disposition),
            ("ContentEncoding", self.content_encoding),
            ("ContentLanguage", self.content_language),
            ("Expires", self.expires),
            ("ACL", self.acl),
            ("WebsiteRedirectLocation", self.website_redirect),
            ("StorageClass", self.storage_class),
            ("ServerSideEncryption", self.sse),
            ("SSEKMSKeyId", self.sse_kms_key_id),
        ):
            if value:
                extra[name] = value
        extra.update(self.grants)
        if self.metadata:
            extra["Metadata"] = dict(self.metadata)
        return extra | self.read_args()

    def read_args(self) -> dict[str, Any]:
        """The parameters every request on an existing object or upload carries: the
        customer key (GetObject, HeadObject, UploadPart, ...) and who pays.

        >>> S3Settings(request_payer="requester").read_args()
        {'RequestPayer': 'requester'}
        """
        extra: dict[str, Any] = {}
        if self.sse_c and self.sse_c_key is not None:
            extra["SSECustomerAlgorithm"] = self.sse_c
            extra["SSECustomerKey"] = self.sse_c_key
        return extra | self.payer_args()

    def payer_args(self) -> dict[str, str]:
        """``RequestPayer`` for listings and deletes of a requester-pays bucket."""
        return {"RequestPayer": self.request_payer} if self.request_payer else {}


def parse_metadata(text: str) -> tuple[tuple[str, str], ...]:
    """``--metadata`` in either form aws takes: ``key=value,...`` or a JSON object.

    >>> parse_metadata('owner=me,"team"="a,b"')
    (('owner', 'me'), ('team', 'a,b'))
    >>> parse_metadata('{"owner": "me"}')
    (('owner', 'me'),)
    """
    text = text.strip()
    where = f"Error parsing parameter '--metadata': {{}} for input: {text}"
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(where.format(f"Invalid JSON: {exc.msg}")) from None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise UsageError(where.format("expected a JSON object of strings"))
        pairs = list(value.items())
    else:
        pairs = []
        cuts = [-1, *_outside_quotes(text, ","), len(text)]
        for start, end in itertools.pairwise(cuts):
            item = text[start + 1 : end]
            eq = _outside_quotes(item, "=")
            if not eq:
                raise UsageError(where.format("Expected: '=', received: 'EOF'"))
            pairs.append((_unquote(item[: eq[0]]), _unquote(item[eq[0] + 1 :])))
    if any(not key for key, _ in pairs):
        raise UsageError(where.format("empty key"))
    return tuple(pairs)


def _outside_quotes(text: str, sep: str) -> list[int]:
    """Where ``sep`` occurs in ``text`` outside single or double quotes."""
    found, quote = [], ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == sep:
            found.append(i)
    return found


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    return text
