"""The status page on the metrics address: its content over plain HTTP, its actions behind
the token, and the page as a real browser (headless Chromium) renders it."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from helpers import wait_until
from s3server import SeaweedServer
from service_helpers import (
    STARTUP,
    SYNC,
    Agent,
    agent_env,
    free_port,
    spawn,
    wait_for_key,
    watching,
    write_config,
)
from test_control import FakeFolder

from watchsync.agent.control import Control
from watchsync.agent.page import StatusPage, page_token

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["spawn"]  # fixtures

HEADER = (0x0B, 0x3D, 0x91)  # the page's header colour
WATCHING = (0x1A, 0x7F, 0x37)  # the badge of a folder that syncs


class Snapshot(FakeFolder):
    """A folder with something to show."""

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": "/srv/<docs>",
            "url": "s3://b/docs",
            "state": "paused",
            "state_since": 1_700_000_000.0,
            "state_reason": "S3 unreachable",
            "pending": 3,
            "in_flight": 1,
            "last_reconcile_at": 1_700_000_100.0,
            "last_error": None,
            "totals": {"uploaded_files": 7},
            "recent": [{"at": 1_700_000_200.0, "what": "upload", "path": "a&b.txt", "detail": ""}],
            "conflicts": [
                {"at": 1_700_000_300.0, "what": "conflict", "path": "c.txt", "detail": "c.x.txt"}
            ],
        }


def _call(app: StatusPage, path: str, form: dict[str, str] | None = None) -> tuple[str, bytes]:
    body = urllib.parse.urlencode(form or {}).encode()
    environ = {
        "PATH_INFO": path,
        "REQUEST_METHOD": "POST" if form is not None else "GET",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    got: list[str] = []
    out = b"".join(app(environ, lambda status, headers: got.append(status)))
    return got[0], out


def _page(folder: Snapshot, token: str | None = None) -> StatusPage:
    return StatusPage(
        Control(folders=lambda: {folder.name: folder}),
        metrics=lambda env, start: (start("200 OK", []), [b"# metrics\n"])[1],
        token=lambda: token,
        host="box",
    )


def test_the_page_shows_folders_state_refused_deletes_and_recent_actions() -> None:
    docs = Snapshot("docs")
    batch = docs.refused.add(["gone.txt"], why="1 deletes exceed --max-delete 0", origin="pass")
    status, html = _call(_page(docs), "/")
    text = html.decode()
    assert status == "200 OK"
    assert '<section class="folder" id="folder-docs" data-state="paused">' in text
    assert "/srv/&lt;docs&gt;" in text and "a&amp;b.txt" in text  # escaped
    assert "S3 unreachable" in text and "3 (1 in flight)" in text and "7 uploaded" in text
    assert f"batch {batch.id}: 1 deletes refused" in text and "delete in S3: gone.txt" in text
    assert "kept as c.x.txt" in text
    assert "read-only" in text and "<form" not in text  # no actions offered
    assert _call(_page(docs), "/metrics") == ("200 OK", b"# metrics\n")
    status, raw = _call(_page(docs), "/status.json")
    data = json.loads(raw)
    assert data["folders"][0]["name"] == "docs" and data["batches"][0]["id"] == batch.id
    assert _call(_page(docs), "/nope")[0] == "404 Not Found"


def test_actions_need_the_token_and_go_through_the_control_room() -> None:
    docs = Snapshot("docs")
    batch = docs.refused.add(["gone.txt"], why="too many", origin="pass")
    assert _call(_page(docs), "/action", {"cmd": "pause", "token": ""})[0] == "403 Forbidden"
    page = _page(docs, token="s3cret")
    assert 'action="/action"' in _call(page, "/")[1].decode()
    assert _call(page, "/action", {"cmd": "pause", "token": "nope"})[0] == "403 Forbidden"
    assert _call(page, "/action", {"cmd": "status", "token": "s3cret"})[0] == "400 Bad Request"
    ok = {"cmd": "pause", "folder": "docs", "token": "s3cret"}
    assert _call(page, "/action", ok)[0] == "303 See Other" and docs.calls == ["pause"]
    approve = {"cmd": "approve", "id": batch.id, "token": "s3cret"}
    assert _call(page, "/action", approve)[0] == "303 See Other"
    assert docs.refused.approved(["gone.txt"])
    assert _call(page, "/action", approve)[0] == "409 Conflict"  # no longer refused


def test_the_token_file_is_the_agents_own(tmp_path: Path) -> None:
    token = page_token(tmp_path / "state")
    assert len(token) >= 32 and page_token(tmp_path / "state") == token
    assert (tmp_path / "state/page-token").stat().st_mode & 0o777 == 0o600


# -- a real agent, over HTTP and in a browser ---------------------------------------------


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (scripts/test installs Debian's when it can)")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_status_page_over_http_and_in_chromium(
    s3server: SeaweedServer,
    s3: S3Client,
    bucket: str,
    tmp_path: Path,
    spawn: Callable[..., Agent],
) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    port = free_port()
    cfg = write_config(
        tmp_path / "config.toml",
        state_dir=tmp_path / "state",
        endpoint=s3server.endpoint,
        folders=[(root, f"s3://{bucket}/docs")],
        extra=f'metrics_addr = "127.0.0.1:{port}"',
    )
    agent = spawn("watch", "--config", str(cfg), env=agent_env(s3server, tmp_path))
    wait_until(lambda: watching(agent, 1), STARTUP, 0.1, "the first reconcile")
    (root / "hello.txt").write_text("hello")
    wait_for_key(s3, bucket, "docs/hello.txt")
    base = f"http://127.0.0.1:{port}"
    wait_until(lambda: "hello.txt" in _get(base + "/"), SYNC, 0.2, "the upload on the page")
    text = _get(base + "/")
    assert 'data-state="watching"' in text and str(root) in text
    assert "upload</td><td>hello.txt" in text and "read-only" in text
    assert "watchsync_folder_up" in _get(base + "/metrics")  # still served beside it
    [row] = json.loads(_get(base + "/status.json"))["folders"]
    assert row["state"] == "watching" and row["totals"]["uploaded_files"] == 1
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(
            urllib.request.Request(base + "/action", data=b"cmd=pause", method="POST"), timeout=10
        )
    assert refused.value.code == 403  # read-only unless page_actions is on
    refused.value.close()  # its socket, left to the collector, warns in a later test

    chromium = _chromium()
    dom = _browser(chromium, tmp_path / "profile-dom", "--dump-dom", base + "/")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="folder-' in dom.stdout and 'data-state="watching"' in dom.stdout
    assert "hello.txt" in dom.stdout
    shot = tmp_path / "page.png"
    done = _browser(
        chromium,
        tmp_path / "profile-shot",
        f"--screenshot={shot}",
        "--window-size=1000,700",
        base + "/",
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as img:
        rgb = img.convert("RGB")
        assert rgb.size == (1000, 700)
        colours = {c for _, c in rgb.getcolors(maxcolors=1 << 20) or []}
        assert len(colours) > 20  # not blank: text, boxes, badges
        assert HEADER in colours  # the header bar
        assert WATCHING in colours  # the folder's state badge
        # The header spans the top of the page.
        assert rgb.getpixel((5, 5)) == HEADER and rgb.getpixel((995, 5)) == HEADER
    assert agent.stop() == 0
