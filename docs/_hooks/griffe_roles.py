"""Griffe extension: turn the Sphinx roles of the package's docstrings into mkdocstrings links.

The docstrings are Google style but cross-reference with Sphinx roles (:func:`head_scores`,
:data:`~induction_lens.runs.registry.METRICS`, ...), which Markdown would print literally. This
extension rewrites each role to an autorefs link,
``[`head_scores`][induction_lens.measures.heads.head_scores]``, when the name resolves (in the
scope of the documented object, like Python would) to an object the API reference renders;
otherwise to plain code (``head_scores``), so an unresolvable or private name never produces a
broken link (a strict build would fail on one).

Brackets that Markdown would read as a reference link (``[A][B]``, the induction pattern, outside
code) are escaped, and reStructuredText literal blocks (``text::`` followed by an indented block)
become fenced code blocks (:func:`literal_blocks`).

The same :func:`convert` is used by ``site_hooks.py`` for the docstrings quoted on the concept
pages.
"""

import ast
import re
import textwrap
from typing import Any

import griffe

PACKAGE = "induction_lens"

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc|const|type):`(~?)([^`<>]+)`")
LITERAL_MARK = re.compile(r"^(?P<indent>[ \t]*)(?P<text>.*?)::[ \t]*$")
BULLET = re.compile(r"^(?P<indent>[ \t]*)(?:[*+-]|\d+\.)[ \t]+")
BRACKET_PAIR = re.compile(r"(?<!\\)\[([^\]\[`\n]*)\]\[([^\]\[`.\n]*)\]")
CODE_SPAN = re.compile(r"(``.+?``|`[^`\n]+`)", re.DOTALL)
"""``[A][B]`` outside code (the induction pattern) would be read as a reference link to ``B``."""


def _documented(obj: Any) -> bool:
    """Whether the API reference renders ``obj`` (so that a link to it resolves)."""
    path = obj.path
    if not (path == PACKAGE or path.startswith(PACKAGE + ".")):
        return False
    if any(part.startswith("_") for part in path.split(".")):
        return False
    if obj.is_module:
        return True
    # mkdocstrings renders members with a docstring (show_if_no_docstring: false), inside a
    # parent that is itself rendered.
    if not obj.docstring:
        return False
    parent = obj.parent
    return parent is None or _documented(parent)


def _lookup(path: str, collection: Any) -> Any | None:
    try:
        target = collection.get_member(path)
    except (KeyError, ValueError, AttributeError):
        return None
    if target.is_alias:
        try:
            target = target.final_target
        except (griffe.AliasResolutionError, griffe.CyclicAliasError):
            return None
    return target


def resolve(name: str, scope: Any, collection: Any) -> str | None:
    """Full path of the documented object ``name`` refers to from ``scope``, or None."""
    name = name.strip().rstrip("()")
    head, _, rest = name.partition(".")
    candidates = [name] if "." in name else []
    obj = scope
    while obj is not None:
        try:
            base = obj.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            base = None
        if base:
            candidates.append(f"{base}.{rest}" if rest else base)
        obj = obj.parent
    module = scope.module if scope is not None else None
    if module is not None and "." in name:
        candidates.append(f"{module.path}.{name}")
        if module.parent is not None:
            candidates.append(f"{module.parent.path}.{name}")
    for candidate in candidates:
        target = _lookup(candidate, collection)
        if target is not None and _documented(target):
            return target.path
    return None


def convert(text: str, scope: Any, collection: Any) -> str:
    """Rewrite the Sphinx roles and literal-block markers of one docstring."""

    def role(match: re.Match) -> str:
        short, name = match.group(1) == "~", match.group(2).strip()
        shown = name.rsplit(".", 1)[-1] if short else name
        path = resolve(name, scope, collection)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    parts = CODE_SPAN.split(text)  # odd items are code spans: left alone
    text = "".join(part if i % 2 else BRACKET_PAIR.sub(r"\\[\1\\]\\[\2\\]", part)
                   for i, part in enumerate(parts))
    return literal_blocks(ROLE.sub(role, text))


def _width(line: str) -> int:
    return len(line) - len(line.lstrip())


def literal_blocks(text: str) -> str:
    """reStructuredText literal blocks (``paragraph::`` then an indented block) as fenced code.

    Python-Markdown only reads an indented block as code at the top level; inside a list item it
    needs four spaces of nesting, which docstrings do not use. A fence indented to the list
    item's content works in both places. The language is ``python`` when the block parses as
    Python, else ``text``.
    """
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        mark = LITERAL_MARK.match(lines[i])
        j = i + 1
        while j < len(lines) and not lines[j].strip():
            j += 1
        if mark is None or j == len(lines) or j == i + 1:
            out.append(lines[i])
            i += 1
            continue
        # Indentation of the paragraph holding the mark, and whether it is a list item.
        start = len(out)
        while start > 0 and out[start - 1].strip():
            start -= 1
        first = out[start] if start < len(out) else lines[i]
        bullet = BULLET.match(first)
        base = len(bullet.group(0)) if bullet else _width(first)  # the paragraph's text column
        if _width(lines[j]) <= base:
            out.append(lines[i])
            i += 1
            continue
        block_end = j
        while block_end < len(lines) and (not lines[block_end].strip()
                                          or _width(lines[block_end]) > base):
            block_end += 1
        while block_end > j and not lines[block_end - 1].strip():
            block_end -= 1
        code = textwrap.dedent("\n".join(lines[j:block_end]))
        try:
            ast.parse(code)
            language = "python"
        except SyntaxError:
            language = "text"
        fence_indent = " " * (len(bullet.group("indent")) + 4 if bullet else base)
        text_part = mark.group("text").rstrip()
        if text_part:
            out.append(f"{mark.group('indent')}{text_part}:")
        out.append("")
        out.append(f"{fence_indent}```{language}")
        out.extend(f"{fence_indent}{line}" if line.strip() else "" for line in code.split("\n"))
        out.append(f"{fence_indent}```")
        out.append("")
        i = block_end
    return "\n".join(out)


def _walk(obj: Any):
    yield obj
    for member in obj.members.values():
        if member.is_alias:
            continue
        yield from _walk(member)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles once the whole package is loaded (names can then be resolved)."""

    def on_package(self, *, pkg: Any, loader: Any, **kwargs: Any) -> None:
        if pkg.path != PACKAGE:
            return
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = convert(obj.docstring.value, obj, loader.modules_collection)
