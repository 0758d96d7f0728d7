"""The watch agent's configuration: a TOML file, the environment and command-line flags.

Precedence, per key: command-line flag > environment > file > default.  In the file a
``[[folder]]`` table's own value beats a top-level (global) value of the same key, but an
environment variable or a flag beats both, for every folder alike.

A file looks like ``examples/config.toml``::

    endpoint_url = "http://localhost:8333"   # global S3 settings ...
    debounce = 1.0                           # ... and defaults for every folder

    [[folder]]
    path = "~/Documents"
    url = "s3://backup/docs"
    exclude = ["*.tmp"]

Environment variables are ``WATCHSYNC_<KEY>`` for every scalar key (``ENV_KEYS``), e.g.
``WATCHSYNC_ENDPOINT_URL``, ``WATCHSYNC_MAX_CONCURRENCY``, ``WATCHSYNC_DEBOUNCE``; ``path``,
``url``, ``exclude`` and ``include`` are not read from the environment.

Errors name where the bad value came from: ``config.toml: folder[1].direction: ...`` (folder
indexes count from 0, in file order), ``WATCHSYNC_DEBOUNCE: ...`` or ``--debounce: ...``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from watchsync.core.errors import ConfigError, UsageError, WatchsyncError
from watchsync.core.model import Mode
from watchsync.s3.location import ACLS, S3Settings, S3Url, parse_metadata

__all__ = [
    "ENV_KEYS",
    "ENV_PREFIX",
    "FLAG_KEYS",
    "AgentConfig",
    "FolderConfig",
    "S3Settings",
    "default_state_dir",
    "load_config",
    "parse_size",
]

ENV_PREFIX = "WATCHSYNC_"

LogFormat = Literal["text", "json"]
FilterRule = tuple[str, str]  # ("exclude" | "include", pattern)


@dataclass(frozen=True, slots=True)
class FolderConfig:
    """One watched folder and the S3 location it is kept in sync with.

    ``filters`` is what the syncer applies: an ordered tuple of ``("exclude"|"include",
    pattern)`` with aws-cli semantics (every rule is tested in order; the last match wins;
    a path matching no rule is included).  ``exclude`` and ``include`` are kept for display.
    From the file, or when only ``exclude``/``include`` are given, ``filters`` is all the
    excludes then all the includes, so ``exclude = ["*"], include = ["*.txt"]`` means "only
    .txt files"; the CLI can pass the interleaved command-line order as the ``filters`` flag.

    ``id`` is derived from ``path`` and ``url``: stable, unique, filesystem-safe, e.g.
    ``"Documents-1f3a9c0e7b2d"``.  ``name`` is what people see (status, logs, metrics
    labels, ``watchsync ctl``): the ``name`` key when given, else the id.

    >>> FolderConfig(path=Path("/srv/docs"), url="s3://bucket/docs").name
    'docs-8920324e7f30'
    >>> FolderConfig(path=Path("/srv/docs"), url="s3://bucket/docs", name="docs").id
    'docs-8920324e7f30'
    """

    path: Path
    url: str
    direction: Mode = Mode.BOTH
    delete: bool = False
    max_delete: int = 1000
    max_delete_percent: float = 50.0
    force_delete: bool = False
    folder_marker: bool = False
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    filters: tuple[FilterRule, ...] = ()
    ignore_file: Path | None = None
    follow_symlinks: bool = True
    debounce: float = 0.5
    reconcile_interval: float = 300.0
    full_walk_interval: float = 86400.0
    # None: every periodic pass lists the prefix (the reconcile interval, stretched by the
    # CPU budget on huge trees); a number overrides that interval.
    full_list_interval: float | None = None
    # An SQS queue that receives the bucket's S3 event notifications: other writers'
    # changes within seconds (None: off; the listing and the change feed only).
    notifications_queue: str | None = None
    upload_workers: int = 16
    drain_timeout: float = 30.0
    s3: S3Settings = field(default_factory=S3Settings)
    name: str = ""
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if not self.filters and (self.exclude or self.include):
            object.__setattr__(self, "filters", _default_filters(self.exclude, self.include))
        object.__setattr__(self, "id", _folder_name(self.path, self.url))
        if not self.name:
            object.__setattr__(self, "name", self.id)

    @property
    def list_interval(self) -> float:
        """Seconds between listings of the prefix, before the CPU budget stretches it."""
        if self.full_list_interval is None:
            return self.reconcile_interval
        return self.full_list_interval

    @property
    def where(self) -> S3Url:
        """``url`` parsed: ``s3://b/p`` -> ``S3Url("b", "p/")``."""
        return S3Url.parse(self.url)


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Everything ``watchsync watch`` needs; ``source`` is the file it came from, if any."""

    folders: tuple[FolderConfig, ...]
    state_dir: Path
    log_format: LogFormat = "text"
    log_level: str = "INFO"
    metrics_addr: str | None = None
    page_actions: bool = False  # the status page offers pause, resume, approve ... (token)
    source: Path | None = None


# --- keys --------------------------------------------------------------------------------

_S3_DEFAULTS = S3Settings()
_FOLDER_DEFAULTS: dict[str, object] = {
    "direction": Mode.BOTH,
    "delete": False,
    "max_delete": 1000,
    "max_delete_percent": 50.0,
    "force_delete": False,
    "folder_marker": False,
    "exclude": (),
    "include": (),
    "ignore_file": None,
    "follow_symlinks": True,
    "debounce": 0.5,
    "reconcile_interval": 300.0,
    "full_walk_interval": 86400.0,
    "full_list_interval": None,
    "notifications_queue": None,
    "upload_workers": 16,
    "drain_timeout": 30.0,
}
_S3_KEYS = (
    "endpoint_url",
    "profile",
    "region",
    "max_concurrency",
    "sse",
    "sse_kms_key_id",
    "storage_class",
    "bwlimit",
    "checksum",
    "keep_mode",
    # Per-object settings, as the aws flags of the same names (sync takes a few more).
    "acl",
    "cache_control",
    "content_type",
    "content_disposition",
    "content_encoding",
    "content_language",
    "metadata",
    "guess_mime_type",
)
_GLOBAL_ONLY_KEYS = ("state_dir", "log_format", "log_level", "metrics_addr", "page_actions")
_FOLDER_ONLY_KEYS = ("path", "url", "name")
_REQUIRED_KEYS = ("path", "url")
_FOLDER_KEYS = tuple(_FOLDER_DEFAULTS)
_FLAG_ONLY_KEYS = ("filters",)
_NOT_FROM_ENV = frozenset({"path", "url", "name", "exclude", "include", "filters"})

#: Keys ``load_config`` accepts in ``flags`` (None values are ignored).
FLAG_KEYS = frozenset(
    _S3_KEYS + _GLOBAL_ONLY_KEYS + _FOLDER_ONLY_KEYS + _FOLDER_KEYS + _FLAG_ONLY_KEYS
)
#: Keys read from ``WATCHSYNC_<KEY.upper()>``.
ENV_KEYS = frozenset(FLAG_KEYS - _NOT_FROM_ENV)

_CREDENTIAL_KEYS = frozenset(
    {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "access_key",
        "access_key_id",
        "secret_key",
        "secret_access_key",
        "session_token",
        "password",
    }
)
_CREDENTIAL_HINT = (
    "credentials must not be in the config file; they come from the AWS credential chain "
    "(profile, environment, instance role)"
)


class _Invalid(Exception):
    """A value is wrong; the caller adds where it came from."""


@dataclass(frozen=True, slots=True)
class _Value:
    """A parsed value and where it came from, for error messages."""

    value: object
    where: str


# --- value parsers -----------------------------------------------------------------------
# Each takes the raw value and whether it is text from the environment (or a string flag),
# and returns the typed value or raises _Invalid.

_SIZE_RE = re.compile(
    r"^\s*(?P<num>\d+(?:\.\d*)?|\.\d+)\s*(?:(?P<unit>[kmgt])(?:i?b)?|b)?\s*$", re.IGNORECASE
)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """Parse a byte count with an optional binary suffix; fractions round down.

    Every suffix is a power of 1024, whatever its spelling (``K``, ``KB``, ``KiB``, any case),
    as in rclone's ``--bwlimit``; ``B`` or no suffix means bytes.

    >>> parse_size("512K"), parse_size("1.5M"), parse_size("10MiB"), parse_size("2048")
    (524288, 1572864, 10485760, 2048)
    """
    m = _SIZE_RE.match(text)
    if m is None:
        raise ConfigError(f"not a size: {text!r} (expected e.g. 2048, 512K, 1.5M, 1G)")
    try:
        number = Decimal(m["num"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ConfigError(f"not a size: {text!r}") from exc
    return int(number * _SIZE_UNITS[(m["unit"] or "").lower()])


def _type_name(value: object) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string"}.get(
        type(value), type(value).__name__
    )


def _p_str(value: object, text: bool) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_type_name(value)} {value!r}")
    if not value.strip():
        raise _Invalid("must not be empty")
    return value


def _p_int(minimum: int) -> Callable[[object, bool], int]:
    def parse(value: object, text: bool) -> int:
        if text and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise _Invalid(f"must be an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"must be an integer, got {_type_name(value)} {value!r}")
        if value < minimum:
            raise _Invalid(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _p_seconds(*, allow_zero: bool) -> Callable[[object, bool], float]:
    def parse(value: object, text: bool) -> float:
        if text and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise _Invalid(f"must be a number of seconds, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _Invalid(f"must be a number of seconds, got {_type_name(value)} {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise _Invalid(f"must be finite, got {value!r}")
        if number < 0 or (number == 0 and not allow_zero):
            raise _Invalid(f"must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
        return number

    return parse


def _p_percent(value: object, text: bool) -> float:
    if isinstance(value, str):
        try:
            value = float(value.strip().removesuffix("%"))
        except ValueError:
            raise _Invalid(f"must be a percentage (1 to 100), got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"must be a percentage (1 to 100), got {_type_name(value)} {value!r}")
    if not 0 < value <= 100:
        raise _Invalid(f"must be a percentage (more than 0, at most 100), got {value!r}")
    return float(value)


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _p_bool(value: object, text: bool) -> bool:
    if text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid(f"must be true or false (1/0, yes/no, on/off), got {value!r}")
    if not isinstance(value, bool):
        raise _Invalid(f"must be true or false, got {_type_name(value)} {value!r}")
    return value


def _p_choice(*choices: str, fold: bool = False) -> Callable[[object, bool], str]:
    def parse(value: object, text: bool) -> str:
        if isinstance(value, str):
            key = value.strip().lower() if fold else value
            for choice in choices:
                if key == (choice.lower() if fold else choice):
                    return choice
        raise _Invalid(f"must be one of {', '.join(choices)}, got {value!r}")

    return parse


def _p_mode(value: object, text: bool) -> Mode:
    if isinstance(value, Mode):
        return value
    choice = _p_choice(*(m.value for m in Mode))(value, text)
    return Mode(choice)


def _p_patterns(value: object, text: bool) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(f"must be a list of patterns, got {_type_name(value)} {value!r}")
    for item in value:
        if not isinstance(item, str) or not item:
            raise _Invalid(f"must be a list of non-empty strings, got {item!r} in the list")
    return tuple(value)


def _p_filters(value: object, text: bool) -> tuple[FilterRule, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Invalid(f"must be a list of (kind, pattern) pairs, got {value!r}")
    rules: list[FilterRule] = []
    for item in value:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 2
            or item[0] not in ("exclude", "include")
            or not isinstance(item[1], str)
            or not item[1]
        ):
            raise _Invalid(f"each rule must be ('exclude'|'include', pattern), got {item!r}")
        rules.append((item[0], item[1]))
    return tuple(rules)


def _p_path(value: object, text: bool) -> Path:
    """Expand ``~``; a relative result is resolved later against the right base."""
    if isinstance(value, str):
        if not value.strip():
            raise _Invalid("must not be empty")
        path = Path(value)
    elif isinstance(value, Path):
        path = value
    else:
        raise _Invalid(f"must be a path string, got {_type_name(value)} {value!r}")
    expanded = Path(os.path.expanduser(path))
    if str(expanded).startswith("~"):
        raise _Invalid(f"cannot expand {str(path)!r}: no such user")
    return expanded


def _p_url(value: object, text: bool) -> str:
    url = _p_str(value, text)
    try:
        where = S3Url.parse(url)
    except UsageError as exc:
        raise _Invalid(str(exc)) from None
    return where.url().rstrip("/")


def _p_queue(value: object, text: bool) -> str:
    url = _p_str(value, text)
    split = urllib.parse.urlsplit(url)
    if split.scheme not in ("http", "https") or not split.netloc or split.path.count("/") < 2:
        raise _Invalid(
            f"must be an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), got {url!r}"
        )
    return url


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _p_name(value: object, text: bool) -> str:
    name = _p_str(value, text)
    if not _NAME_RE.match(name):
        raise _Invalid(
            f"must be up to 64 letters, digits, '.', '_' or '-' (starting with a letter or "
            f"digit), got {name!r}"
        )
    return name


def _p_endpoint(value: object, text: bool) -> str:
    url = _p_str(value, text).strip()
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise _Invalid(f"has a bad port: {url!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"must be an http:// or https:// URL, got {url!r}")
    return url


def _p_bwlimit(value: object, text: bool) -> int | None:
    if isinstance(value, str):
        try:
            size = parse_size(value)
        except ConfigError as exc:
            raise _Invalid(str(exc)) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise _Invalid(f"must be bytes per second (e.g. 1048576 or '1M'), got {value!r}")
    if size < 0:
        raise _Invalid(f"must be >= 0, got {value!r}")
    return size or None  # 0: unlimited


_STORAGE_CLASS_RE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _p_storage_class(value: object, text: bool) -> str:
    name = _p_str(value, text)
    if not _STORAGE_CLASS_RE.match(name):
        raise _Invalid(f"must be an S3 storage class like STANDARD_IA, got {name!r}")
    return name


def _p_metadata(value: object, text: bool) -> tuple[tuple[str, str], ...]:
    """A table of strings in the file; ``key=value,...`` or JSON as a flag or variable."""
    if isinstance(value, tuple):
        return value  # already parsed
    if isinstance(value, str):
        try:
            return parse_metadata(value)
        except WatchsyncError as exc:
            raise _Invalid(str(exc)) from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise _Invalid(f"must be a table of strings, got {_type_name(value)} {value!r}")
    return tuple(value.items())


def _p_addr(value: object, text: bool) -> str:
    addr = _p_str(value, text).strip()
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise _Invalid(f"must be host:port (e.g. 127.0.0.1:9100), got {addr!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _Invalid(f"has a bad IPv6 address: {addr!r}") from None
    elif ":" in host:
        raise _Invalid(f"must put an IPv6 address in brackets ([::1]:9100), got {addr!r}")
    return addr


_PARSERS: dict[str, Callable[[object, bool], object]] = {
    "endpoint_url": _p_endpoint,
    "profile": _p_str,
    "region": _p_str,
    "max_concurrency": _p_int(1),
    "sse": _p_choice("AES256", "aws:kms"),
    "sse_kms_key_id": _p_str,
    "storage_class": _p_storage_class,
    "bwlimit": _p_bwlimit,
    "checksum": _p_bool,
    "keep_mode": _p_bool,
    "acl": _p_choice(*ACLS),
    "cache_control": _p_str,
    "content_type": _p_str,
    "content_disposition": _p_str,
    "content_encoding": _p_str,
    "content_language": _p_str,
    "metadata": _p_metadata,
    "guess_mime_type": _p_bool,
    "state_dir": _p_path,
    "log_format": _p_choice("text", "json", fold=True),
    "log_level": _p_choice("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", fold=True),
    "metrics_addr": _p_addr,
    "page_actions": _p_bool,
    "path": _p_path,
    "url": _p_url,
    "name": _p_name,
    "direction": _p_mode,
    "delete": _p_bool,
    "max_delete": _p_int(0),
    "max_delete_percent": _p_percent,
    "force_delete": _p_bool,
    "folder_marker": _p_bool,
    "exclude": _p_patterns,
    "include": _p_patterns,
    "ignore_file": _p_path,
    "follow_symlinks": _p_bool,
    "debounce": _p_seconds(allow_zero=False),
    "reconcile_interval": _p_seconds(allow_zero=False),
    "full_walk_interval": _p_seconds(allow_zero=True),
    "full_list_interval": _p_seconds(allow_zero=True),
    "notifications_queue": _p_queue,
    "upload_workers": _p_int(1),
    "drain_timeout": _p_seconds(allow_zero=True),
    "filters": _p_filters,
}
assert set(_PARSERS) == FLAG_KEYS


# --- helpers -----------------------------------------------------------------------------


def _default_filters(exclude: Iterable[str], include: Iterable[str]) -> tuple[FilterRule, ...]:
    return tuple(("exclude", p) for p in exclude) + tuple(("include", p) for p in include)


def _folder_name(path: Path, url: str) -> str:
    digest = hashlib.sha256(f"{path}\n{url}".encode("utf-8", "surrogateescape")).hexdigest()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.name).strip("._-")[:40] or "root"
    return f"{stem}-{digest[:12]}"


def default_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    """``$STATE_DIRECTORY`` (systemd's ``StateDirectory=``, the first if several), else
    ``$XDG_STATE_HOME/watchsync``, else ``~/.local/state/watchsync`` (XDG base dir spec).

    >>> default_state_dir({"XDG_STATE_HOME": "/tmp/st"})
    PosixPath('/tmp/st/watchsync')
    >>> default_state_dir({"STATE_DIRECTORY": "/var/lib/watchsync", "XDG_STATE_HOME": "/tmp/st"})
    PosixPath('/var/lib/watchsync')
    """
    unit = env.get("STATE_DIRECTORY", "").split(":")[0]
    if unit and os.path.isabs(unit):
        return Path(unit)
    xdg = env.get("XDG_STATE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the spec says to ignore relative values
        return Path(xdg) / "watchsync"
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "state" / "watchsync"


def _flag_name(key: str) -> str:
    return _POSITIONALS.get(key) or "--" + key.replace("_", "-")


# Settings given on the command line as positional arguments, named as in the usage.
_POSITIONALS = {"path": "LOCAL_DIR", "url": "S3_URL"}


def _parse(key: str, raw: object, where: str, *, text: bool) -> _Value:
    try:
        return _Value(_PARSERS[key](raw, text), where)
    except _Invalid as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _absolute(path: Path, base: Path) -> Path:
    return (path if path.is_absolute() else base / path).resolve()


# --- layers ------------------------------------------------------------------------------


def _flag_layer(flags: Mapping[str, object]) -> dict[str, _Value]:
    layer: dict[str, _Value] = {}
    for key, raw in flags.items():
        if raw is None:
            continue
        if key not in FLAG_KEYS:
            raise ConfigError(f"{_flag_name(key)}: unknown setting")
        layer[key] = _parse(key, raw, _flag_name(key), text=isinstance(raw, str))
    return layer


def _env_layer(env: Mapping[str, str]) -> dict[str, _Value]:
    layer: dict[str, _Value] = {}
    for key in sorted(ENV_KEYS):
        name = ENV_PREFIX + key.upper()
        raw = env.get(name)
        if raw is not None and raw != "":  # an empty variable counts as unset
            layer[key] = _parse(key, raw, name, text=True)
    return layer


def _table_layer(table: Mapping[str, object], *, file: str, scope: str) -> dict[str, _Value]:
    """Validate one TOML table; ``scope`` is ``""`` (top level) or ``"folder[i]."``."""
    is_folder = bool(scope)
    allowed = (
        set(_FOLDER_ONLY_KEYS + _FOLDER_KEYS + _S3_KEYS)
        if is_folder
        else set(_GLOBAL_ONLY_KEYS + _FOLDER_KEYS + _S3_KEYS)
    )
    layer: dict[str, _Value] = {}
    for key, raw in table.items():
        where = f"{file}: {scope}{key}"
        if key.lower() in _CREDENTIAL_KEYS:
            raise ConfigError(f"{where}: {_CREDENTIAL_HINT}")
        if key not in allowed:
            if is_folder and key in _GLOBAL_ONLY_KEYS:
                raise ConfigError(f"{where}: is a global setting; move it above the folders")
            if not is_folder and key in _FOLDER_ONLY_KEYS:
                raise ConfigError(f"{where}: belongs in a [[folder]] table")
            raise ConfigError(f"{where}: unknown key")
        layer[key] = _parse(key, raw, where, text=False)
    return layer


def _read_file(path: Path, *, file: str) -> dict[str, object]:
    """Parse the TOML file at ``path``; errors start with ``file`` (the name as given)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid UTF-8 (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: {exc}") from None


# --- loading -----------------------------------------------------------------------------


def load_config(
    path: Path | None,
    *,
    flags: Mapping[str, object],
    env: Mapping[str, str] = os.environ,
    cwd: Path | None = None,
) -> AgentConfig:
    """Build the agent's configuration from a TOML file, the environment and flags.

    ``flags`` maps setting names (``FLAG_KEYS``: the file's keys plus ``filters``) to values;
    None means "not given".  Without a file, ``flags`` must hold ``path`` and ``url``: the
    ``watchsync watch DIR URL`` case; with a file, a ``path``/``url`` flag replaces the file's
    folders by that single folder.  Relative paths in the file resolve against the file's
    directory; in flags and the environment against ``cwd`` (default: the current directory);
    a relative ``ignore_file`` resolves against its folder.

    >>> cfg = load_config(None, flags={"path": "/srv/docs", "url": "s3://bucket/docs/"}, env={})
    >>> cfg.folders[0].url, cfg.folders[0].debounce
    ('s3://bucket/docs', 0.5)

    Raises ConfigError with the file, the key and the problem, e.g.
    ``config.toml: folder[1].direction: must be one of both, push, pull, got 'up'``.
    """
    here = (cwd or Path.cwd()).resolve()
    flag_layer = _flag_layer(flags)
    env_layer = _env_layer(env)

    source: Path | None = None
    global_layer: dict[str, _Value] = {}
    folder_layers: list[dict[str, _Value]] = []
    file_base = here
    if path is not None:
        source = _absolute(path.expanduser(), here)
        file_base = source.parent
        file = str(path)
        document = _read_file(source, file=file)
        tables = document.pop("folder", [])
        global_layer = _table_layer(document, file=file, scope="")
        if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
            raise ConfigError(f"{file}: folder: must be [[folder]] tables")
        folder_layers = [
            _table_layer(t, file=file, scope=f"folder[{i}].") for i, t in enumerate(tables)
        ]
        for i, layer in enumerate(folder_layers):
            for key in _REQUIRED_KEYS:
                if key not in layer:
                    raise ConfigError(f"{file}: folder[{i}].{key}: missing")

    if "path" in flag_layer or "url" in flag_layer:
        for key in _REQUIRED_KEYS:
            if key not in flag_layer:
                raise ConfigError(f"{_flag_name(key)}: missing (a folder needs both path and url)")
        if folder_layers:
            raise ConfigError(
                f"{path}: has [[folder]] tables; give folders either in the file or on the "
                "command line, not both"
            )
        folder_layers = [{}]
    elif path is None:
        raise ConfigError("no config file, and no folder (path and url) on the command line")
    elif not folder_layers:
        raise ConfigError(f"{path}: no [[folder]] tables")

    def base_of(v: _Value) -> Path:
        return here if v.where.startswith(("--", ENV_PREFIX)) else file_base

    folders = [
        _build_folder(f, flag_layer, env_layer, global_layer, base_of)
        for i, f in enumerate(folder_layers)
    ]
    _check_overlaps(folders)

    state = _pick("state_dir", flag_layer, env_layer, global_layer)
    state_dir = default_state_dir(env)
    if state is not None:
        assert isinstance(state.value, Path)
        state_dir = _absolute(state.value, base_of(state))

    def simple(key: str, default: object) -> object:
        v = _pick(key, flag_layer, env_layer, global_layer)
        return default if v is None else v.value

    log_format = simple("log_format", "text")
    assert log_format == "text" or log_format == "json"
    log_level = simple("log_level", "INFO")
    metrics_addr = simple("metrics_addr", None)
    page_actions = simple("page_actions", False)
    assert isinstance(log_level, str) and isinstance(page_actions, bool)
    assert metrics_addr is None or isinstance(metrics_addr, str)
    return AgentConfig(
        folders=tuple(f for f, _ in folders),
        state_dir=state_dir,
        log_format=log_format,
        log_level=log_level,
        metrics_addr=metrics_addr,
        page_actions=page_actions,
        source=source,
    )


def _pick(key: str, *layers: Mapping[str, _Value]) -> _Value | None:
    """The value from the first layer that has ``key``."""
    for layer in layers:
        if key in layer:
            return layer[key]
    return None


def _build_folder(
    folder_layer: Mapping[str, _Value],
    flag_layer: Mapping[str, _Value],
    env_layer: Mapping[str, _Value],
    global_layer: Mapping[str, _Value],
    base_of: Callable[[_Value], Path],
) -> tuple[FolderConfig, dict[str, str]]:
    """Merge the layers for one folder; also return where path and url came from."""
    layers = (flag_layer, env_layer, folder_layer, global_layer)
    chosen: dict[str, _Value] = {}
    for key in _FOLDER_ONLY_KEYS + _FOLDER_KEYS + _S3_KEYS + _FLAG_ONLY_KEYS:
        v = _pick(key, *layers)
        if v is not None:
            chosen[key] = v

    path_v, url_v = chosen.pop("path"), chosen.pop("url")
    assert isinstance(path_v.value, Path) and isinstance(url_v.value, str)
    root = _absolute(path_v.value, base_of(path_v))
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{path_v.where}: {root} is not a directory")

    s3_values = {k: chosen.pop(k).value for k in _S3_KEYS if k in chosen}
    s3 = replace(_S3_DEFAULTS, **s3_values)  # type: ignore[arg-type]
    if s3.sse_kms_key_id is not None and s3.sse != "aws:kms":
        kms = _pick("sse_kms_key_id", *layers)
        assert kms is not None
        raise ConfigError(f"{kms.where}: needs sse = 'aws:kms', got sse = {s3.sse!r}")

    values: dict[str, object] = {k: v.value for k, v in chosen.items()}
    ignore = values.get("ignore_file")
    if isinstance(ignore, Path):
        values["ignore_file"] = (ignore if ignore.is_absolute() else root / ignore).resolve()
    if "filters" not in values:
        values["filters"] = _default_filters(
            values.get("exclude", ()),  # type: ignore[arg-type]
            values.get("include", ()),  # type: ignore[arg-type]
        )
    folder = FolderConfig(path=root, url=url_v.value, s3=s3, **values)  # type: ignore[arg-type]
    name_v = _pick("name", *layers)
    where = {"path": path_v.where, "url": url_v.where}
    return folder, where | {"name": name_v.where if name_v else where["path"]}


def _check_overlaps(folders: list[tuple[FolderConfig, dict[str, str]]]) -> None:
    """Reject a folder watched twice or inside another, S3 locations that overlap, and a
    name given twice."""
    for j, (b, b_where) in enumerate(folders):
        for i, (a, _) in enumerate(folders[:j]):
            if a.name == b.name:
                raise ConfigError(f"{b_where['name']}: {b.name!r} already names folder[{i}]")
            if a.path == b.path:
                raise ConfigError(f"{b_where['path']}: same folder as folder[{i}] ({a.path})")
            if b.path.is_relative_to(a.path):
                raise ConfigError(f"{b_where['path']}: {b.path} is inside folder[{i}] ({a.path})")
            if a.path.is_relative_to(b.path):
                raise ConfigError(f"{b_where['path']}: {b.path} contains folder[{i}] ({a.path})")
            if (
                a.s3.endpoint_url == b.s3.endpoint_url
                and a.where.bucket == b.where.bucket
                and (
                    a.where.prefix.startswith(b.where.prefix)
                    or b.where.prefix.startswith(a.where.prefix)
                )
            ):
                raise ConfigError(
                    f"{b_where['url']}: {b.url} overlaps folder[{i}] ({a.url}); two folders "
                    "syncing into the same keys would delete each other's files"
                )
