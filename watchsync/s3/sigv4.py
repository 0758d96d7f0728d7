"""AWS Signature Version 4 for the one bodiless request the quick look sends (a listing page).

botocore's signer and the native runtime's both take longer to import (0.17 s and 0.08 s)
than s5cmd takes to finish a small no-op sync; the algorithm is a few hashes of the request,
so the quick look signs here.  ``tests/test_quick_look.py`` checks every signature against
botocore's own signer for the same request and time.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Keys:
    """Credentials as the request is signed with them (``token`` for temporary ones)."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """The canonical query string (also what goes on the wire): sorted, RFC 3986-encoded.

    >>> query_string([("prefix", "a b/"), ("list-type", "2")])
    'list-type=2&prefix=a%20b%2F'
    """
    quote = urllib.parse.quote
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params))


def signed_headers(
    method: str,
    host: str,
    path: str,
    params: Sequence[tuple[str, str]],
    keys: Keys,
    *,
    region: str,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
    service: str = "s3",
) -> dict[str, str]:
    """The headers of a signed bodiless request: ``headers`` plus Host, the date, the
    payload hash, the session token and the Authorization.  ``path`` is already
    percent-encoded (S3 signs it as sent, without encoding it again).

    >>> h = signed_headers("GET", "h", "/b/", [], Keys("AK", "SK"), region="us-east-1",
    ...                    now=datetime(2026, 12, 3, tzinfo=UTC))
    >>> h["Authorization"].split(", ")[1]
    'SignedHeaders=host;x-amz-content-sha256;x-amz-date'
    """
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    out = {
        **(headers or {}),
        "Host": host,
        "X-Amz-Date": stamp,
        "X-Amz-Content-SHA256": EMPTY_SHA256,
    }
    if keys.token:
        out["X-Amz-Security-Token"] = keys.token
    canonical = sorted((k.lower(), " ".join(v.split())) for k, v in out.items())
    names = ";".join(k for k, _ in canonical)
    request = "\n".join(
        [
            method,
            path,
            query_string(params),
            "".join(f"{k}:{v}\n" for k, v in canonical),
            names,
            EMPTY_SHA256,
        ]
    )
    scope = f"{stamp[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(request.encode()).hexdigest()]
    )
    key = f"AWS4{keys.secret_key}".encode()
    for part in (stamp[:8], region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={keys.access_key}/{scope}, "
        f"SignedHeaders={names}, Signature={signature}"
    )
    return out
