"""Small fakes for testing the executor and the agent's rooms without threads or a server:
an in-memory bucket behind the :class:`~watchsync.s3.transfer.Objects` surface, a pool that runs
tasks inline, and an events recorder.  S3 itself is never faked in end-to-end tests."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent import futures
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from watchsync.core.errors import Failure, FailureKind, FileError, PathBlocked
from watchsync.core.model import Action, Condition, LocalEntry, RemoteEntry, RemoteRow, Skipped
from watchsync.engine.reporting import Veto
from watchsync.s3.downloads import Downloaded
from watchsync.s3.location import S3Url
from watchsync.s3.small_object import Fetched, NotModified
from watchsync.s3.transfer import Uploaded

P = ParamSpec("P")
T = TypeVar("T")

T0 = 1_700_000_000 * 10**9  # a LastModified in ns, on a whole second


def failure(kind: FailureKind, code: str, what: str = "") -> Failure:
    """A failure as the adapters in watchsync/s3/ raise it."""
    return Failure(kind, code, f"{code}: {what}" if what else code)


def lost(what: str) -> Failure:
    """A conditional write, copy or delete that lost to another version."""
    return failure(FailureKind.PRECONDITION, "PreconditionFailed", what)


def refused(code: str = "AccessDenied") -> Failure:
    """A permanent no from S3."""
    return failure(FailureKind.REFUSED, code, "Access Denied")


def cut(what: str = "cut") -> Failure:
    """No answer at all: the connection was refused, reset or timed out."""
    return failure(FailureKind.UNREACHABLE, "EndpointConnectionError", what)


class FakeSending:
    """:class:`~watchsync.s3.transfer.Started` for :class:`FakeObjects`."""

    def __init__(self, path: str, send: Callable[[], Uploaded]) -> None:
        self.path = path
        self._send = send

    def result(self) -> Uploaded:
        return self._send()


class FakeObjects:
    """An in-memory prefix with S3's conditional-write rules, over a real local root.

    ``fail[path]`` makes every operation on that path raise the given exception;
    ``refuse[(op, path)]`` only that operation (``"download"``, ``"head"``, ...);
    ``on_wire[part]`` runs once while an upload of a path containing ``part`` is on the
    wire (its file read, nothing stored yet): a pass, a write, meanwhile.
    """

    def __init__(self, root: Path, where: S3Url | None = None) -> None:
        self.root = root
        self.where = where or S3Url("bucket", "p/")
        self.objects: dict[str, tuple[bytes, str, int]] = {}  # path -> (body, etag, mtime)
        self.fail: dict[str, Exception] = {}
        self.refuse: dict[tuple[str, str], Exception] = {}
        self.calls: list[tuple[str, str]] = []
        self.on_wire: dict[str, Callable[[], None]] = {}
        self.clock_ns = T0

    def put(self, path: str, body: bytes) -> RemoteEntry:
        """Another writer puts an object."""
        self.clock_ns += 10**9
        etag = hashlib.md5(body).hexdigest()
        self.objects[path] = (body, etag, self.clock_ns)
        return self.entry(path)

    def entry(self, path: str) -> RemoteEntry:
        body, etag, mtime = self.objects[path]
        return RemoteEntry(path, len(body), mtime, etag)

    def _call(self, op: str, path: str) -> None:
        self.calls.append((op, path))
        if path in self.fail:
            raise self.fail[path]
        if (op, path) in self.refuse:
            raise self.refuse[(op, path)]

    def upload(
        self, path: str, *, key: str | None = None, condition: Condition | None = None
    ) -> Uploaded:
        self._call("upload", path)
        try:
            data = (self.root / path).read_bytes()
            st = os.stat(self.root / path)
        except OSError as exc:
            raise FileError(path, str(exc)) from exc
        for part in [part for part in self.on_wire if part in path]:
            self.on_wire.pop(part)()
        current = self.objects.get(path)
        if condition is not None and condition.etag != (current[1] if current else ""):
            raise lost(path)
        self.put(path, data)
        return Uploaded(st.st_size, st.st_mtime_ns, self.objects[path][1], st.st_ino)

    def start_upload(self, path: str, *, condition: Condition | None = None) -> FakeSending:
        """An upload the caller waits for: sent when its result is asked for."""
        return FakeSending(path, lambda: self.upload(path, condition=condition))

    def download(
        self,
        path: str,
        *,
        size: int,
        mtime_ns: int,
        etag: str = "",
        dest: str | None = None,
        replacing: LocalEntry | None = None,
        keep_as: str | None = None,
    ) -> Downloaded:
        self._call("download", path)
        body, current, mtime = self.objects[path]
        if etag and etag != current:
            raise lost(path)
        target = self.root / (dest or path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:  # as Downloads says it
            raise PathBlocked(dest or path, "a file is in the way of its directory") from exc
        if target.is_dir():
            raise PathBlocked(dest or path, "a directory is in the way")
        target.write_bytes(body)
        os.utime(target, ns=(mtime, mtime))
        return Downloaded(target, mtime)

    def copy(self, src_path: str, dst_path: str, *, condition: Condition | None = None) -> str:
        self._call("copy", dst_path)
        if src_path not in self.objects:
            raise failure(FailureKind.NOT_FOUND, "NoSuchKey", src_path)
        if condition is not None and self.objects[src_path][1] != condition.etag:
            raise lost(src_path)
        self.put(dst_path, self.objects[src_path][0])
        return self.objects[dst_path][1]

    def head(self, path: str) -> RemoteEntry | None:
        self._call("head", path)
        return self.entry(path) if path in self.objects else None

    def listing(
        self, *, for_download: bool, on_read: Callable[[int], None] | None = None
    ) -> Iterator[RemoteEntry | Skipped]:
        self._call("list", "")
        for path in sorted(self.objects):
            yield self.entry(path)
            if on_read is not None:  # a page of one, counted once it is taken
                on_read(1)

    def listing_pages(
        self, on_read: Callable[[int], None] | None = None
    ) -> Iterator[list[RemoteRow | Skipped]]:
        rows: list[RemoteRow | Skipped] = [
            e if isinstance(e, Skipped) else (e.path, e.size, e.mtime_ns, e.etag)
            for e in self.listing(for_download=True)
        ]
        if on_read is not None:
            on_read(len(rows))
        yield rows

    def delete_remote(
        self, paths: Iterable[str], *, conditions: Mapping[str, Condition] | None = None
    ) -> list[tuple[str, Failure]]:
        failed: list[tuple[str, Failure]] = []
        for path in paths:
            self._call("delete", path)
            want = (conditions or {}).get(path)
            if want and (path not in self.objects or self.objects[path][1] != want.etag):
                failed.append((path, lost(path)))
                continue
            self.objects.pop(path, None)
        return failed

    def delete_local(self, path: str) -> None:
        self._call("delete-local", path)
        (self.root / path).unlink(missing_ok=True)


class InlinePool(futures.Executor):
    """A pool that runs each task at once, in the caller's thread."""

    def __init__(self, _workers: int = 1) -> None:
        pass

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> futures.Future[T]:
        fut: futures.Future[T] = futures.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            fut.set_exception(exc)
        return fut


class RecordedEvents:
    """The executor's events, kept for assertions."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.vetoes: list[Veto] = []

    def started(self, action: Action) -> None:
        pass

    def settled(self, action: Action) -> None:
        pass

    def finished(self, action: Action, nbytes: int) -> None:
        self.seen.append(("finished", action.path))

    def deleted(self, action: Action) -> None:
        self.seen.append(("deleted", action.path))

    def failed(self, action: Action, exc: Exception) -> None:
        self.seen.append(("failed", action.path))

    def vetoed(self, veto: Veto) -> None:
        self.vetoes.append(veto)

    def would(self, action: Action) -> None:
        self.seen.append(("would", action.path))

    def conflict(self, action: Action, name: str) -> None:
        self.seen.append(("conflict", name))

    def skipped(self, item: Skipped, *, remote: bool) -> None:
        self.seen.append(("skipped", item.path))


class FakeFeedObject:
    """One object with S3's conditional GET and PUT; ``calls`` records each answer."""

    def __init__(self) -> None:
        self.body: bytes | None = None
        self.calls: list[str] = []

    @property
    def etag(self) -> str | None:
        return hashlib.md5(self.body).hexdigest() if self.body is not None else None

    def get(self, *, if_none_match: str | None) -> Fetched | None:
        if self.body is None:
            self.calls.append("get-404")
            return None
        if if_none_match == self.etag:
            self.calls.append("get-304")
            raise NotModified("feed")
        self.calls.append("get-200")
        assert self.etag is not None
        return Fetched(self.body, self.etag)

    def put(self, body: bytes, *, condition: Condition) -> str:
        if condition.etag != (self.etag or ""):  # also "absent" on an existing object
            self.calls.append("put-412")
            raise lost("feed")
        self.calls.append("put")
        self.body = body
        assert self.etag is not None
        return self.etag

    def doc(self) -> dict[str, Any]:
        assert self.body is not None
        doc: dict[str, Any] = json.loads(self.body)
        return doc
