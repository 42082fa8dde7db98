#!/usr/bin/env python3
"""Measure the byte size of the Go certctl MCP server's `tools/list` result.

Reads the Go sources of github.com/shankar0123/certctl (internal/mcp/*.go,
tests excluded), finds every `AddTool(...)` call, infers each input type's
JSON schema as the Go SDK does (jsonschema-go `For`: json tag names,
jsonschema tag = description, omitempty/omitzero = optional, structs closed
with additionalProperties:false, slices and pointers nullable), and prints
the size of {"tools":[{name, description, inputSchema}, ...]} as compact
JSON encoded the way the Go SDK writes it (raw UTF-8; <, >, & escaped only
inside schemas). Standard library only; Python 3.10+.

    python3 evals/go_tool_list_size.py PATH_TO_GO_CERTCTL_CHECKOUT
    python3 evals/go_tool_list_size.py --git-dir MIRROR_GIT_DIR   # reads HEAD
"""
import argparse, ast, json, re, subprocess, sys
from pathlib import Path

PKG = "internal/mcp"
BASIC = {"string": "string", "bool": "boolean", "int": "integer", "int64": "integer",
         "float32": "number", "float64": "number"}
BOUNDED = ({f"int{b}": (-2**(b - 1), 2**(b - 1) - 1) for b in (8, 16, 32)}
           | {f"uint{b}": (0, 2**b - 1) for b in (8, 16, 32)} | {"byte": (0, 255)}
           | {"rune": (-2**31, 2**31 - 1), "uint": (0, None), "uint64": (0, None), "uintptr": (0, None)})
# Out-of-package types: jsonschema-go maps time.Time & co to strings.
EXTERNAL = {"time.Time": "string", "slog.Level": "string", "big.Int": "string",
            "big.Rat": "string", "big.Float": "string", "time.Duration": "int64",
            "json.RawMessage": "[]byte"}
OPEN, CLOSE = "([{", ")]}"

class Unrenderable(Exception):
    pass

# ── Source access ───────────────────────────────────────────────────
def is_source(name):
    return name.endswith(".go") and not name.endswith("_test.go")

def read_sources(args):
    """Return ({path: text}, commit or None, go.mod text)."""
    if args.git_dir:
        def git(*a):
            return subprocess.run(["git", "--git-dir", args.git_dir, *a], check=True,
                                  capture_output=True, text=True).stdout
        names = [n for n in git("ls-tree", "--name-only", "HEAD", PKG + "/").split() if is_source(n)]
        return ({n: git("show", "HEAD:" + n) for n in names},
                git("rev-parse", "HEAD").strip(), git("show", "HEAD:go.mod"))
    root = Path(args.checkout)
    files = {str(p): p.read_text(encoding="utf-8")
             for p in sorted((root / PKG).glob("*.go")) if is_source(p.name)}
    rev = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    gomod = root / "go.mod"
    return files, rev.stdout.strip() or None, gomod.read_text() if gomod.exists() else ""

# ── Lexing helpers ──────────────────────────────────────────────────
LITERAL = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|`[^`]*`')

def skip_literal(src, i):
    """src[i] opens a string, rune or raw literal; return the index past it."""
    return LITERAL.match(src, i).end()

def strip_comments(src):
    comment_or_literal = re.compile(LITERAL.pattern + r"|(//[^\n]*|/\*.*?\*/)", re.S)
    return comment_or_literal.sub(lambda m: " " if m.group(1) else m.group(0), src)

def split_top(src, seps):
    """Split src at characters in seps lying outside brackets and literals."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(src):
        if src[i] in "\"'`":
            i = skip_literal(src, i); continue
        depth += (src[i] in OPEN) - (src[i] in CLOSE)
        if depth == 0 and src[i] in seps:
            parts.append(src[start:i]); start = i + 1
        i += 1
    return [p.strip() for p in parts + [src[start:]] if p.strip()]

def balanced(src, i):
    """src[i] is an opening bracket; return the index of its partner."""
    depth = 0
    while True:
        if src[i] in "\"'`":
            i = skip_literal(src, i); continue
        depth += (src[i] in OPEN) - (src[i] in CLOSE)
        if depth == 0:
            return i
        i += 1

def go_string(expr):
    """Evaluate a Go string expression made of literals joined with +."""
    parts = split_top(expr, "+")
    if not parts or any(p[0] not in "\"`" for p in parts):
        raise Unrenderable(f"non-literal string {expr[:40]!r}")
    return "".join(p[1:-1] if p[0] == "`" else ast.literal_eval(p) for p in parts)

# ── Declarations ────────────────────────────────────────────────────
def type_decl(src, i):
    """Text of one `Name [=] Type` declaration starting at src[i]."""
    if m := re.compile(r"\w+\s+(=\s*)?struct\s*\{").match(src, i):
        return src[i:balanced(src, m.end() - 1) + 1]
    return src[i:].split("\n", 1)[0]

def collect_decls(sources):
    """Return ({type name: type expr}, [AddTool argument lists])."""
    types, calls = {}, []
    for text in sources.values():
        src = strip_comments(text)
        for m in re.finditer(r"(?m)^\s*type\s*(\(|\w+)", src):
            grouped = m.group(1) == "("
            decls = (split_top(src[m.end(1):balanced(src, m.start(1))], "\n;")
                     if grouped else [type_decl(src, m.start(1))])
            for d in decls:
                name, _, rhs = d.partition(" ")
                types[name] = rhs.strip().lstrip("=").strip()
        for m in re.finditer(r"\bAddTool\s*(?:\[[^\]]*\])?\s*\(", src):
            calls.append(split_top(src[m.end():balanced(src, m.end() - 1)], ","))
    return types, calls

def struct_tag(tag, key):
    """reflect.StructTag.Lookup; None when the key is absent."""
    for m in re.finditer(r'(\w+):"((?:[^"\\]|\\.)*)"', tag):
        if m.group(1) == key:
            return ast.literal_eval('"' + m.group(2) + '"')
    return None

def parse_fields(struct_expr):
    """Yield (go name or None when embedded, type expr, tag) for struct{...}."""
    body = struct_expr[struct_expr.index("{") + 1:struct_expr.rindex("}")]
    for decl in split_top(body, "\n;"):
        tag = ""
        if decl.endswith("`"):
            start = decl.rindex("`", 0, -1)
            decl, tag = decl[:start].strip(), decl[start + 1:-1]
        if re.fullmatch(r"\*?[\w.]+", decl):
            yield None, decl, tag
        elif m := re.fullmatch(r"(\w+(?:\s*,\s*\w+)*)\s+(.+)", decl, re.S):
            for name in re.split(r"\s*,\s*", m.group(1)):
                yield name, m.group(2).strip(), tag
        else:
            raise Unrenderable(f"cannot parse field {decl[:40]!r}")

# ── Schema inference (jsonschema-go v0.4 semantics) ─────────────────
class Inferrer:
    def __init__(self, types):
        self.types = types

    def schema(self, t, seen=()):
        """Schema for type expression t; *T adds "null" to T's type."""
        nullable, t = t.strip().startswith("*"), t.strip().lstrip("*").strip()
        if t in self.types:
            if t in seen:
                raise Unrenderable(f"cycle through {t}")
            seen += (t,)
        s = self.base(t, seen)
        if nullable and isinstance(s.get("type"), str):
            s["type"] = ["null", s["type"]]
        return s

    def base(self, t, seen):
        if t in BASIC:
            return {"type": BASIC[t]}
        if t in BOUNDED:
            lo, hi = BOUNDED[t]
            return {"type": "integer", "minimum": lo} | ({"maximum": hi} if hi is not None else {})
        if t == "any" or re.fullmatch(r"interface\s*\{\s*\}", t):
            return {}  # unrestricted
        if t in EXTERNAL:
            return self.schema(EXTERNAL[t], seen)
        if t.startswith("[]"):  # nil slices marshal as null
            return {"type": ["null", "array"], "items": self.schema(t[2:], seen)}
        if t.startswith("map["):
            close = balanced(t, 3)
            if t[4:close].strip() != "string":
                raise Unrenderable(f"map key {t[4:close]} is not string")
            return {"type": "object", "additionalProperties": self.schema(t[close + 1:], seen)}
        if re.match(r"struct\s*\{", t):
            return self.struct(t, seen)
        if t in self.types:
            return self.schema(self.types[t], seen)
        raise Unrenderable(f"unknown type {t}")

    def visible_fields(self, struct_expr, seen, depth=0):
        """reflect.VisibleFields: each embedded field followed by its promoted
        fields; a shallower name hides deeper ones, equal-depth clashes vanish."""
        out = []
        for name, typ, tag in parse_fields(struct_expr):
            bare = typ.lstrip("*")
            out.append((name or bare.split(".")[-1], typ, tag, depth, name is None))
            target = self.types.get(bare, "")
            if name is None and target.startswith("struct") and bare not in seen:
                out += self.visible_fields(target, seen + (bare,), depth + 1)
        depths = {}
        for f in out:
            depths.setdefault(f[0], []).append(f[3])
        return [f for f in out if f[3] == min(depths[f[0]]) and depths[f[0]].count(f[3]) == 1]

    def struct(self, expr, seen):
        fields = self.visible_fields(expr, seen)
        props, required = ({} if fields else None), []
        for go_name, typ, tag, _, embedded in fields:
            json_tag = struct_tag(tag, "json")
            name, _, opts = (json_tag or "").partition(",")
            if embedded or not go_name[0].isupper() or json_tag == "-":
                continue  # embedded: only its promoted fields count
            fs = self.schema(typ, seen)
            if (desc := struct_tag(tag, "jsonschema")) is not None:
                fs["description"] = desc
            props[name or go_name] = fs
            if not {"omitempty", "omitzero"} & set(opts.split(",")):
                required.append(name or go_name)
        s = {"type": "object"} | ({"properties": props} if props is not None else {})
        return s | ({"required": required} if required else {}) | {"additionalProperties": False}

def finalize(s):
    """Go marshals an empty schema as `true`; apply that to every sub-schema."""
    if isinstance(s, bool) or not s:
        return s if isinstance(s, bool) else True
    out = {k: finalize(v) if k in ("items", "additionalProperties") else v for k, v in s.items()}
    if "properties" in out:
        out["properties"] = {k: finalize(v) for k, v in out["properties"].items()}
    return out

# ── Tools ───────────────────────────────────────────────────────────
def handler_input_type(handler):
    """Type of the last parameter of a func-literal handler."""
    if not handler.startswith("func"):
        raise Unrenderable(f"handler {handler[:40]!r} is not a func literal")
    open_ = handler.index("(")
    last = split_top(handler[open_ + 1:balanced(handler, open_)], ",")[-1]
    return last.split(None, 1)[1] if re.match(r"\w+\s", last) else last

def render_tool(args, inferrer):
    tool_lit, handler = args[-2], args[-1]
    if not tool_lit.startswith("&") or "{" not in tool_lit:
        raise Unrenderable("tool is not an inline &Tool{...} literal")
    fields = dict((k.strip(), v.strip()) for k, _, v in
                  (kv.partition(":") for kv in split_top(tool_lit[tool_lit.index("{") + 1:-1], ",")))
    if extra := set(fields) - {"Name", "Description"}:
        raise Unrenderable(f"sets {sorted(extra)} (not modelled)")
    name = go_string(fields["Name"])
    desc = go_string(fields["Description"]) if "Description" in fields else ""
    schema = inferrer.schema(handler_input_type(handler))
    if schema.get("type") != "object":
        raise Unrenderable("input schema is not an object")
    return name, desc, finalize(schema)

def go_json(obj, escape_html):
    """Compact JSON as Go's encoding/json writes it (raw UTF-8, U+2028/9 escaped)."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    s = s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    if escape_html:
        s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return s

def tool_json(name, desc, schema):
    # The SDK's JSON-RPC encoder turns HTML escaping off, but jsonschema-go's
    # Schema.MarshalJSON calls json.Marshal, so escapes survive in schemas.
    head = '{"name":' + go_json(name, False)
    if desc:  # Tool.Description is omitempty
        head += ',"description":' + go_json(desc, False)
    return head + ',"inputSchema":' + go_json(schema, True) + "}"

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkout", nargs="?", help="Go certctl checkout directory")
    ap.add_argument("--git-dir", help="bare git mirror; HEAD is read via git show")
    ap.add_argument("--dump", help="also write the rendered tools/list JSON to this file")
    args = ap.parse_args()
    if not (args.checkout or args.git_dir):
        ap.error("give a checkout path or --git-dir")
    sources, commit, gomod = read_sources(args)
    types, calls = collect_decls(sources)
    inferrer, tools, failed = Inferrer(types), [], []
    for call in calls:
        try:
            tools.append(render_tool(call, inferrer))
        except (Unrenderable, IndexError, KeyError, ValueError, SyntaxError) as e:
            label = re.search(r'Name:\s*"([^"]*)"', " ".join(call))
            failed.append((label.group(1) if label else "?", str(e) or type(e).__name__))
    body = '{"tools":[' + ",".join(tool_json(*t) for t in tools) + "]}"
    size = len(body.encode("utf-8"))
    versions = re.findall(r"(modelcontextprotocol/go-sdk|google/jsonschema-go) (v\S+)", gomod)
    print(f"commit: {commit or 'unknown'}\n"
          f"go.mod: {', '.join(f'{m} {v}' for m, v in versions) or 'n/a'}\n"
          f"source files: {len(sources)} in {PKG} (tests excluded)\n"
          f"tools found: {len(calls)}\ntools rendered: {len(tools)}")
    for name, why in failed:
        print(f"  not rendered: {name}: {why}")
    print(f"tools/list bytes (compact JSON): {size}  (~{size // 4} tokens at 4 bytes/token)")
    if args.dump:
        Path(args.dump).write_text(body, encoding="utf-8")
    return 0 if tools else 1

if __name__ == "__main__":
    sys.exit(main())
