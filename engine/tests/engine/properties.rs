//! Property tests (issue 17): what arrives from the network (CSRs, PEM
//! bundles, OCSP requests) and every catalogue operation's JSON input, as
//! admin and as viewer. Never a panic, never `Error::Internal` or a storage
//! error, and a refused call leaves the database as it was.
//!
//! Inputs are real valid ones mutated (bit flips, truncation, splicing,
//! insertions, deletions; a DER is also re-wrapped in PEM so the mutation
//! reaches the DER parser) mixed with random bytes and JSON. Cases per
//! property: `PROPTEST_CASES`, else the defaults below, so the set takes
//! seconds. A failure prints the shrunk input.

use std::sync::Arc;

use certctl_engine::Error;
use certctl_engine::bootstrap::LOCAL_ISSUER_ID;
use certctl_engine::domain::{KeyAlgorithm, Role};
use certctl_engine::ops;
use certctl_engine::pki;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

use super::support::{Db, Harness, csr, principal};
use crate::backend_tests;

backend_tests!(
    every_operation_refuses_junk_json_cleanly,
    a_nul_character_is_invalid_input,
);

/// Cases per property unless `PROPTEST_CASES` says otherwise.
const PARSER_CASES: u32 = 256;
const JSON_CASES: u32 = 128;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        // Integration tests have no source-relative regressions file.
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    })
}

// ---------------------------------------------------------------- mutation

/// One edit of a byte string; positions are fractions of its length then.
#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Truncate(Index),
    /// Cut here and continue with another seed from there.
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

/// Mostly mutations of the seeds, sometimes random bytes.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let seeds = Arc::new(seeds);
    let n = seeds.len();
    prop_oneof![
        1 => vec(any::<u8>(), 0..600),
        5 => (0..n, 0..n, vec(edit(), 1..6))
            .prop_map(move |(a, b, edits)| apply(&seeds[a], &seeds[b], &edits)),
    ]
}

fn pem(label: &str, der: &[u8]) -> String {
    ::pem::encode(&::pem::Pem::new(label, der.to_vec()))
}

fn der_of(pem_text: &str) -> Vec<u8> {
    ::pem::parse_many(pem_text)
        .expect("pem")
        .into_iter()
        .map(|p| p.into_contents())
        .next()
        .expect("one block")
}

/// A refusal must be the caller's fault, never the server's.
fn clean<T>(r: &certctl_engine::Result<T>, what: &str) -> Result<(), TestCaseError> {
    match r {
        Err(e @ (Error::Internal(_) | Error::Storage(_))) => Err(TestCaseError::fail(format!(
            "{what}: server-side error for bad input: {e:?}"
        ))),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------- parsers

fn csr_seeds() -> Vec<Vec<u8>> {
    [
        csr(KeyAlgorithm::EcdsaP256, "a.example.com", &["a.example.com"]),
        csr(
            KeyAlgorithm::EcdsaP384,
            "b.example.com",
            &["b.example.com", "*.b.example.com", "c.example.org"],
        ),
    ]
    .iter()
    .map(|p| der_of(p))
    .collect()
}

#[test]
fn csr_parser_refuses_mutated_csrs_cleanly() {
    let seeds = csr_seeds();
    let texts: Vec<Vec<u8>> = seeds
        .iter()
        .map(|d| pem("CERTIFICATE REQUEST", d).into_bytes())
        .collect();
    runner(PARSER_CASES)
        .run(&mutated(seeds), |der| {
            clean(&pki::parse_csr_der(&der), "parse_csr_der")?;
            clean(
                &pki::parse_csr(&pem("CERTIFICATE REQUEST", &der)),
                "parse_csr",
            )
        })
        .expect("CSR DER");
    runner(PARSER_CASES)
        .run(&mutated(texts), |text| {
            clean(
                &pki::parse_csr(&String::from_utf8_lossy(&text)),
                "parse_csr",
            )
        })
        .expect("CSR PEM text");
}

/// Issued certificates (leaf and chain) of a throwaway engine, as DER.
fn certificate_seeds() -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let h = Harness::new(None, Default::default())
            .await
            .expect("harness");
        let v = h
            .issued_cert("bundle.example.com")
            .await
            .version
            .expect("version");
        let mut ders: Vec<Vec<u8>> = ::pem::parse_many(format!("{}{}", v.cert_pem, v.chain_pem))
            .expect("pem")
            .into_iter()
            .map(|p| p.into_contents())
            .collect();
        ders.dedup();
        h.finish().await;
        ders
    })
}

#[test]
fn pem_bundle_parser_refuses_mutated_bundles_cleanly() {
    let ders = certificate_seeds();
    let bundle: String = ders.iter().map(|d| pem("CERTIFICATE", d)).collect();
    let first = ders[0].clone();
    runner(PARSER_CASES)
        .run(&mutated(ders.clone()), |der| {
            // The mutated one between a good one and the end.
            let text = format!("{}{}", pem("CERTIFICATE", &first), pem("CERTIFICATE", &der));
            clean(&pki::parse_certificate_bundle(&text), "bundle of DER")
        })
        .expect("bundle DER");
    runner(PARSER_CASES)
        .run(&mutated(vec![bundle.into_bytes()]), |text| {
            clean(
                &pki::parse_certificate_bundle(&String::from_utf8_lossy(&text)),
                "bundle text",
            )
        })
        .expect("bundle text");
}

// ---------------------------------------------------------------- OCSP

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

/// An OCSPRequest for `serial` of the local CA, with or without a nonce.
fn ocsp_request(ca: &pki::crl::CaIdentity, serial: &str, nonce: bool) -> Vec<u8> {
    let q = pki::ocsp::CertQuery::for_serial(ca, serial).expect("query");
    let request = tlv(0x30, &q.cert_id_der);
    let mut tbs = tlv(0x30, &request);
    if nonce {
        let oid = [
            0x06, 0x09, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x02,
        ];
        let value = tlv(0x04, &tlv(0x04, &[7; 16]));
        let ext = tlv(0x30, &[&oid[..], &value].concat());
        tbs.extend(tlv(0xa2, &tlv(0x30, &ext)));
    }
    tlv(0x30, &tlv(0x30, &tbs))
}

/// The responseStatus of an OCSPResponse, when it has one.
fn ocsp_status(resp: &[u8]) -> Option<u8> {
    let (&tag, rest) = resp.split_first()?;
    if tag != 0x30 {
        return None;
    }
    let (&len, rest) = rest.split_first()?;
    let rest = if len & 0x80 != 0 {
        rest.get(usize::from(len & 0x7f)..)?
    } else {
        rest
    };
    match rest {
        [0x0a, 0x01, status, ..] => Some(*status),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_answers_mutated_requests_without_internal_errors() {
    let h = Harness::new(None, Default::default())
        .await
        .expect("harness");
    let v = h
        .issued_cert("ocsp.example.com")
        .await
        .version
        .expect("version");
    let chain = h
        .engine
        .issuer_chain_pem(LOCAL_ISSUER_ID)
        .await
        .expect("chain");
    let ca_der = der_of(&chain);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).expect("CA");
    let identity = pki::crl::CaIdentity {
        name_der: ca.subject().as_raw().to_vec(),
        key_bits: ca.public_key().subject_public_key.data.to_vec(),
        key_id: Vec::new(),
        cert_der: ca_der.clone(),
    };
    let seeds = vec![
        ocsp_request(&identity, &v.serial, false),
        ocsp_request(&identity, &v.serial, true),
        ocsp_request(&identity, "0123456789abcdef", true),
    ];
    // The seeds themselves are answered: the mutations start from real requests.
    for s in &seeds {
        assert!(pki::ocsp::parse_request(s).is_ok());
        let resp = h.engine.ocsp_response(LOCAL_ISSUER_ID, s).await;
        assert_eq!(ocsp_status(&resp), Some(0), "{resp:?}");
    }
    let engine = h.engine.clone();
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        runner(PARSER_CASES)
            .run(&mutated(seeds), |der| {
                let _ = pki::ocsp::parse_request(&der);
                let resp = handle.block_on(engine.ocsp_response(LOCAL_ISSUER_ID, &der));
                // 2 is internalError: bad input must never look like our fault.
                prop_assert!(
                    matches!(ocsp_status(&resp), Some(0 | 1 | 6)),
                    "status {:?} for {} request bytes",
                    ocsp_status(&resp),
                    der.len()
                );
                Ok(())
            })
            .expect("OCSP");
    });
    h.finish().await;
}

// ---------------------------------------------------------------- operations

/// Strings worth trying in any field: the ids of real objects, the enum
/// values the schemas name, and values with a meaning somewhere.
struct Pool {
    tokens: Vec<String>,
    /// Each operation's input property names, by catalogue index.
    fields: Vec<Vec<String>>,
}

fn schema_words(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("enum", Value::Array(items)) => {
                        out.extend(items.iter().filter_map(|i| i.as_str().map(str::to_owned)))
                    }
                    ("const", Value::String(s)) => out.push(s.clone()),
                    _ => schema_words(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| schema_words(i, out)),
        _ => {}
    }
}

async fn seed(h: &Harness) -> Pool {
    let admin = h.admin();
    let issued = h.issued_cert("seed.example.com").await;
    let version = issued.version.expect("version");
    let agent = h
        .done::<ops::RegisterAgent>(
            &admin,
            serde_json::from_value(json!({ "name": "seed-agent", "labels": { "env": "prod" } }))
                .expect("input"),
        )
        .await
        .agent;
    let group = h
        .done::<ops::SaveAgentGroup>(
            &admin,
            serde_json::from_value(
                json!({ "name": "seed", "criteria": { "labels": { "env": "prod" } } }),
            )
            .expect("input"),
        )
        .await;
    let target = h
        .done::<ops::SaveTarget>(
            &admin,
            serde_json::from_value(
                json!({ "name": "seed-target", "kind": "nginx", "agent_id": agent.id,
                "config": { "cert_path": "/etc/nginx/s.pem", "key_path": "/etc/nginx/s.key" } }),
            )
            .expect("input"),
        )
        .await;
    let mut tokens = vec![
        issued.certificate.id.clone(),
        version.id.clone(),
        version.serial.clone(),
        agent.id.clone(),
        group.id.clone(),
        target.id.clone(),
        LOCAL_ISSUER_ID.to_owned(),
        "seed.example.com".into(),
        "*.example.com".into(),
        "10.0.0.0/8".into(),
        "::ffff:127.0.0.1".into(),
        "-created_at".into(),
        "name".into(),
        String::new(),
        "\u{0}".into(),
        "x".repeat(5000),
        "../../etc/passwd".into(),
        csr(
            KeyAlgorithm::EcdsaP256,
            "seed.example.com",
            &["seed.example.com"],
        ),
        version.cert_pem.clone(),
    ];
    let mut fields = Vec::new();
    for op in ops::catalogue() {
        let schema = op.input_schema();
        schema_words(&schema, &mut tokens);
        let mut names: Vec<String> = schema["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        if names.is_empty() {
            names.push("id".into());
        }
        fields.push(names);
    }
    tokens.sort();
    tokens.dedup();
    Pool { tokens, fields }
}

fn json_leaf(tokens: Arc<Vec<String>>) -> impl Strategy<Value = Value> {
    let n = tokens.len();
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        2 => (-3i64..4000).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
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

/// An input for operation `i`: mostly an object of its own fields (some
/// left out, some made up) with plausible or junk values, sometimes anything.
fn json_input(pool: &Pool, i: usize) -> impl Strategy<Value = Value> + use<> {
    let tokens = Arc::new(pool.tokens.clone());
    let names = Arc::new(pool.fields[i].clone());
    let n = names.len();
    let field = prop_oneof![
        5 => (0..n).prop_map(move |k| names[k].clone()),
        1 => "[a-z_]{1,12}",
    ];
    prop_oneof![
        1 => json_value(tokens.clone()),
        4 => vec((field, json_value(tokens)), 0..7)
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
    ]
}

/// What a refused call must leave alone: row counts and update stamps of
/// the tables operations write. The audit log is left out (a refusal is
/// audited), and so are the policy violations recorded with a refusal.
async fn digest(db: &Db) -> String {
    const TABLES: &[(&str, bool)] = &[
        ("teams", true),
        ("owners", true),
        ("profiles", true),
        ("renewal_policies", true),
        ("policy_rules", true),
        ("issuers", true),
        ("agents", true),
        ("targets", true),
        ("certificates", true),
        ("certificate_versions", false),
        ("certificate_targets", false),
        ("jobs", true),
        ("principals", false),
        ("approvals", false),
        ("notification_events", false),
        ("notification_channels", true),
        ("notification_rules", true),
        ("revocations", false),
        ("export_links", false),
        ("discovered_certificates", true),
        ("discovery_sightings", false),
        ("network_scan_targets", true),
        ("bulk_operations", false),
        ("agent_groups", true),
    ];
    let parts: Vec<String> = TABLES
        .iter()
        .map(|(t, stamped)| {
            let stamp = if *stamped {
                "COALESCE(SUM(updated_at), 0)"
            } else {
                "0"
            };
            format!("(SELECT CAST(COUNT(*) AS TEXT) || ':' || CAST({stamp} AS TEXT) FROM {t})")
        })
        .chain([
            "(SELECT CAST(COUNT(*) AS TEXT) FROM approvals WHERE status = 'pending')".to_owned(),
            "(SELECT CAST(COUNT(*) AS TEXT) FROM principals WHERE revoked_at IS NOT NULL)"
                .to_owned(),
        ])
        .collect();
    let sql = format!("SELECT {}", parts.join(" || ',' || "));
    use sqlx::Connection;
    match db {
        Db::Sqlite(p) => {
            let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", p.display()))
                .await
                .expect("sqlite");
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .expect("digest")
        }
        Db::Postgres { url, .. } => {
            let mut c = sqlx::PgConnection::connect(url).await.expect("postgres");
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut c)
                .await
                .expect("digest")
        }
    }
}

async fn every_operation_refuses_junk_json_cleanly(h: &Harness) {
    let pool = seed(h).await;
    let catalogue = ops::catalogue();
    let viewer = principal("pr-prop-viewer", Role::Viewer);
    let admin = h.admin();
    let inputs: Vec<_> = (0..catalogue.len())
        .map(|i| json_input(&pool, i).boxed())
        .collect();
    let strategy = (0..catalogue.len(), any::<bool>())
        .prop_flat_map(move |(i, as_admin)| (Just(i), Just(as_admin), inputs[i].clone()));
    let handle = tokio::runtime::Handle::current();
    // Completed and refused calls, so a property that only ever met parse
    // errors would show (and fail below).
    let completed = std::sync::atomic::AtomicUsize::new(0);
    let refused = std::sync::atomic::AtomicUsize::new(0);
    tokio::task::block_in_place(|| {
        runner(JSON_CASES)
            .run(&strategy, |(i, as_admin, input)| {
                let op = &catalogue[i];
                let name = op.meta().name;
                let who = if as_admin { &admin } else { &viewer };
                handle.block_on(async {
                    // Every case at a new second, so an update shows in the stamps.
                    h.clock.advance(1);
                    let before = digest(&h.db).await;
                    let r = op.call_json(&h.engine, who, input.clone()).await;
                    clean(&r, name)?;
                    let tally = if r.is_ok() { &completed } else { &refused };
                    tally.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if r.is_err() {
                        let after = digest(&h.db).await;
                        prop_assert_eq!(
                            before,
                            after,
                            "{} refused {} but changed state",
                            name,
                            input
                        );
                    }
                    Ok::<(), TestCaseError>(())
                })
            })
            .expect("operations");
    });
    let (completed, refused) = (completed.into_inner(), refused.into_inner());
    eprintln!("operations: {completed} completed, {refused} refused");
    assert!(completed > 0, "no generated input was ever accepted");
    let v = h
        .done::<ops::VerifyAuditLog>(&h.admin(), Default::default())
        .await;
    assert!(v.valid, "{v:?}");
}

/// Found by the property above on PostgreSQL: a NUL in any string of an
/// input was a storage error (a 500); it is invalid input, on both backends.
async fn a_nul_character_is_invalid_input(h: &Harness) {
    let before = digest(&h.db).await;
    for (name, input) in [
        ("retry_notification", json!(["\u{0}"])),
        ("save_team", json!({ "name": "a\u{0}b" })),
        ("get_certificate", json!({ "id": "mc-\u{0}" })),
        ("list_certificates", json!({ "labels": { "k\u{0}": "v" } })),
    ] {
        let err = ops::find(name)
            .expect("op")
            .call_json(&h.engine, &h.admin(), input)
            .await
            .expect_err("NUL");
        assert!(
            matches!(&err, Error::InvalidInput(m) if m.contains("NUL")),
            "{name}: {err:?}"
        );
    }
    assert_eq!(digest(&h.db).await, before);
}
