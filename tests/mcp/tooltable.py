#!/usr/bin/env python3
"""Regenerates the tool, resource and prompt lists in docs/mcp.md from the live server.

Usage: tooltable.py --binary target/debug/certctl [--write docs/mcp.md]
Without --write it prints the generated Markdown. With --write it replaces the
text between `<!-- generated:begin -->` and `<!-- generated:end -->`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcpkit import fresh_dir, remove_dir, stdio_mcp_client, tools_list_bytes, tools_model_bytes  # noqa: E402

BEGIN, END = "<!-- generated:begin -->", "<!-- generated:end -->"


def risk(a) -> str:
    if a is None:
        return "?"
    if a.read_only_hint:
        return "read"
    return "destructive" if a.destructive_hint else "write"


def flags(a) -> str:
    if a is None:
        return ""
    out = []
    if a.read_only_hint:
        out.append("readOnly")
    if a.destructive_hint and not a.read_only_hint:
        out.append("destructive")
    if a.idempotent_hint:
        out.append("idempotent")
    if a.open_world_hint:
        out.append("openWorld")
    return ", ".join(out)


async def generate(binary: str) -> str:
    root = fresh_dir("certctl-tooltable-")
    lines: list[str] = []
    try:
        sizes = {}
        for mode in ("legacy", "auto"):
            with open(root / f"{mode}.log", "w") as errlog:
                async with stdio_mcp_client(binary, root / f"data-{mode}", mode=mode, errlog=errlog) as c:
                    listing = await c.list_tools()
                    sizes[mode] = (len(listing.tools), tools_list_bytes(listing), tools_model_bytes(listing))
                    if mode == "auto":
                        tools = listing.tools
                        resources = (await c.list_resources()).resources
                        templates = (await c.list_resource_templates()).resource_templates
                        prompts = (await c.list_prompts()).prompts
        n, legacy, model = sizes["legacy"]
        _, modern, _ = sizes["auto"]
        lines.append(
            f"**Size of `tools/list`:** {n} tools, {legacy} bytes of JSON on 2025-11-25 "
            f"(~{legacy // 4} tokens at 4 bytes per token); {modern} bytes (~{modern // 4} tokens) on 2026-07-28. "
            f"Names, descriptions and input schemas, the part a model reads: {model} bytes (~{model // 4} tokens)."
        )
        lines.append("")
        lines.append("### Tools")
        lines.append("")
        lines.append("| tool | title | risk | hints |")
        lines.append("|---|---|---|---|")
        for t in tools:
            title = t.title or (t.annotations.title if t.annotations else "") or ""
            lines.append(f"| `{t.name}` | {title} | {risk(t.annotations)} | {flags(t.annotations)} |")
        lines.append("")
        lines.append("### Resources")
        lines.append("")
        lines.append("| URI | name | description |")
        lines.append("|---|---|---|")
        for r in resources:
            lines.append(f"| `{r.uri}` | {r.name} | {(r.description or '').replace('|', '/')} |")
        for r in templates:
            lines.append(f"| `{r.uri_template}` | {r.name} | {(r.description or '').replace('|', '/')} |")
        lines.append("")
        lines.append("### Prompts")
        lines.append("")
        lines.append("| prompt | arguments | description |")
        lines.append("|---|---|---|")
        for p in prompts:
            args = ", ".join(f"`{a.name}`{'' if a.required else '?'}" for a in (p.arguments or []))
            lines.append(f"| `{p.name}` | {args} | {(p.description or '').replace('|', '/')} |")
    finally:
        remove_dir(root)
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--write", help="the Markdown file to update in place")
    args = ap.parse_args()
    text = await generate(str(Path(args.binary).resolve()))
    if not args.write:
        print(text)
        return 0
    path = Path(args.write)
    doc = path.read_text()
    if BEGIN not in doc or END not in doc:
        print(f"{path} has no {BEGIN} ... {END} markers", file=sys.stderr)
        return 1
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
