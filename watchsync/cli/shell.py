"""``watchsync completion SHELL`` and ``watchsync manpage``: both generated from the parser
itself (shtab and argparse-manpage), so they never drift from the options.

    watchsync completion bash > ~/.local/share/bash-completion/completions/watchsync
    watchsync completion zsh  > "${fpath[1]}/_watchsync"
    watchsync completion fish > ~/.config/fish/completions/watchsync.fish
    watchsync manpage > ~/.local/share/man/man1/watchsync.1
"""

from __future__ import annotations

import argparse
from typing import Any

from watchsync import __version__

SHELLS = ("bash", "zsh", "fish")


def add_shell_commands(sub: Any) -> None:
    """Register ``completion`` and ``manpage`` on the main parser."""
    from watchsync.cli.arguments import examples

    c = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, fish)",
        epilog=examples(
            "watchsync completion bash > ~/.local/share/bash-completion/completions/watchsync",
            "watchsync completion fish > ~/.config/fish/completions/watchsync.fish",
        ),
    )
    c.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh or fish")
    sub.add_parser(
        "manpage",
        help="print the manual page (roff): watchsync manpage | man -l -",
        epilog=examples("watchsync manpage > ~/.local/share/man/man1/watchsync.1"),
    )


def completion_script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of ``parser`` for ``shell``.

    >>> p = argparse.ArgumentParser(prog="demo")
    >>> _ = p.add_argument("--verbose")
    >>> "--verbose" in completion_script(p, "bash")
    True
    """
    import shtab

    script: str = shtab.complete(parser, shell=shell)
    return script


def man_page(parser: argparse.ArgumentParser) -> str:
    """The manual page of ``parser``, section 1, in roff.

    >>> p = argparse.ArgumentParser(prog="demo", description="Does things.")
    >>> man_page(p).startswith(".TH DEMO")
    True
    """
    from argparse_manpage.manpage import Manpage

    page = Manpage(parser)
    page.source = f"watchsync {__version__}"
    page.manual = "User Commands"
    page.description = "keep a local folder and an S3 bucket in sync"
    return "".join(_text_line(line) for line in str(page).splitlines(keepends=True))


# The requests argparse-manpage writes; any other line starting with "." or "'" is help text
# (e.g. ".watchsyncignore") that roff would take for a request.
_REQUESTS = {"TH", "SH", "SS", "TP", "B", "I", "BR", "IR", "RB", "RI", "PP", "IP", "RS", "RE"}


def _text_line(line: str) -> str:
    r"""``line``, with a leading ``.`` or ``'`` of help text made literal (``\&``).

    >>> _text_line(".watchsyncignore\n"), _text_line(".TP\n")
    ('\\&.watchsyncignore\n', '.TP\n')
    """
    words = line[1:].split(maxsplit=1)
    if line[:1] in (".", "'") and not (words and words[0] in _REQUESTS):
        return "\\&" + line
    return line
