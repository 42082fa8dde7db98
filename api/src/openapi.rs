//! The OpenAPI 3.1 document, generated from code: utoipa builds the
//! document (paths, operations, parameters, responses, security) from the
//! route table, and the schemas are the engine's own (schemars, JSON Schema
//! 2020-12, which OpenAPI 3.1 uses as is), hoisted into
//! `components/schemas`. Nothing is written by hand twice: a route's
//! parameters, body and result come from its operation's input and output.
//!
//! Served at `/api/v1/openapi.json`; committed as `docs/openapi.json`
//! (a test fails when they differ; `UPDATE_SNAPSHOTS=1` rewrites it).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::Json;
use certctl_engine::ops::{self, DynOperation};
use serde_json::{Map, Value, json};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem, PathsBuilder,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApiBuilder, Ref, Required,
};

use crate::query::{self, Kind};
use crate::routes::{Route, Source, Verb, routes};

const SCHEMAS: &str = "#/components/schemas/";

/// Parameter names and their raw JSON Schemas, set after serialization.
type RawParams = Vec<(String, Value)>;

/// `GET /api/v1/openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document().clone())
}

/// The document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn pascal(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Rewrites `#/$defs/X` references to components.
fn rewrite_refs(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get_mut("$ref")
                && let Some(name) = r.strip_prefix("#/$defs/")
            {
                *r = format!("{SCHEMAS}{name}");
            }
            m.values_mut().for_each(rewrite_refs);
        }
        Value::Array(a) => a.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Collects the schemas of the document as it is built.
#[derive(Default)]
struct Schemas(BTreeMap<String, Value>);

impl Schemas {
    /// Adds a root schema under `name` (its `$defs` become components too)
    /// and returns the reference.
    fn root(&mut self, name: &str, mut schema: Value) -> String {
        if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|m| m.remove("$defs")) {
            for (k, mut d) in defs {
                rewrite_refs(&mut d);
                self.0.entry(k).or_insert(d);
            }
        }
        if let Some(m) = schema.as_object_mut() {
            m.remove("$schema");
            m.insert("title".into(), name.into());
        }
        rewrite_refs(&mut schema);
        self.0.insert(name.to_owned(), schema);
        format!("{SCHEMAS}{name}")
    }

    fn get(&self, reference: &str) -> Option<&Value> {
        self.0.get(reference.strip_prefix(SCHEMAS)?)
    }
}

/// A query parameter's schema: no `null` (absent is how a query says none),
/// and lists as comma-separated text.
fn param_schema(prop: &Value, kind: Kind) -> Value {
    if kind == Kind::List {
        return json!({ "type": "string", "description": "comma-separated list" });
    }
    let mut p = prop.clone();
    if let Some(m) = p.as_object_mut() {
        if let Some(Value::Array(types)) = m.get("type").cloned() {
            let t: Vec<Value> = types.into_iter().filter(|t| t != "null").collect();
            m.insert(
                "type".into(),
                if t.len() == 1 {
                    t[0].clone()
                } else {
                    Value::Array(t)
                },
            );
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(alts)) = m.get(key).cloned() {
                let rest: Vec<Value> = alts
                    .into_iter()
                    .filter(|a| a.get("type") != Some(&json!("null")))
                    .collect();
                if rest.len() == 1 {
                    m.remove(key);
                    if let Some(Value::Object(inner)) = rest.into_iter().next() {
                        m.extend(inner);
                    }
                } else {
                    m.insert(key.into(), Value::Array(rest));
                }
            }
        }
        m.remove("default");
    }
    rewrite_refs(&mut p);
    p
}

fn method(v: Verb) -> HttpMethod {
    match v {
        Verb::Get => HttpMethod::Get,
        Verb::Post => HttpMethod::Post,
        Verb::Put => HttpMethod::Put,
        Verb::Delete => HttpMethod::Delete,
    }
}

fn json_content(reference: &str) -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::new(reference)))
        .build()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            json_content(&format!("{SCHEMAS}Problem")),
        )
        .build()
}

/// The errors every authenticated route can answer with.
fn error_responses(mut b: OperationBuilder, issues: bool) -> OperationBuilder {
    let mut list = vec![
        ("401", "Authentication required"),
        (
            "403",
            "The caller's role (or agent binding) does not allow it",
        ),
        ("404", "No such resource"),
        ("409", "Conflicts with the current state"),
        ("413", "Body larger than the limit"),
        ("422", "Invalid input or a policy refused it"),
        ("429", "Rate limited; see Retry-After"),
    ];
    if issues {
        list.push(("502", "The issuer rejected the request"));
    }
    for (code, d) in list {
        let mut r = problem_response(d);
        if code == "429" {
            r.headers.insert(
                "Retry-After".into(),
                utoipa::openapi::RefOr::T(
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(Some(
                            utoipa::openapi::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::Type::Integer),
                        ))
                        .description(Some("seconds to wait"))
                        .build(),
                ),
            );
        }
        b = b.response(code, r);
    }
    b
}

/// Fields a list's items have, for the sparse-fieldset response schema.
fn sparse_items(schemas: &mut Schemas, output_ref: &str) -> Option<String> {
    let out = schemas.get(output_ref)?.clone();
    let item_ref = out
        .pointer("/properties/data/items/$ref")?
        .as_str()?
        .to_owned();
    let mut item = schemas.get(&item_ref)?.clone();
    let name = format!(
        "Sparse{}",
        item_ref.strip_prefix(SCHEMAS)?.replace("_for_", "")
    );
    if let Some(m) = item.as_object_mut() {
        m.remove("required");
        m.insert(
            "description".into(),
            "An item of the list; with `fields`, only those fields (and `id`) are present.".into(),
        );
    }
    let mut page = out;
    page["properties"]["data"]["items"] = json!({ "$ref": format!("{SCHEMAS}{name}") });
    schemas.0.insert(name, item);
    let page_name = format!("{}Page", output_ref.strip_prefix(SCHEMAS)?);
    page["title"] = page_name.clone().into();
    schemas.0.insert(page_name.clone(), page);
    Some(format!("{SCHEMAS}{page_name}"))
}

/// A unique operationId per route: the operation's name, with the fixed
/// kind or view for routes that set one (`get_object_owner`), and `_update`
/// for the `PUT` of a `save_` operation whose `POST` creates.
fn operation_id(route: &Route, name: &str) -> String {
    match route.fixed {
        Some((_, value)) => format!("{name}_{value}"),
        None if route.method == crate::routes::Verb::Put && name.starts_with("save_") => {
            format!("{name}_update")
        }
        None => name.to_owned(),
    }
}

fn operation_for(
    route: &Route,
    op: &dyn DynOperation,
    schemas: &mut Schemas,
) -> (OperationBuilder, RawParams) {
    let m = op.meta();
    let p = pascal(m.name);
    let input_ref = schemas.root(&format!("{p}Input"), op.input_schema());
    // A route that fixes an operation's `kind` (or `view`) answers with that
    // kind's own schema.
    let fixed = route.fixed.map(|(field, _)| field);
    let mut output_ref = match route
        .fixed
        .and_then(|(_, value)| ops::fixed_output_schema(m.name, value).map(|s| (value, s)))
    {
        Some((value, schema)) => schemas.root(&format!("{p}{}Output", pascal(value)), schema),
        None => schemas.root(&format!("{p}Output"), op.output_schema()),
    };
    let mut b = OperationBuilder::new()
        .operation_id(Some(operation_id(route, m.name)))
        .summary(Some(match route.fixed {
            Some((_, value)) => format!("{} ({})", m.title, value.replace('_', " ")),
            None => m.title.to_owned(),
        }))
        .description(Some(format!(
            "{} (operation `{}`, risk `{}`, permission `{:?}`)",
            m.description,
            m.name,
            m.risk.as_str(),
            m.permission
        )))
        .tag(route.tag)
        .security(SecurityRequirement::new("bearer", Vec::<String>::new()));
    let mut raw_params = Vec::new();
    if route.path.contains("{id}") {
        b = b.parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("The resource id")),
        );
        raw_params.push(("id".to_owned(), json!({ "type": "string", "minLength": 1 })));
    }
    let input = schemas.get(&input_ref).cloned().unwrap_or_default();
    let shape = query::shape(op);
    match route.source {
        Source::Query => {
            let props = input
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let required: Vec<&str> = input
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for (name, prop) in &props {
                if Some(name.as_str()) == route.id_field || Some(name.as_str()) == fixed {
                    continue;
                }
                let kind = shape.fields.get(name).copied().unwrap_or(Kind::Text);
                b = b.parameter(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Query)
                        .required(if required.contains(&name.as_str()) {
                            Required::True
                        } else {
                            Required::False
                        })
                        .description(prop.get("description").and_then(Value::as_str)),
                );
                raw_params.push((name.clone(), param_schema(prop, kind)));
            }
            let is_list = input.pointer("/properties/per_page").is_some();
            if is_list && !shape.engine_fields {
                b = b.parameter(
                    ParameterBuilder::new()
                        .name("fields")
                        .parameter_in(ParameterIn::Query)
                        .required(Required::False)
                        .description(Some(
                            "Sparse fieldset: only these fields of each item (and `id`)",
                        )),
                );
                raw_params.push((
                    "fields".into(),
                    json!({ "type": "string", "description": "comma-separated list" }),
                ));
                if let Some(r) = sparse_items(schemas, &output_ref) {
                    output_ref = r;
                }
            }
        }
        Source::Body => {
            let body_ref = match route.id_field {
                Some(id) => {
                    let mut body = input.clone();
                    let set_by_route = [Some(id), fixed];
                    if let Some(m) = body.as_object_mut() {
                        if let Some(Value::Object(props)) = m.get_mut("properties") {
                            props.retain(|k, _| !set_by_route.contains(&Some(k.as_str())));
                        }
                        if let Some(Value::Array(req)) = m.get_mut("required") {
                            req.retain(|r| !set_by_route.contains(&r.as_str()));
                        }
                        m.insert("title".into(), format!("{p}Body").into());
                    }
                    schemas.0.insert(format!("{p}Body"), body);
                    format!("{SCHEMAS}{p}Body")
                }
                None => input_ref.clone(),
            };
            b = b.request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", json_content(&body_ref))
                    .required(Some(Required::False))
                    .build(),
            ));
        }
    }
    let done = route.done.as_u16().to_string();
    let gated = m.gateable;
    let ok = ResponseBuilder::new()
        .description(if done == "201" {
            "Created"
        } else {
            "Completed"
        })
        .content("application/json", json_content(&output_ref))
        .build();
    if gated && done == "202" {
        // Completed and gated both answer 202: the body says which.
        let either = format!("{p}Accepted");
        schemas.0.insert(
            either.clone(),
            json!({ "title": either, "oneOf": [ { "$ref": output_ref }, { "$ref": format!("{SCHEMAS}ApprovalRequired") } ] }),
        );
        b = b.response(
            "202",
            ResponseBuilder::new()
                .description("Accepted: the result, or the approval it waits for")
                .content(
                    "application/json",
                    json_content(&format!("{SCHEMAS}{either}")),
                )
                .build(),
        );
    } else {
        b = b.response(done, ok);
        if gated {
            b = b.response(
                "202",
                ResponseBuilder::new()
                    .description("Stopped at the approval gate; nothing changed yet")
                    .content(
                        "application/json",
                        json_content(&format!("{SCHEMAS}ApprovalRequired")),
                    )
                    .build(),
            );
        }
    }
    let issues = matches!(
        m.name,
        "issue_certificate"
            | "renew_certificate"
            | "submit_agent_csr"
            | "create_issuer"
            | "update_issuer"
    );
    (error_responses(b, issues), raw_params)
}

fn build() -> Value {
    let mut schemas = Schemas::default();
    let mut paths = PathsBuilder::new();
    let mut params: Vec<(String, &'static str, RawParams)> = Vec::new();
    for route in routes() {
        let Some(op) = ops::find(route.op) else {
            continue;
        };
        let (b, raw) = operation_for(&route, op, &mut schemas);
        let path = format!("/api/v1{}", route.path);
        paths = paths.path(path.clone(), PathItem::new(method(route.method), b.build()));
        params.push((path, route.method.as_str(), raw));
    }
    // The catalogue endpoints, health, metrics and this document.
    let any_object = json!({ "type": "object" });
    schemas.0.insert("AnyObject".into(), any_object);
    let plain = |d: &str, reference: &str| {
        ResponseBuilder::new()
            .description(d)
            .content("application/json", json_content(reference))
            .build()
    };
    paths = paths
        .path(
            "/api/v1/operations",
            PathItem::new(
                HttpMethod::Get,
                error_responses(
                    OperationBuilder::new()
                        .operation_id(Some("catalogue"))
                        .summary(Some(
                            "The operation catalogue with input and output schemas",
                        ))
                        .tag("operations")
                        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                        .response(
                            "200",
                            plain("The catalogue", &format!("{SCHEMAS}AnyObject")),
                        ),
                    false,
                )
                .build(),
            ),
        )
        .path(
            "/api/v1/operations/{name}",
            PathItem::new(
                HttpMethod::Post,
                error_responses(
                    OperationBuilder::new()
                        .operation_id(Some("call_operation"))
                        .summary(Some("Run any operation by name with its JSON input"))
                        .tag("operations")
                        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                        .parameter(
                            ParameterBuilder::new()
                                .name("name")
                                .parameter_in(ParameterIn::Path)
                                .required(Required::True),
                        )
                        .request_body(Some(
                            RequestBodyBuilder::new()
                                .content(
                                    "application/json",
                                    json_content(&format!("{SCHEMAS}AnyObject")),
                                )
                                .build(),
                        ))
                        .response(
                            "200",
                            plain(
                                "Completed: {status, result}",
                                &format!("{SCHEMAS}AnyObject"),
                            ),
                        )
                        .response(
                            "202",
                            plain(
                                "Stopped at the approval gate",
                                &format!("{SCHEMAS}ApprovalRequired"),
                            ),
                        ),
                    true,
                )
                .build(),
            ),
        )
        .path(
            "/api/v1/metrics/prometheus",
            PathItem::new(
                HttpMethod::Get,
                error_responses(
                    OperationBuilder::new()
                        .operation_id(Some("prometheus_metrics"))
                        .summary(Some("Prometheus text exposition"))
                        .tag("metrics")
                        .security(SecurityRequirement::new("bearer", Vec::<String>::new()))
                        .response(
                            "200",
                            ResponseBuilder::new()
                                .description("Metrics")
                                .content("text/plain", ContentBuilder::new().build())
                                .build(),
                        ),
                    false,
                )
                .build(),
            ),
        )
        .path(
            "/api/v1/openapi.json",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .operation_id(Some("openapi"))
                    .summary(Some("This document"))
                    .tag("meta")
                    .response("200", plain("OpenAPI 3.1", &format!("{SCHEMAS}AnyObject")))
                    .build(),
            ),
        )
        .path(
            "/health",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .operation_id(Some("health"))
                    .summary(Some("Liveness"))
                    .tag("meta")
                    .response("200", plain("Healthy", &format!("{SCHEMAS}Status")))
                    .build(),
            ),
        )
        .path(
            "/ready",
            PathItem::new(
                HttpMethod::Get,
                OperationBuilder::new()
                    .operation_id(Some("ready"))
                    .summary(Some("Readiness: the database answers"))
                    .tag("meta")
                    .response("200", plain("Ready", &format!("{SCHEMAS}Status")))
                    .response("503", problem_response("Not ready"))
                    .build(),
            ),
        );
    schemas.0.insert(
        "Status".into(),
        json!({ "type": "object", "required": ["status"], "properties": { "status": { "type": "string" } } }),
    );
    schemas.0.insert(
        "Problem".into(),
        json!({
            "title": "Problem",
            "description": "RFC 7807 problem details; `type` is stable per kind of failure.",
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": { "type": "string" },
                "status": { "type": "integer" },
                "detail": { "type": "string" }
            }
        }),
    );
    let mut ticket = schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<ops::ApprovalTicket>()
        .to_value();
    if let Some(m) = ticket.as_object_mut() {
        m.remove("$schema");
        if let Some(Value::Object(props)) = m.get_mut("properties") {
            props.insert("status".into(), json!({ "const": "approval_required" }));
        }
        if let Some(Value::Array(req)) = m.get_mut("required") {
            req.push("status".into());
        }
    }
    schemas.root("ApprovalRequired", ticket);

    let mut tags: Vec<&str> = routes().iter().map(|r| r.tag).collect();
    tags.extend(["operations", "metrics", "meta"]);
    tags.dedup();
    let doc = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("certctl API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "The certctl REST API: the operation catalogue on resource routes. Every call runs through the engine's authorization, approval gate and audit log.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(
                        HttpBuilder::new()
                            .scheme(HttpAuthScheme::Bearer)
                            .description(Some("An API key (`cck_...`), or a JWT when CERTCTL_AUTH_TYPE=jwt"))
                            .build(),
                    ),
                )
                .build(),
        ))
        .tags(Some(tags.into_iter().map(|t| TagBuilder::new().name(t).build())))
        .build();
    let mut doc = serde_json::to_value(&doc).unwrap_or_default();
    // Raw schemas: the engine's JSON Schemas, untouched but for references.
    for (path, verb, raw) in params {
        let Some(Value::Array(ps)) = doc.pointer_mut(&format!(
            "/paths/{}/{verb}/parameters",
            path.replace('~', "~0").replace('/', "~1")
        )) else {
            continue;
        };
        for p in ps.iter_mut() {
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some((_, s)) = raw.iter().find(|(n, _)| *n == name) {
                p["schema"] = s.clone();
            }
        }
    }
    for path in ["/api/v1/operations/{name}"] {
        if let Some(Value::Array(ps)) = doc.pointer_mut(&format!(
            "/paths/{}/post/parameters",
            path.replace('/', "~1")
        )) {
            for p in ps.iter_mut() {
                p["schema"] = json!({ "type": "string" });
            }
        }
    }
    if let Some(c) = doc["components"].as_object_mut() {
        c.insert(
            "schemas".into(),
            Value::Object(schemas.0.into_iter().collect::<Map<_, _>>()),
        );
    }
    doc
}
