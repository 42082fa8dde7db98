//! Query strings into operation inputs. Query values are text; the
//! operation's input schema says which fields are integers, booleans or
//! lists, so one conversion serves every list and read route. Unknown
//! parameters are refused (422), like unknown JSON fields.

use std::collections::HashMap;
use std::sync::OnceLock;

use certctl_engine::ops::{self, DynOperation};
use serde_json::{Map, Value};

use crate::problem::{ApiError, invalid_request};

/// How a query parameter's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Integer,
    Number,
    Boolean,
    /// Comma-separated list of text.
    List,
}

/// The query shape of one operation's input.
#[derive(Debug, Default)]
pub struct Shape {
    pub fields: HashMap<String, Kind>,
    /// The operation does sparse fieldsets itself (`fields` is an input).
    pub engine_fields: bool,
}

fn kind_of(schema: &Value) -> Kind {
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if types.contains(&"integer") {
        Kind::Integer
    } else if types.contains(&"number") {
        Kind::Number
    } else if types.contains(&"boolean") {
        Kind::Boolean
    } else if types.contains(&"array") {
        Kind::List
    } else {
        Kind::Text
    }
}

/// The shapes of every operation, computed once from their schemas.
pub fn shape(op: &dyn DynOperation) -> &'static Shape {
    static SHAPES: OnceLock<HashMap<&'static str, Shape>> = OnceLock::new();
    let all = SHAPES.get_or_init(|| {
        ops::catalogue()
            .iter()
            .map(|op| {
                let schema = op.input_schema();
                let fields: HashMap<String, Kind> = schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .map(|props| props.iter().map(|(k, v)| (k.clone(), kind_of(v))).collect())
                    .unwrap_or_default();
                let engine_fields = fields.contains_key("fields");
                (
                    op.meta().name,
                    Shape {
                        fields,
                        engine_fields,
                    },
                )
            })
            .collect()
    });
    static EMPTY: OnceLock<Shape> = OnceLock::new();
    all.get(op.meta().name)
        .unwrap_or_else(|| EMPTY.get_or_init(Shape::default))
}

/// The sparse fieldset the face applies itself, when the operation has none.
pub type FaceFields = Option<Vec<String>>;

/// Parses a raw query string into an input object, and the sparse fieldset
/// the face applies when the operation does not.
pub fn to_input(shape: &Shape, raw: &str) -> Result<(Map<String, Value>, FaceFields), ApiError> {
    let mut input = Map::new();
    let mut face_fields = None;
    for (k, v) in form_urlencoded_pairs(raw)? {
        if k == "fields" && !shape.engine_fields {
            face_fields = Some(split_list(&v));
            continue;
        }
        let Some(kind) = shape.fields.get(&k) else {
            return Err(invalid_request(format!("unknown query parameter '{k}'")).into());
        };
        if input.contains_key(&k) {
            return Err(invalid_request(format!("query parameter '{k}' is given twice")).into());
        }
        let value = match kind {
            Kind::Text => Value::String(v),
            Kind::Integer => v.parse::<i64>().map(Value::from).map_err(|_| {
                invalid_request(format!("query parameter '{k}' must be an integer"))
            })?,
            Kind::Number => v
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| {
                    invalid_request(format!("query parameter '{k}' must be a number"))
                })?,
            Kind::Boolean => match v.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => {
                    return Err(invalid_request(format!(
                        "query parameter '{k}' must be true or false"
                    ))
                    .into());
                }
            },
            Kind::List => Value::Array(split_list(&v).into_iter().map(Value::String).collect()),
        };
        input.insert(k, value);
    }
    Ok((input, face_fields))
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Percent-decodes `a=1&b=x%20y` (with `+` as space).
fn form_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid_request("the query string has a bad percent escape"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid_request("the query string is not UTF-8").into())
}

/// Keeps only `fields` (and `id`) of each item of a list result's `data`.
pub fn retain_fields(result: &mut Value, fields: &[String]) {
    if let Some(Value::Array(items)) = result.get_mut("data") {
        for item in items {
            if let Value::Object(m) = item {
                m.retain(|k, _| k == "id" || fields.iter().any(|f| f == k));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(op: &str, qs: &str) -> Result<Map<String, Value>, String> {
        let op = ops::find(op).expect("op");
        to_input(shape(op), qs)
            .map(|(m, _)| m)
            .map_err(|e| format!("{e:?}"))
    }

    #[test]
    fn query_values_take_the_schema_types() {
        let i = parse(
            "list_certificates",
            "status=expiring&owner_id=own-1&sort=-not_after&per_page=10&fields=id,%20common_name,&expires_before=100&include_archived=true",
        )
        .unwrap();
        assert_eq!(i["status"], "expiring");
        assert_eq!(i["per_page"], 10);
        assert_eq!(i["expires_before"], 100);
        assert_eq!(i["include_archived"], true);
        assert_eq!(i["fields"], serde_json::json!(["id", "common_name"]));
        assert_eq!(i["sort"], "-not_after");
    }

    #[test]
    fn bad_queries_are_refused() {
        assert!(parse("list_certificates", "per_page=ten").is_err());
        assert!(parse("list_certificates", "colour=blue").is_err());
        assert!(parse("list_certificates", "per_page=1&per_page=2").is_err());
        assert!(parse("list_certificates", "include_archived=maybe").is_err());
        assert!(parse("list_certificates", "x=%zz").is_err());
    }

    #[test]
    fn the_face_applies_fields_where_the_engine_does_not() {
        let op = ops::find("list_agents").expect("op");
        let (_, f) = to_input(shape(op), "fields=name,status&page=2").unwrap();
        assert_eq!(f, Some(vec!["name".to_owned(), "status".to_owned()]));
        let mut v = serde_json::json!({"data": [{"id": "a", "name": "n", "hostname": "h"}]});
        retain_fields(&mut v, f.as_deref().unwrap());
        assert_eq!(v, serde_json::json!({"data": [{"id": "a", "name": "n"}]}));
    }
}
