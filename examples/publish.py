"""Publish example results with the docs: copy ``summary.json`` and the HTML figures of each
example's output folder into ``docs/figures/NAME/``, where the docs build finds them.

    python examples/publish.py arg1_co_occurrence arg2_smeared_keys ... [--from examples_out]

Only results of a default-mode run that finished without error are published (``--tiny`` and
failed runs are refused). ``summary.json`` records the commit, the command and the sha256 of
the files that decide what the example trains and claims (``_common.RESULT_INPUTS``);
``tests/test_docs.py`` fails when a published result no longer matches those files, so stale
results cannot stay on the site unnoticed. The Pages workflow (``.github/workflows/docs.yml``)
re-runs the examples before every build anyway.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

import _common as C

DOCS_FIGURES = C.REPO / "docs" / "figures"


def publish(name: str, source: Path) -> int:
    folder = source / name
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        print(f"error: {summary_path} does not exist; run `python examples/{name}.py` first",
              file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    if summary.get("mode") != "default" or summary.get("error"):
        print(f"error: {summary_path} is from a {summary.get('mode')!r} run (error: "
              f"{summary.get('error')!r}); publish only default-mode runs that finished",
              file=sys.stderr)
        return 2
    if summary.get("inputs_sha256") != C.inputs_sha256(name):
        print(f"error: {summary_path} was produced from other code than this checkout's; re-run "
              f"`python examples/{name}.py` and publish again", file=sys.stderr)
        return 2
    target = DOCS_FIGURES / name
    staging = DOCS_FIGURES / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for entry in summary.get("figures", []):
        if entry.get("html"):
            html = folder / Path(entry["html"]).name
            shutil.copy2(html, staging / html.name)
            entry["html"] = html.name
        entry["png"] = None  # PNGs stay out of the repository
    summary["hub"] = Path(summary.get("hub", "hub")).name
    (staging / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    # Swap in the new folder by renames only: the old results move aside first and are
    # removed after the new ones are in place, so an interruption never leaves no results.
    retired = DOCS_FIGURES / f".{name}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if target.exists():
        target.rename(retired)
    staging.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
    print(f"published {name}: {summary['passed']} PASS, {summary['failed']} FAIL -> {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="+", help="example names, e.g. arg1_co_occurrence")
    p.add_argument("--from", dest="source", default=str(C.REPO / "examples_out"),
                   help="folder holding one output folder per example (default examples_out)")
    args = p.parse_args(argv)
    return max(publish(n, Path(args.source)) for n in args.names)


if __name__ == "__main__":
    sys.exit(main())
