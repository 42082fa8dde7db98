#!/usr/bin/env python3
"""Independent-client conformance test for certctl's MCP face.

Drives the real binary with the official MCP Python SDK (mcp==2.3.0) over
both transports (stdio via `certctl mcp`, streamable HTTP via `/mcp` on
`certctl serve`) and both protocol modes (`auto`, which negotiates 2026-07-28,
and `legacy`, the 2025-11-25 initialize handshake):

- tools/list: every tool has a title, annotations, an object inputSchema and
  an outputSchema; read tools are readOnlyHint, revoke/delete/disable tools
  destructiveHint;
- a read tool; create + issue a certificate from a CSR;
- revoke_certificate with an elicitation callback that declines (certificate
  stays valid, approval cancelled), that cancels (approval stays pending), that
  accepts (revoked; the audit log records the in-chat confirmation);
- revoke_certificate with no elicitation capability: approval_required, then a
  different principal (approver) approves with the CLI (auto mode) or REST
  (legacy mode) and the revocation happens exactly once;
- HTTP: /mcp without a key is 401; a viewer key cannot call a write tool.

Usage: conformance.py --binary target/debug/certctl [--only stdio-auto] [--keep]
Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcpkit import (  # noqa: E402
    Elicitor,
    Failure,
    root_cause,
    Serve,
    call,
    completed,
    fresh_dir,
    http_mcp_client,
    http_request,
    make_csr,
    read_key,
    remove_dir,
    run_cli,
    start_serve,
    stdio_mcp_client,
    tools_list_bytes,
)

PROTOCOL = {"auto": "2026-07-28", "legacy": "2025-11-25"}
# Tools the contract names; each must be listed.
REQUIRED_TOOLS = [
    "list_certificates",
    "get_certificate",
    "create_certificate",
    "issue_certificate",
    "renew_certificate",
    "revoke_certificate",
    "list_approvals",
    "get_approval",
    "approve_request",
    "reject_request",
    "cancel_request",
    "create_principal",
    "get_audit_log",
    "verify_audit_log",
    "get_stats_summary",
    "list_jobs",
    "list_agents",
    "list_issuers",
]
READ_PREFIXES = ("list_", "get_", "verify_", "test_", "export_")
# What agents call over REST with their own key; no MCP tool.
AGENT_PROTOCOL = (
    "agent_heartbeat",
    "get_agent_work",
    "submit_agent_csr",
    "get_agent_job",
    "report_agent_job",
    "verify_job",
    "report_agent_discoveries",
)
DESTRUCTIVE_PREFIXES = ("revoke_", "delete_", "disable_", "bulk_")


class Case:
    """One (transport, mode) run: collects failures instead of stopping at the first."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, what: str, detail: Any = "") -> bool:
        if ok:
            self.passed += 1
            print(f"  ok   {what}")
        else:
            msg = f"{what}" + (f": {detail}" if detail != "" else "")
            self.failures.append(msg)
            print(f"  FAIL {msg}")
        return ok


# ---------------------------------------------------------------- helpers


async def issue_cert(client, cn: str) -> str:
    cert = await completed(client, "create_certificate", {"common_name": cn})
    cid = cert["id"]
    out = await completed(client, "issue_certificate", {"id": cid, "csr_pem": make_csr(cn)})
    status = out["certificate"]["status"]
    if status not in ("valid", "expiring"):
        raise Failure(f"issue_certificate {cid}: status {status!r}, expected valid")
    return cid


async def cert_status(client, cid: str) -> str:
    return (await completed(client, "get_certificate", {"id": cid}))["certificate"]["status"]


async def approvals_for(client, cid: str) -> list[dict[str, Any]]:
    data = (await completed(client, "list_approvals", {"per_page": 1000}))["data"]
    return [a for a in data if a.get("resource_id") == cid]


async def audit(client, **filters) -> list[dict[str, Any]]:
    return (await completed(client, "get_audit_log", {"per_page": 1000, **filters}))["data"]


async def successful_revokes(client, cid: str) -> list[dict[str, Any]]:
    events = await audit(client, action="revoke_certificate", resource_id=cid)
    return [e for e in events if e.get("outcome") == "success"]


async def poll(what: str, fn, timeout: float = 20.0):
    """Bounded polling for a condition that may need a moment (another process wrote it)."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        v = await fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        await anyio.sleep(delay)
        delay = min(delay * 2, 0.5)


# ---------------------------------------------------------------- the checks


async def check_tools(case: Case, client, mode: str) -> None:
    case.check(
        client.protocol_version == PROTOCOL[mode],
        f"negotiated protocol {PROTOCOL[mode]}",
        f"got {client.protocol_version}",
    )
    listing = await client.list_tools()
    tools = list(listing.tools)
    cursor = listing.next_cursor
    while cursor:
        page = await client.list_tools(cursor=cursor)
        tools += page.tools
        cursor = page.next_cursor
    names = {t.name for t in tools}
    size = tools_list_bytes(listing)
    print(f"  tools/list: {len(tools)} tools, {size} bytes, ~{size // 4} tokens")
    missing = [n for n in REQUIRED_TOOLS if n not in names]
    case.check(not missing, "tools/list has every contract tool", f"missing {missing}")
    bad: dict[str, list[str]] = {}

    def note(tool: str, problem: str) -> None:
        bad.setdefault(tool, []).append(problem)

    for t in tools:
        a = t.annotations
        if not t.title and not (a and a.title):
            note(t.name, "no title")
        if a is None:
            note(t.name, "no annotations")
        schema = t.input_schema or {}
        if schema.get("type") != "object":
            note(t.name, f"inputSchema type is {schema.get('type')!r}, not 'object'")
        if not t.output_schema:
            note(t.name, "no outputSchema")
        elif t.output_schema.get("type") != "object":
            note(t.name, f"outputSchema type is {t.output_schema.get('type')!r}")
        if not t.description:
            note(t.name, "no description")
        if a is None:
            continue
        for hint in ("read_only_hint", "destructive_hint", "idempotent_hint", "open_world_hint"):
            if getattr(a, hint) is None:
                note(t.name, f"annotation {hint} missing")
        is_read = t.name.startswith(READ_PREFIXES)
        if is_read and a.read_only_hint is not True:
            note(t.name, "read tool without readOnlyHint: true")
        if not is_read and a.read_only_hint is True:
            note(t.name, "write tool marked readOnlyHint: true")
        if t.name.startswith(DESTRUCTIVE_PREFIXES) and a.destructive_hint is not True:
            note(t.name, "revoke/delete/disable/bulk tool without destructiveHint: true")
    case.check(not bad, f"all {len(tools)} tools: title, annotations, hints, object input/output schemas", bad)
    listed = {t.name for t in tools}
    agent_protocol = [n for n in AGENT_PROTOCOL if n in listed]
    case.check(not agent_protocol, "the agent protocol (REST only) is not listed", agent_protocol)


async def check_read(case: Case, client) -> None:
    r = await call(client, "get_stats_summary", {})
    case.check(
        not r.is_error and r.status == "completed" and isinstance(r.result, dict),
        "read tool get_stats_summary completes with structured content",
        r.describe(),
    )
    r = await call(client, "list_certificates", {"per_page": 5})
    case.check(not r.is_error and r.status == "completed", "read tool list_certificates completes", r.describe())
    r = await call(client, "get_certificate", {"id": "mc-does-not-exist"})
    case.check(
        r.is_error and len(r.text) > 10,
        "get_certificate on an unknown id is an isError result with a message",
        r.describe(),
    )
    print(f"       error text: {r.text[:160]!r}")
    r = await call(client, "verify_job", {"id": "job-x"})
    case.check(
        r.is_error and "agent protocol" in r.text,
        "an agent protocol call is refused with where it lives",
        r.describe(),
    )


PROMPTS = ["renewal-review", "weekly-expiry-report", "key-compromise-incident", "onboard-endpoint", "review-approvals"]
RESOURCES = ["certctl://inventory/summary", "certctl://approvals/pending", "certctl://audit/recent", "certctl://issuers"]


async def check_resources_prompts(case: Case, client) -> None:
    listed = {str(r.uri) for r in (await client.list_resources()).resources}
    templates = {r.uri_template for r in (await client.list_resource_templates()).resource_templates}
    want_templates = {"certctl://certificates/{id}", "certctl://certificates/expiring/{days}"}
    case.check(
        set(RESOURCES) <= listed and want_templates <= templates,
        "resources/list and resources/templates/list offer the contract's URIs",
        {"missing": sorted(set(RESOURCES) - listed), "missing_templates": sorted(want_templates - templates)},
    )
    for uri in RESOURCES + ["certctl://certificates/expiring/30"]:
        try:
            r = await client.read_resource(uri)
            text = getattr(r.contents[0], "text", None) if r.contents else None
            ok = bool(text)
            if ok:
                json.loads(text)
            case.check(ok, f"read {uri}: JSON text", text)
        except Exception as e:
            case.check(False, f"read {uri}", f"{type(e).__name__}: {e}")
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    case.check(all(n in prompts for n in PROMPTS), "prompts/list offers the five prompts", sorted(prompts))
    if "key-compromise-incident" in prompts:
        g = await client.get_prompt("key-compromise-incident", {"certificate": "mc-conformance"})
        text = " ".join(getattr(m.content, "text", "") for m in g.messages)
        case.check(
            "mc-conformance" in text and "keyCompromise" in text and "{{" not in text,
            "get_prompt fills the arguments into the body",
            text[:200],
        )


async def check_decline(case: Case, client, elicitor: Elicitor, cid: str) -> None:
    elicitor.answer = "decline"
    before = len(elicitor.seen)
    r = await call(client, "revoke_certificate", {"id": cid, "reason": "keyCompromise"})
    asked = len(elicitor.seen) > before
    case.check(asked, "decline: the elicitation callback was called", r.describe())
    if asked:
        s = elicitor.seen[-1]
        props = (s.get("schema") or {}).get("properties", {})
        case.check(
            props.get("confirm", {}).get("type") == "boolean",
            "the form asks for a boolean field 'confirm'",
            s.get("schema"),
        )
        case.check(cid in (s.get("message") or ""), "the form's message names the certificate", s.get("message"))
    case.check(r.status != "completed", "decline: revoke_certificate did not complete", r.describe())
    print(f"       declined result: {r.describe()[:240]}")
    case.check(await cert_status(client, cid) == "valid", "decline: certificate still valid")
    aps = await approvals_for(client, cid)
    case.check(
        len(aps) == 1 and aps[0]["status"] == "cancelled",
        "decline: the approval is cancelled",
        [(a["id"], a["status"]) for a in aps],
    )
    case.check(not await successful_revokes(client, cid), "decline: no successful revoke_certificate in the audit log")


async def check_cancel(case: Case, client, elicitor: Elicitor, cid: str) -> None:
    elicitor.answer = "cancel"
    before = len(elicitor.seen)
    r = await call(client, "revoke_certificate", {"id": cid, "reason": "superseded"})
    case.check(len(elicitor.seen) > before, "cancel: the elicitation callback was called", r.describe())
    case.check(r.status != "completed", "cancel: revoke_certificate did not complete", r.describe())
    case.check(await cert_status(client, cid) == "valid", "cancel: certificate still valid")
    aps = await approvals_for(client, cid)
    case.check(
        len(aps) == 1 and aps[0]["status"] == "pending",
        "cancel: the approval stays pending",
        [(a["id"], a["status"]) for a in aps],
    )


async def check_accept(case: Case, client, elicitor: Elicitor, cid: str) -> None:
    elicitor.answer = "accept"
    before = len(elicitor.seen)
    r = await call(client, "revoke_certificate", {"id": cid, "reason": "keyCompromise"})
    case.check(len(elicitor.seen) > before, "accept: the elicitation callback was called", r.describe())
    case.check(not r.is_error and r.status == "completed", "accept: revoke_certificate completed", r.describe())
    cert = (await completed(client, "get_certificate", {"id": cid}))["certificate"]
    case.check(
        cert["status"] == "revoked" and cert.get("revocation_reason") == "keyCompromise",
        "accept: certificate revoked with keyCompromise",
        {k: cert.get(k) for k in ("status", "revocation_reason")},
    )
    revokes = await successful_revokes(client, cid)
    case.check(len(revokes) == 1, "accept: exactly one successful revoke_certificate event", len(revokes))
    aps = await approvals_for(client, cid)
    ap_ids = {a["id"] for a in aps}
    case.check(
        len(aps) == 1 and aps[0]["status"] == "executed",
        "accept: the approval is executed",
        [(a["id"], a["status"]) for a in aps],
    )
    confirmations = [
        e
        for e in await audit(client, action="approve_request")
        if e.get("outcome") == "success"
        and (e.get("details") or {}).get("in_chat") is True
        and (e.get("resource_id") in ap_ids or (e.get("details") or {}).get("approval_id") in ap_ids)
    ]
    case.check(
        len(confirmations) == 1,
        "accept: the audit log has the in-chat confirmation (approve_request, in_chat=true)",
        f"{len(confirmations)} matching events",
    )
    if revokes:
        d = revokes[0].get("details") or {}
        case.check(d.get("approval_id") in ap_ids, "accept: the revoke event names its approval", d)


async def check_out_of_band(
    case: Case, client, cid: str, approver_key: str, server_url: str, binary: str, via: str
) -> None:
    r = await call(client, "revoke_certificate", {"id": cid, "reason": "cessationOfOperation"})
    ap = r.structured.get("approval_id") if isinstance(r.structured, dict) else None
    ok = case.check(
        not r.is_error and r.status == "approval_required" and isinstance(ap, str) and ap.startswith("ap-"),
        "no elicitation capability: approval_required with an approval_id",
        r.describe(),
    )
    if not ok:
        return
    for k in ("summary", "how_to_decide"):
        case.check(bool(r.structured.get(k)), f"approval_required carries {k}", r.structured)
    case.check(await cert_status(client, cid) == "valid", "approval_required: certificate still valid")
    # The requester cannot approve its own request through the tool.
    own = await call(client, "approve_request", {"approval_id": ap})
    case.check(own.is_error or own.status != "completed", "the requester cannot approve its own request", own.describe())
    if via == "cli":
        p = run_cli(binary, ["--server", server_url, "--api-key", approver_key, "approvals", "approve", ap])
        case.check(
            p.returncode == 0,
            f"`certctl --server URL --api-key KEY approvals approve {ap}` as the approver exits 0",
            f"rc={p.returncode} stdout={p.stdout[-400:]!r} stderr={p.stderr[-400:]!r}",
        )
    else:
        status, body = http_request(
            "POST", f"{server_url}/api/v1/operations/approve_request", approver_key, {"approval_id": ap}
        )
        case.check(
            status == 200,
            "POST /api/v1/operations/approve_request as the approver is 200",
            f"{status} {body[:400]!r}",
        )

    async def revoked() -> bool:
        return await cert_status(client, cid) == "revoked"

    try:
        await poll(f"certificate {cid} to be revoked", revoked)
        case.check(True, f"approved via {via}: certificate revoked")
    except Failure as e:
        case.check(False, f"approved via {via}: certificate revoked", str(e))
    # A second approval must not run it again.
    if via == "cli":
        p2 = run_cli(binary, ["--server", server_url, "--api-key", approver_key, "approvals", "approve", ap])
        case.check(p2.returncode != 0, "approving the same request again fails", p2.stdout[-200:])
    else:
        status, body = http_request(
            "POST", f"{server_url}/api/v1/operations/approve_request", approver_key, {"approval_id": ap}
        )
        case.check(status >= 400, "approving the same request again fails", f"{status} {body[:200]!r}")
    revokes = await successful_revokes(client, cid)
    case.check(len(revokes) == 1, "the revocation happened exactly once (one successful audit event)", len(revokes))
    a = await completed(client, "get_approval", {"id": ap})
    case.check(a["status"] == "executed", "get_approval: executed", a.get("status"))
    case.check(a.get("decided_by") not in (None, a.get("requested_by")), "decided by a different principal", a)


async def check_http_auth(case: Case, serve: Serve, mode: str, admin) -> None:
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "conformance", "version": "0"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    status, _ = http_request("POST", serve.mcp_url, None, init, accept)
    case.check(status == 401, "POST /mcp without a key is 401", status)
    status, _ = http_request("POST", serve.mcp_url, "certctl_not-a-real-key", init, accept)
    case.check(status == 401, "POST /mcp with a wrong key is 401", status)
    viewer = await completed(admin, "create_principal", {"name": f"viewer-{mode}", "role": "viewer"})
    async with http_mcp_client(serve.mcp_url, viewer["api_key"], mode=mode) as v:
        r = await call(v, "list_certificates", {"per_page": 1})
        case.check(not r.is_error and r.status == "completed", "viewer can call a read tool", r.describe())
        try:
            r = await call(v, "create_certificate", {"common_name": f"viewer-{mode}.example.com"})
            refused = r.is_error or r.status not in ("completed", "approval_required")
            detail = r.describe()
        except Exception as e:  # an MCP error (e.g. the tool is hidden from viewers) also refuses
            refused, detail = True, f"{type(e).__name__}: {e}"
        case.check(refused, "viewer cannot call a write tool (create_certificate)", detail)
        print(f"       viewer refusal: {detail[:200]}")
    found = await completed(admin, "list_certificates", {"common_name": f"viewer-{mode}.example.com"})
    case.check(not found["data"], "nothing was created by the viewer", found["data"])


# ---------------------------------------------------------------- one case


async def run_case(binary: str, transport: str, mode: str, keep: bool) -> Case:
    case = Case(f"{transport}/{mode}")
    print(f"\n== {case.name} (protocol {PROTOCOL[mode]})")
    root = fresh_dir(f"certctl-conf-{transport}-{mode}-")
    data_dir = root / "data"
    serve: Serve | None = None
    errlog = open(root / "mcp-stderr.log", "w")

    def client(elicitor: Elicitor | None = None, key: str | None = None):
        if transport == "stdio":
            return stdio_mcp_client(binary, data_dir, mode=mode, api_key=key, elicitor=elicitor, errlog=errlog)
        assert serve is not None
        return http_mcp_client(serve.mcp_url, key or serve.key, mode=mode, elicitor=elicitor)

    try:
        with anyio.fail_after(300):
            if transport == "http":
                serve = start_serve(binary, data_dir)
            async with client() as admin:
                if transport == "stdio":
                    key = read_key(data_dir)
                    case.check(key.startswith("certctl_") or len(key) >= 20, "certctl mcp wrote DIR/admin.key (0600)")
                await check_tools(case, admin, mode)
                await check_read(case, admin)
                await check_resources_prompts(case, admin)
                tag = f"{transport}-{mode}".replace("/", "-")
                ids = {}
                for which in ("decline", "cancel", "accept", "oob"):
                    ids[which] = await issue_cert(admin, f"{which}.{tag}.example.com")
                case.check(True, "create_certificate + issue_certificate from a CSR (4 certificates)")
                approver = await completed(admin, "create_principal", {"name": f"approver-{tag}", "role": "approver"})
                case.check(bool(approver.get("api_key")), "create_principal (approver) returns an api_key")

                elicitor = Elicitor()
                async with client(elicitor) as asker:
                    await check_decline(case, asker, elicitor, ids["decline"])
                    await check_cancel(case, asker, elicitor, ids["cancel"])
                    await check_accept(case, asker, elicitor, ids["accept"])

                if serve is None:
                    # stdio: the human decides through the control plane on the same data dir.
                    serve = start_serve(binary, data_dir)
                via = "cli" if mode == "auto" else "rest"
                await check_out_of_band(case, admin, ids["oob"], approver["api_key"], serve.url, binary, via)
                if transport == "http":
                    await check_http_auth(case, serve, mode, admin)
                v = await completed(admin, "verify_audit_log", {})
                case.check(v.get("valid") is True, "verify_audit_log: the chain is intact", v)
    except Exception as e:  # record and move on to the next case
        detail = root_cause(e) + "\n" + "".join(traceback.format_exception(e))[-1500:]
        case.failures.append(f"aborted: {root_cause(e)}")
        print(f"  FAIL aborted: {detail}")
        if serve is not None:
            print(f"  --- certctl serve log (tail)\n{serve.log_tail()}")
        errlog.flush()
        tail = (root / "mcp-stderr.log").read_text(errors="replace")[-2000:]
        if tail.strip():
            print(f"  --- certctl mcp stderr (tail)\n{tail}")
    finally:
        if serve is not None:
            serve.stop()
        errlog.close()
        if keep or case.failures:
            print(f"  (kept {root})")
        else:
            remove_dir(root)
    return case


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", required=True, help="path to the certctl binary")
    ap.add_argument("--only", action="append", help="run only TRANSPORT-MODE, e.g. stdio-auto (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    args = ap.parse_args()
    binary = str(Path(args.binary).resolve())
    if not Path(binary).is_file():
        print(f"conformance: no binary at {binary}", file=sys.stderr)
        return 2
    cases = []
    for transport in ("stdio", "http"):
        for mode in ("auto", "legacy"):
            if args.only and f"{transport}-{mode}" not in args.only:
                continue
            cases.append(await run_case(binary, transport, mode, args.keep))
    print("\n== summary")
    total_fail = 0
    for c in cases:
        print(f"  {c.name:14} {c.passed} passed, {len(c.failures)} failed")
        for f in c.failures:
            print(f"      - {f[:500]}")
        total_fail += len(c.failures)
    if total_fail or not cases:
        print(f"conformance: FAILED ({total_fail} failures)", file=sys.stderr)
        return 1
    print("conformance: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main))
