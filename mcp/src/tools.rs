//! Tools generated from the engine's catalogue: same names, titles and
//! descriptions, input schemas from the typed inputs, an output schema that
//! covers every status a call can end in, and annotations from the risk class.

use std::sync::Arc;

use certctl_engine::domain::{Permission, Principal, Role};
use certctl_engine::ops::{self, DynOperation, Risk};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

/// Whether the operation is an MCP tool at all. The agent protocol
/// (heartbeats, work polls, CSRs, job reports, deployment verifications,
/// discovery reports: the `agent_self` operations) is not: agents speak it
/// over REST with their own key, MCP refuses agent principals, and the only
/// other role it admits, admin, would be reporting in an agent's name what
/// that agent never saw. Listing those seven tools cost every assistant
/// about 4 KB of context for calls it must not make.
pub fn is_tool(op: &dyn DynOperation) -> bool {
    op.meta().permission != Permission::AgentSelf
}

/// Whether the principal's role may call the tool at all (tools it may not
/// call are not listed).
pub fn visible_to(principal: &Principal, op: &dyn DynOperation) -> bool {
    // Agents reach their own endpoints over REST, not the MCP catalogue.
    is_tool(op) && principal.role != Role::Agent && principal.role.allows(op.meta().permission)
}

/// The MCP tool for one operation.
pub fn tool_for(op: &dyn DynOperation) -> Tool {
    let meta = op.meta();
    // The title is on the tool itself; repeating it in the annotations only
    // adds bytes. All four hints stay explicit because two of the protocol's
    // defaults (destructive, open world) are the unsafe reading.
    let annotations = ToolAnnotations::new()
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
    .with_raw_output_schema(Arc::new(object(outcome_schema(meta.gateable))))
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

/// Drops what only adds bytes for a model: the root `$schema`, `title` and
/// `additionalProperties` (the engine refuses unknown fields with a message
/// that names them), integer `format`s, non-scalar defaults (`null`, `[]`,
/// objects of nulls), the `null` half of optional fields (leaving a field out
/// is how a model says "none"), a shared definition's description where
/// every use describes itself, one object per described enum variant, the
/// `$defs`/`$ref` indirection of a definition used once, and offset paging
/// where a cursor pages. MCP clients want a plain object schema.
fn inline(mut schema: Value) -> Value {
    strip(&mut schema);
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
        obj.remove("additionalProperties");
        if !obj.contains_key("type") {
            obj.insert("type".into(), "object".into());
        }
    }
    drop_described_def_descriptions(&mut schema);
    walk_objects(&mut schema, &mut flatten_const_choices);
    inline_single_use_defs(&mut schema);
    cursor_paging_only(&mut schema);
    schema
}

/// Lists page by cursor here: page numbers over an inventory that changes
/// between calls skip or repeat rows (the engine still takes `page` from a
/// client that sends it). The conventions every list shares (the cursor, a
/// free-form `sort`, the creation-time bounds) are explained once, in the
/// server instructions, not on ten tools; a `sort` with its own values
/// keeps its description. Runs after inlining, so an enum is visible as one.
fn cursor_paging_only(schema: &mut Value) {
    let Some(Value::Object(props)) = schema.get_mut("properties") else {
        return;
    };
    if !props.contains_key("cursor") {
        return;
    }
    props.remove("page");
    for name in ["cursor", "sort", "created_after", "created_before"] {
        if let Some(Value::Object(field)) = props.get_mut(name)
            && !field.contains_key("enum")
        {
            field.remove("description");
        }
    }
}

/// Calls `f` on every object in the tree, parents before children.
fn walk_objects(v: &mut Value, f: &mut impl FnMut(&mut serde_json::Map<String, Value>)) {
    match v {
        Value::Object(m) => {
            f(m);
            m.values_mut().for_each(|v| walk_objects(v, f));
        }
        Value::Array(a) => a.iter_mut().for_each(|v| walk_objects(v, f)),
        _ => {}
    }
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
            // `null`, `[]` and objects of nulls say nothing a model needs;
            // scalar defaults (`"agent"`, `false`, `50`) stay.
            if m.get("default")
                .is_some_and(|d| d.is_null() || d.is_array() || d.is_object())
            {
                m.remove("default");
            }
            let required: Vec<String> = m
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(Value::Object(props)) = m.get_mut("properties") {
                for (name, prop) in props.iter_mut() {
                    if !required.contains(name) {
                        drop_null_alternative(prop);
                    }
                }
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// A `oneOf` of string constants (how schemars writes an enum whose
/// variants have doc comments) becomes one `enum`; the variants'
/// descriptions become the schema's description as "`a`: ...; `b`: ...".
/// Each variant otherwise costs a whole object.
fn flatten_const_choices(m: &mut serde_json::Map<String, Value>) {
    let Some(Value::Array(choices)) = m.get("oneOf") else {
        return;
    };
    let mut values = Vec::new();
    let mut notes = Vec::new();
    for c in choices {
        if c.get("type") != Some(&json!("string")) {
            return;
        }
        match (c.get("const"), c.get("enum")) {
            (Some(v), None) => {
                if let Some(d) = c.get("description").and_then(Value::as_str) {
                    let d = d.trim_end_matches('.');
                    notes.push(format!("`{}`: {d}", v.as_str().unwrap_or_default()));
                }
                values.push(v.clone());
            }
            (None, Some(Value::Array(vs))) => values.extend(vs.iter().cloned()),
            _ => return,
        }
    }
    m.remove("oneOf");
    m.insert("type".into(), "string".into());
    m.insert("enum".into(), Value::Array(values));
    if !notes.is_empty() {
        // The values' meanings replace the type's own doc comment, which
        // speaks to Rust readers; the field's description comes first.
        m.insert(
            "description".into(),
            format!("{}.", notes.join("; ")).into(),
        );
    }
}

/// `"type": ["string", "null"]` becomes `"type": "string"`, and
/// `"anyOf": [X, {"type": "null"}]` becomes X.
fn drop_null_alternative(prop: &mut Value) {
    let Some(m) = prop.as_object_mut() else {
        return;
    };
    let null = json!({ "type": "null" });
    if let Some(Value::Array(types)) = m.get("type")
        && types.len() == 2
        && types.contains(&json!("null"))
    {
        let other = types.iter().find(|t| *t != "null").cloned();
        if let Some(other) = other {
            m.insert("type".into(), other);
        }
    }
    if let Some(Value::Array(any)) = m.get("anyOf")
        && any.len() == 2
        && any.contains(&null)
        && let Some(Value::Object(other)) = any.iter().find(|v| **v != null).cloned()
    {
        m.remove("anyOf");
        for (k, v) in other {
            m.entry(k).or_insert(v);
        }
    }
}

/// Removes the description of each `$defs` entry whose every `$ref` sits
/// next to a description of its own (enum descriptions otherwise appear
/// twice).
fn drop_described_def_descriptions(schema: &mut Value) {
    fn refs(v: &Value, out: &mut Vec<(String, bool)>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str)
                    && let Some(name) = r.strip_prefix("#/$defs/")
                {
                    out.push((name.to_owned(), m.contains_key("description")));
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut uses = Vec::new();
    refs(schema, &mut uses);
    let Some(Value::Object(defs)) = schema.get_mut("$defs") else {
        return;
    };
    for (name, def) in defs.iter_mut() {
        let mut of_this = uses.iter().filter(|(n, _)| n == name).peekable();
        if of_this.peek().is_some()
            && of_this.all(|(_, described)| *described)
            && let Some(def) = def.as_object_mut()
        {
            def.remove("description");
        }
    }
}

/// Puts each definition that is referenced once in place of its `$ref`
/// (the field's own keys, such as its default, win; two descriptions are
/// joined) and drops `$defs` when nothing is left in it. A definition used
/// twice stays shared. Repeats until no single-use definition is left, since
/// inlining one can leave another with a single reference.
fn inline_single_use_defs(schema: &mut Value) {
    fn count(v: &Value, name: &str) -> usize {
        match v {
            Value::Object(m) => {
                let here = usize::from(m.get("$ref").and_then(Value::as_str) == Some(name));
                here + m.values().map(|v| count(v, name)).sum::<usize>()
            }
            Value::Array(a) => a.iter().map(|v| count(v, name)).sum(),
            _ => 0,
        }
    }
    fn replace(v: &mut Value, reference: &str, def: &serde_json::Map<String, Value>) {
        match v {
            Value::Object(m) => {
                if m.get("$ref").and_then(Value::as_str) == Some(reference) {
                    m.remove("$ref");
                    for (k, v) in def {
                        match (m.get_mut(k), k.as_str()) {
                            // Both say something: the field's words first,
                            // then the definition's (its values' meanings).
                            (Some(Value::String(own)), "description") => {
                                if let Some(more) = v.as_str() {
                                    own.push(' ');
                                    own.push_str(more);
                                }
                            }
                            (Some(_), _) => {}
                            (None, _) => {
                                m.insert(k.clone(), v.clone());
                            }
                        }
                    }
                }
                m.values_mut().for_each(|v| replace(v, reference, def));
            }
            Value::Array(a) => a.iter_mut().for_each(|v| replace(v, reference, def)),
            _ => {}
        }
    }
    loop {
        let Some(Value::Object(defs)) = schema.get("$defs") else {
            return;
        };
        let single = defs.iter().find_map(|(name, def)| {
            let reference = format!("#/$defs/{name}");
            // A definition that refers to itself cannot be put in place.
            (count(schema, &reference) == 1 && count(def, &reference) == 0)
                .then(|| (name.clone(), reference, def.clone()))
        });
        let Some((name, reference, Value::Object(def))) = single else {
            return;
        };
        if let Some(Value::Object(defs)) = schema.get_mut("$defs") {
            defs.remove(&name);
            if defs.is_empty() {
                schema.as_object_mut().map(|m| m.remove("$defs"));
            }
        }
        replace(schema, &reference, &def);
    }
}

/// The structured content of a call: `{"status":"completed","result":...}`;
/// for gated tools also `{"status":"approval_required","approval_id":...}`
/// (nothing ran yet) or `declined`/`cancelled` after a confirmation in
/// chat. The statuses are explained once, in the server instructions, rather
/// than in 61 schemas.
///
/// `result` is declared as an object without its fields. The full nested
/// schemas made `tools/list` 186 KB (about 46,000 tokens); one level of
/// field names still cost 13 KB across the catalogue, and clients show a
/// model the input schema and the result itself, not the output schema. The
/// envelope is what a client needs to validate and what a model must know:
/// a call may end in `approval_required`. No `required` list: every result
/// carries `status` (the instructions say so), and 116 copies of it cost 3 KB.
fn outcome_schema(gateable: bool) -> Value {
    let result = json!({ "type": "object" });
    if !gateable {
        return json!({
            "type": "object",
            "properties": { "status": { "const": "completed" }, "result": result }
        });
    }
    json!({
        "type": "object",
        "properties": {
            "status": { "enum": ["completed", "approval_required", "declined", "cancelled"] },
            "result": result,
            "approval_id": { "type": "string" }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_used_once_is_written_in_place_and_a_shared_one_stays() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "kind": { "$ref": "#/$defs/Kind", "description": "Fixed once created." },
                "from": { "$ref": "#/$defs/Zone" },
                "to": { "$ref": "#/$defs/Zone" }
            },
            "$defs": {
                "Kind": { "type": "string", "enum": ["a", "b"], "description": "`a`: first; `b`: second." },
                "Zone": { "type": "string", "enum": ["x", "y"] }
            }
        });
        inline_single_use_defs(&mut schema);
        assert_eq!(
            schema["properties"]["kind"],
            json!({
                "type": "string",
                "enum": ["a", "b"],
                "description": "Fixed once created. `a`: first; `b`: second."
            })
        );
        assert_eq!(
            schema["properties"]["to"],
            json!({ "$ref": "#/$defs/Zone" })
        );
        assert_eq!(schema["$defs"].as_object().map(|d| d.len()), Some(1));
    }

    #[test]
    fn lists_show_cursor_paging_and_keep_a_sort_with_values() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "page": { "type": "integer", "description": "1-based page." },
                "cursor": { "type": "string", "description": "next_cursor." },
                "created_after": { "type": "integer", "description": "Unix time." },
                "sort": { "type": "string", "enum": ["a", "-a"], "description": "Default `a`." },
                "status": { "type": "string", "description": "Only this status." }
            }
        });
        cursor_paging_only(&mut schema);
        let props = &schema["properties"];
        assert!(props.get("page").is_none());
        assert!(props["cursor"].get("description").is_none());
        assert!(props["created_after"].get("description").is_none());
        assert_eq!(props["sort"]["description"], "Default `a`.");
        assert_eq!(props["status"]["description"], "Only this status.");
    }
}
