//! The client commands against a running `certctl serve --demo`: list, get,
//! create, issue, renew, revoke through an approval, import of a
//! 1,000-certificate bundle, JSON and table output, and clear failures.

use std::path::Path;

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::{Server, certctl, wait_healthy};

/// Runs a client command against `server` with `key`; returns (exit code, stdout, stderr).
fn cli(server: &Server, dir: &Path, key: &str, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![
        "--server",
        server.base.as_str(),
        "--api-key",
        key,
        "--data-dir",
    ];
    let dir = dir.to_str().expect("utf-8 path");
    all.push(dir);
    all.extend_from_slice(args);
    let out = certctl(&all);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok_json(out: (i32, String, String)) -> Value {
    let (code, stdout, stderr) = out;
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// `n` leaf certificates from an outside CA, each followed by the CA.
fn outside_bundle(n: usize) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SerialNumber};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Old Corp CA");
    let ca_pem = ca.self_signed(&ca_key).expect("ca").pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().expect("leaf key");
    let mut out = String::new();
    for i in 0..n {
        let name = format!("host{i:04}.old.example.com");
        let mut p = CertificateParams::new(vec![name.clone()]).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.serial_number = Some(SerialNumber::from(i as u64 + 1));
        out.push_str(&p.signed_by(&leaf_key, &issuer).expect("leaf").pem());
        out.push_str(&ca_pem);
    }
    out
}

fn csr_file(dir: &Path, cn: &str) -> std::path::PathBuf {
    use certctl_engine::domain::KeyAlgorithm;
    use certctl_engine::pki;
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).expect("key");
    let names = pki::SubjectNames {
        dns: vec![cn.to_owned()],
        ..Default::default()
    };
    let path = dir.join(format!("{cn}.csr"));
    std::fs::write(&path, pki::csr_for(&key, cn, &names).expect("csr")).expect("write csr");
    path
}

#[tokio::test]
async fn client_commands_against_the_demo() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(dir.path(), &["--demo"]);
    let admin = std::fs::read_to_string(dir.path().join("admin.key")).expect("admin.key");
    let admin = admin.trim().to_owned();
    let client = Client::new(&server.base, Some(admin.clone())).expect("client");
    wait_healthy(&client).await;
    let d = dir.path();

    // List: JSON has every demo certificate; the table has headers and names.
    let all = ok_json(cli(
        &server,
        d,
        &admin,
        &[
            "--format",
            "json",
            "certs",
            "list",
            "--all",
            "--per-page",
            "4",
        ],
    ));
    assert_eq!(all.as_array().map(Vec::len), Some(15), "{all}");
    let (code, table, _) = cli(&server, d, &admin, &["certs", "list", "--per-page", "100"]);
    assert_eq!(code, 0);
    assert!(
        table.contains("COMMON NAME") && table.contains("EXPIRES"),
        "{table}"
    );
    let first = all[0]["common_name"].as_str().expect("name");
    assert!(table.contains(first), "{table}");
    let expiring = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "certs", "list", "--status", "expiring"],
    ));
    assert!(
        expiring
            .as_array()
            .expect("rows")
            .iter()
            .all(|c| c["status"] == "expiring"),
        "{expiring}"
    );

    // Get.
    let id = all[0]["id"].as_str().expect("id").to_owned();
    let got = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "certs", "get", &id],
    ));
    assert_eq!(got["certificate"]["id"], json!(id));
    let (code, out, _) = cli(&server, d, &admin, &["certs", "get", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("fingerprint") && out.contains(&id), "{out}");

    // Create, issue from a CSR, renew from a new CSR.
    let created = ok_json(cli(
        &server,
        d,
        &admin,
        &[
            "--format",
            "json",
            "certs",
            "create",
            "--cn",
            "cli.example.com",
            "--environment",
            "test",
        ],
    ));
    let new_id = created[0]["id"].as_str().expect("id").to_owned();
    let csr = csr_file(d, "cli.example.com");
    let csr = csr.to_str().expect("path");
    let (code, out, err) = cli(
        &server,
        d,
        &admin,
        &["certs", "issue", &new_id, "--csr", csr],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("issued {new_id}: serial ")),
        "{out}"
    );
    let renewed = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "certs", "renew", &new_id, "--csr", csr],
    ));
    assert_eq!(renewed["job"]["status"], "completed", "{renewed}");
    assert!(renewed["version"]["serial"].is_string());

    // Revoke stops at the approval gate (exit 3, nothing changed), then
    // another person approves with the CLI and it runs once.
    let (code, out, err) = cli(
        &server,
        d,
        &admin,
        &["certs", "revoke", &new_id, "--reason", "superseded"],
    );
    assert_eq!(code, 3, "{out}{err}");
    let approval = out
        .split_whitespace()
        .find(|w| w.starts_with("ap-"))
        .expect("approval id printed")
        .to_owned();
    assert!(err.contains("waiting for approval"), "{err}");
    let still = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "certs", "get", &new_id],
    ));
    assert_eq!(still["certificate"]["status"], "valid");
    let approver: Value = client
        .call_completed(
            "create_principal",
            &json!({ "name": "bob", "role": "approver" }),
        )
        .await
        .expect("approver");
    let bob = approver["api_key"].as_str().expect("api key").to_owned();
    let (code, out, err) = cli(&server, d, &bob, &["approvals", "approve", &approval]);
    assert_eq!(code, 0, "{out}{err}");
    let revoked = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "certs", "get", &new_id],
    ));
    assert_eq!(revoked["certificate"]["status"], "revoked");
    assert_eq!(revoked["certificate"]["revocation_reason"], "superseded");
    let (code, _, err) = cli(&server, d, &bob, &["approvals", "approve", &approval]);
    assert_ne!(code, 0, "a decided approval cannot run twice");
    assert_eq!(err.lines().count(), 1, "{err}");

    // Import of 1,000 certificates, then again: idempotent.
    let bundle = d.join("old.pem");
    std::fs::write(&bundle, outside_bundle(1000)).expect("bundle");
    let bundle = bundle.to_str().expect("path");
    let report = ok_json(cli(
        &server,
        d,
        &admin,
        &[
            "--format",
            "json",
            "import",
            bundle,
            "--environment",
            "legacy",
        ],
    ));
    assert_eq!(report["imported"], 1000, "{}", report["skipped"]);
    let (code, out, err) = cli(&server, d, &admin, &["import", bundle]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("imported 0, already managed 1000, skipped 0"),
        "{out}"
    );
    let legacy = ok_json(cli(
        &server,
        d,
        &admin,
        &[
            "--format",
            "json",
            "certs",
            "list",
            "--all",
            "--per-page",
            "1000",
        ],
    ));
    assert_eq!(legacy.as_array().map(Vec::len), Some(15 + 1 + 1000));

    // Other resources list in both formats.
    for what in ["agents", "jobs", "issuers", "targets"] {
        let rows = ok_json(cli(&server, d, &admin, &["--format", "json", what, "list"]));
        assert!(rows.is_array(), "{what}: {rows}");
        let (code, out, err) = cli(&server, d, &admin, &[what, "list"]);
        assert_eq!(code, 0, "{what}: {err}");
        assert!(out.contains("ID"), "{what}: {out}");
    }
    let events = ok_json(cli(
        &server,
        d,
        &admin,
        &["--format", "json", "audit", "list", "--per-page", "5"],
    ));
    assert_eq!(events.as_array().map(Vec::len), Some(5));

    // Failures: one clear line on stderr, non-zero exit.
    for (args, needle) in [
        (vec!["certs", "get", "mc-nope"], "not found"),
        (
            vec!["certs", "list", "--expires-before", "soon"],
            "not a time",
        ),
        (vec!["import", "/nonexistent.pem"], "cannot read"),
    ] {
        let (code, _, err) = cli(&server, d, &admin, &args);
        assert_ne!(code, 0, "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("certctl: error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    let viewer: Value = client
        .call_completed(
            "create_principal",
            &json!({ "name": "vic", "role": "viewer" }),
        )
        .await
        .expect("viewer");
    let vic = viewer["api_key"].as_str().expect("api key").to_owned();
    let (code, _, err) = cli(
        &server,
        d,
        &vic,
        &["certs", "create", "--cn", "no.example.com"],
    );
    assert_ne!(code, 0);
    assert!(err.starts_with("certctl: error: "), "{err}");

    // An enforce-mode policy: a name outside its domains is refused with the
    // rule's reason (non-zero exit, one line) and the attempt is recorded.
    let _: Value = client
        .call_completed(
            "save_policy",
            &json!({ "name": "corp only", "kind": "allowed_domains", "severity": "high",
                     "mode": "enforce", "params": { "domains": ["*.example.com"] } }),
        )
        .await
        .expect("policy");
    let (code, _, err) = cli(
        &server,
        d,
        &admin,
        &["certs", "create", "--cn", "shop.evil.org"],
    );
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("certctl: error: ")
            && err.contains("'corp only'")
            && err.contains("shop.evil.org is outside the allowed domains"),
        "{err}"
    );
    let refused: Value = client
        .call_completed("list_policy_violations", &json!({ "refused": true }))
        .await
        .expect("violations");
    assert_eq!(refused["total"], 1, "{refused}");
    assert_eq!(refused["data"][0]["common_name"], "shop.evil.org");
    // The same list from the CLI: any operation by name with `certctl call`.
    let (code, out, err) = cli(
        &server,
        d,
        &admin,
        &["call", "list_policy_violations", r#"{"refused": true}"#],
    );
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(listed["data"][0]["common_name"], "shop.evil.org", "{out}");
    // Bad input and unknown operations fail with one clear line.
    let (code, _, err) = cli(
        &server,
        d,
        &admin,
        &["call", "list_policy_violations", "[1]"],
    );
    assert_ne!(code, 0);
    assert!(err.contains("must be a JSON object"), "{err}");
    let (code, _, err) = cli(&server, d, &admin, &["call", "no_such_operation"]);
    assert_ne!(code, 0);
    assert!(err.starts_with("certctl: error: "), "{err}");
    assert!(server.terminate().success());
}
