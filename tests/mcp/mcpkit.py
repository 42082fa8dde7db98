"""Small helpers shared by tests/mcp/conformance.py and evals/run.py.

Everything here drives the real `certctl` binary through the official MCP
Python SDK (mcp==2.3.0): stdio via `certctl mcp`, streamable HTTP via `/mcp` on
`certctl serve`. No fixed ports, no sleeps without a bound.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import mcp.types as types
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

LISTEN_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class Failure(Exception):
    """A check failed; the message says what was expected and what happened."""


# ---------------------------------------------------------------- CSRs


def root_cause(e: BaseException) -> str:
    """The innermost exceptions of an (anyio) exception group, as one line."""
    leaves: list[BaseException] = []

    def walk(x: BaseException) -> None:
        subs = getattr(x, "exceptions", None)
        if subs:
            for s in subs:
                walk(s)
        else:
            leaves.append(x)

    walk(e)
    return "; ".join(f"{type(x).__name__}: {x}" for x in leaves)[:800]


def make_csr(common_name: str, extra_names: list[str] | None = None) -> str:
    """A P-256 PKCS#10 CSR (PEM) for common_name plus SANs; the key is thrown away."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names = [common_name] + [n for n in (extra_names or []) if n != common_name]
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


# ---------------------------------------------------------------- processes


def wait_for(what: str, pred: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Polls pred until it returns something truthy; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)
        interval = min(interval * 1.5, 0.5)


def read_key(data_dir: Path, timeout: float = 30.0) -> str:
    path = data_dir / "admin.key"

    def ready() -> str | None:
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        return text or None

    key = wait_for(f"{path} to be written", ready, timeout)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise Failure(f"{path} has mode {oct(mode)}; the contract says 0600")
    return key


@dataclass
class Serve:
    """A `certctl serve` process on 127.0.0.1 with port 0."""

    proc: subprocess.Popen
    url: str
    key: str
    log: Path

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    def stop(self) -> None:
        stop_process(self.proc)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def start_serve(binary: str, data_dir: Path, extra: list[str] | None = None, timeout: float = 60.0) -> Serve:
    """Starts `certctl serve --data-dir DIR --listen 127.0.0.1:0` and reads the printed address."""
    log = data_dir.parent / f"serve-{data_dir.name}-{os.getpid()}-{time.monotonic_ns()}.log"
    out = open(log, "wb")
    env = dict(os.environ)
    env.pop("CERTCTL_API_KEY", None)
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *(extra or [])],
        stdout=out,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    out.close()

    def address() -> str | None:
        if proc.poll() is not None:
            raise Failure(
                f"certctl serve exited with {proc.returncode} before listening:\n{log.read_text(errors='replace')[-3000:]}"
            )
        m = LISTEN_RE.search(log.read_text(errors="replace"))
        return m.group(1) if m else None

    try:
        url = wait_for("`certctl serve` to print 'listening on http://127.0.0.1:PORT'", address, timeout)
        key = read_key(data_dir)
    except BaseException:
        stop_process(proc)
        raise
    return Serve(proc=proc, url=url, key=key, log=log)


def http_request(
    method: str, url: str, key: str | None = None, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) without raising on 4xx/5xx."""
    data = None
    h = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if key is not None:
        h["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def run_cli(binary: str, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("CERTCTL_API_KEY", None)
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )


# ---------------------------------------------------------------- MCP clients


class Elicitor:
    """An elicitation callback whose answer can change between calls.

    `answer` is "accept" (confirm=true), "decline" or "cancel". Every request is
    recorded in `seen` (the message and the requested schema).
    """

    def __init__(self, answer: str = "accept") -> None:
        self.answer = answer
        self.seen: list[dict[str, Any]] = []

    async def __call__(self, context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        schema = getattr(params, "requested_schema", None)
        if schema is not None and hasattr(schema, "model_dump"):
            schema = schema.model_dump(by_alias=True, exclude_none=True)
        self.seen.append({"message": getattr(params, "message", None), "schema": schema, "answer": self.answer})
        if self.answer == "accept":
            return types.ElicitResult(action="accept", content={"confirm": True})
        return types.ElicitResult(action=self.answer)


@asynccontextmanager
async def _http_transport(url: str, key: str | None):
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(url, http_client=http) as streams:
            yield streams


def stdio_mcp_client(
    binary: str,
    data_dir: Path,
    *,
    mode: str,
    api_key: str | None = None,
    elicitor: Elicitor | None = None,
    errlog: Any = None,
) -> Client:
    args = ["mcp", "--data-dir", str(data_dir)]
    if api_key:
        args += ["--api-key", api_key]
    params = StdioServerParameters(command=binary, args=args, env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")})
    transport = stdio_client(params, errlog=errlog) if errlog is not None else stdio_client(params)
    return Client(transport, mode=mode, elicitation_callback=elicitor, cache=None, read_timeout_seconds=120)


def http_mcp_client(url: str, key: str | None, *, mode: str, elicitor: Elicitor | None = None) -> Client:
    return Client(
        _http_transport(url, key), mode=mode, elicitation_callback=elicitor, cache=None, read_timeout_seconds=120
    )


@dataclass
class ToolResult:
    name: str
    is_error: bool
    structured: Any
    text: str
    raw: Any = field(repr=False, default=None)

    @property
    def status(self) -> str | None:
        return self.structured.get("status") if isinstance(self.structured, dict) else None

    @property
    def result(self) -> Any:
        return self.structured.get("result") if isinstance(self.structured, dict) else None

    def describe(self) -> str:
        body = json.dumps(self.structured)[:600] if self.structured is not None else self.text[:600]
        return f"{self.name}: isError={self.is_error} {body}"


async def call(client: Client, name: str, args: dict[str, Any] | None = None) -> ToolResult:
    r = await client.call_tool(name, args or {})
    text = "\n".join(c.text for c in r.content if getattr(c, "type", None) == "text")
    structured = r.structured_content
    if structured is None and text:
        try:
            structured = json.loads(text)
        except ValueError:
            structured = None
    return ToolResult(name=name, is_error=bool(r.is_error), structured=structured, text=text, raw=r)


async def completed(client: Client, name: str, args: dict[str, Any] | None = None) -> Any:
    """Calls a tool that must complete; returns its `result`."""
    r = await call(client, name, args)
    if r.is_error or r.status != "completed":
        raise Failure(f"{name} {json.dumps(args)[:300]} did not complete: {r.describe()}")
    return r.result


async def read_resource_json(client: Client, uri: str) -> Any:
    r = await client.read_resource(uri)
    if not r.contents:
        raise Failure(f"resource {uri} has no contents")
    c = r.contents[0]
    text = getattr(c, "text", None)
    if text is None:
        raise Failure(f"resource {uri} is not text: {c!r}"[:400])
    try:
        return json.loads(text)
    except ValueError:
        return text


def tools_list_bytes(result: types.ListToolsResult) -> int:
    """Size of the tools/list result as JSON on the wire (camelCase, no nulls)."""
    body = result.model_dump(by_alias=True, exclude_none=True, mode="json")
    return len(json.dumps(body, separators=(",", ":")).encode())


def tools_model_bytes(result: types.ListToolsResult) -> int:
    """The part of tools/list a client hands the model: each tool's name,
    description and input schema (titles, annotations and output schemas
    drive the client, not the prompt). This is what a tool list without
    annotations or output schemas costs in full, so it compares like with like."""
    body = [
        {"name": t.name, "description": t.description, "inputSchema": t.input_schema}
        for t in result.tools
    ]
    return len(json.dumps(body, separators=(",", ":")).encode())


def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def remove_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
