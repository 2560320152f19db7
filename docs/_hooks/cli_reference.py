"""Render the ``induction-lens`` argparse parser as Markdown, at build time.

Walks :func:`induction_lens.cli.build_parser` recursively and prints every (sub)command's
``--help`` exactly as the terminal shows it (at a fixed width, so the page does not depend on
the terminal that builds it), preceded by a summary table. A subcommand added to the parser
appears on the next build; nothing here names a subcommand.
"""

import argparse
import functools
import html
from collections.abc import Iterator

WIDTH = 80


def _subparsers(parser: argparse.ArgumentParser
                ) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    """``(name, help, parser)`` of each direct subcommand, in the order they were added."""
    for action in parser._actions:  # argparse has no public API for this
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
          ) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    for name, help_text, sub in _subparsers(parser):
        yield (*path, name), help_text, sub
        yield from _walk(sub, (*path, name))


def _help(parser: argparse.ArgumentParser) -> str:
    parser.formatter_class = functools.partial(argparse.HelpFormatter, width=WIDTH)
    return parser.format_help().rstrip()


def _anchor(path: tuple[str, ...]) -> str:
    return "cmd-" + "-".join(path)


def render(parser: argparse.ArgumentParser) -> str:
    """Markdown: a table of every command, then each command's help in a code block."""
    commands = list(_walk(parser))
    prog = parser.prog
    lines = ["| Command | What it does |", "| --- | --- |"]
    for path, help_text, _ in commands:
        lines.append(f"| [`{prog} {' '.join(path)}`](#{_anchor(path)}) | "
                     f"{html.escape(help_text) or '&nbsp;'} |")
    lines += ["", f"## `{prog}` {{ #cmd-main }}", "", "```text", _help(parser), "```", ""]
    for path, _, sub in commands:
        level = "#" * min(2 + len(path) - 1, 4)
        lines += [f"{level} `{prog} {' '.join(path)}` {{ #{_anchor(path)} }}", "",
                  "```text", _help(sub), "```", ""]
    return "\n".join(lines)


def render_cli() -> str:
    from induction_lens.cli import build_parser

    return render(build_parser())
