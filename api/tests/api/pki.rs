//! CRL, OCSP, export and EST over real HTTP(S) servers on port 0, checked
//! with the real `openssl` and `curl` as the clients.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use certctl_api::{AppState, EstConfig};
use certctl_engine::domain::KeyAlgorithm;
use certctl_engine::pki::{self, SubjectNames};
use serde_json::json;

use crate::support::Rig;

fn run(dir: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

pub(crate) struct Server {
    pub(crate) base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub(crate) async fn plain(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(certctl_api::run(listener, certctl_api::app(state), async {
            let _ = stopped.await;
        }));
        Self {
            base: format!("http://{addr}"),
            stop: Some(stop),
            task,
        }
    }

    async fn tls(state: AppState, config: Arc<rustls::ServerConfig>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(certctl_api::tls::run_tls(
            listener,
            certctl_api::app(state),
            config,
            async {
                let _ = stopped.await;
            },
        ));
        Self {
            base: format!("https://127.0.0.1:{}", addr.port()),
            stop: Some(stop),
            task,
        }
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.await.expect("join").expect("clean shutdown");
    }
}

async fn write_ca(rig: &Rig, dir: &Path) {
    let issuer = rig
        .op("get_object", json!({ "kind": "issuer", "id": "iss-local" }))
        .await;
    std::fs::write(
        dir.join("issuing.pem"),
        issuer["ca_cert_pem"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("root.pem"),
        issuer["ca_chain_pem"].as_str().unwrap(),
    )
    .unwrap();
}

async fn leaf_pem(rig: &Rig, id: &str) -> String {
    let out = rig
        .op("export_certificate", json!({ "id": id, "format": "pem" }))
        .await;
    let pem = out["pem"].as_str().unwrap();
    let end = pem.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    pem[..end].to_owned()
}

/// Revokes through the gate, confirming in chat as the requester.
pub(crate) async fn revoke(rig: &Rig, id: &str, reason: &str) {
    let out = certctl_engine::ops::find("revoke_certificate")
        .unwrap()
        .call_json(
            &rig.engine,
            &rig.admin,
            json!({ "id": id, "reason": reason }),
        )
        .await
        .unwrap();
    let certctl_engine::ops::Outcome::ApprovalRequired(t) = out else {
        panic!("gated")
    };
    rig.engine
        .confirm_in_chat(&rig.admin, &t.approval_id)
        .await
        .unwrap()
        .completed()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_and_ocsp_over_http_with_openssl() {
    let rig = Rig::new().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ca(&rig, d).await;
    let id = rig.issued_certificate("relying.example.com").await;
    std::fs::write(d.join("leaf.pem"), leaf_pem(&rig, &id).await).unwrap();
    let server = Server::plain(AppState::new(rig.engine.clone())).await;
    let url = format!("{}/api/v1/ocsp/iss-local", server.base);
    let ocsp = |extra: &[&str]| {
        let mut args = vec![
            "ocsp",
            "-issuer",
            "issuing.pem",
            "-cert",
            "leaf.pem",
            "-url",
            &url,
            "-CAfile",
            "root.pem",
        ];
        args.extend_from_slice(extra);
        run(d, "openssl", &args)
    };

    let (ok, out) = ocsp(&["-nonce"]);
    assert!(ok && out.contains("leaf.pem: good"), "{out}");
    assert!(!out.contains("WARNING"), "the nonce is echoed: {out}");

    // CRL: DER, and PEM on request; no bearer needed.
    let crl_url = format!("{}/api/v1/crl/iss-local", server.base);
    let (ok, out) = run(d, "curl", &["-sSf", "-o", "crl.der", &crl_url]);
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &["crl", "-inform", "DER", "-in", "crl.der", "-noout", "-text"],
    );
    assert!(ok && out.contains("CRL Number"), "{out}");

    revoke(&rig, &id, "keyCompromise").await;
    let (ok, out) = ocsp(&["-nonce"]);
    assert!(ok && out.contains("leaf.pem: revoked"), "{out}");
    assert!(out.contains("Reason: keyCompromise"), "{out}");

    let (ok, out) = run(
        d,
        "curl",
        &["-sSf", "-o", "crl.pem", &format!("{crl_url}?format=pem")],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "-CRLfile",
            "crl.pem",
            "leaf.pem",
        ],
    );
    assert!(!ok && out.contains("revoked"), "{out}");

    // Unknown: a serial this issuer never issued.
    let (ok, out) = ocsp(&["-serial", "0x0badc0ffee"]);
    assert!(ok && out.contains("0x0badc0ffee: unknown"), "{out}");

    // The GET forms: the hex serial, and a base64 request.
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "ocsp",
            "-issuer",
            "issuing.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    assert!(ok, "{out}");
    use base64::Engine as _;
    let b64 =
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join("req.der")).unwrap());
    let get_url = format!(
        "{url}/{}",
        b64.replace('/', "%2F")
            .replace('+', "%2B")
            .replace('=', "%3D")
    );
    let (ok, out) = run(d, "curl", &["-sSf", "-o", "resp.der", &get_url]);
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &["ocsp", "-respin", "resp.der", "-resp_text", "-noverify"],
    );
    assert!(ok && out.contains("Cert Status: revoked"), "{out}");
    let serial = rig.op("get_certificate", json!({ "id": id })).await["certificate"]["serial"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out) = run(
        d,
        "curl",
        &["-sSf", "-o", "resp2.der", &format!("{url}/{serial}")],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &["ocsp", "-respin", "resp2.der", "-resp_text", "-noverify"],
    );
    assert!(ok && out.contains("Cert Status: revoked"), "{out}");
    // POST with a wrong content type.
    let (_, out) = run(
        d,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            "@req.der",
            &url,
        ],
    );
    assert_eq!(out.trim(), "415");
    // An unknown issuer: 404 for the CRL.
    let (_, out) = run(
        d,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/api/v1/crl/iss-nope", server.base),
        ],
    );
    assert_eq!(out.trim(), "404");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkcs12_export_over_rest_and_links() {
    let rig = Rig::new().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = rig.issued_certificate("p12.example.com").await;
    let server = Server::plain(AppState::new(rig.engine.clone())).await;
    let auth = format!("Authorization: Bearer {}", rig.admin_key);
    let export = format!("{}/api/v1/certificates/{id}/export", server.base);
    let (ok, out) = run(
        d,
        "curl",
        &[
            "-sSf",
            "-o",
            "c.p12",
            "-H",
            &auth,
            "-H",
            "Content-Type: application/json",
            "--data",
            r#"{"format":"pkcs12","password":"s3cret-pass"}"#,
            &export,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-in",
            "c.p12",
            "-passin",
            "pass:s3cret-pass",
            "-nokeys",
        ],
    );
    assert!(ok && out.contains("p12.example.com"), "{out}");
    let (ok, _) = run(
        d,
        "curl",
        &[
            "-sSf",
            "-o",
            "c.der",
            "-H",
            &auth,
            "--data",
            r#"{"format":"der"}"#,
            &export,
        ],
    );
    assert!(ok);
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "x509", "-inform", "DER", "-in", "c.der", "-noout", "-subject",
        ],
    );
    assert!(ok && out.contains("p12.example.com"), "{out}");
    // Without a bearer: 401.
    let (_, out) = run(
        d,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data",
            "{}",
            &export,
        ],
    );
    assert_eq!(out.trim(), "401");

    // A link (what MCP hands out): the page asks for the password, the POST downloads once.
    let link = rig
        .op(
            "create_export_link",
            json!({ "id": id, "format": "pkcs12" }),
        )
        .await;
    let url = format!("{}{}", server.base, link["url"].as_str().unwrap());
    let (ok, page) = run(d, "curl", &["-sSf", &url]);
    assert!(ok && page.contains("type=\"password\""), "{page}");
    // Opening the page used the link up; the form posts its one-time ticket.
    let marker = "name=\"ticket\" value=\"";
    let start = page.find(marker).expect("the page has a ticket") + marker.len();
    let ticket = format!(
        "ticket={}",
        &page[start..start + page[start..].find('"').unwrap()]
    );
    let (ok, out) = run(
        d,
        "curl",
        &[
            "-sSf",
            "-o",
            "l.p12",
            "--data-urlencode",
            &ticket,
            "--data-urlencode",
            "password=another pass",
            &url,
        ],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "pkcs12",
            "-info",
            "-in",
            "l.p12",
            "-passin",
            "pass:another pass",
            "-nokeys",
        ],
    );
    assert!(ok, "{out}");
    let (_, out) = run(
        d,
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-urlencode",
            &ticket,
            "--data-urlencode",
            "password=another pass",
            &url,
        ],
    );
    assert_eq!(out.trim(), "404", "single use");
    server.stop().await;
}

/// A serving certificate for 127.0.0.1 from the local CA, and its key.
async fn serving_cert(rig: &Rig) -> (String, String) {
    let c = rig
        .op(
            "create_certificate",
            json!({ "common_name": "localhost", "sans": ["127.0.0.1"] }),
        )
        .await;
    let id = c["id"].as_str().unwrap();
    let key = pki::generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let names = SubjectNames {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap()],
        ..SubjectNames::default()
    };
    let csr = pki::csr_for(&key, "localhost", &names).unwrap();
    rig.op("issue_certificate", json!({ "id": id, "csr_pem": csr }))
        .await;
    let out = rig
        .op("export_certificate", json!({ "id": id, "format": "pem" }))
        .await;
    (
        out["pem"].as_str().unwrap().to_owned(),
        key.pkcs8_pem.to_string(),
    )
}

fn certificate_count(out: &serde_json::Value) -> i64 {
    out["total"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn est_end_to_end_with_curl_and_openssl() {
    let rig = Rig::new().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ca(&rig, d).await;
    let profile = rig
        .op(
            "save_profile",
            json!({ "name": "devices", "ekus": ["server_auth", "client_auth"], "san_rules": { "allowed_dns_suffixes": ["devices.example.com"] } }),
        )
        .await;
    let (cert_pem, key_pem) = serving_cert(&rig).await;
    let chain = rig.engine.issuer_chain_pem("iss-local").await.unwrap();
    let config = certctl_api::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), &chain)
        .expect("tls config");
    let mut state = AppState::new(rig.engine.clone());
    state.est = Arc::new(EstConfig {
        issuer_id: None,
        profile_id: Some(profile["id"].as_str().unwrap().to_owned()),
        users: vec![("enroller".into(), "enrol-secret".into())],
    });
    let server = Server::tls(state, config).await;
    let est = |p: &str| format!("{}/.well-known/est/{p}", server.base);
    let curl = |args: &[&str]| {
        let mut all = vec!["-sS", "--cacert", "root.pem"];
        all.extend_from_slice(args);
        run(d, "curl", &all)
    };
    let status = |args: &[&str]| {
        let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
        all.extend_from_slice(args);
        curl(&all).1.trim().to_owned()
    };

    // cacerts: PKCS#7 that openssl prints.
    let (ok, out) = curl(&["-f", "-o", "cacerts.b64", &est("cacerts")]);
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &["base64", "-d", "-in", "cacerts.b64", "-out", "cacerts.p7"],
    );
    assert!(ok, "{out}");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "cacerts.p7",
            "-print_certs",
            "-noout",
        ],
    );
    assert!(
        ok && out.contains("Issuing CA") && out.contains("Root CA"),
        "{out}"
    );

    // An openssl CSR, enrolled with HTTP Basic (a configured EST user).
    let csr = |name: &str, key: &str| {
        let subj = format!("/CN={name}");
        let san = format!("subjectAltName=DNS:{name}");
        let (ok, out) = run(
            d,
            "openssl",
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key,
                "-subj",
                &subj,
                "-addext",
                &san,
                "-outform",
                "DER",
                "-out",
                "csr.der",
            ],
        );
        assert!(ok, "{out}");
        let (ok, out) = run(
            d,
            "openssl",
            &["base64", "-in", "csr.der", "-out", "csr.b64"],
        );
        assert!(ok, "{out}");
    };
    let pkcs10 = "Content-Type: application/pkcs10";
    csr("dev1.devices.example.com", "dev1.key");
    let (ok, out) = curl(&[
        "-f",
        "-u",
        "enroller:enrol-secret",
        "-H",
        pkcs10,
        "--data-binary",
        "@csr.b64",
        "-o",
        "dev1.b64",
        &est("simpleenroll"),
    ]);
    assert!(ok, "{out}");
    let to_pem = |b64: &str, pem: &str| {
        let (ok, out) = run(
            d,
            "openssl",
            &["base64", "-d", "-in", b64, "-out", "p7.der"],
        );
        assert!(ok, "{out}");
        let (ok, out) = run(
            d,
            "openssl",
            &[
                "pkcs7",
                "-inform",
                "DER",
                "-in",
                "p7.der",
                "-print_certs",
                "-out",
                pem,
            ],
        );
        assert!(ok, "{out}");
    };
    to_pem("dev1.b64", "dev1.pem");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "dev1.pem",
        ],
    );
    assert!(ok && out.contains("dev1.pem: OK"), "{out}");

    // With an API key as the Basic password too.
    csr("dev2.devices.example.com", "dev2.key");
    let user = format!("any:{}", rig.admin_key);
    assert_eq!(
        status(&[
            "-u",
            &user,
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "200"
    );

    let before = certificate_count(&rig.op("list_certificates", json!({})).await);
    // Refusals, each with no issuance.
    assert_eq!(
        status(&[
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "401"
    );
    assert_eq!(
        status(&[
            "-u",
            "enroller:wrong",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "401"
    );
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "415"
    );
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "not base64 at all!",
            &est("simpleenroll")
        ]),
        "400"
    );
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "AAAA",
            &est("simpleenroll")
        ]),
        "400"
    );
    csr("evil.other.test", "evil.key");
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "403"
    );
    let after = certificate_count(&rig.op("list_certificates", json!({})).await);
    assert_eq!(before, after, "refused requests issue nothing");

    // simplereenroll: with the current certificate as the TLS client certificate.
    csr("dev1.devices.example.com", "dev1-new.key");
    assert_eq!(
        status(&[
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simplereenroll")
        ]),
        "403"
    );
    let (ok, out) = curl(&[
        "-f",
        "--cert",
        "dev1.pem",
        "--key",
        "dev1.key",
        "-H",
        pkcs10,
        "--data-binary",
        "@csr.b64",
        "-o",
        "dev1-new.b64",
        &est("simplereenroll"),
    ]);
    assert!(ok, "{out}");
    to_pem("dev1-new.b64", "dev1-new.pem");
    let (ok, out) = run(
        d,
        "openssl",
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "issuing.pem",
            "dev1-new.pem",
        ],
    );
    assert!(ok, "{out}");
    let (_, old) = run(
        d,
        "openssl",
        &["x509", "-in", "dev1.pem", "-noout", "-serial"],
    );
    let (_, new) = run(
        d,
        "openssl",
        &["x509", "-in", "dev1-new.pem", "-noout", "-serial"],
    );
    assert_ne!(old, new);
    // The superseded certificate cannot re-enroll again.
    assert_eq!(
        status(&[
            "--cert",
            "dev1.pem",
            "--key",
            "dev1.key",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simplereenroll")
        ]),
        "403"
    );
    assert_eq!(status(&[&est("csrattrs")]), "200");
    // serverkeygen: this installation keeps keys on the agents (the default),
    // so it is refused and issues nothing.
    csr("dev3.devices.example.com", "dev3.key");
    let before = certificate_count(&rig.op("list_certificates", json!({})).await);
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("serverkeygen")
        ]),
        "403"
    );
    let after = certificate_count(&rig.op("list_certificates", json!({})).await);
    assert_eq!(before, after);

    // An enforce-mode policy refuses an EST enrollment outside its domains
    // (4xx, nothing issued) and records the attempt.
    rig.op(
        "save_policy",
        json!({ "name": "dev1 and dev2 only", "kind": "allowed_domains", "severity": "high", "mode": "enforce",
                "params": { "domains": ["dev1.devices.example.com", "dev2.devices.example.com"] } }),
    )
    .await;
    let before = certificate_count(&rig.op("list_certificates", json!({})).await);
    csr("dev3.devices.example.com", "dev3.key");
    assert_eq!(
        status(&[
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            &est("simpleenroll")
        ]),
        "403"
    );
    assert_eq!(
        before,
        certificate_count(&rig.op("list_certificates", json!({})).await)
    );
    let v = rig
        .op("list_policy_violations", json!({ "refused": true }))
        .await;
    assert_eq!(v["total"], 1, "{v}");
    assert_eq!(v["data"][0]["operation"], "enroll_certificate");
    assert_eq!(v["data"][0]["common_name"], "dev3.devices.example.com");
    server.stop().await;
}

/// The two parts of a `multipart/mixed` body, by content type.
fn multipart_parts(content_type: &str, body: &str) -> Vec<(String, String)> {
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let (_, rest) = body.split_once(&delimiter).expect("first delimiter");
    let (parts, _) = rest
        .rsplit_once(&format!("{delimiter}--"))
        .expect("close delimiter");
    parts
        .split(&delimiter)
        .map(|part| {
            let (head, content) = part.split_once("\r\n\r\n").expect("part headers");
            let ctype = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .expect("part content type")
                .trim()
                .to_owned();
            (ctype, content.to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn est_serverkeygen_with_curl_and_openssl() {
    let config = certctl_engine::config::EngineConfig {
        keygen_mode: certctl_engine::domain::KeygenMode::Server,
        ..Default::default()
    };
    let rig = Rig::with_config(config).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ca(&rig, d).await;
    // The profile's key type (P-384) is what the server generates, whatever
    // key the CSR carries (P-256 below).
    let profile = rig
        .op(
            "save_profile",
            json!({
                "name": "kiosks",
                "keygen_mode": "server",
                "allowed_key_types": ["ecdsa-p384"],
                "ekus": ["server_auth", "client_auth"],
                "san_rules": { "allowed_dns_suffixes": ["kiosks.example.com"] }
            }),
        )
        .await;
    let (cert_pem, key_pem) = serving_cert(&rig).await;
    let chain = rig.engine.issuer_chain_pem("iss-local").await.unwrap();
    let tls = certctl_api::tls::server_config(cert_pem.as_bytes(), key_pem.as_bytes(), &chain)
        .expect("tls config");
    let mut state = AppState::new(rig.engine.clone());
    state.est = Arc::new(EstConfig {
        issuer_id: None,
        profile_id: Some(profile["id"].as_str().unwrap().to_owned()),
        users: vec![("enroller".into(), "enrol-secret".into())],
    });
    let server = Server::tls(state, tls).await;
    let url = format!("{}/.well-known/est/serverkeygen", server.base);
    let openssl = |args: &[&str]| {
        let (ok, out) = run(d, "openssl", args);
        assert!(ok, "openssl {args:?}: {out}");
        out
    };
    let csr = |name: &str| {
        openssl(&[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "template.key",
            "-subj",
            &format!("/CN={name}"),
            "-addext",
            &format!("subjectAltName=DNS:{name}"),
            "-outform",
            "DER",
            "-out",
            "csr.der",
        ]);
        openssl(&["base64", "-in", "csr.der", "-out", "csr.b64"]);
    };
    let pkcs10 = "Content-Type: application/pkcs10";
    let status = |args: &[&str]| {
        let mut all = vec![
            "-sS",
            "--cacert",
            "root.pem",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-u",
            "enroller:enrol-secret",
        ];
        all.extend_from_slice(args);
        run(d, "curl", &all).1.trim().to_owned()
    };

    csr("k1.kiosks.example.com");
    let (ok, content_type) = run(
        d,
        "curl",
        &[
            "-sSf",
            "--cacert",
            "root.pem",
            "-u",
            "enroller:enrol-secret",
            "-H",
            pkcs10,
            "--data-binary",
            "@csr.b64",
            "-o",
            "reply.txt",
            "-w",
            "%{content_type}",
            &url,
        ],
    );
    assert!(ok, "{content_type}");
    assert!(
        content_type.starts_with("multipart/mixed"),
        "{content_type}"
    );
    let body = std::fs::read_to_string(d.join("reply.txt")).unwrap();
    let parts = multipart_parts(&content_type, &body);
    assert_eq!(parts.len(), 2, "{body}");
    assert_eq!(parts[0].0, "application/pkcs8");
    assert_eq!(parts[1].0, "application/pkcs7-mime; smime-type=certs-only");
    std::fs::write(d.join("key.b64"), &parts[0].1).unwrap();
    std::fs::write(d.join("cert.b64"), &parts[1].1).unwrap();
    openssl(&["base64", "-d", "-in", "key.b64", "-out", "key.der"]);
    openssl(&["base64", "-d", "-in", "cert.b64", "-out", "cert.p7"]);
    // The key parses as unencrypted PKCS#8 of the profile's type...
    let key_text = openssl(&[
        "pkey", "-inform", "DER", "-in", "key.der", "-noout", "-text",
    ]);
    assert!(key_text.contains("P-384"), "{key_text}");
    let key_pub = openssl(&["pkey", "-inform", "DER", "-in", "key.der", "-pubout"]);
    // ...the certificate verifies against the CA...
    openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        "cert.p7",
        "-print_certs",
        "-out",
        "cert.pem",
    ]);
    let verified = openssl(&[
        "verify",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "issuing.pem",
        "cert.pem",
    ]);
    assert!(verified.contains("cert.pem: OK"), "{verified}");
    // ...and certifies the generated key, not the CSR's.
    let cert_pub = openssl(&["x509", "-in", "cert.pem", "-noout", "-pubkey"]);
    assert_eq!(key_pub, cert_pub);
    let template_pub = openssl(&["pkey", "-in", "template.key", "-pubout"]);
    assert_ne!(template_pub, cert_pub);
    let subject = openssl(&["x509", "-in", "cert.pem", "-noout", "-subject"]);
    assert!(subject.contains("k1.kiosks.example.com"), "{subject}");

    // Refusals issue nothing.
    let before = certificate_count(&rig.op("list_certificates", json!({})).await);
    assert_eq!(
        status(&[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@csr.b64",
            &url
        ]),
        "415"
    );
    assert_eq!(
        status(&["-H", pkcs10, "--data-binary", "not base64 at all!", &url]),
        "400"
    );
    assert_eq!(
        status(&["-H", pkcs10, "--data-binary", "AAAA", &url]),
        "400"
    );
    csr("evil.other.test");
    assert_eq!(
        status(&["-H", pkcs10, "--data-binary", "@csr.b64", &url]),
        "403"
    );
    let after = certificate_count(&rig.op("list_certificates", json!({})).await);
    assert_eq!(before, after, "refused requests issue nothing");

    // The key is in no read and no audit event.
    let list = rig
        .op(
            "list_certificates",
            json!({ "common_name": "k1.kiosks.example.com" }),
        )
        .await;
    let id = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["common_name"] == "k1.kiosks.example.com")
        .expect("the enrolled certificate")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key_b64: String = parts[0].1.split_whitespace().collect();
    let audit = rig.op("get_audit_log", json!({ "per_page": 500 })).await;
    let shown = rig.op("get_certificate", json!({ "id": id })).await;
    for text in [audit.to_string(), shown.to_string()] {
        assert!(!text.contains(&key_b64[..40]));
        assert!(!text.contains("PRIVATE KEY"));
    }

    // PKCS#12 export holds the key (the same one); an agent-keyed certificate's holds none.
    let auth = format!("Authorization: Bearer {}", rig.admin_key);
    let export = |id: &str, file: &str| {
        let (ok, out) = run(
            d,
            "curl",
            &[
                "-sSf",
                "--cacert",
                "root.pem",
                "-o",
                file,
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"format":"pkcs12","password":"p12-pass"}"#,
                &format!("{}/api/v1/certificates/{id}/export", server.base),
            ],
        );
        assert!(ok, "{out}");
        openssl(&[
            "pkcs12",
            "-info",
            "-in",
            file,
            "-passin",
            "pass:p12-pass",
            "-nodes",
        ])
    };
    let info = export(&id, "k1.p12");
    assert!(info.contains("PRIVATE KEY"), "{info}");
    openssl(&[
        "pkcs12",
        "-in",
        "k1.p12",
        "-passin",
        "pass:p12-pass",
        "-nocerts",
        "-nodes",
        "-out",
        "k1-p12.key",
    ]);
    let p12_pub = openssl(&["pkey", "-in", "k1-p12.key", "-pubout"]);
    assert_eq!(p12_pub, cert_pub);
    let agent_keyed = rig.issued_certificate("agent.kiosks.example.com").await;
    let info = export(&agent_keyed, "agent.p12");
    assert!(info.contains("BEGIN CERTIFICATE"), "{info}");
    assert!(!info.contains("PRIVATE KEY"), "{info}");
    server.stop().await;
}
