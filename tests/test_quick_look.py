"""The quick look of a ``sync`` (no SDK for a run with nothing to do): its signatures are
botocore's, its credentials and region are the ones botocore's chain finds or it steps
aside, it sees every change the usual way sees, and a no-op run through it says exactly
what the usual way says."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from s3server import SeaweedServer

from watchsync.cli import quick_look as quick_look_module
from watchsync.cli import sync_command
from watchsync.cli.quick_look import quick_look
from watchsync.core.model import Direction
from watchsync.core.plan import SyncOptions
from watchsync.fs.walk import WalkOptions
from watchsync.s3 import listing, listpage
from watchsync.s3.location import S3Settings, S3Url
from watchsync.s3.quick_list import QuickLister
from watchsync.s3.quick_route import QuickRoute, quick_route
from watchsync.s3.sigv4 import Keys, query_string, signed_headers

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 3, 21, 4, 5, tzinfo=UTC)


# -- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "path", "params", "token", "extra"),
    [
        ("127.0.0.1:8333", "/b/", [("list-type", "2"), ("prefix", "")], None, {}),
        (
            "b.s3.eu-west-1.amazonaws.com",
            "/",
            [("list-type", "2"), ("prefix", "a b/ü+%"), ("continuation-token", "x/y=+")],
            "session-token",
            {"x-amz-request-payer": "requester"},
        ),
        ("h:9000", "/base/b.c/", [("max-keys", "7"), ("encoding-type", "url")], None, {}),
    ],
)
def test_signature_is_botocores(
    host: str, path: str, params: list[tuple[str, str]], token: str | None, extra: dict[str, str]
) -> None:
    keys = Keys("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = signed_headers(
        "GET", host, path, params, keys, region="eu-west-1", headers=extra, now=NOW
    )
    auth = S3SigV4Auth(Credentials(keys.access_key, keys.secret_key, token), "s3", "eu-west-1")
    headers = {k: v for k, v in ours.items() if k != "Authorization"}
    request = AWSRequest("GET", f"http://{host}{path}?{query_string(params)}", headers=headers)
    request.context["timestamp"] = ours["X-Amz-Date"]
    canonical = auth.canonical_request(request)
    signature = auth.signature(auth.string_to_sign(request, canonical), request)
    assert ours["Authorization"].endswith(f"Signature={signature}")
    assert (
        f"SignedHeaders={auth.signed_headers(auth.headers_to_sign(request))},"
        in (ours["Authorization"])
    )


# -- credentials and region: botocore's, or none --------------------------------------------


AWS_VARS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_DEFAULT_REGION", "AWS_REGION",
    "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE", "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "BOTO_CONFIG",
)  # fmt: skip
ENV_KEYS = {"AWS_ACCESS_KEY_ID": "AK-env", "AWS_SECRET_ACCESS_KEY": "SK-env"}


def ini(section: str, access: str = "", secret: str = "", **more: str) -> str:
    """One section of an AWS config file."""
    lines = [f"[{section}]"]
    lines += [f"aws_access_key_id = {access}"] if access else []
    lines += [f"aws_secret_access_key = {secret}"] if secret else []
    lines += [f"{k} = {v}" for k, v in more.items()]
    return "\n".join(lines) + "\n"


P_CREDS = ini("p", "AK-p", "SK-p")
SCENARIOS: dict[str, tuple[dict[str, str], str, str, str | None]] = {
    # name: (environment, config file, credentials file, --profile)
    "environment": (ENV_KEYS | {"AWS_DEFAULT_REGION": "eu-west-1"}, "", "", None),
    "environment with a token": (ENV_KEYS | {"AWS_SESSION_TOKEN": "tok"}, "", "", None),
    "environment over AWS_PROFILE": (
        ENV_KEYS | {"AWS_PROFILE": "p"}, ini("profile p", region="eu-north-1"), P_CREDS, None
    ),
    "--profile over the environment": (
        ENV_KEYS, ini("profile p", region="eu-north-1"), P_CREDS, "p"
    ),
    "credentials file": ({}, "", ini("default", "AK-c", "SK-c"), None),
    "config file": ({}, ini("default", "AK-f", "SK-f", region="ap-south-1"), "", None),
    "credentials file over config file": (
        {"AWS_PROFILE": "p"},
        ini("profile p", "AK-f", "SK-f"),
        ini("p", "AK-c", "SK-c", aws_session_token="T"),
        None,
    ),
    "[profile default]": ({}, ini("profile default", "A", "S"), "", None),
    "a role to assume": (
        {},
        ini("default", role_arn="arn:aws:iam::1:role/r", source_profile="s")
        + ini("profile s", "A", "S"),
        "",
        None,
    ),
    "a credential process": ({}, ini("default", credential_process="/bin/false"), "", None),
    "half a pair in the file": ({}, "", ini("default", "A"), None),
    "half a pair in the environment": ({"AWS_ACCESS_KEY_ID": "A"}, "", "", None),
    "a web identity": (
        {"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_ROLE_ARN": "arn:aws:iam::1:role/r"}, "", "", None
    ),
    "nothing at all": ({}, "", "", None),
}  # fmt: skip
NEEDS_BOTOCORE = {
    "a role to assume", "a credential process", "half a pair in the file",
    "half a pair in the environment", "a web identity", "nothing at all",
}  # fmt: skip


@pytest.fixture
def aws_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    for name in AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    config, creds = tmp_path / "config", tmp_path / "credentials"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("BOTO_CONFIG", str(tmp_path / "no-boto"))
    yield config, creds


@pytest.mark.parametrize("name", SCENARIOS)
def test_credentials_and_region_are_botocores(
    name: str, aws_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env, config_text, creds_text, profile = SCENARIOS[name]
    config, creds = aws_files
    config.write_text(config_text)
    creds.write_text(creds_text)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", profile=profile)
    route = quick_route(settings, "bucket")
    if name in NEEDS_BOTOCORE:
        assert isinstance(route, str), route
        return
    assert isinstance(route, QuickRoute), route
    session = boto3.session.Session(profile_name=profile)
    found = session.get_credentials()
    assert found is not None
    frozen = found.get_frozen_credentials()
    assert route.keys is not None
    assert (route.keys.access_key, route.keys.secret_key, route.keys.token) == tuple(frozen)[:3]
    assert route.region == (session.region_name or "us-east-1")


def test_routes(aws_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    for var, value in ENV_KEYS.items():
        monkeypatch.setenv(var, value)
    aws = quick_route(S3Settings(region="eu-west-1"), "photos")
    assert isinstance(aws, QuickRoute)
    assert (aws.endpoint_url, aws.path_style) == (
        "https://photos.s3.eu-west-1.amazonaws.com",
        False,
    )
    dotted = quick_route(S3Settings(region="eu-west-1"), "my.photos")
    assert isinstance(dotted, QuickRoute)
    assert (dotted.netloc, dotted.path_style) == ("s3.eu-west-1.amazonaws.com", True)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2/base/")
    env_route = quick_route(S3Settings(), "photos")
    assert isinstance(env_route, QuickRoute)
    assert (env_route.endpoint_url, env_route.region) == ("http://127.0.0.1:2/base", "us-east-1")
    flag = quick_route(S3Settings(endpoint_url="http://127.0.0.1:3"), "photos")
    assert isinstance(flag, QuickRoute) and flag.netloc == "127.0.0.1:3"
    both = quick_route(S3Settings(verify_ssl=False, ca_bundle="/ca.pem"), "photos")
    assert isinstance(both, QuickRoute) and both.verify  # botocore verifies with the bundle
    assert isinstance(quick_route(S3Settings(region="eu west"), "photos"), str)
    for bucket in ("dir--x-s3", "arn:aws:s3:eu-west-1:1:accesspoint/a", "ap-abc-s3alias"):
        assert isinstance(quick_route(S3Settings(), bucket), str)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert isinstance(quick_route(S3Settings(), "photos"), str)


def test_request_line_refuses_what_it_does_not_know() -> None:
    lister = QuickLister(QuickRoute("http", "127.0.0.1:9", "", True, "us-east-1", None))
    with pytest.raises(Exception, match="ExpectedBucketOwner"):
        lister.request_line({"Bucket": "b", "Prefix": "", "ExpectedBucketOwner": "1"})


# -- against the server ---------------------------------------------------------------------


def _tree(root: Path) -> None:
    for i in range(12):
        path = root / f"d{i % 3}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * i)
        # Older than the upload's whole second: a file written in that same second is sent
        # again unless the object's kept mtime says otherwise, which only a HEAD tells.
        os.utime(path, (1e9, 1e9))


def _look(root: Path, url: str, direction: Direction, **settings: Any) -> list[Any] | None:
    """The skipped paths of an idle run, None for a run with work."""
    look = quick_look(
        root,
        S3Url.parse(url),
        S3Settings(**settings),
        opts=SyncOptions(direction=direction),
        walk_options=WalkOptions(check_readable=True),
    )
    return look.skipped if look.idle else None


def test_the_look_sees_every_change(
    sync_run: Any, bucket: str, s3: S3Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, url = tmp_path / "src", f"s3://{bucket}/p"
    _tree(src)
    assert _look(src, url, Direction.UP) is None  # nothing in S3 yet
    assert sync_run(str(src), url)[0] == 0
    assert _look(src, url, Direction.UP) == []
    (src / "d1" / "f1.txt").write_bytes(b"yy")  # another size, as old as the rest
    os.utime(src / "d1" / "f1.txt", (1e9, 1e9))
    assert _look(src, url, Direction.UP) is None
    assert sync_run(str(src), url)[0] == 0
    assert _look(src, url, Direction.UP) == []
    # Down, from objects another client wrote: LastModified decides.
    others, down = f"s3://{bucket}/q", tmp_path / "down"
    for i in range(3):
        s3.put_object(Bucket=bucket, Key=f"q/o{i}", Body=b"o" * i)
    down.mkdir()
    assert _look(down, others, Direction.DOWN) is None
    assert sync_run(others, str(down))[0] == 0
    assert _look(down, others, Direction.DOWN) == []
    os.utime(down / "o0", (1e9, 1e9))  # the object is now newer than the file, same size
    assert _look(down, others, Direction.DOWN) is None
    # Down, from objects watchsync wrote: each is newer than its file, whose mtime it keeps;
    # a HEAD reads that mtime, as the usual way would.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    assert sync_run(url, str(mirror))[0] == 0
    assert _look(mirror, url, Direction.DOWN) == []
    os.utime(mirror / "d2" / "f2.txt", (9e8, 9e8))  # older than the mtime its object keeps
    assert _look(mirror, url, Direction.DOWN) is None
    os.utime(mirror / "d2" / "f2.txt", (1e9, 1e9))
    assert _look(mirror, url, Direction.DOWN) == []
    monkeypatch.setattr(quick_look_module, "QUICK_HEADS", 11)  # 12 objects to ask
    assert _look(mirror, url, Direction.DOWN) is None
    monkeypatch.setattr(quick_look_module, "QUICK_HEADS", 1_000)
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    assert _look(src, url, Direction.UP) is None  # refused: the usual way explains it
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    assert _look(src, url, Direction.UP) == []
    monkeypatch.setattr(quick_look_module, "QUICK_PAGES", 2)
    assert _look(src, url, Direction.UP, page_size=5) is None  # three pages: too long a look
    assert _look(src, url, Direction.UP, page_size=6) == []


def test_a_no_op_run_says_what_the_usual_way_says(
    sync_run: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, url = tmp_path / "src", f"s3://{bucket}/p"
    _tree(src)
    os.mkfifo(src / "d2" / "pipe")
    (src / "skip.log").write_text("x")
    args = (str(src), url, "--exclude", "*.log")
    first = sync_run(*args)
    assert first[0] == 2 and "upload:" in first[1]
    looks: list[Any] = []

    def look(*a: Any, **k: Any) -> Any:
        looks.append(quick_look(*a, **k))
        return looks[-1]

    monkeypatch.setattr(sync_command, "quick_look", look)
    quick = sync_run(*args)
    assert looks and looks[-1].idle  # the run was the look's
    assert quick[0] == 2 and quick[1] == "" and "pipe" in quick[2]
    monkeypatch.setattr(quick_look_module, "quick_route", lambda *a, **k: "off")
    assert sync_run(*args) == quick
    assert not looks[-1].idle  # this one went the usual way


def test_a_run_with_work_does_not_list_again(
    sync_run: Any, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, url = tmp_path / "src", f"s3://{bucket}/p"
    _tree(src)
    assert sync_run(str(src), url, "--page-size", "5")[0] == 0  # 12 objects: three pages
    asked: list[Any] = []
    real = listpage.list_page

    def counted(client: Any, request: Any) -> Any:
        asked.append(dict(request))
        return real(client, request)

    monkeypatch.setattr(listing, "list_page", counted)
    (src / "d0" / "f0.txt").write_bytes(b"new")
    code, out, _ = sync_run(str(src), url, "--page-size", "5")
    assert code == 0 and out.count("upload:") == 1
    assert asked == []  # every page came from the look
    monkeypatch.setattr(quick_look_module, "QUICK_PAGES", 1)
    (src / "d0" / "f0.txt").write_bytes(b"newer")
    code, out, _ = sync_run(str(src), url, "--page-size", "5")
    assert code == 0 and out.count("upload:") == 1
    assert len(asked) == 2 and all(r.get("ContinuationToken") for r in asked)


def test_a_no_op_run_loads_no_sdk(
    aws_env: dict[str, str], bucket: str, s3: S3Client, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    _tree(src)
    probe = textwrap.dedent(
        """
        import sys
        from watchsync.cli.main import main
        code = main(["sync", *sys.argv[1:]])
        print("code", code, "sdk", sorted(m for m in ("boto3", "botocore") if m in sys.modules))
        """
    )

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], env=os.environ, cwd=tmp_path,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        return done.stdout.splitlines()[-1]

    url = f"s3://{bucket}/p"
    assert run("src", url) == "code 0 sdk ['boto3', 'botocore']"
    assert run("src", url) == "code 0 sdk []"
    for i in range(3):  # down, objects another client wrote (no file mtime of watchsync's)
        s3.put_object(Bucket=bucket, Key=f"q/o{i}", Body=b"o" * i)
    others = f"s3://{bucket}/q"
    assert run(others, "down") == "code 0 sdk ['boto3', 'botocore']"  # a new folder: work
    assert run(others, "down") == "code 0 sdk []"
    assert run(url, "mirror") == "code 0 sdk ['boto3', 'botocore']"  # objects watchsync wrote
    assert run(url, "mirror") == "code 0 sdk []"
    s3.delete_object(Bucket=bucket, Key="p/d0/f0.txt")
    assert run("src", url, "--dryrun") == "code 0 sdk ['boto3', 'botocore']"


def test_the_look_over_tls_trusts_what_botocore_trusts(
    s3tls: SeaweedServer, test_ca: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3tls.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    client = boto3.session.Session(
        aws_access_key_id=s3tls.access_key,
        aws_secret_access_key=s3tls.secret_key,
        region_name=s3tls.region,
    ).client("s3", endpoint_url=s3tls.https_endpoint, verify=str(test_ca.ca_file))
    client.create_bucket(Bucket="quick-tls")
    try:
        empty = tmp_path / "empty"
        empty.mkdir()
        url, endpoint = "s3://quick-tls/p", s3tls.https_endpoint
        assert _look(empty, url, Direction.UP, endpoint_url=endpoint) is None  # untrusted
        assert _look(empty, url, Direction.UP, endpoint_url=endpoint, verify_ssl=False) == []
        monkeypatch.setenv("AWS_CA_BUNDLE", str(test_ca.ca_file))
        assert _look(empty, url, Direction.UP, endpoint_url=endpoint) == []
    finally:
        client.delete_bucket(Bucket="quick-tls")
        client.close()


def test_an_unreachable_endpoint_is_left_to_the_usual_way(
    aws_env: dict[str, str], tmp_path: Path
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert (
        _look(tmp_path, "s3://bkt/p", Direction.UP, endpoint_url=f"http://127.0.0.1:{port}") is None
    )
