"""MkDocs hooks of the induction_lens site: everything the build generates, so nothing goes stale.

* **API reference**: one page per public module of ``induction_lens`` (found with griffe, so a
  new module gets a page on the next build), filled into the nav's "API reference" section,
  plus an index of the top-level public API (``induction_lens.__all__``).
* **Directives** in the Markdown pages, one per line:

  ``[[cli-reference]]``
      every ``induction-lens`` (sub)command's ``--help``, from the argparse parser;
  ``[[presets-table]]``
      ``induction_lens.list_presets()`` at both scales;
  ``[[metrics-table]]``
      the metrics registered with ``induction_lens.runs.registry.register_metric``;
  ``[[docstring DOTTED.PATH]]``
      the description part of a docstring, quoted with a link to its API entry (the concept
      pages quote the definitions they explain instead of paraphrasing them);
  ``[[readme-commands]]``
      the first two fenced code blocks of ``README.md`` (its two commands);
  ``[[value DOTTED.PATH]]``
      the current value of a module-level name (e.g. default thresholds), pretty-printed;
  ``[[claims NAME]]``
      the PASS/FAIL claims of ``examples/NAME.py`` from its ``NAME/summary.json`` (looked up
      like the figures below), with their keys, measured values and criteria, and a warning
      when the summary comes from a ``--tiny`` smoke run or an error; without a summary, a note
      saying which command produces it (never a build failure).

  An unknown directive, or one whose target is missing, fails the build.
* **Plotly figures**: a fenced ``plotly`` block holding YAML with either ``generator: NAME``
  (computed now by ``figures.py``) or ``file: PATH`` (plotly JSON, or an HTML fragment or page,
  written by an example script) plus ``caption:`` and, for files, ``script:``, the command that
  writes it. A missing file renders as a note saying which command writes it; it is not an
  error. Files are looked up in ``$INDUCTION_LENS_FIGURES`` (``os.pathsep``-separated), then
  ``docs/figures/``, then ``examples_out/`` (where the example scripts write by default); a
  ``file:`` without a suffix matches ``.json`` then ``.html``. A ``file:`` with ``*`` (the
  scripts name some figures after their runs: ``arg1_co_occurrence/prefix_matching_*``) draws
  every match in name order, each captioned from the ``summary.json`` beside it, which also
  decides which matches count (the figures of its run, not files left by an earlier one). A
  full HTML page written by ``fig.write_html`` is inlined (its own plotly.js dropped); other
  pages go in an iframe. Every figure draws with the one copy of plotly.js that the build
  copies from the installed ``plotly`` package to ``assets/javascripts/plotly.min.js``; pages
  without a figure do not load it.
* **Tutorial**: ``docs/tutorial.ipynb`` is executed (``notebooks.py``, cached by content) and
  the executed copy is what ``mkdocs-jupyter`` renders; the download link serves the clean
  source notebook.
"""

import html
import logging
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))
import cli_reference  # noqa: E402
import figures  # noqa: E402
import griffe_roles  # noqa: E402
import notebooks  # noqa: E402

log = logging.getLogger("mkdocs.hooks.induction_lens")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = "induction_lens"
PACKAGE_DIR = ROOT / PACKAGE
NOTEBOOK = "tutorial.ipynb"
PLOTLY_JS = "assets/javascripts/plotly.min.js"
API_SECTION = "API reference"

_state: dict[str, Any] = {}


# ============================================================================ griffe model
def package():
    """The griffe model of the package (static analysis: nothing is imported)."""
    if "griffe" not in _state:
        import griffe

        _state["griffe"] = griffe.load(
            PACKAGE, search_paths=[str(ROOT)], docstring_parser="google",
            extensions=griffe.load_extensions(griffe_roles.SphinxRoles()))
    return _state["griffe"]


def public_modules() -> list[str]:
    """Dotted names of every module whose path has no private component, in a stable order."""
    names: list[str] = []

    def walk(module) -> None:
        names.append(module.path)
        for name, member in sorted(module.members.items()):
            if member.is_alias or not member.is_module or name.startswith("_"):
                continue
            walk(member)

    walk(package())
    return names


def api_uri(module: str) -> str:
    return "api/index.md" if module == PACKAGE else f"api/{module}.md"


def _summary(obj) -> str:
    doc = obj.docstring.value if obj.docstring else ""
    first = doc.strip().split("\n\n", 1)[0].replace("\n", " ").strip()
    return first.replace("|", "\\|")


def _exports_table(module) -> list[str]:
    """Rows of a package's re-exported names (``__all__``), each linked to where it is defined."""
    collection = package().modules_collection
    lines = ["| Name | Module | Summary |", "| --- | --- | --- |"]
    for name in module.exports or []:
        if name.startswith("__"):
            continue
        path = griffe_roles.resolve(name, package(), collection) if module.path == PACKAGE \
            else f"{module.path}.{name}"
        try:
            target = collection.get_member(path) if path else None
            if target is not None and target.is_alias:
                target = target.final_target
        except Exception:  # an alias griffe cannot follow (e.g. il.plots = viz)
            target = None
        if target is None:
            lines.append(f"| `{name}` | | |")
            continue
        where = target.path if target.is_module else target.module.path
        anchor = f"{module.path}.{name}" if not target.is_module and _private_home(target) \
            else target.path
        lines.append(f"| [`{name}`][{anchor}] | `{where.removeprefix(PACKAGE + '.')}` | "
                     f"{_summary(target)} |")
    return lines


def _private_home(target) -> bool:
    return any(part.startswith("_") for part in target.module.path.split("."))


def _page_members(module) -> list[str]:
    """What a package page renders itself: the names it defines, and the re-exports whose
    defining module is private (they have no other page); other re-exports are linked."""
    names = []
    for name, member in module.members.items():
        if name.startswith("_"):
            continue
        if member.is_alias:
            if not member.target_path.startswith(PACKAGE + "."):
                continue  # an import of another package (importlib, warnings, ...)
            try:
                target = member.final_target
            except Exception:  # an alias griffe cannot follow
                continue
            if target.is_module or not _private_home(target):
                continue
        elif member.is_module:
            continue
        names.append(name)
    return names


def api_page(module: str) -> str:
    member = package() if module == PACKAGE else package().modules_collection.get_member(module)
    if not (member.is_package or member.is_subpackage):
        return f"::: {module}\n"
    own = _page_members(member)
    options = ["    options:", "      members:", *(f"        - {n}" for n in own),
               "      show_root_heading: false", ""] if own else \
        ["    options:", "      members: false", "      show_root_heading: false", ""]
    if module != PACKAGE:
        # A package page: its docstring, then its re-exports linked to the modules that define
        # them (rendering the aliases here too would give every name two anchors).
        return "\n".join([f"# `{module}`", "", f"::: {module}", *options, "## Exports", "",
                           *_exports_table(member), ""])
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings at build time, one page per public module. "
        "The names below are the top-level public API (`induction_lens.__all__`), "
        "importable as `from induction_lens import NAME`.",
        "",
        *_exports_table(member),
    ]
    lines += ["", "## Modules", ""]
    collection = member.modules_collection
    for mod in public_modules():
        if mod == PACKAGE:
            continue
        summary = _summary(collection.get_member(mod))
        lines.append(f"- [`{mod}`]({mod}.md): {summary}")
    lines += ["", f"::: {PACKAGE}", *options]
    return "\n".join(lines)


def api_nav() -> list:
    """Nav entries: the index, top-level modules, then one section per subpackage."""
    entries: list = [{"Overview": "api/index.md"}]
    groups: dict[str, list] = {}
    for module in public_modules():
        if module == PACKAGE:
            continue
        parts = module.split(".")
        member = package().get_member(parts[1])
        if len(parts) == 2 and (member.is_package or member.is_subpackage):
            groups.setdefault(parts[1], []).insert(0, {module: api_uri(module)})
        elif len(parts) == 2:
            entries.append({module: api_uri(module)})
        else:
            groups.setdefault(parts[1], []).append({module: api_uri(module)})
    for name, children in groups.items():
        entries.append({f"{PACKAGE}.{name}": children})
    return entries


# ============================================================================ events
def on_config(config, **kwargs):
    # The nav's "API reference" entry is filled with the generated pages.
    def fill(items: list) -> bool:
        for item in items:
            if isinstance(item, dict):
                for key, value in item.items():
                    if key == API_SECTION:
                        item[key] = api_nav()
                        return True
                    if isinstance(value, list) and fill(value):
                        return True
        return False

    if config.nav is not None and not fill(config.nav):
        raise PluginError(f"mkdocs.yml nav has no '{API_SECTION}' section to fill")
    _state["figure_files"] = {}
    _state["slots"] = {}
    return config


def on_files(files: Files, config, **kwargs) -> Files:
    for module in public_modules():
        files.append(File.generated(config, api_uri(module), content=api_page(module)))
    _swap_notebook(files)
    return files


def _swap_notebook(files: Files) -> None:
    nb_file = files.get_file_from_path(NOTEBOOK)
    if nb_file is None:
        raise PluginError(f"docs/{NOTEBOOK} is missing")
    source = Path(nb_file.abs_src_path)
    _state["notebook_source"] = source
    if not notebooks.execution_enabled():
        log.info("INDUCTION_LENS_DOCS_EXECUTE=0: the tutorial is rendered without outputs")
        return
    executed = notebooks.execute(source, PACKAGE_DIR)
    _state["notebook_timing"] = notebooks.last_timing(executed)
    # mkdocs-jupyter wrapped the File; both read abs_src_path when converting.
    nb_file.abs_src_path = str(executed)
    inner = getattr(nb_file, "file", None)
    if inner is not None:
        inner.abs_src_path = str(executed)


# ---------------------------------------------------------------------------- directives
DIRECTIVE = re.compile(r"^\[\[([a-z-]+)(?:[ \t]+([^\]]*))?\]\][ \t]*$", re.MULTILINE)
PLOTLY_BLOCK = re.compile(r"^```plotly[ \t]*\n(.*?)\n```[ \t]*$", re.MULTILINE | re.DOTALL)


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    src = page.file.src_uri
    if src.endswith(".ipynb"):
        return markdown
    slots: list[str] = []

    def directive(match: re.Match) -> str:
        name, arg = match.group(1), (match.group(2) or "").strip()
        handler = DIRECTIVES.get(name)
        if handler is None:
            raise PluginError(f"{src}: unknown directive [[{name}]]; known: {sorted(DIRECTIVES)}")
        try:
            return handler(arg)
        except PluginError:
            raise
        except Exception as err:  # a directive that cannot run must fail the build loudly
            raise PluginError(f"{src}: [[{name} {arg}]] failed: {err!r}") from err

    def plotly_block(match: re.Match) -> str:
        return _figure(match.group(1), src, slots)

    markdown = PLOTLY_BLOCK.sub(plotly_block, markdown)
    markdown = DIRECTIVE.sub(directive, markdown)
    if slots:
        _state.setdefault("slots", {})[src] = slots
    return markdown


def _cli(arg: str) -> str:
    return cli_reference.render_cli()


def _presets(arg: str) -> str:
    from induction_lens.presets import list_presets

    out = []
    for scale in ("laptop", "paper"):
        frame = list_presets(scale)
        frame["params"] = frame["params"].map(lambda n: f"{n / 1e6:.2f}M" if n >= 1e5
                                              else f"{n / 1e3:.1f}k")
        out += [f'=== "{scale} scale"', "", _indent(_markdown_table(frame)), ""]
    return "\n".join(out)


def _markdown_table(frame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "| " + " | ".join("---" for _ in cols) + " |"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(html.escape(str(v)).replace("|", "\\|") for v in row)
                     + " |")
    return "\n".join(lines)


def _indent(text: str, n: int = 4) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())


def _metrics(arg: str) -> str:
    from induction_lens.runs import METRICS  # the built-ins are registered on import

    lines = ["| Metric | Module | Default | Version | Rows it writes |",
             "| --- | --- | --- | --- | --- |"]
    for name, metric in METRICS.items():
        module = getattr(metric.fn, "__module__", "")
        lines.append(f"| `{name}` | `{module}` | {'yes' if metric.default else 'no'} | "
                     f"{metric.version} | {html.escape(metric.description)} |")
    return "\n".join(lines)


SECTION = re.compile(r"^(Args|Arguments|Parameters|Returns|Yields|Raises|Examples?|Attributes|"
                     r"Warns|Warnings|Notes?|Todo|See Also):\s*$", re.MULTILINE)


def _docstring(arg: str) -> str:
    pkg = package()
    path = arg.split()[0]
    try:
        obj = pkg.modules_collection.get_member(path)
    except (KeyError, ValueError) as err:
        raise PluginError(f"[[docstring {path}]]: no such object in {PACKAGE}") from err
    if obj.is_alias:
        obj = obj.final_target
    if not obj.docstring:
        raise PluginError(f"[[docstring {path}]]: {path} has no docstring")
    text = obj.docstring.value  # Sphinx roles already converted by the griffe extension
    text = SECTION.split(text, maxsplit=1)[0].rstrip()
    short = obj.path.rsplit(".", 1)[-1]
    kind = "module" if obj.is_module else obj.kind.value
    shown = obj.path if obj.is_module else short
    return "\n".join([
        '<div class="il-docstring" markdown="1">',
        "",
        f"From the docstring of {kind} [`{shown}`][{obj.path}], quoted at build time:",
        "{: .il-docstring-source }",
        "",
        text,
        "",
        "</div>",
    ])


def _readme(arg: str) -> str:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    blocks = re.findall(r"^(```[^\n]*\n.*?\n```)[ \t]*$", text, flags=re.MULTILINE | re.DOTALL)
    if len(blocks) >= 2:
        return "\n\n".join(blocks[:2])
    log.info("README.md has fewer than two code blocks; the getting-started page shows the "
             "commands of .ci/run")
    return FALLBACK_COMMANDS


FALLBACK_COMMANDS = """```bash
pip install torch==2.13.0 && pip install -e . && induction-lens demo
```

```bash
pip install torch==2.13.0 && pip install -e ".[test]" && python -m pytest -q
```"""


def _value(arg: str) -> str:
    """``[[value DOTTED.PATH]]``: the current value of a module-level name, pretty-printed."""
    import importlib
    import pprint

    module_name, _, name = arg.strip().rpartition(".")
    try:
        value = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise PluginError(f"[[value {arg}]]: cannot import {arg}") from err
    text = pprint.pformat(value, width=92, sort_dicts=False)
    return f"```python\n{name} = {text}\n```"


def _measured(value: Any) -> str:
    """A measured value as the claims table shows it (3 significant digits)."""
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: "n/a"}[value]
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_measured(v) for v in value) + "]"
    return str(value)


def _cell(value: Any) -> str:
    """A table cell's text: HTML escaped, pipes and brackets escaped (``[A] [B]`` in a claim's
    words is not a link), on one line."""
    return (html.escape(str(value)).replace("|", "\\|").replace("[", "\\[")
            .replace("]", "\\]").replace("\n", " "))


def _claims(arg: str) -> str:
    """``[[claims NAME]]``: the PASS/FAIL claims of an example's ``NAME/summary.json``."""
    import json

    name = arg.strip()
    if not name:
        raise PluginError("[[claims NAME]] needs the example's name, e.g. arg1_co_occurrence")
    path = find_output(f"{name}/summary.json")
    script = f"python examples/{name}.py"
    if path is None:
        return "\n".join([
            f'!!! info "No results yet: run `{script}` to fill this in"',
            f"    The script prints PASS or FAIL for each claim listed above and writes them, "
            f"with the measured values, to `examples_out/{name}/summary.json`; the docs build "
            f"shows them here when it finds that file (in `examples_out/`, `docs/figures/` or "
            f"a folder of `$INDUCTION_LENS_FIGURES`).",
            ""])
    summary = json.loads(path.read_text(encoding="utf-8"))
    claims = summary.get("claims", [])
    lines: list[str] = []
    mode = summary.get("mode")
    if mode == "tiny":
        lines += ['!!! warning "A smoke run (`--tiny`)"',
                  "    These results come from `--tiny` mode: a few training steps and small "
                  "evaluation sets that exercise the code paths. Its claims are expected to "
                  f"FAIL; run `{script}` without `--tiny` for the real measurement.", ""]
    if summary.get("error"):
        lines += ['!!! failure "The run stopped with an error"',
                  f"    {_cell(summary['error'])}", ""]
    facts = [f"{mode} mode" if mode else None,
             f"{summary['wall_seconds']:.0f} s" if isinstance(summary.get("wall_seconds"),
                                                              int | float) else None,
             f"finished {summary['finished']}" if summary.get("finished") else None,
             f"induction_lens {summary['induction_lens_version']}"
             if summary.get("induction_lens_version") else None,
             f"git {str(summary['git_hash'])[:10]}" if summary.get("git_hash") else None]
    runs = ", ".join(f"`{r['run']}` ({r.get('steps')} steps)" for r in summary.get("runs", [])
                     if isinstance(r, dict) and r.get("run"))
    lines += [f"Results of `{script}`, read from `{name}/summary.json` at build time "
              f"({'; '.join(f for f in facts if f)}). Runs: {runs or 'none recorded'}.", "",
              '<div class="il-claims" markdown="1">', "",
              "| Claim | Measured | Criterion |", "| --- | --- | --- |"]
    for claim in claims:
        status = claim.get("status") or ("PASS" if claim.get("passed") else "FAIL")
        measured = ", ".join(f"{k} = {_measured(v)}"
                             for k, v in (claim.get("measured") or {}).items())
        key = claim.get("key", "")
        statement = claim.get("statement", "")
        code = str(key).replace("`", "'").replace("|", "\\|")
        what = f"`{code}`: {_cell(statement)}" if key else _cell(statement)
        lines.append(f"| **{status}** {what} | {_cell(measured)} | "
                     f"{_cell(claim.get('criterion', ''))} |")
    if not claims:
        lines.append("| (the summary lists no claims) | | |")
    lines += ["", "</div>"]
    notes = [c for c in claims if c.get("note")]
    notes_text = [f"- `{str(c.get('key', '')).replace('`', chr(39))}`: {_cell(c['note'])}"
                  for c in notes]
    notes_text += [f"- {_cell(n)}" for n in summary.get("notes", []) or []]
    if notes_text:
        lines += ["", "Notes from the run:", "", *notes_text]
    return "\n".join(lines)


def _results(arg: str) -> str:
    """``[[results NAME NAME ...]]``: one row per example: PASS/FAIL counts, wall time, how many
    of its runs it trained and how many it found in the hub (reused runs cost no training
    time), and the machine's load, from each ``NAME/summary.json`` (a missing one says which
    script fills it)."""
    import json

    names = arg.split()
    if not names:
        raise PluginError("[[results NAME ...]] needs example names, e.g. arg1_co_occurrence")
    lines = ["| Example | Mode | PASS | FAIL | Wall time | Runs trained / reused | "
             "Load (1-min mean / CPUs) | Commit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in names:
        path = find_output(f"{name}/summary.json")
        if path is None:
            lines.append(f"| `{name}` | not run (`python examples/{name}.py`) | | | | | | |")
            continue
        s = json.loads(path.read_text(encoding="utf-8"))
        load = s.get("load_average") or {}
        wall = s.get("wall_seconds")
        status = [r.get("status") for r in s.get("runs", []) if isinstance(r, dict)]
        reused = sum(x == "reused" for x in status)
        lines.append(
            f"| `{name}` | {s.get('mode')} | {s.get('passed')} | {s.get('failed')} | "
            f"{'' if wall is None else f'{wall / 60:.1f} min'} | "
            f"{len(status) - reused} / {reused} | "
            f"{load.get('mean_1min', '')} / {load.get('cpu_count', '')} | "
            f"`{str(s.get('git_hash') or '')[:10]}` |")
    return "\n".join(lines) + "\n"


DIRECTIVES = {
    "claims": _claims,
    "results": _results,
    "value": _value,
    "cli-reference": _cli,
    "presets-table": _presets,
    "metrics-table": _metrics,
    "docstring": _docstring,
    "readme-commands": _readme,
}


# ---------------------------------------------------------------------------- figures
def figure_dirs() -> list[Path]:
    """Where figure files and example summaries are looked up, in order."""
    extra = [Path(p) for p in os.environ.get("INDUCTION_LENS_FIGURES", "").split(os.pathsep) if p]
    return [*extra, DOCS / "figures", ROOT / "examples_out"]


def _candidates(rel: str) -> list[str]:
    return [rel] if Path(rel).suffix else [f"{rel}.json", f"{rel}.html"]


def find_output(rel: str) -> Path | None:
    """First file ``rel`` in :func:`figure_dirs` (no suffix: ``rel.json``, then ``rel.html``)."""
    for folder in figure_dirs():
        for name in _candidates(rel):
            if (folder / name).is_file():
                return folder / name
    return None


def _summary_figures(folder: Path) -> dict[str, str] | None:
    """``{figure name: caption}`` of the ``summary.json`` in ``folder``, None without one."""
    import json

    path = folder / "summary.json"
    if not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8")).get("figures", [])
    except (ValueError, AttributeError):
        return None
    return {str(e["name"]): str(e.get("caption") or "") for e in entries
            if isinstance(e, dict) and e.get("name") and (e.get("html") or e.get("json"))}


def find_outputs(pattern: str) -> list[tuple[Path, str | None]]:
    """Files matching ``pattern`` (a ``file:`` with ``*``), each with its caption from the
    ``summary.json`` beside it.

    The first folder of :func:`figure_dirs` holding a match wins (folders are not mixed). When
    that folder has a ``summary.json`` listing figures, only the figures it lists count, so
    the files of an earlier run in the same folder (other run names, ``--tiny``) are not shown.
    """
    for folder in figure_dirs():
        found: dict[str, Path] = {}
        for candidate in _candidates(pattern):
            for path in sorted(folder.glob(candidate)):
                if path.is_file():
                    found.setdefault(path.with_suffix("").name, path)
        if not found:
            continue
        listed = _summary_figures(next(iter(found.values())).parent)
        if listed is not None:
            found = {k: v for k, v in found.items() if k in listed}
            if not found:
                continue
        return [(found[k], (listed or {}).get(k)) for k in sorted(found)]
    return []


def _figure(spec_text: str, src: str, slots: list[str]) -> str:
    try:
        spec = yaml.safe_load(spec_text) or {}
    except yaml.YAMLError as err:
        raise PluginError(f"{src}: a plotly block is not valid YAML: {err}") from err
    if not isinstance(spec, dict) or ("generator" in spec) == ("file" in spec):
        raise PluginError(f"{src}: a plotly block needs exactly one of 'generator:' or 'file:'")
    caption = str(spec.get("caption", "")).strip()
    div_id = f"figure-{re.sub(r'[^a-z0-9]+', '-', src.lower()).strip('-')}-{len(slots) + 1}"
    if "generator" in spec:
        name = spec["generator"]
        if name not in figures.GENERATORS:
            raise PluginError(f"{src}: unknown figure generator {name!r}; known: "
                              f"{sorted(figures.GENERATORS)}")
        fig_html = _plotly_div(figures.GENERATORS[name](), div_id)
        origin = f"computed at build time by `docs/_hooks/figures.py::{name}`"
    else:
        rel = str(spec["file"])
        script = spec.get("script")
        if "*" in rel:
            return _figure_glob(rel, script, caption, div_id, slots)
        path = find_output(rel)
        if path is None:
            return _missing_figure(rel, script, caption)
        fig_html = _file_figure(path, rel, div_id)
        origin = f"written by `{script}`" if script else f"from `{rel}`"
    slots.append(fig_html)
    caption_md = f"{caption} " if caption else ""
    return "\n".join([
        f'<div class="il-figure-slot" data-slot="{len(slots) - 1}"></div>',
        "",
        f"{caption_md}*({origin})*",
        "{: .il-caption }",
        ""])


def _missing_figure(rel: str, script: str | None, caption: str) -> str:
    how = f"Run `{script}`, which writes it, and" if script else "Generate it and"
    return "\n".join([
        f'??? info "Figure not generated yet: `{rel}`"',
        f"    {how} rebuild the docs: the build looks for `{rel}` (`.json` or `.html`) "
        f"in `examples_out/`, `docs/figures/` and the folders of "
        f"`$INDUCTION_LENS_FIGURES`.",
        *(["", f"    *What it will show:* {caption}"] if caption else []),
        ""])


def _figure_glob(pattern: str, script: str | None, caption: str, div_id: str,
                 slots: list[str]) -> str:
    """A ``file:`` with ``*`` (one figure per run, say): every match, in name order, each with
    the caption the example wrote into its ``summary.json`` (else the block's caption)."""
    matches = find_outputs(pattern)
    if not matches:
        return _missing_figure(pattern, script, caption)
    origin = f"written by `{script}`" if script else f"from `{pattern}`"
    out: list[str] = []
    for i, (path, own_caption) in enumerate(matches, start=1):
        rel = (Path(pattern).parent / path.with_suffix("").name).as_posix()
        slots.append(_file_figure(path, rel, f"{div_id}-{i}"))
        text = (own_caption or caption).strip()
        out += [f'<div class="il-figure-slot" data-slot="{len(slots) - 1}"></div>', "",
                f"{text + ' ' if text else ''}*(`{path.with_suffix('').name}`, {origin})*",
                "{: .il-caption }", ""]
    return "\n".join(out)


def _plotly_div(fig, div_id: str) -> str:
    import plotly.io as pio

    height = fig.layout.height or 450
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id,
                       default_height=f"{height}px", default_width="100%",
                       config={"responsive": True, "displaylogo": False})


def _file_figure(path: Path, rel: str, div_id: str) -> str:
    if path.suffix == ".json":
        import plotly.io as pio

        return _plotly_div(pio.read_json(path), div_id)
    if path.suffix in (".html", ".htm"):
        text = path.read_text(encoding="utf-8")
        if "<html" not in text.lower():  # a fragment: inline, drawn with the site's plotly.js
            return text
        body = re.search(r"<body[^>]*>(.*)</body>", text, flags=re.DOTALL | re.IGNORECASE)
        if body and "plotly-graph-div" in body.group(1):
            # A page written by fig.write_html: inline its figure, drawn with the site's
            # plotly.js instead of the copy (or CDN link) the page loads.
            return re.sub(r"<script[^>]*\bsrc=[^>]*>\s*</script>", "", body.group(1))
        dest = f"figures/{(Path(rel).parent / path.name).as_posix()}"
        _state["figure_files"][dest] = path
        return (f'<iframe class="il-figure-frame" src="{{site_root}}{html.escape(dest)}" '
                f'loading="lazy" title="{html.escape(rel)}"></iframe>')
    raise PluginError(f"figure {rel}: unsupported file type (use .json or .html)")


NOTEBOOK_LINK = re.compile(r'href="(?!https?:|mailto:|#|/)([^"#]+\.(?:md|ipynb))(#[^"]*)?"')


def _notebook_links(content: str, page, files: Files) -> str:
    """Links in the notebook's Markdown cells name pages by source path (so they work in
    Jupyter); mkdocs does not rewrite them in notebook HTML, so do it here."""
    base = Path(page.file.src_uri).parent

    def fix(match: re.Match) -> str:
        target = os.path.normpath(base / match.group(1)).replace(os.sep, "/")
        file = files.get_file_from_path(target)
        if file is None:
            raise PluginError(f"{page.file.src_uri}: link to {match.group(1)}, which is not a "
                              "page of the site")
        return f'href="{file.url_relative_to(page.file)}{match.group(2) or ""}"'

    return NOTEBOOK_LINK.sub(fix, content)


def on_page_content(content: str, page, config, files, **kwargs) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        content = _notebook_links(content, page, files)
    slots = _state.get("slots", {}).get(page.file.src_uri)
    if not slots:
        return content
    root = _relative_root(page)

    def fill(match: re.Match) -> str:
        return '<div class="il-figure">' + slots[int(match.group(1))].replace(
            "{site_root}", root) + "</div>"

    return re.sub(r'<div class="il-figure-slot" data-slot="(\d+)"></div>', fill, content)


def _relative_root(page) -> str:
    depth = page.file.dest_uri.count("/")
    return "../" * depth


EXTERNAL_MATHJAX = re.compile(r'<script src="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*">'
                              r"\s*</script>")


def on_post_page(output: str, page, config, **kwargs) -> str:
    if page.file.src_uri.endswith(".ipynb"):
        # nbconvert's template always loads MathJax from a CDN; the site must work offline and
        # the tutorial has no LaTeX.
        output = EXTERNAL_MATHJAX.sub("", output)
    if "plotly-graph-div" in output:
        tag = f'<script src="{_relative_root(page)}{PLOTLY_JS}"></script>'
        output = output.replace("</head>", f"  {tag}\n</head>", 1)
    return output


def on_post_build(config, **kwargs) -> None:
    import plotly

    site = Path(config.site_dir)
    js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    (site / PLOTLY_JS).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(js, site / PLOTLY_JS)
    for dest, path in _state.get("figure_files", {}).items():
        (site / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, site / dest)
    source = _state.get("notebook_source")
    if source is not None:  # the download link serves the clean notebook, not the executed one
        for copied in site.rglob(NOTEBOOK):
            shutil.copyfile(source, copied)
    timing = _state.get("notebook_timing")
    if timing:
        log.info("tutorial notebook: executed in %s s, %s figures", timing.get("seconds"),
                 timing.get("figures"))
