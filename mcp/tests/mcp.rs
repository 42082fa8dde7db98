//! The MCP face in process: an rmcp client and the certctl server over a
//! `tokio::io::duplex`, on a real engine (SQLite in a temp dir). Covers every
//! tool, resource and prompt, the three confirmation paths, and a golden
//! snapshot of `tools/list` (regenerate with `UPDATE_SNAPSHOTS=1`).

use std::sync::Arc;

use certctl_engine::Engine;
use certctl_engine::clock::SystemClock;
use certctl_engine::domain::{KeyAlgorithm, Principal, Role};
use certctl_engine::ops;
use certctl_engine::pki::{self, MasterKey, SubjectNames};
use certctl_engine::store::{Store, StoreLocation};
use certctl_mcp::{CertctlMcp, tools};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, ElicitationCapability, FormElicitationCapability,
    GetPromptRequestParams, ProtocolVersion, ReadResourceRequestParams,
};
use rmcp::service::{RequestContext, RoleClient, RunningService};
use rmcp::{ClientHandler, ErrorData as McpError, ServiceExt};
use serde_json::{Value, json};

#[path = "mcp/adversarial.rs"]
mod adversarial;

/// A client that answers confirmations the way a test tells it to.
#[derive(Clone)]
struct TestClient {
    /// None: no elicitation capability; Some(yes): accept or decline.
    answer: Option<bool>,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        if self.answer.is_some() {
            let mut caps = ClientCapabilities::default();
            caps.elicitation =
                Some(ElicitationCapability::new().with_form(FormElicitationCapability::default()));
            info.capabilities = caps;
        }
        info
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, McpError> {
        let ElicitRequestParams::FormElicitationParams { message, .. } = request else {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        };
        assert!(message.contains("cannot be undone"), "{message}");
        Ok(match self.answer {
            Some(true) => {
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"confirm": true}))
            }
            _ => ElicitResult::new(ElicitationAction::Decline),
        })
    }
}

struct Setup {
    engine: Arc<Engine>,
    admin: Principal,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&StoreLocation::SqliteFile(dir.path().join("c.db")))
        .await
        .expect("store");
    let engine = Engine::start(
        store,
        Arc::new(SystemClock),
        Default::default(),
        MasterKey::generate().expect("key"),
    )
    .await
    .expect("engine");
    let admin = Principal {
        id: "pr-mcp-admin".into(),
        name: "admin".into(),
        role: Role::Admin,
        agent_id: None,
        address: None,
    };
    Setup {
        engine,
        admin,
        _dir: dir,
    }
}

async fn connect(
    s: &Setup,
    principal: &Principal,
    answer: Option<bool>,
) -> RunningService<RoleClient, TestClient> {
    let (server_io, client_io) = tokio::io::duplex(1 << 20);
    let server = CertctlMcp::new(s.engine.clone(), Some(principal.clone())).expect("server");
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_io).await {
            let _ = running.waiting().await;
        }
    });
    TestClient { answer }
        .serve(client_io)
        .await
        .expect("client")
}

async fn call(
    c: &RunningService<RoleClient, TestClient>,
    name: &str,
    args: Value,
) -> CallToolResult {
    let mut p = CallToolRequestParams::new(name.to_owned());
    p.arguments = args.as_object().cloned();
    c.call_tool(p).await.expect("tools/call")
}

/// A small JSON Schema check covering what certctl's schemas use (type,
/// const, enum, properties, required, items, `$ref` into `$defs`, anyOf and
/// oneOf), so a schema that rejects real output fails here, as strict
/// clients (the Python SDK) would fail.
fn conforms(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    conforms_in(schema, schema, v, path)
}

fn conforms_in(root: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r
            .strip_prefix("#/$defs/")
            .ok_or(format!("{path}: ref {r}"))?;
        let def = root
            .get("$defs")
            .and_then(|d| d.get(name))
            .ok_or(format!("{path}: no definition {name}"))?;
        conforms_in(root, def, v, path)?;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = schema.get(key)
            && !alts
                .iter()
                .any(|alt| conforms_in(root, alt, v, path).is_ok())
        {
            return Err(format!("{path}: {v} matches none of {key}"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let ok = types
            .iter()
            .any(|t| *t == actual || (*t == "number" && actual == "integer"));
        if !ok {
            return Err(format!("{path}: {actual} is not {types:?}"));
        }
    }
    if let Some(c) = schema.get("const")
        && c != v
    {
        return Err(format!("{path}: {v} is not {c}"));
    }
    if let Some(Value::Array(e)) = schema.get("enum")
        && !e.contains(v)
    {
        return Err(format!("{path}: {v} is not one of {e:?}"));
    }
    if let (Some(Value::Object(props)), Value::Object(obj)) = (schema.get("properties"), v) {
        for (k, sub) in props {
            if let Some(x) = obj.get(k) {
                conforms_in(root, sub, x, &format!("{path}.{k}"))?;
            }
        }
    }
    if let (Some(items), Value::Array(arr)) = (schema.get("items"), v) {
        for (i, x) in arr.iter().enumerate() {
            conforms_in(root, items, x, &format!("{path}[{i}]"))?;
        }
    }
    if let (Some(Value::Array(req)), Value::Object(obj)) = (schema.get("required"), v) {
        for k in req.iter().filter_map(Value::as_str) {
            if !obj.contains_key(k) {
                return Err(format!("{path}: missing {k}"));
            }
        }
    }
    Ok(())
}

/// The structured content matches the tool's output schema (the envelope)
/// and its `result` matches the operation's full output schema, so what the
/// engine declares (also the REST face's schemas) is what it returns.
fn check_output(schemas: &std::collections::HashMap<String, Value>, name: &str, v: &Value) {
    if let Err(e) = conforms(&schemas[name], v, name) {
        panic!("{name}: structured content does not match its output schema: {e}");
    }
    if v["status"] == "completed" {
        let full = ops::find(name).expect("operation").output_schema();
        if let Err(e) = conforms(&full, &v["result"], name) {
            panic!("{name}: result does not match the operation's output schema: {e}");
        }
    }
}

fn structured(r: &CallToolResult) -> Value {
    r.structured_content.clone().unwrap_or(Value::Null)
}

fn csr(cn: &str) -> String {
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
    let names = SubjectNames {
        dns: vec![cn.to_owned()],
        ..Default::default()
    };
    pki::csr_for(&key, cn, &names).expect("csr")
}

async fn issued(c: &RunningService<RoleClient, TestClient>, cn: &str) -> String {
    let r = call(c, "create_certificate", json!({ "common_name": cn })).await;
    let id = structured(&r)["result"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let r = call(
        c,
        "issue_certificate",
        json!({ "id": id, "csr_pem": csr(cn) }),
    )
    .await;
    assert_eq!(structured(&r)["status"], "completed", "{r:?}");
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_list_matches_catalogue_and_snapshot() {
    let s = setup().await;
    let c = connect(&s, &s.admin, None).await;
    let tools = c.list_all_tools().await.expect("tools/list");
    let mcp_ops: Vec<_> = ops::catalogue()
        .iter()
        .filter(|o| tools::is_tool(o.as_ref()))
        .collect();
    assert_eq!(
        tools.len(),
        mcp_ops.len(),
        "one tool per operation outside the agent protocol"
    );
    // The agent protocol is exactly the agent_self operations, and no tool.
    assert_eq!(
        agent_protocol_ops(),
        [
            "agent_heartbeat",
            "get_agent_work",
            "submit_agent_csr",
            "get_agent_job",
            "report_agent_job",
            "verify_job",
            "report_agent_discoveries"
        ]
    );
    for t in &tools {
        let op = ops::find(&t.name).expect("tool names match operations");
        let a = t.annotations.as_ref().expect("annotations");
        assert_eq!(
            a.read_only_hint,
            Some(op.meta().risk == ops::Risk::Read),
            "{}",
            t.name
        );
        assert_eq!(
            a.destructive_hint,
            Some(op.meta().risk == ops::Risk::Destructive),
            "{}",
            t.name
        );
        assert!(t.title.is_some() && t.description.is_some());
        assert_eq!(
            t.input_schema.get("type"),
            Some(&json!("object")),
            "{}",
            t.name
        );
        assert!(t.output_schema.is_some(), "{}", t.name);
    }
    for name in ["revoke_certificate", "delete_object", "bulk_certificates"] {
        let t = tools.iter().find(|t| t.name == name).expect("tool");
        assert_eq!(
            t.annotations.as_ref().and_then(|a| a.destructive_hint),
            Some(true)
        );
    }
    // Golden snapshot: interface changes show up in review.
    let snapshot = serde_json::to_string_pretty(&tools).expect("json") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/tools.json");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &snapshot).expect("write snapshot");
    }
    let golden = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        golden == snapshot,
        "tools/list changed; review it and run with UPDATE_SNAPSHOTS=1 to accept ({} bytes now, {} in the snapshot)",
        snapshot.len(),
        golden.len()
    );
    // A viewer sees only read tools.
    let viewer = Principal {
        id: "pr-viewer".into(),
        name: "v".into(),
        role: Role::Viewer,
        agent_id: None,
        address: None,
    };
    let cv = connect(&s, &viewer, None).await;
    let vt = cv.list_all_tools().await.expect("tools/list");
    assert!(vt.iter().all(
        |t| t.annotations.as_ref().and_then(|a| a.read_only_hint) == Some(true)
            || t.name == "approve_request"
            || t.name == "cancel_request"
            || t.name == "claim_approval_result"
    ));
    let r = call(
        &cv,
        "create_certificate",
        json!({ "common_name": "x.example.com" }),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
}

/// The operations agents call over REST, which are no MCP tools.
fn agent_protocol_ops() -> Vec<&'static str> {
    ops::catalogue()
        .iter()
        .filter(|o| !tools::is_tool(o.as_ref()))
        .map(|o| o.meta().name)
        .collect()
}

/// Calls every tool once with a plausible input; none may fail with an
/// internal error, and the ones expected to succeed do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tool_runs() {
    let s = setup().await;
    let c = connect(&s, &s.admin, Some(true)).await;
    let schemas: std::collections::HashMap<String, Value> = c
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| {
            let schema = Value::Object((*t.output_schema.expect("output schema")).clone());
            (t.name.to_string(), schema)
        })
        .collect();
    let cert = issued(&c, "all.example.com").await;
    let mut made: std::collections::HashMap<&str, String> = Default::default();
    let ok = |r: &CallToolResult, what: &str| {
        assert_ne!(r.is_error, Some(true), "{what}: {r:?}");
        structured(r)
    };
    let v = ok(&call(&c, "save_team", json!({"name": "ops"})).await, "team");
    made.insert(
        "team",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "save_owner",
            json!({"name": "Ada", "email": "ada@example.com"}),
        )
        .await,
        "owner",
    );
    made.insert(
        "owner",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(&c, "register_agent", json!({"name": "web-1"})).await,
        "agent",
    );
    made.insert(
        "agent",
        v["result"]["agent"]["id"]
            .as_str()
            .unwrap_or_default()
            .into(),
    );
    let v = ok(
        &call(
            &c,
            "save_target",
            json!({"name": "nginx-1", "kind": "nginx", "agent_id": made["agent"]}),
        )
        .await,
        "target",
    );
    made.insert(
        "target",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "save_profile",
            json!({"name": "short", "max_ttl_seconds": 86400}),
        )
        .await,
        "profile",
    );
    made.insert(
        "profile",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "save_renewal_policy",
            json!({"name": "two-thirds", "renew_at_fraction": 0.66}),
        )
        .await,
        "rp",
    );
    made.insert("rp", v["result"]["id"].as_str().unwrap_or_default().into());
    let v = ok(&call(&c, "save_policy", json!({"name": "domains", "kind": "allowed_domains", "severity": "high", "mode": "warn", "params": {"domains": ["*.example.com"]}})).await, "policy");
    made.insert(
        "policy",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "create_issuer",
            json!({"name": "second", "kind": "local"}),
        )
        .await,
        "issuer",
    );
    made.insert(
        "issuer",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "create_principal",
            json!({"name": "bob", "role": "viewer"}),
        )
        .await,
        "principal",
    );
    made.insert(
        "principal",
        v["result"]["principal"]["id"]
            .as_str()
            .unwrap_or_default()
            .into(),
    );
    let v = ok(
        &call(
            &c,
            "save_notification_channel",
            json!({"name": "hook", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}, "secret": "s"}),
        )
        .await,
        "channel",
    );
    made.insert(
        "channel",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let v = ok(
        &call(
            &c,
            "save_notification_rule",
            json!({"name": "all", "channel_id": made["channel"]}),
        )
        .await,
        "rule",
    );
    made.insert(
        "rule",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let r = call(&c, "renew_certificate", json!({"id": cert})).await;
    let job = ok(&r, "renew")["result"]["job"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let v = ok(
        &call(
            &c,
            "save_agent_group",
            json!({"name": "prod", "criteria": {"labels": {"env": "prod"}, "ip_cidr": "10.0.0.0/8"}}),
        )
        .await,
        "agent group",
    );
    made.insert(
        "group",
        v["result"]["id"].as_str().unwrap_or_default().into(),
    );
    let inputs: Vec<(&str, Value)> = vec![
        (
            "list_certificates",
            json!({"status": "valid", "sort": "-not_after", "fields": ["common_name"]}),
        ),
        ("get_certificate", json!({"id": cert})),
        (
            "update_certificate",
            json!({"id": cert, "owner_id": made["owner"], "team_id": made["team"]}),
        ),
        ("list_issuers", json!({})),
        (
            "get_object",
            json!({"kind": "issuer", "id": made["issuer"]}),
        ),
        ("test_issuer", json!({"id": made["issuer"]})),
        (
            "update_issuer",
            json!({"id": made["issuer"], "name": "second-ca"}),
        ),
        ("list_targets", json!({})),
        (
            "get_object",
            json!({"kind": "target", "id": made["target"]}),
        ),
        (
            "save_target",
            json!({"id": made["target"], "name": "nginx-01", "kind": "nginx"}),
        ),
        ("list_agents", json!({})),
        ("get_object", json!({"kind": "agent", "id": made["agent"]})),
        ("list_jobs", json!({})),
        ("get_object", json!({"kind": "job", "id": job})),
        ("cancel_job", json!({"id": job})),
        ("list_objects", json!({"kind": "owner"})),
        ("get_object", json!({"kind": "owner", "id": made["owner"]})),
        ("save_owner", json!({"id": made["owner"], "name": "Ada L."})),
        ("list_objects", json!({"kind": "team"})),
        ("get_object", json!({"kind": "team", "id": made["team"]})),
        ("save_team", json!({"id": made["team"], "name": "platform"})),
        ("list_objects", json!({"kind": "profile"})),
        (
            "get_object",
            json!({"kind": "profile", "id": made["profile"]}),
        ),
        (
            "save_profile",
            json!({"id": made["profile"], "name": "short-lived", "short_lived": true}),
        ),
        ("list_objects", json!({"kind": "renewal_policy"})),
        (
            "save_renewal_policy",
            json!({"id": made["rp"], "name": "ten-days", "renew_before_days": 10}),
        ),
        ("list_objects", json!({"kind": "policy"})),
        (
            "get_object",
            json!({"kind": "policy", "id": made["policy"]}),
        ),
        (
            "save_policy",
            json!({"id": made["policy"], "name": "domains", "kind": "allowed_domains", "severity": "low", "mode": "enforce", "params": {"domains": ["*.example.com"]}}),
        ),
        ("list_approvals", json!({})),
        ("expire_approvals", json!({})),
        ("get_audit_log", json!({"per_page": 5})),
        ("verify_audit_log", json!({})),
        ("checkpoint_audit_log", json!({})),
        ("get_audit_checkpoints", json!({})),
        ("get_stats_summary", json!({})),
        ("get_stats", json!({"view": "by_status"})),
        ("get_stats", json!({"view": "by_ownership"})),
        ("get_stats", json!({"view": "expiration_timeline"})),
        ("get_stats", json!({"view": "job_trends", "days": 7})),
        ("get_stats", json!({"view": "issuance_rate", "days": 7})),
        ("list_objects", json!({"kind": "principal"})),
        ("list_objects", json!({"kind": "notification_channel"})),
        (
            "save_notification_channel",
            json!({"id": made["channel"], "name": "hook2", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/hook2"}}),
        ),
        ("list_objects", json!({"kind": "notification_rule"})),
        (
            "save_notification_rule",
            json!({"id": made["rule"], "name": "renewals", "channel_id": made["channel"], "events": ["renewed"]}),
        ),
        (
            "send_test_notification",
            json!({"channel_id": made["channel"]}),
        ),
        ("list_notifications", json!({"status": "pending"})),
        ("list_policy_violations", json!({"refused": false})),
        ("list_objects", json!({"kind": "agent_group"})),
        (
            "get_object",
            json!({"kind": "agent_group", "id": made["group"]}),
        ),
        (
            "save_agent_group",
            json!({"id": made["group"], "name": "prod", "criteria": {"os": "linux"}}),
        ),
        ("list_agent_group_members", json!({"id": made["group"]})),
        (
            "bulk_certificates",
            json!({"action": "reassign", "ids": [cert], "team_id": made["team"], "dry_run": true}),
        ),
        (
            "bulk_certificates",
            json!({"action": "renew", "filter": {"common_name": "nothing.example.com"}}),
        ),
        (
            "delete_object",
            json!({"kind": "notification_rule", "id": made["rule"]}),
        ),
        (
            "delete_object",
            json!({"kind": "notification_channel", "id": made["channel"]}),
        ),
        ("export_certificate", json!({"id": cert, "format": "pem"})),
        (
            "create_export_link",
            json!({"id": cert, "format": "pkcs12"}),
        ),
        (
            "enroll_certificate",
            json!({"csr_pem": csr("enrolled.example.com")}),
        ),
        // Destructive ones: confirmed in chat by this client.
        (
            "bulk_certificates",
            json!({"action": "revoke", "filter": {"common_name": "nothing.example.com"}}),
        ),
        (
            "revoke_certificate",
            json!({"id": cert, "reason": "superseded"}),
        ),
        (
            "delete_object",
            json!({"kind": "target", "id": made["target"]}),
        ),
        (
            "update_agent",
            json!({"id": made["agent"], "os": "linux", "labels": {"env": "prod"}}),
        ),
        ("disable_agent", json!({"id": made["agent"]})),
        (
            "delete_object",
            json!({"kind": "policy", "id": made["policy"]}),
        ),
        (
            "delete_object",
            json!({"kind": "agent_group", "id": made["group"]}),
        ),
        (
            "delete_object",
            json!({"kind": "renewal_policy", "id": made["rp"]}),
        ),
        (
            "delete_object",
            json!({"kind": "profile", "id": made["profile"]}),
        ),
        ("revoke_principal", json!({"id": made["principal"]})),
        ("archive_certificate", json!({"id": cert})),
    ];
    let mut covered: std::collections::HashSet<String> = [
        "save_team",
        "save_owner",
        "register_agent",
        "save_target",
        "save_profile",
        "save_renewal_policy",
        "save_policy",
        "create_issuer",
        "create_principal",
        "renew_certificate",
        "create_certificate",
        "issue_certificate",
        "save_notification_channel",
        "save_notification_rule",
        "save_agent_group",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (name, args) in inputs {
        let r = call(&c, name, args).await;
        let v = ok(&r, name);
        assert_eq!(v["status"], "completed", "{name}: {v}");
        check_output(&schemas, name, &v);
        covered.insert(name.to_owned());
    }
    // An executed approval carries its result (any JSON) and still matches.
    let list = call(&c, "list_approvals", json!({})).await;
    let first = structured(&list)["result"]["data"][0]["id"].clone();
    let r = call(&c, "get_approval", json!({ "id": first })).await;
    let v = ok(&r, "get_approval");
    check_output(&schemas, "get_approval", &v);

    // Statistics, export, enrollment, import and the issuer test.
    let more = issued(&c, "more.example.com").await;
    let more_pem = structured(&call(&c, "get_certificate", json!({ "id": more })).await)["result"]
        ["versions"][0]["cert_pem"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let spare = issued(&c, "spare.example.com").await;
    let enrolled = ok(
        &call(
            &c,
            "enroll_certificate",
            json!({"csr_pem": csr("device.example.com")}),
        )
        .await,
        "enroll",
    );
    check_output(&schemas, "enroll_certificate", &enrolled);
    covered.insert("enroll_certificate".into());
    let enrolled_pem = enrolled["result"]["version"]["cert_pem"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (name, args) in [
        ("get_stats", json!({"view": "by_status"})),
        (
            "get_stats",
            json!({"view": "expiration_timeline", "days": 90}),
        ),
        ("get_stats", json!({"view": "job_trends"})),
        ("get_stats", json!({"view": "issuance_rate"})),
        ("export_certificate", json!({"id": more})),
        ("create_export_link", json!({"id": more})),
        ("test_issuer", json!({"id": "iss-local"})),
        ("import_certificates", json!({"pem": more_pem})),
        (
            "reenroll_certificate",
            json!({"current_cert_pem": enrolled_pem, "csr_pem": csr("device.example.com")}),
        ),
        (
            "bulk_certificates",
            json!({"action": "revoke", "ids": [spare], "reason": "cessationOfOperation"}),
        ),
    ] {
        let r = call(&c, name, args).await;
        let v = ok(&r, name);
        assert_eq!(v["status"], "completed", "{name}: {v}");
        check_output(&schemas, name, &v);
        covered.insert(name.to_owned());
    }
    // Discovery: an agent's report (made through the engine, as the agent
    // protocol is not on MCP), triage, and a loopback scan of a port
    // nothing listens on.
    let reported = match ops::find("report_agent_discoveries")
        .expect("op")
        .call_json(
            &s.engine,
            &s.admin,
            json!({"id": made["agent"], "certificates": [
                {"path": "/etc/ssl/more.pem", "cert_pem": more_pem},
                {"path": "/etc/ssl/device.pem", "cert_pem": enrolled_pem},
            ]}),
        )
        .await
        .expect("report")
    {
        ops::Outcome::Completed { result } => result,
        other => panic!("report: {other:?}"),
    };
    let found = |i: usize| reported["ids"][i].as_str().unwrap_or_default().to_owned();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9);
    let target = ok(
        &call(
            &c,
            "create_network_scan_target",
            json!({"name": "lo", "cidrs": ["127.0.0.1/32"], "ports": [closed]}),
        )
        .await,
        "create_network_scan_target",
    );
    check_output(&schemas, "create_network_scan_target", &target);
    covered.insert("create_network_scan_target".into());
    let nst = target["result"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for (name, args) in [
        ("list_discovered_certificates", json!({"source": "agent"})),
        (
            "get_object",
            json!({"kind": "discovered_certificate", "id": found(0)}),
        ),
        ("get_discovery_summary", json!({})),
        ("claim_discovered_certificate", json!({"id": found(0)})),
        (
            "dismiss_discovered_certificate",
            json!({"id": found(1), "reason": "lab device"}),
        ),
        ("list_objects", json!({"kind": "network_scan_target"})),
        (
            "get_object",
            json!({"kind": "network_scan_target", "id": nst}),
        ),
        (
            "update_network_scan_target",
            json!({"id": nst, "enabled": false}),
        ),
        ("scan_network_target", json!({"id": nst})),
        (
            "delete_object",
            json!({"kind": "network_scan_target", "id": nst}),
        ),
    ] {
        let r = call(&c, name, args).await;
        let v = ok(&r, name);
        assert_eq!(v["status"], "completed", "{name}: {v}");
        check_output(&schemas, name, &v);
        covered.insert(name.to_owned());
    }
    // The bulk runs left records.
    let list = ok(
        &call(&c, "list_objects", json!({"kind": "bulk_operation"})).await,
        "bulk list",
    );
    check_output(&schemas, "list_objects", &list);
    let first = list["result"]["data"][0]["id"].clone();
    assert!(first.is_string(), "{list}");
    let got = ok(
        &call(
            &c,
            "get_object",
            json!({"kind": "bulk_operation", "id": first}),
        )
        .await,
        "bulk get",
    );
    check_output(&schemas, "get_object", &got);

    // The agent protocol is no tool, even for an admin, whose role the
    // engine would let act as an agent: the call is refused before it
    // reaches the engine, and the error says where it lives.
    for name in agent_protocol_ops() {
        let r = call(&c, name, json!({"id": made["agent"]})).await;
        assert_eq!(r.is_error, Some(true), "{name}: {r:?}");
        let text = format!("{:?}", r.content);
        assert!(
            text.contains("agent protocol") && text.contains("REST"),
            "{name}: {text}"
        );
    }

    // Decisions on unknown jobs fail as tool errors that say why, never as
    // internal errors.
    for (name, args) in [
        ("approve_job", json!({"id": "job-missing"})),
        ("reject_job", json!({"id": "job-missing"})),
        ("retry_notification", json!({"id": "ntf-missing"})),
        (
            "send_test_notification",
            json!({"channel_id": "nch-missing"}),
        ),
    ] {
        let r = call(&c, name, args).await;
        let text = format!("{:?}", r.content).to_lowercase();
        assert!(!text.contains("internal"), "{name}: {text}");
        if r.is_error == Some(true) {
            assert!(text.len() > 20, "{name}: an error that says why: {text}");
        }
        covered.insert(name.to_owned());
    }

    // Deleting in-use rows and decisions on unknown approvals fail, teaching.
    for (name, args, hint) in [
        (
            "delete_object",
            json!({"kind": "team", "id": made["team"]}),
            "still referenced",
        ),
        (
            "delete_object",
            json!({"kind": "owner", "id": made["owner"]}),
            "still referenced",
        ),
        (
            "delete_object",
            json!({"kind": "issuer", "id": "iss-missing"}),
            "list_issuers",
        ),
        (
            "reenroll_certificate",
            json!({"current_cert_pem": "not a certificate", "csr_pem": csr("x.example.com")}),
            "certificate",
        ),
        (
            "approve_request",
            json!({"approval_id": "ap-missing"}),
            "list_approvals",
        ),
        (
            "reject_request",
            json!({"approval_id": "ap-missing"}),
            "list_approvals",
        ),
        (
            "cancel_request",
            json!({"approval_id": "ap-missing"}),
            "list_approvals",
        ),
        (
            "claim_approval_result",
            json!({"approval_id": "ap-missing"}),
            "list_approvals",
        ),
        (
            "get_approval",
            json!({"id": "ap-missing"}),
            "list_approvals",
        ),
        (
            "retry_notification",
            json!({"id": "ntf-missing"}),
            "list_notifications",
        ),
        (
            "get_object",
            json!({"kind": "verification", "id": "job-missing"}),
            "job-missing",
        ),
        ("approve_job", json!({"id": "job-missing"}), "list_jobs"),
        ("reject_job", json!({"id": "job-missing"}), "list_jobs"),
    ] {
        let r = call(&c, name, args).await;
        assert_eq!(r.is_error, Some(true), "{name}: {r:?}");
        let text = format!("{:?}", r.content);
        assert!(text.contains(hint), "{name}: {text}");
        covered.insert(name.to_owned());
    }
    let all: std::collections::HashSet<String> = ops::catalogue()
        .iter()
        .filter(|o| tools::is_tool(o.as_ref()))
        .map(|o| o.meta().name.to_owned())
        .collect();
    let missing: Vec<_> = all.difference(&covered).collect();
    assert!(missing.is_empty(), "tools never called: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_policy_refusal_is_a_tool_error_and_recorded() {
    let s = setup().await;
    let c = connect(&s, &s.admin, Some(true)).await;
    let r = call(
        &c,
        "save_policy",
        json!({"name": "corp", "kind": "allowed_domains", "severity": "high", "mode": "enforce",
               "params": {"domains": ["*.example.com"]}}),
    )
    .await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let r = call(
        &c,
        "create_certificate",
        json!({"common_name": "shop.evil.org"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = format!("{:?}", r.content);
    assert!(
        text.contains("'corp'") && text.contains("shop.evil.org is outside the allowed domains"),
        "{text}"
    );
    let v = structured(&call(&c, "list_policy_violations", json!({"refused": true})).await);
    assert_eq!(v["result"]["total"], 1, "{v}");
    assert_eq!(v["result"]["data"][0]["common_name"], "shop.evil.org");
    // Inside the list: allowed.
    issued(&c, "ok.example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmations_accept_decline_and_no_elicitation() {
    let s = setup().await;
    // Accept: revoked once, the audit log names the in-chat confirmation.
    let yes = connect(&s, &s.admin, Some(true)).await;
    let a = issued(&yes, "yes.example.com").await;
    let r = call(
        &yes,
        "revoke_certificate",
        json!({"id": a, "reason": "keyCompromise"}),
    )
    .await;
    assert_eq!(structured(&r)["status"], "completed", "{r:?}");
    let d = call(&yes, "get_certificate", json!({"id": a})).await;
    assert_eq!(structured(&d)["result"]["certificate"]["status"], "revoked");
    let log = call(&yes, "get_audit_log", json!({"action": "approve_request"})).await;
    assert_eq!(
        structured(&log)["result"]["data"][0]["details"]["in_chat"],
        true
    );

    // Decline: nothing happens, the request is withdrawn.
    let no = connect(&s, &s.admin, Some(false)).await;
    let b = issued(&no, "no.example.com").await;
    let r = call(&no, "revoke_certificate", json!({"id": b})).await;
    let v = structured(&r);
    assert_eq!(v["status"], "declined", "{v}");
    let d = call(&no, "get_certificate", json!({"id": b})).await;
    assert_eq!(structured(&d)["result"]["certificate"]["status"], "valid");
    let ap = call(&no, "get_approval", json!({"id": v["approval_id"]})).await;
    assert_eq!(structured(&ap)["result"]["status"], "cancelled");

    // No elicitation: approval_required; another principal approves it once.
    let plain = connect(&s, &s.admin, None).await;
    let cid = issued(&plain, "plain.example.com").await;
    let r = call(&plain, "revoke_certificate", json!({"id": cid})).await;
    let v = structured(&r);
    assert_eq!(v["status"], "approval_required", "{v}");
    let approval_id = v["approval_id"].as_str().expect("id").to_owned();
    let approver = Principal {
        id: "pr-approver".into(),
        name: "a".into(),
        role: Role::Approver,
        agent_id: None,
        address: None,
    };
    let ca = connect(&s, &approver, None).await;
    let r = call(&ca, "approve_request", json!({"approval_id": approval_id})).await;
    assert_eq!(
        structured(&r)["result"]["approval"]["status"],
        "executed",
        "{r:?}"
    );
    let r = call(&ca, "approve_request", json!({"approval_id": approval_id})).await;
    assert_eq!(
        r.is_error,
        Some(true),
        "a second approval must not run it again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_and_prompts() {
    let s = setup().await;
    let c = connect(&s, &s.admin, None).await;
    let id = issued(&c, "res.example.com").await;
    let resources = c.list_all_resources().await.expect("resources/list");
    let templates = c.list_all_resource_templates().await.expect("templates");
    assert!(resources.len() >= 5 && templates.len() >= 2);
    let mut uris: Vec<String> = resources.iter().map(|r| r.uri.clone()).collect();
    uris.push(format!("certctl://certificates/{id}"));
    uris.push("certctl://certificates/expiring/90".into());
    for uri in uris {
        let r = c
            .read_resource(ReadResourceRequestParams::new(uri.clone()))
            .await
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        let text = serde_json::to_string(&r.contents).expect("json");
        assert!(text.len() > 20, "{uri}: {text}");
        if uri.ends_with("/expiring/90") {
            assert!(text.contains("res.example.com"), "{text}");
        }
        if uri.ends_with(&id) {
            assert!(text.contains("BEGIN CERTIFICATE"), "PEM chain included");
        }
    }
    assert!(
        c.read_resource(ReadResourceRequestParams::new("certctl://nope"))
            .await
            .is_err()
    );
    let prompts = c.list_all_prompts().await.expect("prompts/list");
    for p in &prompts {
        let mut req = GetPromptRequestParams::new(p.name.clone());
        let args: serde_json::Map<String, Value> = p
            .arguments
            .iter()
            .flatten()
            .map(|a| (a.name.clone(), json!("example")))
            .collect();
        req.arguments = Some(args);
        let got = c
            .get_prompt(req)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        assert!(!got.messages.is_empty(), "{}", p.name);
    }
}
