//! Tools generated from the engine's catalogue: same names, titles and
//! descriptions, input schemas from the typed inputs, an output schema that
//! covers every status a call can end in, and annotations from the risk class.

use std::sync::Arc;

use certctl_engine::domain::{Principal, Role};
use certctl_engine::ops::{self, DynOperation, Risk};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// Whether the principal's role may call the operation at all (tools it may
/// not call are not listed).
pub fn visible_to(principal: &Principal, op: &dyn DynOperation) -> bool {
    // Agents reach their own endpoints over REST, not the MCP catalogue.
    principal.role != Role::Agent && principal.role.allows(op.meta().permission)
}

/// The MCP tool for one operation.
pub fn tool_for(op: &dyn DynOperation) -> Tool {
    let meta = op.meta();
    let annotations = ToolAnnotations::with_title(meta.title)
        .read_only(meta.risk == Risk::Read)
        .destructive(meta.risk == Risk::Destructive)
        .idempotent(meta.idempotent)
        .open_world(meta.open_world);
    let mut description = meta.description.to_owned();
    if meta.gateable {
        description.push_str(match meta.risk {
            Risk::Destructive => " Needs a human's approval (asked in chat when possible).",
            _ => " May need approval.",
        });
    }
    Tool::new_with_raw(
        meta.name,
        Some(description.into()),
        Arc::new(object(inline(op.input_schema()))),
    )
    .with_title(meta.title)
    .with_raw_output_schema(Arc::new(object(outcome_schema(
        op.output_schema(),
        meta.gateable,
    ))))
    .with_annotations(annotations)
}

/// Every tool the principal may call, in catalogue order.
pub fn tools_for(principal: &Principal) -> Vec<Tool> {
    ops::catalogue()
        .iter()
        .map(|o| o.as_ref())
        .filter(|o| visible_to(principal, *o))
        .map(tool_for)
        .collect()
}

fn object(v: Value) -> JsonObject {
    match v {
        Value::Object(m) => m,
        _ => JsonObject::new(),
    }
}

/// Drops what only adds bytes for a model: the root `$schema` and `title`,
/// integer `format`s and `default: null`. MCP clients want a plain object
/// schema.
fn inline(mut schema: Value) -> Value {
    strip(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        if !obj.contains_key("type") {
            obj.insert("type".into(), "object".into());
        }
    }
    schema
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("int") || f.starts_with("uint"))
            {
                m.remove("format");
            }
            if m.get("default") == Some(&Value::Null) {
                m.remove("default");
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// The result's schema to one level: its field names and types, nested
/// objects as plain `object`s. The full nested schemas
/// made `tools/list` 186 KB (about 46,000 tokens, three quarters of it output
/// schemas); a model needs the field names, and the input schemas stay exact.
fn shallow(schema: &Value) -> Value {
    let defs = schema.get("$defs").cloned().unwrap_or(Value::Null);
    let resolve = |v: &Value| -> Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix("#/$defs/")
                .and_then(|name| defs.get(name))
                .cloned()
                .unwrap_or_else(|| json!({})),
            None => v.clone(),
        }
    };
    let root = resolve(schema);
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return json!({ "type": "object" });
    };
    let mut out = serde_json::Map::new();
    for (name, prop) in props {
        let p = resolve(prop);
        let mut field = serde_json::Map::new();
        // Only what the schema states: a field without a `type` (any JSON
        // value, `Option<struct>` as `anyOf`, enums as `oneOf`) stays open.
        let ty = match (p.get("type"), p.get("enum")) {
            (Some(t), _) => t.clone(),
            (None, Some(_)) => json!("string"),
            _ => Value::Null,
        };
        if !ty.is_null() {
            field.insert("type".into(), ty);
        }
        out.insert(name.clone(), Value::Object(field));
    }
    json!({ "type": "object", "properties": out })
}

/// The structured content of a call: `{"status":"completed","result":...}`;
/// for gated tools also `{"status":"approval_required","approval_id":...}`
/// (nothing ran yet) or `declined`/`cancelled` after a confirmation in
/// chat. The statuses are explained once, in the server instructions, rather
/// than in 61 schemas.
fn outcome_schema(result: Value, gateable: bool) -> Value {
    let result = shallow(&result);
    if !gateable {
        return json!({
            "type": "object",
            "properties": { "status": { "const": "completed" }, "result": result },
            "required": ["status", "result"]
        });
    }
    json!({
        "type": "object",
        "properties": {
            "status": { "enum": ["completed", "approval_required", "declined", "cancelled"] },
            "result": result,
            "approval_id": { "type": "string" }
        },
        "required": ["status"]
    })
}
