"""watchsync.agent.config: parsing, precedence (flag > env > file > default) and error messages."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from watchsync.agent.config import (
    ENV_KEYS,
    FLAG_KEYS,
    AgentConfig,
    FolderConfig,
    S3Settings,
    default_state_dir,
    load_config,
    parse_size,
)
from watchsync.core.errors import ConfigError, UsageError
from watchsync.core.model import Mode
from watchsync.s3.location import S3Url

REPO = Path(__file__).resolve().parent.parent


def _load(
    tmp_path: Path,
    text: str | None,
    *,
    flags: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> AgentConfig:
    """Write ``text`` to tmp_path/config.toml and load it as ``config.toml`` from tmp_path."""
    path = None
    if text is not None:
        (tmp_path / "config.toml").write_text(text)
        path = Path("config.toml")
    return load_config(path, flags=flags or {}, env=env or {}, cwd=tmp_path)


# --- parsing -----------------------------------------------------------------------------


def test_full_file(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        """
        endpoint_url = "http://127.0.0.1:8333"
        region = "us-east-1"
        profile = "backup"
        max_concurrency = 4
        bwlimit = "1.5M"
        sse = "aws:kms"
        sse_kms_key_id = "alias/backup"
        storage_class = "STANDARD_IA"
        state_dir = "state"
        log_format = "JSON"
        log_level = "debug"
        metrics_addr = "[::1]:9464"
        debounce = 2

        [[folder]]
        path = "docs"
        url = "s3://my-bucket/docs/"
        direction = "push"
        delete = true
        max_delete = 10
        force_delete = true
        exclude = ["*.tmp", "build/*"]
        include = ["keep.tmp"]
        ignore_file = ".myignore"
        reconcile_interval = 60
        upload_workers = 2
        drain_timeout = 0

        [[folder]]
        path = "/srv/photos"
        url = "s3://photos"
        endpoint_url = "https://s3.example.com"
        max_concurrency = 1
        bwlimit = 0
        """,
    )
    assert cfg.source == tmp_path / "config.toml"
    assert cfg.state_dir == tmp_path / "state"
    assert (cfg.log_format, cfg.log_level, cfg.metrics_addr) == ("json", "DEBUG", "[::1]:9464")
    docs, photos = cfg.folders
    assert docs.path == tmp_path / "docs"
    assert docs.url == "s3://my-bucket/docs"
    assert docs.where == S3Url("my-bucket", "docs/")
    assert docs.direction is Mode.PUSH
    assert (docs.delete, docs.max_delete, docs.force_delete) == (True, 10, True)
    assert docs.exclude == ("*.tmp", "build/*")
    assert docs.include == ("keep.tmp",)
    assert docs.filters == (("exclude", "*.tmp"), ("exclude", "build/*"), ("include", "keep.tmp"))
    assert docs.ignore_file == tmp_path / "docs" / ".myignore"
    assert (docs.debounce, docs.reconcile_interval) == (2.0, 60.0)
    assert (docs.upload_workers, docs.drain_timeout) == (2, 0.0)
    assert docs.s3 == S3Settings(
        endpoint_url="http://127.0.0.1:8333",
        profile="backup",
        region="us-east-1",
        max_concurrency=4,
        sse="aws:kms",
        sse_kms_key_id="alias/backup",
        storage_class="STANDARD_IA",
        bwlimit=1572864,
    )
    assert photos.path == Path("/srv/photos")
    assert photos.where == S3Url("photos", "")
    assert photos.direction is Mode.BOTH
    assert photos.ignore_file is None
    assert photos.s3.endpoint_url == "https://s3.example.com"
    assert photos.s3.max_concurrency == 1
    assert photos.s3.bwlimit is None  # 0: unlimited
    assert photos.s3.region == "us-east-1"  # global, not overridden
    assert photos.debounce == 2.0


def test_defaults_without_file(tmp_path: Path) -> None:
    cfg = _load(tmp_path, None, flags={"path": "here", "url": "s3://bucket"})
    (folder,) = cfg.folders
    assert folder == FolderConfig(path=tmp_path / "here", url="s3://bucket")
    assert folder.s3 == S3Settings()
    assert cfg.source is None
    assert cfg.state_dir == default_state_dir({})
    assert (cfg.log_format, cfg.log_level, cfg.metrics_addr) == ("text", "INFO", None)


def test_examples_config_parses(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg = load_config(REPO / "examples" / "config.toml", flags={}, env={})
    assert [f.path for f in cfg.folders] == [tmp_path / "Documents", Path("/srv/photos")]
    assert cfg.folders[1].direction is Mode.PUSH
    assert cfg.folders[1].s3.storage_class == "STANDARD_IA"
    assert cfg.folders[0].s3.storage_class is None


def test_paths_expand_home_and_resolve_against_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    sub = tmp_path / "etc"
    sub.mkdir()
    (sub / "c.toml").write_text(
        '[[folder]]\npath = "~/a"\nurl = "s3://bkt/a"\n'
        '[[folder]]\npath = "../b"\nurl = "s3://bkt/b"\nignore_file = "/x/ignore"\n'
    )
    cfg = load_config(sub / "c.toml", flags={}, env={}, cwd=Path("/"))
    assert [f.path for f in cfg.folders] == [tmp_path / "home" / "a", tmp_path / "b"]
    assert cfg.folders[1].ignore_file == Path("/x/ignore")


def test_flag_folder_path_is_relative_to_cwd(tmp_path: Path) -> None:
    cfg = load_config(None, flags={"path": Path("d"), "url": "s3://bkt"}, env={}, cwd=tmp_path)
    assert cfg.folders[0].path == tmp_path / "d"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"XDG_STATE_HOME": "/xdg", "HOME": "/home/u"}, Path("/xdg/watchsync")),
        ({"HOME": "/home/u"}, Path("/home/u/.local/state/watchsync")),
        ({"XDG_STATE_HOME": "relative", "HOME": "/home/u"}, Path("/home/u/.local/state/watchsync")),
        ({"XDG_STATE_HOME": "", "HOME": "/home/u"}, Path("/home/u/.local/state/watchsync")),
    ],
)
def test_default_state_dir(env: dict[str, str], expected: Path) -> None:
    assert default_state_dir(env) == expected


def test_folder_name_is_stable_and_filesystem_safe() -> None:
    a = FolderConfig(path=Path("/srv/My Files!"), url="s3://bkt/p")
    assert a.name == FolderConfig(path=Path("/srv/My Files!"), url="s3://bkt/p").name
    assert a.name != FolderConfig(path=Path("/srv/My Files!"), url="s3://bkt/q").name
    assert a.name != FolderConfig(path=Path("/other/My Files!"), url="s3://bkt/p").name
    assert re.fullmatch(r"My_Files-[0-9a-f]{12}", a.name)
    assert re.fullmatch(r"root-[0-9a-f]{12}", FolderConfig(path=Path("/"), url="s3://bkt").name)


def test_trailing_slash_does_not_change_the_folder(tmp_path: Path) -> None:
    a = _load(tmp_path, None, flags={"path": "/d", "url": "s3://bkt/p/"}).folders[0]
    b = _load(tmp_path, None, flags={"path": "/d", "url": "s3://bkt/p"}).folders[0]
    assert a == b


# --- filters -----------------------------------------------------------------------------


def test_flag_filters_keep_command_line_order(tmp_path: Path) -> None:
    rules = [("include", "*.txt"), ("exclude", "*"), ("include", "a.txt")]
    cfg = _load(
        tmp_path,
        '[[folder]]\npath = "/d"\nurl = "s3://bkt"\nexclude = ["x"]\n',
        flags={"filters": rules},
    )
    assert cfg.folders[0].filters == tuple(rules)
    assert cfg.folders[0].exclude == ("x",)  # the file's, kept for display


def test_flag_exclude_replaces_file_exclude(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[[folder]]\npath = "/d"\nurl = "s3://bkt"\nexclude = ["x"]\ninclude = ["y"]\n',
        flags={"exclude": ["z"]},
    )
    assert cfg.folders[0].filters == (("exclude", "z"), ("include", "y"))


def test_direct_construction_derives_filters() -> None:
    f = FolderConfig(path=Path("/d"), url="s3://bkt", exclude=("*",), include=("*.txt",))
    assert f.filters == (("exclude", "*"), ("include", "*.txt"))


# --- precedence --------------------------------------------------------------------------

Get = Callable[[AgentConfig], object]
_folder: Callable[[str], Get] = lambda key: lambda cfg: getattr(cfg.folders[0], key)  # noqa: E731
_s3: Callable[[str], Get] = lambda key: lambda cfg: getattr(cfg.folders[0].s3, key)  # noqa: E731
_agent: Callable[[str], Get] = lambda key: lambda cfg: getattr(cfg, key)  # noqa: E731

# (key, getter, global in file, folder in file, env, flag, expected); None: not given.
PRECEDENCE = [
    ("debounce", _folder("debounce"), None, None, None, None, 0.5),
    ("debounce", _folder("debounce"), "1.0", None, None, None, 1.0),
    ("debounce", _folder("debounce"), "1.0", "2.0", None, None, 2.0),
    ("debounce", _folder("debounce"), "1.0", "2.0", "3", None, 3.0),
    ("debounce", _folder("debounce"), "1.0", "2.0", "3", 4.0, 4.0),
    ("debounce", _folder("debounce"), None, None, None, "0.25", 0.25),
    ("direction", _folder("direction"), None, None, None, None, Mode.BOTH),
    ("direction", _folder("direction"), '"push"', '"pull"', None, None, Mode.PULL),
    ("direction", _folder("direction"), None, '"pull"', "push", None, Mode.PUSH),
    ("direction", _folder("direction"), None, '"pull"', "push", Mode.BOTH, Mode.BOTH),
    ("delete", _folder("delete"), None, None, None, None, False),
    ("delete", _folder("delete"), "true", None, None, None, True),
    ("delete", _folder("delete"), "true", None, "no", None, False),
    ("delete", _folder("delete"), "true", None, "no", True, True),
    ("max_delete", _folder("max_delete"), "5", "6", "7", None, 7),
    ("upload_workers", _folder("upload_workers"), None, "3", None, 9, 9),
    ("reconcile_interval", _folder("reconcile_interval"), "60", None, "30.5", None, 30.5),
    ("full_walk_interval", _folder("full_walk_interval"), None, None, None, None, 86400.0),
    ("full_walk_interval", _folder("full_walk_interval"), "3600", None, "0", None, 0.0),
    ("full_list_interval", _folder("full_list_interval"), None, None, None, None, None),
    ("full_list_interval", _folder("full_list_interval"), "60", None, "0", None, 0.0),
    ("drain_timeout", _folder("drain_timeout"), None, "5", None, None, 5.0),
    ("max_concurrency", _s3("max_concurrency"), None, None, None, None, 16),
    ("max_concurrency", _s3("max_concurrency"), "8", None, None, None, 8),
    ("max_concurrency", _s3("max_concurrency"), "8", "4", None, None, 4),
    ("max_concurrency", _s3("max_concurrency"), "8", "4", "2", None, 2),
    ("max_concurrency", _s3("max_concurrency"), "8", "4", "2", 1, 1),
    ("endpoint_url", _s3("endpoint_url"), None, None, None, None, None),
    ("endpoint_url", _s3("endpoint_url"), '"http://g:1"', '"http://f:2"', None, None, "http://f:2"),
    ("endpoint_url", _s3("endpoint_url"), '"http://g:1"', None, "http://e:3", None, "http://e:3"),
    ("endpoint_url", _s3("endpoint_url"), None, None, "http://e:3", "http://c:4", "http://c:4"),
    ("bwlimit", _s3("bwlimit"), '"1M"', None, None, None, 1048576),
    ("bwlimit", _s3("bwlimit"), '"1M"', "2048", None, None, 2048),
    ("bwlimit", _s3("bwlimit"), '"1M"', None, "512K", None, 524288),
    ("bwlimit", _s3("bwlimit"), '"1M"', None, "512K", "0", None),
    ("region", _s3("region"), '"eu-west-1"', None, "us-east-1", None, "us-east-1"),
    ("storage_class", _s3("storage_class"), None, '"GLACIER_IR"', None, None, "GLACIER_IR"),
    ("acl", _s3("acl"), '"private"', None, "public-read", None, "public-read"),
    ("cache_control", _s3("cache_control"), '"no-cache"', '"max-age=9"', None, None, "max-age=9"),
    ("guess_mime_type", _s3("guess_mime_type"), None, None, None, None, True),
    ("guess_mime_type", _s3("guess_mime_type"), "false", None, None, None, False),
    (
        "metadata",
        _s3("metadata"),
        None,
        '{ a = "1", b = "2" }',
        None,
        None,
        (("a", "1"), ("b", "2")),
    ),
    ("metadata", _s3("metadata"), '{ a = "1" }', None, "c=3", None, (("c", "3"),)),
    ("metadata", _s3("metadata"), None, None, '{"j": "son"}', "f=lag", (("f", "lag"),)),
    ("log_level", _agent("log_level"), '"warning"', None, None, None, "WARNING"),
    ("log_level", _agent("log_level"), '"warning"', None, "error", None, "ERROR"),
    ("log_level", _agent("log_level"), '"warning"', None, "error", "DEBUG", "DEBUG"),
    ("log_format", _agent("log_format"), '"json"', None, None, None, "json"),
    ("metrics_addr", _agent("metrics_addr"), '"127.0.0.1:1"', None, "0.0.0.0:2", None, "0.0.0.0:2"),
    ("state_dir", _agent("state_dir"), '"/file"', None, "/env", None, Path("/env")),
    ("state_dir", _agent("state_dir"), '"/file"', None, "/env", Path("/flag"), Path("/flag")),
]


@pytest.mark.parametrize(
    ("key", "get", "in_global", "in_folder", "in_env", "in_flag", "expected"), PRECEDENCE
)
def test_precedence(
    tmp_path: Path,
    key: str,
    get: Get,
    in_global: str | None,
    in_folder: str | None,
    in_env: str | None,
    in_flag: object,
    expected: object,
) -> None:
    text = f"{key} = {in_global}\n" if in_global is not None else ""
    text += '[[folder]]\npath = "/srv/a"\nurl = "s3://bkt/a"\n'
    if in_folder is not None:
        text += f"{key} = {in_folder}\n"
    env = {} if in_env is None else {"WATCHSYNC_" + key.upper(): in_env}
    cfg = _load(tmp_path, text, flags={key: in_flag}, env=env)
    assert get(cfg) == expected


def test_env_and_flags_override_every_folder(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        "debounce = 1\n"
        '[[folder]]\npath = "/a"\nurl = "s3://bkt/a"\ndebounce = 2\n'
        '[[folder]]\npath = "/b"\nurl = "s3://bkt/b"\n',
        flags={"upload_workers": 3},
        env={"WATCHSYNC_DEBOUNCE": "7"},
    )
    assert [(f.debounce, f.upload_workers) for f in cfg.folders] == [(7.0, 3), (7.0, 3)]


def test_empty_env_var_counts_as_unset(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path, None, flags={"path": "/a", "url": "s3://bkt"}, env={"WATCHSYNC_DEBOUNCE": ""}
    )
    assert cfg.folders[0].debounce == 0.5


def test_env_keys() -> None:
    assert {"endpoint_url", "max_concurrency", "debounce", "state_dir", "bwlimit"} <= ENV_KEYS
    assert not {"path", "url", "exclude", "include", "filters"} & ENV_KEYS
    assert ENV_KEYS < FLAG_KEYS


def test_flag_folder_with_a_file_of_globals(tmp_path: Path) -> None:
    cfg = _load(tmp_path, "debounce = 3\n", flags={"path": "/a", "url": "s3://bkt"})
    assert cfg.folders[0].debounce == 3.0


# --- errors ------------------------------------------------------------------------------

F = '[[folder]]\npath = "/srv/a"\nurl = "s3://bkt/a"\n'  # a valid first folder

BAD_FILES = [
    # (id, file text, expected message: exact, or a regex when it starts with "re:")
    ("unknown global key", "debounse = 1\n" + F, "config.toml: debounse: unknown key"),
    ("unknown folder key", F + "pth = 1\n", "config.toml: folder[0].pth: unknown key"),
    (
        "bad type",
        F + 'debounce = "fast"\n',
        "config.toml: folder[0].debounce: must be a number of seconds, got string 'fast'",
    ),
    (
        "bad bool type",
        F + 'delete = "yes"\n',
        "config.toml: folder[0].delete: must be true or false, got string 'yes'",
    ),
    (
        "bad int type",
        "max_concurrency = 2.5\n" + F,
        "config.toml: max_concurrency: must be an integer, got float 2.5",
    ),
    (
        "bad direction",
        F + '[[folder]]\npath = "/srv/b"\nurl = "s3://bkt/b"\ndirection = "up"\n',
        "config.toml: folder[1].direction: must be one of both, push, pull, got 'up'",
    ),
    (
        "bad url scheme",
        '[[folder]]\npath = "/a"\nurl = "https://bkt/a"\n',
        "config.toml: folder[0].url: not an S3 URL: 'https://bkt/a' (expected s3://bucket[/prefix])",
    ),
    (
        "url without bucket",
        '[[folder]]\npath = "/a"\nurl = "s3://"\n',
        "re:folder\\[0\\]\\.url: no bucket in",
    ),
    (
        "bad bucket name",
        '[[folder]]\npath = "/a"\nurl = "s3://My_Bucket/x"\n',
        "re:^config\\.toml: folder\\[0\\]\\.url: invalid bucket name 'My_Bucket'",
    ),
    (
        "ip bucket",
        '[[folder]]\npath = "/a"\nurl = "s3://10.0.0.1"\n',
        "re:invalid bucket name '10.0.0.1'",
    ),
    (
        "bad prefix",
        '[[folder]]\npath = "/a"\nurl = "s3://bkt/a//b"\n',
        "re:folder\\[0\\]\\.url: bad prefix",
    ),
    (
        "negative debounce",
        F + "debounce = -1\n",
        "config.toml: folder[0].debounce: must be > 0, got -1",
    ),
    ("zero debounce", "debounce = 0\n" + F, "config.toml: debounce: must be > 0, got 0"),
    (
        "max_concurrency < 1",
        F + "max_concurrency = 0\n",
        "config.toml: folder[0].max_concurrency: must be >= 1, got 0",
    ),
    ("negative max_delete", F + "max_delete = -1\n", "re:folder\\[0\\]\\.max_delete: must be >= 0"),
    (
        "duplicate path",
        F + '[[folder]]\npath = "/srv/a/"\nurl = "s3://bkt/b"\n',
        "config.toml: folder[1].path: same folder as folder[0] (/srv/a)",
    ),
    (
        "nested folder",
        F + '[[folder]]\npath = "/srv/a/sub"\nurl = "s3://bkt/b"\n',
        "config.toml: folder[1].path: /srv/a/sub is inside folder[0] (/srv/a)",
    ),
    (
        "folder containing another",
        F + '[[folder]]\npath = "/srv"\nurl = "s3://bkt/b"\n',
        "config.toml: folder[1].path: /srv contains folder[0] (/srv/a)",
    ),
    (
        "overlapping urls",
        F + '[[folder]]\npath = "/srv/b"\nurl = "s3://bkt/a/sub"\n',
        "re:^config\\.toml: folder\\[1\\]\\.url: s3://bkt/a/sub overlaps folder\\[0\\] \\(s3://bkt/a\\)",
    ),
    (
        "credentials at top level",
        'aws_secret_access_key = "x"\n' + F,
        "config.toml: aws_secret_access_key: credentials must not be in the config file; they "
        "come from the AWS credential chain (profile, environment, instance role)",
    ),
    (
        "credentials in a folder",
        F + 'access_key = "x"\n',
        "re:^config\\.toml: folder\\[0\\]\\.access_key: credentials must not be in the config",
    ),
    ("secret_key", 'secret_key = "x"\n' + F, "re:secret_key: credentials .*AWS credential chain"),
    ("aws_access_key_id", 'aws_access_key_id = "x"\n' + F, "re:aws_access_key_id: credentials"),
    (
        "toml syntax error",
        'log_level = "INFO"\ndebounce = \n' + F,
        "re:^config\\.toml: .*\\(at line 2, column \\d+\\)$",
    ),
    (
        "global key in a folder",
        F + 'state_dir = "/x"\n',
        "config.toml: folder[0].state_dir: is a global setting; move it above the folders",
    ),
    (
        "folder key at top level",
        'url = "s3://bkt"\n' + F,
        "config.toml: url: belongs in a [[folder]] table",
    ),
    ("missing url", '[[folder]]\npath = "/a"\n', "config.toml: folder[0].url: missing"),
    ("missing path", '[[folder]]\nurl = "s3://bkt"\n', "config.toml: folder[0].path: missing"),
    ("no folders", "debounce = 1\n", "config.toml: no [[folder]] tables"),
    ("folder not tables", "folder = 3\n", "config.toml: folder: must be [[folder]] tables"),
    (
        "unexpandable home",
        '[[folder]]\npath = "~no-such-user-watchsync/x"\nurl = "s3://bkt"\n',
        "config.toml: folder[0].path: cannot expand '~no-such-user-watchsync/x': no such user",
    ),
    (
        "empty path",
        '[[folder]]\npath = ""\nurl = "s3://bkt"\n',
        "config.toml: folder[0].path: must not be empty",
    ),
    (
        "bad metrics_addr",
        'metrics_addr = "9100"\n' + F,
        "re:^config\\.toml: metrics_addr: must be host:port",
    ),
    ("bad metrics port", 'metrics_addr = "h:70000"\n' + F, "re:metrics_addr: must be host:port"),
    ("bare ipv6 metrics", 'metrics_addr = "::1:9100"\n' + F, "re:metrics_addr: must put an IPv6"),
    (
        "bad endpoint",
        'endpoint_url = "localhost:8333"\n' + F,
        "re:^config\\.toml: endpoint_url: must be an http",
    ),
    ("bad sse", 'sse = "aes"\n' + F, "config.toml: sse: must be one of AES256, aws:kms, got 'aes'"),
    (
        "kms key without kms",
        'sse_kms_key_id = "k"\n' + F,
        "config.toml: sse_kms_key_id: needs sse = 'aws:kms', got sse = None",
    ),
    (
        "bad storage class",
        F + 'storage_class = "cheap"\n',
        "re:folder\\[0\\]\\.storage_class: must be an S3",
    ),
    ("bad acl", F + 'acl = "everyone"\n', "re:folder\\[0\\]\\.acl: must be one of private, "),
    (
        "bad metadata",
        F + "metadata = 3\n",
        "re:folder\\[0\\]\\.metadata: must be a table of strings, got",
    ),
    ("bad bwlimit", 'bwlimit = "fast"\n' + F, "re:^config\\.toml: bwlimit: not a size: 'fast'"),
    ("negative bwlimit", "bwlimit = -5\n" + F, "config.toml: bwlimit: must be >= 0, got -5"),
    (
        "bad log_format",
        'log_format = "xml"\n' + F,
        "config.toml: log_format: must be one of text, json, got 'xml'",
    ),
    (
        "bad log_level",
        'log_level = "loud"\n' + F,
        "re:^config\\.toml: log_level: must be one of DEBUG",
    ),
    (
        "exclude not a list",
        F + 'exclude = "*.tmp"\n',
        "re:folder\\[0\\]\\.exclude: must be a list of patterns",
    ),
    (
        "exclude with a number",
        F + "include = [1]\n",
        "re:folder\\[0\\]\\.include: must be a list of non-empty",
    ),
    (
        "nan debounce",
        F + "debounce = nan\n",
        "config.toml: folder[0].debounce: must be finite, got nan",
    ),
]


@pytest.mark.parametrize(
    ("text", "message"), [r[1:] for r in BAD_FILES], ids=[r[0] for r in BAD_FILES]
)
def test_bad_file(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    if message.startswith("re:"):
        assert re.search(message[3:], str(info.value)), str(info.value)
    else:
        assert str(info.value) == message
    assert info.value.exit_code == 2


def test_folder_path_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(
        ConfigError, match=r"^config\.toml: folder\[0\]\.path: .*/f is not a directory$"
    ):
        _load(tmp_path, '[[folder]]\npath = "f"\nurl = "s3://bkt"\n')


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope\.toml: cannot read: No such file"):
        load_config(Path("nope.toml"), flags={}, env={}, cwd=tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_bytes(b'log_level = "\xff"\n')
    with pytest.raises(ConfigError, match=r"^config\.toml: not valid UTF-8"):
        load_config(Path("config.toml"), flags={}, env={}, cwd=tmp_path)


A = {"path": "/a", "url": "s3://bkt"}

BAD_ENV_OR_FLAGS = [
    # (id, flags, env, expected message)
    (
        "env bad number",
        A,
        {"WATCHSYNC_DEBOUNCE": "abc"},
        "WATCHSYNC_DEBOUNCE: must be a number of seconds, got 'abc'",
    ),
    ("env negative", A, {"WATCHSYNC_DEBOUNCE": "-1"}, "WATCHSYNC_DEBOUNCE: must be > 0, got -1.0"),
    (
        "env bad int",
        A,
        {"WATCHSYNC_MAX_CONCURRENCY": "many"},
        "WATCHSYNC_MAX_CONCURRENCY: must be an integer, got 'many'",
    ),
    (
        "env zero int",
        A,
        {"WATCHSYNC_MAX_CONCURRENCY": "0"},
        "WATCHSYNC_MAX_CONCURRENCY: must be >= 1, got 0",
    ),
    (
        "env bad bool",
        A,
        {"WATCHSYNC_DELETE": "maybe"},
        "WATCHSYNC_DELETE: must be true or false (1/0, yes/no, on/off), got 'maybe'",
    ),
    (
        "env bad direction",
        A,
        {"WATCHSYNC_DIRECTION": "up"},
        "WATCHSYNC_DIRECTION: must be one of both, push, pull, got 'up'",
    ),
    (
        "env bad endpoint",
        A,
        {"WATCHSYNC_ENDPOINT_URL": "ftp://x"},
        "WATCHSYNC_ENDPOINT_URL: must be an http:// or https:// URL, got 'ftp://x'",
    ),
    ("flag negative", {**A, "debounce": -1.0}, {}, "--debounce: must be > 0, got -1.0"),
    (
        "flag bad url",
        {"path": "/a", "url": "bkt"},
        {},
        "S3_URL: not an S3 URL: 'bkt' (expected s3://bucket[/prefix])",
    ),
    ("flag unknown", {**A, "bogus": 1}, {}, "--bogus: unknown setting"),
    (
        "flag bad filters",
        {**A, "filters": [("drop", "x")]},
        {},
        "--filters: each rule must be ('exclude'|'include', pattern), got ('drop', 'x')",
    ),
    (
        "flag path without url",
        {"path": "/a"},
        {},
        "S3_URL: missing (a folder needs both path and url)",
    ),
    ("nothing at all", {}, {}, "no config file, and no folder (path and url) on the command line"),
]


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [r[1:] for r in BAD_ENV_OR_FLAGS],
    ids=[r[0] for r in BAD_ENV_OR_FLAGS],
)
def test_bad_env_or_flags(
    tmp_path: Path, flags: dict[str, object], env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, None, flags=flags, env=env)
    assert str(info.value) == message


def test_bad_env_is_reported_even_if_a_flag_wins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^WATCHSYNC_DEBOUNCE: "):
        _load(tmp_path, None, flags={**A, "debounce": 1.0}, env={"WATCHSYNC_DEBOUNCE": "x"})


def test_folders_in_file_and_on_command_line(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"^config\.toml: has \[\[folder\]\] tables; give folders either"
    ):
        _load(tmp_path, F, flags=A)


def test_unrelated_env_vars_are_ignored(tmp_path: Path) -> None:
    cfg = _load(tmp_path, None, flags=A, env={"WATCHSYNC_CONFIG": "/x", "WATCHSYNC_URL": "nope"})
    assert cfg.folders[0].url == "s3://bkt"


# --- sizes and URLs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("2048", 2048),
        ("512K", 512 * 1024),
        ("512k", 512 * 1024),
        ("10M", 10 * 1024**2),
        ("1.5M", 1572864),
        ("1G", 1024**3),
        ("2T", 2 * 1024**4),
        ("10MiB", 10 * 1024**2),
        ("10MB", 10 * 1024**2),
        ("10mb", 10 * 1024**2),
        ("3KiB", 3072),
        (" 4 K ", 4096),
        ("100B", 100),
        (".5K", 512),
        ("1.", 1),
        ("0.3", 0),  # fractions of a byte round down
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "K", "-1", "1.5.5M", "10X", "1e3", "ten", "1 M B", "5KiBs", "0x10"]
)
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ConfigError, match=r"^not a size: "):
        parse_size(text)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bkt", ("bkt", "")),
        ("s3://bkt/", ("bkt", "")),
        ("s3://my.bucket-1/a/b/", ("my.bucket-1", "a/b")),
        ("s3://bkt/sp ace/ü", ("bkt", "sp ace/ü")),
    ],
)
def test_parse_s3_url(url: str, expected: tuple[str, str]) -> None:
    where = S3Url.parse(url)
    assert (where.bucket, where.prefix.rstrip("/")) == expected


@pytest.mark.parametrize(
    "url",
    [
        "bkt",
        "s3:/bkt",
        "S3://bkt",
        "s3://ab",
        "s3://-bkt",
        "s3://bkt-",
        "s3://a..b",
        "s3://a.-b",
        "s3://UPPER",
        "s3://under_score",
        "s3://" + "a" * 64,
        "s3://192.168.0.1",
        "s3://bkt/../x",
        "s3://bkt/./x",
    ],
)
def test_parse_s3_url_rejects(url: str) -> None:
    with pytest.raises(UsageError):
        S3Url.parse(url)


@pytest.mark.parametrize(
    ("flags", "follow"),
    [([], True), (["--no-follow-symlinks"], False), (["--follow-symlinks"], True)],
)
def test_watch_follow_symlinks_flag_reaches_the_folder(
    tmp_path: Path, flags: list[str], follow: bool
) -> None:
    from watchsync.cli.agent_commands import agent_config
    from watchsync.cli.main import build_parser

    argv = ["watch", str(tmp_path), "s3://bucket/p", "--state-dir", str(tmp_path / "s"), *flags]
    args = build_parser().parse_args(argv)
    (folder,) = agent_config(args, argv).folders
    assert folder.follow_symlinks is follow
