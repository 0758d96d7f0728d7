"""A :class:`~watchsync.core.model.Condition` as S3 request parameters: the one place where
a condition becomes ``If-Match`` / ``If-None-Match`` (the native client sends the same
names as headers, through transfer's header map), a copy's source condition, or a batch
delete's per-object ETag."""

from __future__ import annotations

from watchsync.core.model import Condition


def condition_args(condition: Condition | None) -> dict[str, str]:
    """The parameters of a write (PUT, a multipart complete) or a GET under ``condition``.

    >>> condition_args(Condition("e1")), condition_args(Condition.ABSENT), condition_args(None)
    ({'IfMatch': '"e1"'}, {'IfNoneMatch': '*'}, {})
    """
    if condition is None:
        return {}
    if condition.absent:
        return {"IfNoneMatch": "*"}
    return {"IfMatch": _quoted(condition.etag)}


def source_args(condition: Condition | None) -> dict[str, str]:
    """The parameters of a server-side copy whose source must be as ``condition`` says
    (only a version can be asked for: a source that must not exist copies nothing).

    >>> source_args(Condition("e1"))
    {'CopySourceIfMatch': '"e1"'}
    """
    if condition is None:
        return {}
    if condition.absent:
        raise ValueError("a copy's source cannot be required to be absent")
    return {"CopySourceIfMatch": _quoted(condition.etag)}


def delete_object(key: str, condition: Condition | None) -> dict[str, str]:
    """One object of a batch delete (DeleteObjects), deleted only while it is the version
    ``condition`` names.

    >>> delete_object("p/a", Condition("e1")), delete_object("p/b", None)
    ({'Key': 'p/a', 'ETag': '"e1"'}, {'Key': 'p/b'})
    """
    if condition is None or condition.absent:
        return {"Key": key}
    return {"Key": key, "ETag": _quoted(condition.etag)}


def _quoted(etag: str) -> str:
    return f'"{etag}"'
