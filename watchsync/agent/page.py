"""The status page, served on the metrics address beside ``/metrics``: a small WSGI app in
front of prometheus_client's, no web framework.

``/`` is the page (folders, state and since when, pending, last pass, refused deletes with
their paths, recent actions, conflicts, each with its time; it refreshes itself every 5 s);
``/status.json`` the same as data.  Both read the control room (control.py), the same
answers ``watchsync ctl status`` gives.  Read-only by default: with ``page_actions = true``
the page also offers pause, resume, rescan and approve/reject of refused batches, each a
POST to ``/action`` that carries the token from the state directory's ``page-token`` file
(readable by the agent's user only) and goes through the same room as ``watchsync ctl``.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import os
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from watchsync.agent.control import ACTIONS, Control

logger = logging.getLogger(__name__)

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
App = Callable[[Environ, StartResponse], Iterable[bytes]]

_MAX_FORM = 64 * 1024
_STATE_CLASS = {
    "watching": "ok",
    "reconciling": "ok",
    "starting": "ok",
    "paused": "warn",
    "error": "bad",
    "stopped": "bad",
}


class StatusPage:
    """The WSGI app: the page, its JSON, its actions, and ``metrics`` for the rest.

    >>> page = StatusPage(Control(folders=dict), metrics=lambda env, start: [b""])
    >>> b"no folders" in page.render()
    True
    """

    def __init__(
        self,
        control: Control,
        *,
        metrics: App,
        token: Callable[[], str | None] = lambda: None,
        host: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.control = control
        self.metrics = metrics
        self.token = token  # the actions' token; None: read-only
        self.host = host or socket.gethostname()
        self.wall = wall

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return self.metrics(environ, start_response)
        if path in ("/", "/index.html") and method in ("GET", "HEAD"):
            return _reply(start_response, "200 OK", "text/html; charset=utf-8", self.render())
        if path == "/status.json" and method in ("GET", "HEAD"):
            body = json.dumps(self._data(), default=str).encode()
            return _reply(start_response, "200 OK", "application/json", body)
        if path == "/action" and method == "POST":
            return self._action(environ, start_response)
        return _reply(start_response, "404 Not Found", "text/plain", b"not found\n")

    # -- actions ----------------------------------------------------------------------------

    def _action(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        expected = self.token()
        if expected is None:
            return _reply(start_response, "403 Forbidden", "text/plain", b"read-only page\n")
        form = _form(environ)
        given = form.get("token", "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return _reply(start_response, "403 Forbidden", "text/plain", b"wrong token\n")
        cmd = form.get("cmd", "")
        if cmd not in ACTIONS:
            return _reply(start_response, "400 Bad Request", "text/plain", b"no such action\n")
        request: dict[str, Any] = {"cmd": cmd}
        if form.get("folder"):
            request["folder"] = form["folder"]
        if cmd in ("approve", "reject"):
            request["ids"] = [form.get("id", "")]
        answer = self.control.handle(request)
        logger.info("page: %s %s: %s", cmd, form.get("folder") or form.get("id") or "", answer)
        if not answer.get("ok"):
            text = f"{answer.get('error')}\n".encode()
            return _reply(start_response, "409 Conflict", "text/plain", text)
        start_response("303 See Other", [("Location", "/"), ("Content-Length", "0")])
        return [b""]

    # -- the page ---------------------------------------------------------------------------

    def _data(self) -> dict[str, Any]:
        status = self.control.handle({"cmd": "status"})
        deletes = self.control.handle({"cmd": "deletes"})
        return {**status, "batches": deletes.get("batches", [])}

    def render(self) -> bytes:
        """The page as HTML."""
        data = self._data()
        actions = self.token() is not None
        batches: dict[str, list[dict[str, Any]]] = {}
        for batch in data["batches"]:
            batches.setdefault(batch["folder"], []).append(batch)
        folders = data.get("folders", [])
        body = "".join(_folder(row, batches.get(row["name"], []), actions) for row in folders)
        if not folders:
            body = '<p class="empty">no folders</p>'
        title = f"watchsync on {self.host}"
        token = (
            '<label class="token">token <input type="password" name="token" form="none" '
            'id="token" autocomplete="current-password"></label>'
            if actions
            else ""
        )
        page = _PAGE.format(
            title=_e(title),
            pid=data.get("pid", ""),
            now=_e(_clock(self.wall())),
            mode="actions with the token" if actions else "read-only",
            token=token,
            body=body,
            script=_SCRIPT if actions else "",
        )
        return page.encode()


def _folder(row: Mapping[str, Any], batches: list[dict[str, Any]], actions: bool) -> str:
    name = str(row.get("name", ""))
    state = str(row.get("state", "unknown"))
    since = row.get("state_since")
    reason = row.get("state_reason")
    parts = [
        f'<section class="folder" id="folder-{_e(name)}" data-state="{_e(state)}">',
        f'<h2><span class="name">{_e(name)}</span> '
        f'<span class="state {_STATE_CLASS.get(state, "bad")}">{_e(state)}</span></h2>',
        f'<p class="where">{_e(row.get("path", ""))} &harr; {_e(row.get("url", ""))}</p>',
        "<dl>",
        _item("since", _clock(since) if since else "") + _item("why", reason or ""),
        _item("pending", f"{row.get('pending', 0)} ({row.get('in_flight', 0)} in flight)")
        if "pending" in row
        else "",
        _item("last pass", _clock(row["last_reconcile_at"]) if row.get("last_reconcile_at") else "")
        if "pending" in row
        else "",
        _item("totals", _totals(row.get("totals") or {})),
        _item(
            "last error",
            f"{row['last_error']}"
            + (f" ({_clock(row['last_error_at'])})" if row.get("last_error_at") else ""),
        )
        if row.get("last_error")
        else "",
        "</dl>",
    ]
    if actions and "pending" in row:
        parts.append(
            '<div class="actions">'
            + "".join(_button(cmd, folder=name) for cmd in ("pause", "resume", "rescan"))
            + "</div>"
        )
    if batches:
        parts.append('<h3>refused deletes</h3><div class="refused">')
        parts += [_batch(b, actions) for b in batches]
        parts.append("</div>")
    parts.append(
        _table(
            "recent actions",
            [(d["at"], d["what"], d["path"], d.get("detail", "")) for d in row.get("recent") or []],
        )
    )
    parts.append(
        _table(
            "conflicts",
            [
                (d["at"], d["path"], f"kept as {d.get('detail', '')}")
                for d in row.get("conflicts") or []
            ],
        )
    )
    parts.append("</section>")
    return "".join(parts)


def _table(title: str, rows: list[tuple[Any, ...]]) -> str:
    """The latest 20 rows (a time first) under a heading; nothing when there are none."""
    if not rows:
        return ""
    cls = title.split()[-1]
    body = "".join(
        f"<tr><td>{_e(_clock(at))}</td>" + "".join(f"<td>{_e(v)}</td>" for v in rest) + "</tr>"
        for at, *rest in rows[:20]
    )
    return f'<h3>{_e(title)}</h3><table class="{cls}"><tbody>{body}</tbody></table>'


def _batch(batch: Mapping[str, Any], actions: bool) -> str:
    bid = str(batch["id"])
    held = "every delete held" if batch.get("root") else f"{batch['count']} deletes refused"
    head = (
        f'<details class="batch" id="batch-{_e(bid)}"><summary>batch {_e(bid)}: '
        f"{held} {_e(_clock(batch['at']))}: {_e(batch['why'])}"
        "</summary><ul>"
    )
    paths = [f"<li>delete in S3: {_e(p)}</li>" for p in batch.get("delete_in_s3", [])]
    paths += [f"<li>delete locally: {_e(p)}</li>" for p in batch.get("delete_locally", [])]
    buttons = ""
    if actions:
        buttons = _button("approve", batch_id=bid)
        if not batch.get("root"):  # a root is accepted, or its own directory put back
            buttons += _button("reject", batch_id=bid)
    return head + "".join(paths) + "</ul>" + buttons + "</details>"


def _button(cmd: str, *, folder: str = "", batch_id: str = "") -> str:
    hidden = f'<input type="hidden" name="cmd" value="{cmd}">'
    if folder:
        hidden += f'<input type="hidden" name="folder" value="{_e(folder)}">'
    if batch_id:
        hidden += f'<input type="hidden" name="id" value="{_e(batch_id)}">'
    return (
        f'<form method="post" action="/action" class="act">{hidden}'
        f'<input type="hidden" name="token" value=""><button>{cmd}</button></form>'
    )


def _item(term: str, value: str) -> str:
    return f"<dt>{_e(term)}</dt><dd>{_e(value)}</dd>" if value else ""


def _totals(t: Mapping[str, Any]) -> str:
    deleted = int(t.get("deleted_remote", 0)) + int(t.get("deleted_local", 0))
    return (
        f"{t.get('uploaded_files', 0)} uploaded, {t.get('downloaded_files', 0)} downloaded, "
        f"{deleted} deleted, {t.get('conflicts', 0)} conflicts, {t.get('errors', 0)} errors"
    )


def _clock(stamp: object) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(str(stamp))))
    except (TypeError, ValueError):
        return str(stamp)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _form(environ: Environ) -> dict[str, str]:
    try:
        length = min(int(environ.get("CONTENT_LENGTH") or 0), _MAX_FORM)
    except ValueError:
        length = 0
    raw = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
    return {k: v[0] for k, v in parse_qs(raw).items()}


def _reply(start_response: StartResponse, status: str, kind: str, body: bytes) -> list[bytes]:
    start_response(
        status,
        [
            ("Content-Type", kind),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
             "script-src 'unsafe-inline'; form-action 'self'"),
        ],
    )  # fmt: skip
    return [body]


class _Quiet(WSGIRequestHandler):
    """No access log on stderr (the agent's log is for the agent)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    """A thread per request, as prometheus_client's own server; closing waits for them."""

    daemon_threads = False
    block_on_close = True


def serve(addr: str, app: App) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``app`` on ``host:port`` (IPv6 in brackets) from a daemon thread."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"

    class Server(_Server):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    server = make_server(host, int(port), app, server_class=Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="watchsync-http", daemon=True)
    thread.start()
    return server, thread


_SCRIPT = """<script>
// The token is typed once and sent with each action; it never leaves this page otherwise.
for (const f of document.querySelectorAll("form.act")) {
  f.addEventListener("submit", () => {
    f.querySelector("input[name=token]").value = document.getElementById("token").value;
  });
}
</script>"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="5">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ margin: 0; font: 15px/1.4 system-ui, sans-serif; background: #f6f8fa; color: #1f2328; }}
header {{ background: #0b3d91; color: #fff; padding: 12px 20px; display: flex; gap: 16px;
  align-items: baseline; flex-wrap: wrap; }}
header h1 {{ font-size: 20px; margin: 0; }}
header .meta {{ opacity: .85; font-size: 13px; }}
main {{ padding: 16px 20px; display: grid; gap: 16px; }}
.folder {{ background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 12px 16px; }}
.folder h2 {{ margin: 0 0 4px; font-size: 18px; }}
.where {{ margin: 0 0 8px; color: #57606a; font-family: ui-monospace, monospace; font-size: 13px; }}
.state {{ font-size: 13px; padding: 2px 8px; border-radius: 10px; color: #fff; }}
.state.ok {{ background: #1a7f37; }} .state.warn {{ background: #bf8700; }}
.state.bad {{ background: #cf222e; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }}
dt {{ color: #57606a; }} dd {{ margin: 0; }}
h3 {{ font-size: 14px; margin: 12px 0 4px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
td {{ padding: 1px 10px 1px 0; font-family: ui-monospace, monospace; }}
.refused {{ background: #fff8c5; padding: 4px 8px; border-radius: 4px; }}
.actions, .batch form {{ margin-top: 8px; }} form.act {{ display: inline; margin-right: 6px; }}
.empty {{ color: #57606a; }}
</style></head>
<body>
<header><h1>{title}</h1><span class="meta">pid {pid} &middot; {now} &middot; {mode}</span>
{token}</header>
<main>{body}</main>
{script}
</body></html>
"""


TOKEN_FILE = "page-token"


def page_token(state_dir: Path) -> str:
    """The token the page's actions carry: ``state_dir/page-token``, made (mode 0600, a
    random 32 characters) when missing, so that only who may read the state may act."""
    path = state_dir / TOKEN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
