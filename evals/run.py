#!/usr/bin/env python3
"""certctl MCP evals: play each scenario's reference tool sequence against the
real server and check the end state.

Each scenario (evals/scenarios/*.json) runs on a fresh data dir with
`certctl mcp` over stdio, driven by the official MCP Python SDK (mode auto,
protocol 2026-07-28). See evals/README.md for the scenario format.

Usage: run.py --binary target/debug/certctl [--scenario NAME ...] [--mode auto|legacy] [--keep]
Prints each scenario's pass/fail, the pass rate and the size of tools/list;
exits non-zero unless every scenario passes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import traceback
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "mcp"))

from mcpkit import (  # noqa: E402
    Elicitor,
    Failure,
    root_cause,
    call,
    fresh_dir,
    make_csr,
    read_resource_json,
    remove_dir,
    stdio_mcp_client,
    tools_list_bytes,
    tools_model_bytes,
)

REF = re.compile(r"\$\{([^}]+)\}")
NOW = re.compile(r"^now(?:([+-])(\d+)([smhd]))?$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
ELICITATION = ("accept", "decline", "cancel", "none")


# ---------------------------------------------------------------- substitution


def lookup(value: Any, path: list[str], expr: str) -> Any:
    for part in path:
        if isinstance(value, list):
            try:
                value = value[int(part)]
            except (ValueError, IndexError):
                raise Failure(f"${{{expr}}}: no element {part!r} in a list of {len(value)}") from None
        elif isinstance(value, dict):
            if part not in value:
                raise Failure(f"${{{expr}}}: no key {part!r} (keys: {sorted(value)[:15]})")
            value = value[part]
        else:
            raise Failure(f"${{{expr}}}: cannot take {part!r} of {json.dumps(value)[:80]}")
    return value


class Vars:
    """Saved step results plus the built-ins `now[+-N{s,m,h,d}]` and `csr:NAME[,SAN...]`."""

    def __init__(self) -> None:
        self.saved: dict[str, Any] = {}
        self.now = int(time.time())

    def resolve(self, expr: str) -> Any:
        expr = expr.strip()
        m = NOW.match(expr)
        if m:
            sign, n, unit = m.groups()
            delta = int(n) * UNITS[unit] if n else 0
            return self.now + (delta if sign != "-" else -delta)
        if expr.startswith("csr:"):
            names = [n.strip() for n in expr[4:].split(",") if n.strip()]
            return make_csr(names[0], names[1:])
        head, *rest = expr.split(".")
        if head not in self.saved:
            raise Failure(f"${{{expr}}}: no earlier step with id {head!r} (known: {sorted(self.saved)})")
        return lookup(self.saved[head], rest, expr)

    def sub(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = REF.fullmatch(value)
            if whole:
                return self.resolve(whole.group(1))
            return REF.sub(lambda m: str(self.resolve(m.group(1))), value)
        if isinstance(value, list):
            return [self.sub(v) for v in value]
        if isinstance(value, dict):
            return {k: self.sub(v) for k, v in value.items()}
        return value


# ---------------------------------------------------------------- assertions


def dotted(value: Any, path: str | None) -> Any:
    if not path:
        return value
    return lookup(value, path.split("."), path)


def matches(item: Any, where: dict[str, Any]) -> bool:
    for k, want in where.items():
        try:
            got = dotted(item, k)
        except Failure:
            return False
        if got != want:
            return False
    return True


def assert_value(value: Any, a: dict[str, Any], label: str) -> None:
    """Applies one CHECK (already substituted) to value."""
    if "where" in a:
        if not isinstance(value, list):
            raise Failure(f"{label}: 'where' needs a list, got {json.dumps(value)[:120]}")
        value = [v for v in value if matches(v, a["where"])]
    if "pluck" in a:
        value = [dotted(v, a["pluck"]) for v in value]
    shown = json.dumps(value, default=str)[:300]
    checks = {
        "equals": lambda w: value == w,
        "not_equals": lambda w: value != w,
        "in": lambda w: value in w,
        "contains": lambda w: w in value,
        "not_contains": lambda w: w not in value,
        "length": lambda w: len(value) == w,
        "min_length": lambda w: len(value) >= w,
        "gte": lambda w: value >= w,
        "lte": lambda w: value <= w,
        "set_equals": lambda w: sorted(map(json.dumps, value)) == sorted(map(json.dumps, w)),
        "text_contains": lambda w: all(s in json.dumps(value) for s in ([w] if isinstance(w, str) else w)),
        "truthy": lambda w: bool(value) == w,
    }
    used = [k for k in checks if k in a]
    if not used:
        raise Failure(f"{label}: the assertion names no comparison ({sorted(checks)})")
    for k in used:
        try:
            ok = checks[k](a[k])
        except TypeError as e:
            raise Failure(f"{label}: {k} {json.dumps(a[k])[:100]} cannot apply to {shown}: {e}") from None
        if not ok:
            raise Failure(f"{label}: expected {k} {json.dumps(a[k])[:200]}, got {shown}")


# ---------------------------------------------------------------- running


class Runner:
    """One scenario: a fresh data dir and MCP sessions opened as needed.

    Sessions are keyed by (api key, has elicitation); the admin session uses
    DIR/admin.key. A session with elicitation answers as the step says.
    """

    def __init__(self, binary: str, data_dir: Path, mode: str, stack: AsyncExitStack, errlog: Any) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.mode = mode
        self.stack = stack
        self.errlog = errlog
        self.sessions: dict[tuple[str | None, bool], tuple[Any, Elicitor | None]] = {}
        self.vars = Vars()
        self.calls = 0

    async def session(self, key: str | None, elicitation: str):
        want = elicitation != "none"
        k = (key, want)
        if k not in self.sessions:
            elicitor = Elicitor() if want else None
            client = stdio_mcp_client(
                self.binary, self.data_dir, mode=self.mode, api_key=key, elicitor=elicitor, errlog=self.errlog
            )
            await self.stack.enter_async_context(client)
            self.sessions[k] = (client, elicitor)
        client, elicitor = self.sessions[k]
        if elicitor is not None:
            elicitor.answer = elicitation
        return client, elicitor

    async def step(self, step: dict[str, Any], label: str, default_elicitation: str = "none") -> Any:
        key = self.vars.sub(step["as"]) if "as" in step else None
        elicitation = step.get("elicitation", default_elicitation)
        if elicitation not in ELICITATION:
            raise Failure(f"{label}: elicitation must be one of {ELICITATION}")
        client, elicitor = await self.session(key, elicitation)
        if "resource" in step:
            uri = self.vars.sub(step["resource"])
            value = await read_resource_json(client, uri)
            what = f"resource {uri}"
        elif "tool" in step:
            args = self.vars.sub(step.get("args", {}))
            before = len(elicitor.seen) if elicitor else 0
            self.calls += 1
            r = await call(client, step["tool"], args)
            what = f"{step['tool']} {json.dumps(args)[:200]}"
            elicited = bool(elicitor and len(elicitor.seen) > before)
            if step.get("expect_error", False):
                if not r.is_error:
                    raise Failure(f"{label}: {what} should fail but returned {r.describe()}")
            elif r.is_error:
                raise Failure(f"{label}: {what} failed: {r.text[:500]}")
            if "expect_status" in step and r.status != step["expect_status"]:
                raise Failure(f"{label}: {what}: expected status {step['expect_status']!r}, got {r.describe()}")
            if "expect_elicited" in step and elicited != step["expect_elicited"]:
                raise Failure(
                    f"{label}: {what}: expected the human to be asked={step['expect_elicited']}, "
                    f"asked={elicited}; result {r.describe()}"
                )
            if r.is_error:
                value = {"is_error": True, "text": r.text, "structured": r.structured}
            else:
                value = r.structured if r.structured is not None else {"text": r.text}
        else:
            raise Failure(f"{label}: a step needs 'tool' or 'resource'")
        if "id" in step:
            self.vars.saved[step["id"]] = value
        for i, a in enumerate(step.get("assert", [])):
            a = self.vars.sub(a)
            assert_value(dotted(value, a.get("path")), a, f"{label} assert {i + 1} ({what})")
        return value

    async def expect(self, a: dict[str, Any], label: str) -> None:
        a = {k: (v if k in ("tool", "resource", "args", "as") else self.vars.sub(v)) for k, v in a.items()}
        if "ref" in a:
            if a["ref"] not in self.vars.saved:
                raise Failure(f"{label}: no step with id {a['ref']!r}")
            value = self.vars.saved[a["ref"]]
            what = f"ref {a['ref']}"
        else:
            probe = {k: a[k] for k in ("tool", "args", "resource", "as") if k in a}
            value = await self.step(probe, label)
            what = a.get("tool") or a.get("resource")
            if "tool" in a and isinstance(value, dict) and value.get("status") != "completed":
                raise Failure(f"{label}: read tool {what} did not complete: {json.dumps(value)[:300]}")
        assert_value(dotted(value, a.get("path")), a, f"{label} ({what} {a.get('path', '')})")


def failures_in(e: BaseException) -> list[Failure]:
    """The Failures inside an exception group, when that is all it holds."""
    subs = getattr(e, "exceptions", None)
    if not subs:
        return [e] if isinstance(e, Failure) else []
    out: list[Failure] = []
    for s in subs:
        inner = failures_in(s)
        if not inner:
            return []
        out += inner
    return out


async def run_scenario(binary: str, path: Path, mode: str, keep: bool) -> tuple[bool, str, int]:
    sc = json.loads(path.read_text())
    for k in ("task", "setup", "reference", "expect"):
        if k not in sc:
            return False, f"scenario file has no {k!r}", 0
    root = fresh_dir(f"certctl-eval-{path.stem}-")
    errlog = open(root / "mcp-stderr.log", "w")
    ok, why, calls = True, "", 0
    try:
        with anyio.fail_after(sc.get("timeout_seconds", 120)):
            async with AsyncExitStack() as stack:
                runner = Runner(binary, root / "data", mode, stack, errlog)
                # The admin session first: it creates the data dir, CA and admin.key.
                await runner.session(None, "none")
                for i, s in enumerate(sc["setup"]):
                    await runner.step(s, f"setup[{i}]")
                start = runner.calls
                for i, s in enumerate(sc["reference"]):
                    await runner.step(s, f"reference[{i}]")
                calls = runner.calls - start
                for i, a in enumerate(sc["expect"]):
                    await runner.expect(a, f"expect[{i}]")
    except Failure as e:
        ok, why = False, str(e)
    except Exception as e:
        leaves = failures_in(e)
        if leaves:
            ok, why = False, "; ".join(str(x) for x in leaves)
        else:
            ok, why = False, f"{root_cause(e)}\n{traceback.format_exc()[-800:]}"
    finally:
        errlog.close()
        if not ok:
            tail = (root / "mcp-stderr.log").read_text(errors="replace")[-1500:]
            if tail.strip():
                why += f"\n--- certctl mcp stderr (tail)\n{tail}"
        if keep or not ok:
            why += f"\n(kept {root})" if not ok else ""
        else:
            remove_dir(root)
    return ok, why, calls


# What the Go certctl's 127 separate MCP tools cost a model: its tools/list
# rendered from its source as its SDK would (name, description, input schema;
# it has nothing else) by evals/go_tool_list_size.py, at commit aad95d3 of
# github.com/shankar0123/certctl (docs/mcp.md, "What the tool list costs").
GO_TOOLS = 127
GO_TOOLS_MODEL_BYTES = 61_110
# The part of certctl's tools/list a model reads must stay at least a fifth
# under that; a change that spends the margin fails here and shows in review.
MODEL_BYTES_BUDGET = GO_TOOLS_MODEL_BYTES * 4 // 5


async def tool_list_size(binary: str, mode: str) -> tuple[int, int, int]:
    root = fresh_dir("certctl-eval-size-")
    try:
        with open(root / "mcp-stderr.log", "w") as errlog:
            async with stdio_mcp_client(binary, root / "data", mode=mode, errlog=errlog) as c:
                listing = await c.list_tools()
                if listing.next_cursor:
                    raise Failure("tools/list is paginated; the size covers the first page only")
                return len(listing.tools), tools_list_bytes(listing), tools_model_bytes(listing)
    finally:
        remove_dir(root)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True)
    ap.add_argument("--scenarios", default=str(HERE / "scenarios"), help="folder of *.json scenarios")
    ap.add_argument("--scenario", action="append", help="run only this scenario (file stem); repeatable")
    ap.add_argument("--mode", default="auto", choices=["auto", "legacy"])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())
    if not Path(binary).is_file():
        print(f"evals: no binary at {binary}", file=sys.stderr)
        return 2
    files = sorted(Path(args.scenarios).glob("*.json"))
    if args.scenario:
        files = [f for f in files if f.stem in args.scenario]
    if not files:
        print("evals: no scenarios found", file=sys.stderr)
        return 2

    print(f"certctl MCP evals: {len(files)} scenarios, stdio, mode {args.mode}")
    passed = 0
    for f in files:
        t0 = time.monotonic()
        ok, why, calls = await run_scenario(binary, f, args.mode, args.keep)
        passed += ok
        print(f"  {'PASS' if ok else 'FAIL'}  {f.stem:32} {calls:2} reference calls  {time.monotonic() - t0:5.1f}s")
        if not ok:
            for line in why.splitlines():
                print(f"        {line}")
    rate = 100.0 * passed / len(files)
    print(f"pass rate: {passed}/{len(files)} ({rate:.0f}%)")
    for mode in ("auto", "legacy"):
        try:
            n, size, model = await tool_list_size(binary, mode)
            print(
                f"tools/list ({'2026-07-28' if mode == 'auto' else '2025-11-25'}): {n} tools, {size} bytes, "
                f"~{size // 4} tokens; names, descriptions and input schemas (what a model reads): "
                f"{model} bytes, ~{model // 4} tokens"
            )
            less = 100.0 * (GO_TOOLS_MODEL_BYTES - model) / GO_TOOLS_MODEL_BYTES
            print(
                f"  against the Go certctl's {GO_TOOLS} separate tools (~{GO_TOOLS_MODEL_BYTES} bytes, all of it "
                f"read by a model): {less:.0f}% less; budget {MODEL_BYTES_BUDGET} bytes"
            )
            if model > MODEL_BYTES_BUDGET:
                print(f"  FAIL  the model's part of tools/list ({model} bytes) is over its budget")
                passed = -1
        except Exception as e:
            print(f"tools/list ({mode}): could not measure: {type(e).__name__}: {e}")
            passed = -1
    return 0 if passed == len(files) else 1


if __name__ == "__main__":
    sys.exit(anyio.run(main))
