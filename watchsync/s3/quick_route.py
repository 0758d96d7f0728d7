"""Where, as whom and over what TLS a listing goes, found without botocore, or why not.

A no-op ``sync`` of a small tree is mostly the time it takes to import boto3 and build its
client.  The quick look lists without them, but only when the answer is certainly the one
botocore would reach: static keys from the environment or from the profile's files, a region
and an endpoint said plainly, no proxy.  Anything else (a role to assume, SSO, a credential
process, an instance role, an endpoint set in the profile, FIPS or dual-stack endpoints, a key
this module does not know) is botocore's to resolve: :func:`quick_route` then says why, and
``sync`` takes its usual path.
"""

from __future__ import annotations

import configparser
import os
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from watchsync.s3.location import S3Settings
from watchsync.s3.sigv4 import Keys

# Profile keys that change nothing about a listing's route, identity or trust.
_PLAIN_KEYS = frozenset(
    {
        "region",
        "output",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_security_token",
        "ca_bundle",
        "cli_pager",
        "cli_timestamp_format",
        "cli_binary_format",
        "cli_history",
        "cli_auto_prompt",
        "retry_mode",
        "max_attempts",
        "parameter_validation",
        "tcp_keepalive",
    }
)
# Environment variables that send requests elsewhere or sign them otherwise than plainly.
_ROUTED_BY_ENV = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_SIGV4A_SIGNING_REGION_SET",
    "AWS_AUTH_SCHEME_PREFERENCE",
)
# Buckets that need more than a plain signed GET: S3 Express directory buckets (their own
# session auth), access points and their aliases, ARNs.
_PLAIN_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SPECIAL_BUCKET = ("--x-s3", "-s3alias", "--op-s3", "--ol-s3")
_REGION = re.compile(r"[a-z]{2}(-gov)?-[a-z]+-[0-9]{1,2}")
# A region botocore accepts at all (others are a usage error, which is botocore's to say).
_VALID_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")


@dataclass(frozen=True)
class QuickRoute:
    """How the quick look reaches a bucket: ``scheme://netloc`` with ``base`` before the
    request path, path-style (``/bucket/``) or virtual-hosted (``/``), signed for ``region``
    with ``keys`` (None: unsigned, ``--no-sign-request``); ``ca_file`` replaces the trust
    store, ``verify`` False checks no certificate (``--no-verify-ssl``)."""

    scheme: str
    netloc: str
    base: str
    path_style: bool
    region: str
    keys: Keys | None = field(repr=False)
    verify: bool = True
    ca_file: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 30.0

    @property
    def endpoint_url(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.base}"


def quick_route(
    settings: S3Settings,
    bucket: str,
    *,
    env: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> QuickRoute | str:
    """The route of a listing of ``bucket``, or why only botocore can tell it.

    >>> quick_route(S3Settings(endpoint_url="http://127.0.0.1:8333", region="eu-west-1"),
    ...             "photos", env={"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"},
    ...             home=Path("/nonexistent")).endpoint_url
    'http://127.0.0.1:8333'
    >>> quick_route(S3Settings(region="eu-west-1"), "photos", env={"HTTPS_PROXY": "http://p"})
    'a proxy or endpoint variant is set (HTTPS_PROXY)'
    """
    env = os.environ if env is None else env
    home = Path.home() if home is None else home
    if not _PLAIN_BUCKET.fullmatch(bucket) or bucket.endswith(_SPECIAL_BUCKET):
        return f"bucket {bucket!r} is not a plain bucket name"
    routed = [name for name in _ROUTED_BY_ENV if env.get(name)]
    if routed:
        return f"a proxy or endpoint variant is set ({', '.join(routed)})"
    explicit = settings.profile is not None
    name = settings.profile or env.get("AWS_DEFAULT_PROFILE") or env.get("AWS_PROFILE") or "default"
    try:
        config = _section(
            Path(env.get("AWS_CONFIG_FILE") or home / ".aws" / "config"),
            ("default", "profile default") if name == "default" else (f"profile {name}",),
        )
        creds_file = _section(
            Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials"), (name,)
        )
    except (OSError, ValueError, configparser.Error) as exc:
        return f"the AWS config files cannot be read plainly ({type(exc).__name__})"
    if explicit and config is None and creds_file is None:
        return f"profile {name!r} is not in the AWS config files"
    for section in (config or {}, creds_file or {}):
        odd = sorted(set(section) - _PLAIN_KEYS)
        if odd or any("\n" in v for v in section.values()):
            return f"profile {name!r} sets {', '.join(odd) or 'nested values'}"
    keys = _keys(settings, env, config or {}, creds_file or {}, explicit=explicit)
    if isinstance(keys, str):
        return keys
    region = settings.region or env.get("AWS_DEFAULT_REGION") or (config or {}).get("region")
    if region and not _VALID_REGION.fullmatch(region):
        return f"region {region!r} is not one botocore takes"
    endpoint = settings.endpoint_url
    if (
        endpoint is None
        and (env.get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") or "").lower() != "true"
    ):
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    ca_file = settings.ca_bundle or env.get("AWS_CA_BUNDLE") or (config or {}).get("ca_bundle")

    def route(scheme: str, netloc: str, base: str, path_style: bool, region: str) -> QuickRoute:
        return QuickRoute(
            scheme,
            netloc,
            base,
            path_style,
            region,
            keys=keys,
            verify=settings.verify_ssl or bool(settings.ca_bundle),  # as make_client's verify
            ca_file=ca_file or None,
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
        )

    if endpoint:
        url = urllib.parse.urlsplit(endpoint)
        if (
            url.scheme not in ("http", "https")
            or not url.hostname
            or url.query
            or "@" in url.netloc
        ):
            return f"endpoint {endpoint!r} is not a plain http(s) URL"
        # botocore signs for us-east-1 when a custom endpoint has no region.
        return route(url.scheme, url.netloc, url.path.rstrip("/"), True, region or "us-east-1")
    if not region or not _REGION.fullmatch(region):
        return f"region {region!r} needs botocore's endpoint rules"
    if "." in bucket:  # the wildcard certificate does not cover dotted names
        return route("https", f"s3.{region}.amazonaws.com", "", True, region)
    return route("https", f"{bucket}.s3.{region}.amazonaws.com", "", False, region)


def _section(path: Path, names: tuple[str, ...]) -> dict[str, str] | None:
    """The one section of an AWS config file named by any of ``names`` (None: no such
    file or section), read by the parser botocore reads it with.  Raises ValueError where
    botocore might read it otherwise: a DEFAULT section, or two sections for one profile."""
    path = path.expanduser()
    if not path.is_file():
        return None
    parser = configparser.RawConfigParser()
    parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    found = [n for n in names if parser.has_section(n)]
    if parser.defaults() or len(found) > 1:
        raise ValueError(f"{path}: a DEFAULT section or a profile named twice")
    return {k.lower(): v.strip() for k, v in parser.items(found[0])} if found else None


def _keys(
    settings: S3Settings,
    env: Mapping[str, str],
    config: Mapping[str, str],
    creds_file: Mapping[str, str],
    *,
    explicit: bool,
) -> Keys | str | None:
    """The credentials botocore's chain would find first, when they are static ones: the
    environment's (unless a profile was named), the credentials file's, the config file's.
    None: the request goes unsigned; a str: only botocore can tell."""
    if not settings.sign_requests:
        return None
    if not explicit and (env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_SECRET_ACCESS_KEY")):
        access, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            return "the environment holds half a key pair"
        token = env.get("AWS_SESSION_TOKEN") or env.get("AWS_SECURITY_TOKEN")
        return Keys(access, secret, token or None)
    if not explicit and env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return "credentials come from a web identity"
    for section in (creds_file, config):  # botocore's order: credentials file, then config
        access, secret = section.get("aws_access_key_id"), section.get("aws_secret_access_key")
        if (access or secret) and not (access and secret):
            return "a profile holds half a key pair"
        if access and secret:
            token = section.get("aws_session_token") or section.get("aws_security_token")
            return Keys(access, secret, token or None)
    return "no static credentials (an instance or container role, or none at all)"
