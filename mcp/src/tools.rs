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
            Risk::Destructive => " Needs approval: certctl asks you to confirm (or returns status approval_required with an approval_id).",
            _ => " May need approval under the installation's policy or the certificate's profile (status approval_required).",
        });
    }
    Tool::new_with_raw(
        meta.name,
        Some(description.into()),
        Arc::new(object(inline(op.input_schema()))),
    )
    .with_title(meta.title)
    .with_raw_output_schema(Arc::new(object(outcome_schema(op.output_schema()))))
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

/// Drops the `$schema` and `title` keys schemars puts at the root; MCP
/// clients want a plain object schema.
fn inline(mut schema: Value) -> Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        if !obj.contains_key("type") {
            obj.insert("type".into(), "object".into());
        }
    }
    schema
}

/// The structured content of a call: `{"status":"completed","result":...}`
/// or `{"status":"approval_required", ...}` (nothing ran yet), or
/// `{"status":"declined"|"cancelled", ...}` after a confirmation in chat.
fn outcome_schema(result: Value) -> Value {
    let mut result = inline(result);
    // Definitions referenced by the result move to the root so `$ref`s resolve.
    let defs = result
        .as_object_mut()
        .and_then(|o| o.remove("$defs"))
        .unwrap_or_else(|| json!({}));
    json!({
        "type": "object",
        "$defs": defs,
        "properties": {
            "status": {
                "type": "string",
                "enum": ["completed", "approval_required", "declined", "cancelled"],
                "description": "completed: the operation ran and `result` holds its output. approval_required: it waits for a human decision and nothing changed yet. declined/cancelled: the human said no in chat; nothing changed."
            },
            "result": result,
            "approval_id": { "type": "string", "description": "The pending approval (`ap-...`); poll it with get_approval." },
            "operation": { "type": "string" },
            "summary": { "type": "string", "description": "What will happen if it is approved." },
            "expires_at": { "type": "integer", "description": "Unix time after which the approval can no longer run." },
            "in_chat_confirmation_allowed": { "type": "boolean" },
            "how_to_decide": { "type": "string", "description": "Who may decide and with which command." },
            "message": { "type": "string" }
        },
        "required": ["status"]
    })
}
