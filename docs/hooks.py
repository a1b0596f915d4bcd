"""MkDocs hooks: the pages that are generated from the code at build time, so they never go stale.

* ``cli.md``: the marker ``<!-- attnsvm:cli -->`` becomes the reference of every command of the typer app
  (typer's own Markdown generator, the same text as ``--help``).
* ``api.md``: the marker ``<!-- attnsvm:api -->`` becomes one mkdocstrings block per public module of the
  package (found by walking ``src/attnsvm``), so a module added or renamed by anyone appears without
  editing the docs.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

CLI_MARKER = "<!-- attnsvm:cli -->"
API_MARKER = "<!-- attnsvm:api -->"


def _cli_markdown() -> str:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    import typer
    import typer.cli

    from attnsvm.cli import app

    cmd = typer.main.get_command(app)
    ctx = typer.Context(cmd)
    text = typer.cli.get_docs_for_click(obj=cmd, ctx=ctx, name="attnsvm", title="attnsvm")
    # typer titles the page itself (level 1); the page has its own title, so every heading goes one down
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            if line.startswith("#"):
                line = "#" + line
            # help texts such as "runs/<config name>" would be read as HTML tags: escape outside code spans
            parts = line.split("`")
            parts[::2] = [q.replace("<", "&lt;").replace(">", "&gt;") for q in parts[::2]]
            line = "`".join(parts)
        lines.append(line)
    return "\n".join(lines)


def public_modules() -> list[str]:
    """Dotted names of the public modules of attnsvm (no part starting with ``_``, no ``__main__``)."""
    pkg = SRC / "attnsvm"
    mods = []
    for path in sorted(pkg.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(p.startswith("_") for p in parts) or "configs" in parts:
            continue
        if parts[-1].startswith("cli"):  # documented on the CLI page
            continue
        mods.append(".".join(parts))
    return mods


def _api_markdown() -> str:
    blocks = []
    for mod in public_modules():
        if mod == "attnsvm":
            continue
        blocks.append(f"::: {mod}\n    options:\n      show_root_heading: true\n      heading_level: 2\n")
    return "\n".join(blocks)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs hook signature
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, _cli_markdown())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, _api_markdown())
    return markdown
