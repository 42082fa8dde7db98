//! Property tests of the HTTP face (issue 17): EST enrollment bodies, OCSP
//! GET and POST requests, and JSON bodies and query strings on every REST
//! route, as admin and as viewer. Whatever arrives, the answer is never a
//! 5xx and the router never panics.
//!
//! Inputs are real valid ones mutated (bit flips, truncation, splicing,
//! insertions, deletions) mixed with random bytes and JSON. Cases per
//! property: `PROPTEST_CASES`, else the defaults below.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use certctl_api::routes::{Source, Verb};
use certctl_engine::domain::KeyAlgorithm;
use certctl_engine::pki::{self, SubjectNames};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use crate::backend_tests;
use crate::support::Rig;

backend_tests!(
    est_and_ocsp_bodies_never_get_a_server_error,
    rest_routes_never_answer_junk_with_a_server_error,
);

const BODY_CASES: u32 = 128;
const ROUTE_CASES: u32 = 192;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

// ---------------------------------------------------------------- mutation

#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Truncate(Index),
    Splice(Index, Index),
    Insert(Index, Vec<u8>),
    Remove(Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, b)| Edit::Flip(i, b)),
        1 => any::<Index>().prop_map(Edit::Truncate),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Edit::Splice(a, b)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<Index>(), 1u8..32).prop_map(|(i, n)| Edit::Remove(i, n)),
    ]
}

fn apply(base: &[u8], other: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits {
        match e {
            Edit::Flip(i, bit) if !v.is_empty() => {
                let k = i.index(v.len());
                v[k] ^= 1u8 << *bit;
            }
            Edit::Truncate(i) => v.truncate(i.index(v.len() + 1)),
            Edit::Splice(a, b) => {
                v.truncate(a.index(v.len() + 1));
                v.extend_from_slice(&other[b.index(other.len() + 1)..]);
            }
            Edit::Insert(i, bytes) => {
                let k = i.index(v.len() + 1);
                v.splice(k..k, bytes.iter().copied());
            }
            Edit::Remove(i, n) if !v.is_empty() => {
                let k = i.index(v.len());
                let end = (k + usize::from(*n)).min(v.len());
                v.drain(k..end);
            }
            _ => {}
        }
    }
    v
}

fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let seeds = Arc::new(seeds);
    let n = seeds.len();
    prop_oneof![
        1 => vec(any::<u8>(), 0..600),
        5 => (0..n, 0..n, vec(edit(), 1..6))
            .prop_map(move |(a, b, edits)| apply(&seeds[a], &seeds[b], &edits)),
    ]
}

/// Sends one request in memory; a panic in the router fails the case.
async fn status_of(rig: &Rig, req: Request<Body>) -> u16 {
    let res = rig.router.clone().oneshot(req).await.expect("infallible");
    let status = res.status().as_u16();
    // Read the body too: a streamed body may fail late.
    let _ = axum::body::to_bytes(res.into_body(), 1 << 22).await;
    status
}

fn no_server_error(status: u16, what: &str) -> Result<(), TestCaseError> {
    if status >= 500 {
        return Err(TestCaseError::fail(format!("{what}: answered {status}")));
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters (one path segment).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------- EST, OCSP

fn csr_der(cn: &str) -> Vec<u8> {
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
    let names = SubjectNames {
        dns: vec![cn.to_owned()],
        ..SubjectNames::default()
    };
    let pem = pki::csr_for(&key, cn, &names).expect("csr");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).expect("base64")
}

/// One DER element at the start of `der`: (tag, content, the rest).
fn element(der: &[u8]) -> (u8, &[u8], &[u8]) {
    let (tag, len_byte) = (der[0], der[1]);
    let (len, head) = if len_byte & 0x80 == 0 {
        (usize::from(len_byte), 2)
    } else {
        let n = usize::from(len_byte & 0x7f);
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, 2 + n)
    };
    (tag, &der[head..head + len], &der[head + len..])
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = body.len();
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes: Vec<u8> = n
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

/// OCSP requests for the local CA (a known serial, an unknown one, with a
/// nonce), built from the issuing CA's certificate.
async fn ocsp_requests(rig: &Rig, serial: &str) -> Vec<Vec<u8>> {
    let chain = rig
        .engine
        .issuer_chain_pem("iss-local")
        .await
        .expect("chain");
    let first: String = chain
        .lines()
        .skip(1)
        .take_while(|l| !l.starts_with("-----"))
        .collect();
    let ca = STANDARD.decode(first).expect("CA DER");
    // Certificate -> TBSCertificate -> version, serial, signature, issuer,
    // validity, subject, subjectPublicKeyInfo.
    let (_, tbs, _) = element(&ca);
    let (_, tbs, _) = element(tbs);
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() {
        let start = rest;
        let (tag, _, next) = element(rest);
        fields.push((tag, &start[..start.len() - next.len()]));
        rest = next;
    }
    let fields: Vec<_> = fields.into_iter().filter(|(t, _)| *t != 0xa0).collect();
    let subject = fields[4].1;
    let (_, spki, _) = element(fields[5].1);
    let (_, _, after_alg) = element(spki);
    let (_, key_bits, _) = element(after_alg);
    let identity = pki::crl::CaIdentity {
        name_der: subject.to_vec(),
        key_bits: key_bits[1..].to_vec(),
        key_id: Vec::new(),
        cert_der: ca.clone(),
    };
    let request = |serial: &str, nonce: bool| {
        let q = pki::ocsp::CertQuery::for_serial(&identity, serial).expect("query");
        let mut tbs = tlv(0x30, &tlv(0x30, &q.cert_id_der));
        if nonce {
            let oid = [
                0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
            ];
            let ext = tlv(0x30, &[&oid[..], &tlv(0x04, &tlv(0x04, &[9; 16]))].concat());
            tbs.extend(tlv(0xa2, &tlv(0x30, &ext)));
        }
        tlv(0x30, &tlv(0x30, &tbs))
    };
    vec![
        request(serial, false),
        request(serial, true),
        request("0badc0ffee", false),
    ]
}

async fn est_and_ocsp_bodies_never_get_a_server_error(rig: &Rig) {
    let id = rig.issued_certificate("prop.example.com").await;
    let cert = rig.op("get_certificate", json!({ "id": id })).await;
    let serial = cert["versions"][0]["serial"]
        .as_str()
        .expect("serial")
        .to_owned();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("any:{}", rig.admin_key))
    );
    let csrs = vec![csr_der("est1.example.com"), csr_der("est2.example.com")];
    let requests = ocsp_requests(rig, &serial).await;
    // The seeds work: mutations start from requests the server accepts.
    let ok = status_of(
        rig,
        Request::post("/.well-known/est/simpleenroll")
            .header("content-type", "application/pkcs10")
            .header("authorization", &basic)
            .body(Body::from(STANDARD.encode(&csrs[0])))
            .expect("request"),
    )
    .await;
    assert_eq!(ok, 200);
    for r in &requests {
        let get = format!("/api/v1/ocsp/iss-local/{}", segment(&STANDARD.encode(r)));
        let s = status_of(rig, Request::get(get).body(Body::empty()).expect("req")).await;
        assert_eq!(s, 200);
    }

    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        // EST: the CSR mutated under its base64, and the base64 text mutated.
        let est_bodies = prop_oneof![
            mutated(csrs.clone()).prop_map(|der| STANDARD.encode(der).into_bytes()),
            mutated(
                csrs.iter()
                    .map(|d| STANDARD.encode(d).into_bytes())
                    .collect()
            ),
        ];
        let paths = prop_oneof![
            Just("simpleenroll"),
            Just("serverkeygen"),
            Just("simplereenroll")
        ];
        runner(BODY_CASES)
            .run(&(paths, est_bodies), |(path, body)| {
                let req = Request::post(format!("/.well-known/est/{path}"))
                    .header("content-type", "application/pkcs10")
                    .header("authorization", &basic)
                    .body(Body::from(body))
                    .expect("request");
                no_server_error(handle.block_on(status_of(rig, req)), path)
            })
            .expect("EST bodies");
        // OCSP: POST bodies, and GET paths in standard and URL-safe base64.
        runner(BODY_CASES)
            .run(&(0u8..3, mutated(requests.clone())), |(form, der)| {
                let req = match form {
                    0 => Request::post("/api/v1/ocsp/iss-local")
                        .header("content-type", "application/ocsp-request")
                        .body(Body::from(der))
                        .expect("request"),
                    1 => Request::get(format!(
                        "/api/v1/ocsp/iss-local/{}",
                        segment(&STANDARD.encode(&der))
                    ))
                    .body(Body::empty())
                    .expect("request"),
                    _ => Request::get(format!(
                        "/api/v1/ocsp/iss-local/{}",
                        segment(&URL_SAFE_NO_PAD.encode(&der))
                    ))
                    .body(Body::empty())
                    .expect("request"),
                };
                no_server_error(handle.block_on(status_of(rig, req)), "OCSP")
            })
            .expect("OCSP requests");
    });
}

// ---------------------------------------------------------------- REST routes

fn json_leaf(tokens: Arc<Vec<String>>) -> impl Strategy<Value = Value> {
    let n = tokens.len();
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        2 => (-3i64..4000).prop_map(Value::from),
        1 => any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        5 => (0..n).prop_map(move |i| Value::String(tokens[i].clone())),
        2 => ".{0,24}".prop_map(Value::String),
    ]
}

fn json_value(tokens: Arc<Vec<String>>) -> impl Strategy<Value = Value> {
    json_leaf(tokens.clone()).prop_recursive(3, 32, 6, move |inner| {
        let keys = tokens.clone();
        let n = keys.len();
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            vec(
                (
                    prop_oneof![(0..n).prop_map(move |i| keys[i].clone()), "[a-z_]{1,10}",],
                    inner
                ),
                0..5
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A body: mostly a JSON object, sometimes other JSON or raw bytes.
fn body(tokens: Arc<Vec<String>>) -> impl Strategy<Value = Vec<u8>> {
    let keys = tokens.clone();
    let n = keys.len();
    let key = prop_oneof![
        3 => (0..n).prop_map(move |i| keys[i].clone()),
        1 => "[a-z_]{1,12}",
    ];
    prop_oneof![
        5 => vec((key, json_value(tokens.clone())), 0..7)
            .prop_map(|kv| serde_json::to_vec(&Value::Object(kv.into_iter().collect::<Map<_, _>>())).unwrap_or_default()),
        1 => json_value(tokens).prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        1 => vec(any::<u8>(), 0..200),
    ]
}

async fn rest_routes_never_answer_junk_with_a_server_error(rig: &Rig) {
    let cert = rig.issued_certificate("route.example.com").await;
    let agent = rig
        .op("register_agent", json!({ "name": "prop-agent" }))
        .await;
    let agent_id = agent["agent"]["id"].as_str().expect("agent").to_owned();
    let viewer = rig.key("viewer").await;
    let keys = [rig.admin_key.clone(), viewer];
    // Field names and enum values the operations' schemas know, and ids of
    // real objects.
    let mut tokens: Vec<String> = vec![
        cert.clone(),
        agent_id.clone(),
        "iss-local".into(),
        "example.com".into(),
        "-created_at".into(),
        "\u{0}".into(),
        "x".repeat(3000),
        String::new(),
    ];
    for op in certctl_engine::ops::catalogue() {
        let schema = op.input_schema();
        if let Some(props) = schema["properties"].as_object() {
            tokens.extend(props.keys().cloned());
        }
        collect_enums(&schema, &mut tokens);
    }
    tokens.sort();
    tokens.dedup();
    let tokens = Arc::new(tokens);
    let routes = certctl_api::routes::routes();
    let ids = Arc::new(vec![cert, agent_id, "nope".to_owned(), "%00".to_owned()]);
    let n_ids = ids.len();
    let strategy = (
        0..routes.len(),
        0..n_ids,
        any::<bool>(),
        body(tokens.clone()),
        vec(
            (
                (0..tokens.len()).prop_map({
                    let t = tokens.clone();
                    move |i| t[i].clone()
                }),
                ".{0,12}",
            ),
            0..4,
        ),
    );
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        runner(ROUTE_CASES)
            .run(&strategy, |(r, id, as_admin, body, query)| {
                let route = &routes[r];
                let mut path = format!("/api/v1{}", route.path);
                if let Some(open) = path.find('{') {
                    let close = path[open..].find('}').map_or(path.len(), |c| open + c + 1);
                    path.replace_range(open..close, &segment(&ids[id]));
                }
                let method = match route.method {
                    Verb::Get => Method::GET,
                    Verb::Post => Method::POST,
                    Verb::Put => Method::PUT,
                    Verb::Delete => Method::DELETE,
                };
                let mut req = Request::builder().header(
                    "authorization",
                    format!("Bearer {}", keys[usize::from(!as_admin)]),
                );
                let body = if route.source == Source::Query {
                    let q: Vec<String> = query
                        .iter()
                        .map(|(k, v)| format!("{}={}", segment(k), segment(v)))
                        .collect();
                    if !q.is_empty() {
                        path = format!("{path}?{}", q.join("&"));
                    }
                    Body::empty()
                } else {
                    req = req.header("content-type", "application/json");
                    Body::from(body)
                };
                let req = req.method(method).uri(&path).body(body).expect("request");
                let status = handle.block_on(status_of(rig, req));
                no_server_error(status, &format!("{} {path}", route.method.as_str()))
            })
            .expect("REST routes");
    });
    // The audit chain is whole after all of it.
    let v = rig.op("verify_audit_log", json!({})).await;
    assert_eq!(v["valid"], true, "{v}");
}

fn collect_enums(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("enum", Value::Array(items)) => {
                        out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)))
                    }
                    ("const", Value::String(s)) => out.push(s.clone()),
                    _ => collect_enums(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_enums(i, out)),
        _ => {}
    }
}
