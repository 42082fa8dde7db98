//! The ACME issuer against a real Pebble and pebble-challtestsrv, started by
//! each test on free loopback ports: HTTP-01 through the built-in responder,
//! DNS-01 (with a wildcard) through a hook script that feeds challtestsrv,
//! External Account Binding, revocation at the CA, an order that resumes
//! after the worker dies mid-order, and ACME Renewal Information (RFC 9773).
//!
//! The Pebble packaged here (2.4) has no ARI, so the ARI test puts a small
//! HTTPS front in front of it ([`AriFront`]): the same directory plus a
//! `renewalInfo` URL, answered with a window the test sets. Everything else
//! (account, order, challenge, certificate) is Pebble's.

use std::path::Path;

use certctl_engine::domain::{Issuer, JobStatus, KeyAlgorithm};
use certctl_engine::ops::{self, Outcome};

use super::support::{
    Harness, Peer, child_listens, csr, free_port, free_ports, peer_binary, principal, run_jobs, sh,
    wait_for_port,
};
use crate::backend_tests;

backend_tests!(
    acme_http01_issues_and_revokes_at_the_ca,
    acme_dns01_hook_issues_a_wildcard,
    acme_external_account_binding,
    acme_order_resumes_after_the_worker_dies,
    acme_dns01_rfc2136_against_knot,
    acme_renewal_follows_the_ca_renewal_window,
);

/// The EAB key Pebble is told to accept (base64url of 32 bytes).
const EAB_KID: &str = "kid-certctl";
const EAB_HMAC: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

pub(super) struct Pebble {
    _challtestsrv: Peer,
    _pebble: Peer,
    dir: tempfile::TempDir,
    directory_url: String,
    ca_pem: String,
    pub(super) http01_port: u16,
    mgmt_url: String,
    challtest_url: String,
}

fn tls_material(dir: &Path) {
    let p = |n: &str| dir.join(n).display().to_string();
    sh(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &p("ca.key"),
            "-out",
            &p("ca.pem"),
            "-subj",
            "/CN=pebble test TLS CA",
            "-days",
            "2",
        ],
    );
    sh(
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
            &p("key.pem"),
            "-out",
            &p("leaf.csr"),
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    sh(
        "openssl",
        &[
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &p("leaf.ext"),
            "-out",
            &p("cert.pem"),
        ],
    );
}

impl Pebble {
    pub(super) async fn start(eab_required: bool) -> Option<Pebble> {
        Self::start_with(eab_required, None).await
    }

    /// With `dns`, Pebble resolves through that server instead of challtestsrv.
    async fn start_with(eab_required: bool, dns_server: Option<String>) -> Option<Pebble> {
        let pebble = peer_binary("CERTCTL_TEST_PEBBLE", "pebble")?;
        let challtestsrv = peer_binary("CERTCTL_TEST_CHALLTESTSRV", "pebble-challtestsrv")?;
        // A free port can be taken before the peer binds it; a peer that
        // exits instead of listening is started again on new ports.
        let mut last_log = String::new();
        for _ in 0..3 {
            if let Some(p) = Self::try_start(
                &pebble,
                &challtestsrv,
                eab_required,
                &dns_server,
                &mut last_log,
            )
            .await
            {
                return Some(p);
            }
        }
        panic!("pebble did not start in three attempts; its last log:\n{last_log}");
    }

    async fn try_start(
        pebble: &std::path::Path,
        challtestsrv: &std::path::Path,
        eab_required: bool,
        dns_server: &Option<String>,
        last_log: &mut String,
    ) -> Option<Pebble> {
        let dir = tempfile::tempdir().expect("tempdir");
        tls_material(dir.path());
        let [dns, chall_mgmt, listen, mgmt, http01, tls] = free_ports();
        let chall = tokio::process::Command::new(challtestsrv)
            .args([
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-dns01",
                &format!("127.0.0.1:{dns}"),
                "-management",
                &format!("127.0.0.1:{chall_mgmt}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble-challtestsrv");
        let mut chall = Peer(chall);
        let mut config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{mgmt}"),
            "certificate": dir.path().join("cert.pem"),
            "privateKey": dir.path().join("key.pem"),
            "httpPort": http01,
            "tlsPort": tls,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab_required,
        }});
        if eab_required {
            config["pebble"]["externalAccountMACKeys"] = serde_json::json!({ EAB_KID: EAB_HMAC });
        }
        let config_path = dir.path().join("pebble.json");
        std::fs::write(&config_path, config.to_string()).expect("config");
        if !child_listens(&mut chall, chall_mgmt, "pebble-challtestsrv").await {
            return None;
        }
        let log = std::fs::File::create(dir.path().join("pebble.log")).expect("log");
        let child = tokio::process::Command::new(pebble)
            .args([
                "-config",
                config_path.to_str().expect("path"),
                "-dnsserver",
                &dns_server
                    .clone()
                    .unwrap_or_else(|| format!("127.0.0.1:{dns}")),
            ])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start pebble");
        let mut child = Peer(child);
        if !child_listens(&mut child, listen, "pebble").await
            || !child_listens(&mut child, mgmt, "pebble management").await
        {
            *last_log = std::fs::read_to_string(dir.path().join("pebble.log")).unwrap_or_default();
            return None;
        }
        let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).expect("ca");
        Some(Pebble {
            _challtestsrv: chall,
            _pebble: child,
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            mgmt_url: format!("https://127.0.0.1:{mgmt}"),
            challtest_url: format!("http://127.0.0.1:{chall_mgmt}"),
            ca_pem,
            http01_port: http01,
            dir,
        })
    }

    fn client(&self) -> reqwest::Client {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"),
            )
            .build()
            .expect("client")
    }

    /// The root Pebble issues under (changes every start).
    pub(super) async fn issuing_root(&self) -> String {
        self.client()
            .get(format!("{}/roots/0", self.mgmt_url))
            .send()
            .await
            .expect("roots")
            .text()
            .await
            .expect("root")
    }

    /// A DNS-01 hook script that publishes TXT records in challtestsrv.
    fn dns_hook(&self, extra: &str) -> String {
        let path = self.dir.path().join("dns-hook.sh");
        std::fs::write(
            &path,
            format!(
                r#"#!/bin/sh
set -eu
action="$1"; fqdn="$2"; value="$3"
{extra}
case "$action" in
  present) curl -sf -X POST -d "{{\"host\":\"$fqdn.\",\"value\":\"$value\"}}" "$CHALLTEST/set-txt" ;;
  cleanup) curl -sf -X POST -d "{{\"host\":\"$fqdn.\"}}" "$CHALLTEST/clear-txt" ;;
esac
"#
            ),
        )
        .expect("hook");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path.display().to_string()
    }

    pub(super) fn issuer_config(&self, challenge: &str, hook: Option<&str>) -> serde_json::Value {
        let mut c = serde_json::json!({
            "directory_url": self.directory_url,
            "ca_cert_pem": self.ca_pem,
            "email": "pki@example.com",
            "challenge": challenge,
            "http01_listen": format!("127.0.0.1:{}", self.http01_port),
            "validation_timeout_seconds": 60,
        });
        if let Some(h) = hook {
            c["dns01_hook"] = h.into();
        }
        c
    }
}

pub(super) async fn create_issuer(
    h: &Harness,
    name: &str,
    config: serde_json::Value,
    secrets: serde_json::Value,
) -> Issuer {
    h.done::<ops::CreateIssuer>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "acme", "config": config, "secrets": secrets,
        }))
        .expect("input"),
    )
    .await
}

async fn issue_via(h: &Harness, issuer: &str, cn: &str, sans: &[&str]) -> (String, String) {
    let c = h
        .done::<ops::CreateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "common_name": cn, "sans": sans, "issuer_id": issuer
            }))
            .expect("input"),
        )
        .await;
    let mut names = vec![cn];
    names.extend_from_slice(sans);
    let out = h
        .done::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &names)),
                ttl_seconds: None,
            },
        )
        .await;
    (c.id, out.job.expect("job").id)
}

pub(super) async fn job(h: &Harness, id: &str) -> certctl_engine::domain::Job {
    h.get::<certctl_engine::domain::Job>(&h.admin(), "job", id)
        .await
}

pub(super) async fn versions(
    h: &Harness,
    id: &str,
) -> Vec<certctl_engine::domain::CertificateVersion> {
    h.done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.to_owned() })
        .await
        .versions
}

pub(super) fn openssl_verify(root: &str, chain: &str, leaf: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = |n: &str, t: &str| {
        let p = dir.path().join(n);
        std::fs::write(&p, t).expect("write");
        p.display().to_string()
    };
    let (r, c, l) = (
        w("root.pem", root),
        w("chain.pem", chain),
        w("leaf.pem", leaf),
    );
    sh("openssl", &["verify", "-CAfile", &r, "-untrusted", &c, &l]);
}

async fn acme_http01_issues_and_revokes_at_the_ca(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let issuer = create_issuer(
        h,
        "pebble",
        pebble.issuer_config("http-01", None),
        serde_json::json!({}),
    )
    .await;
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(t.ok, "{t:?}");

    let (cert, job_id) = issue_via(h, &issuer.id, "web.example.com", &["api.example.com"]).await;
    let report = run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    assert!(
        j.payload["connector_state"]["order_url"].as_str().is_some(),
        "the order URL is kept in the job: {j:?}"
    );
    // Renewed through the scheduler's job loop: a new order on the same account.
    h.clock.advance(60);
    let renewed = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: cert.clone(),
                csr_pem: Some(csr(
                    KeyAlgorithm::EcdsaP256,
                    "web.example.com",
                    &["web.example.com", "api.example.com"],
                )),
            },
        )
        .await;
    let s = std::sync::Arc::new(certctl_engine::scheduler::Scheduler::new(
        h.engine.clone(),
        "proc-acme",
    ));
    s.tick().await;
    let r = job(h, &renewed.job.id).await;
    assert_eq!(r.status, JobStatus::Completed, "{r:?}");
    assert_ne!(
        r.payload["connector_state"]["order_url"],
        j.payload["connector_state"]["order_url"]
    );
    let all = versions(h, &cert).await;
    assert_eq!(all.len(), 2);
    let v = all[0].clone();
    openssl_verify(&pebble.issuing_root().await, &v.chain_pem, &v.cert_pem);
    // The account is stored sealed on the issuer, and restored by test_issuer.
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(t.ok && t.detail.contains("restored"), "{t:?}");

    // Revocation: certctl at once, the CA through a job.
    let out = h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": cert, "reason": "superseded" }))
                .expect("input"),
        )
        .await
        .expect("revoke");
    if let Outcome::ApprovalRequired(ticket) = out {
        h.done::<ops::ApproveRequest>(
            &principal("pr-approver", certctl_engine::domain::Role::Approver),
            serde_json::from_value(serde_json::json!({ "approval_id": ticket.approval_id }))
                .expect("input"),
        )
        .await;
    }
    let report = run_jobs(h).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let status: serde_json::Value = pebble
        .client()
        .get(format!(
            "{}/cert-status-by-serial/{}",
            pebble.mgmt_url, v.serial
        ))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    assert_eq!(status["Status"], "Revoked", "{status}");
    // Revoking again at the CA is refused with the CA's problem document.
    assert!(
        h.audit_actions()
            .await
            .iter()
            .any(|(a, o, _)| a == "certificate.revoked_at_ca" && o == "success")
    );
}

async fn acme_dns01_hook_issues_a_wildcard(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let hook = pebble.dns_hook("");
    let issuer = create_issuer(
        h,
        "pebble-dns",
        pebble.issuer_config("dns-01", Some(&hook)),
        serde_json::json!({ "dns01_hook_env": { "CHALLTEST": pebble.challtest_url } }),
    )
    .await;
    let (cert, job_id) =
        issue_via(h, &issuer.id, "wild.example.com", &["*.wild.example.com"]).await;
    let report = run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    let v = versions(h, &cert).await.remove(0);
    openssl_verify(&pebble.issuing_root().await, &v.chain_pem, &v.cert_pem);
    let text = sh(
        "openssl",
        &["x509", "-noout", "-ext", "subjectAltName", "-in", &{
            let p = pebble.dir.path().join("wild.pem");
            std::fs::write(&p, &v.cert_pem).expect("write");
            p.display().to_string()
        }],
    );
    assert!(text.contains("DNS:*.wild.example.com"), "{text}");

    // A hook that cannot publish fails the attempt with its own words.
    let broken = pebble.dns_hook("echo 'DNS API said: zone not found' >&2; exit 1");
    let issuer2 = create_issuer(
        h,
        "pebble-dns-broken",
        pebble.issuer_config("dns-01", Some(&broken)),
        serde_json::json!({}),
    )
    .await;
    let (_, job_id) = issue_via(h, &issuer2.id, "nozone.example.com", &[]).await;
    run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(
        j.status,
        JobStatus::Pending,
        "a hook failure is retried later: {j:?}"
    );
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("zone not found"),
        "{j:?}"
    );
}

async fn acme_external_account_binding(h: &Harness) {
    let Some(pebble) = Pebble::start(true).await else {
        return;
    };
    // Without EAB: test_issuer names the problem, and an order is refused.
    let plain = create_issuer(
        h,
        "eab-missing",
        pebble.issuer_config("http-01", None),
        serde_json::json!({}),
    )
    .await;
    let t = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: plain.id.clone(),
            },
        )
        .await;
    assert!(
        !t.ok && t.detail.contains("External Account Binding"),
        "{t:?}"
    );
    let (_, job_id) = issue_via(h, &plain.id, "noeab.example.com", &[]).await;
    run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Failed, "{j:?}");
    let err = j.last_error.unwrap_or_default();
    assert!(
        err.contains("the ACME CA answered") && err.contains("externalAccountRequired"),
        "{err}"
    );

    // With EAB: the account registers and issues.
    let mut config = pebble.issuer_config("http-01", None);
    config["eab_kid"] = EAB_KID.into();
    let eab = create_issuer(
        h,
        "eab",
        config,
        serde_json::json!({ "eab_hmac_key": EAB_HMAC }),
    )
    .await;
    let t = h
        .done::<ops::TestIssuer>(&h.admin(), ops::IdInput { id: eab.id.clone() })
        .await;
    assert!(t.ok, "{t:?}");
    let (cert, job_id) = issue_via(h, &eab.id, "eab.example.com", &[]).await;
    run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    assert_eq!(versions(h, &cert).await.len(), 1);

    // EAB credentials fetched for the account's e-mail address, as ZeroSSL
    // hands them out (a double of its endpoint; Pebble checks the binding).
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = {
        let asked = asked.clone();
        axum::Router::new().route(
            "/acme/eab-credentials-email",
            axum::routing::post(move |body: String| {
                let asked = asked.clone();
                async move {
                    asked.lock().expect("lock").push(body);
                    axum::Json(serde_json::json!({
                        "success": true, "eab_kid": EAB_KID, "eab_hmac_key": EAB_HMAC,
                    }))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut config = pebble.issuer_config("http-01", None);
    config["eab_from_email"] = true.into();
    config["eab_credentials_url"] =
        format!("http://127.0.0.1:{port}/acme/eab-credentials-email").into();
    let by_email = create_issuer(h, "eab-by-email", config, serde_json::json!({})).await;
    let (cert, job_id) = issue_via(h, &by_email.id, "eab-email.example.com", &[]).await;
    run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{j:?}");
    assert_eq!(versions(h, &cert).await.len(), 1);
    assert_eq!(
        *asked.lock().expect("lock"),
        vec!["email=pki%40example.com".to_owned()]
    );
    server.abort();
}

async fn acme_order_resumes_after_the_worker_dies(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    let gate = pebble.dir.path().join("release");
    // The hook holds `present` until the test releases it, so the first
    // worker dies with the order created and unfinished.
    let hook = pebble.dns_hook(&format!(
        r#"if [ "$action" = present ]; then
  i=0; while [ ! -e "{gate}" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
fi"#,
        gate = gate.display()
    ));
    let issuer = create_issuer(
        h,
        "pebble-resume",
        pebble.issuer_config("dns-01", Some(&hook)),
        serde_json::json!({ "dns01_hook_env": { "CHALLTEST": pebble.challtest_url } }),
    )
    .await;
    let (cert, job_id) = issue_via(h, &issuer.id, "resume.example.com", &[]).await;

    // Process A claims the job and creates the order, then dies.
    let a = Harness::engine_on(&h.db, &h.clock, Default::default(), &h.master).await;
    let worker = {
        let a = a.clone();
        tokio::spawn(
            async move { certctl_engine::issuers::runner::run_due(&a, "process-a", 10).await },
        )
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let order_url = loop {
        let j = job(h, &job_id).await;
        if let Some(u) = j.payload["connector_state"]["order_url"].as_str() {
            break u.to_owned();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no order was created: {j:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    worker.abort();
    let _ = worker.await;
    a.store().close().await;
    drop(a);
    assert_eq!(job(h, &job_id).await.status, JobStatus::Running);

    // Its lease runs out; the job goes back to pending and process B resumes it.
    h.clock
        .advance(certctl_engine::issuers::runner::LEASE_SECONDS + 1);
    use certctl_engine::clock::Clock;
    let n = h
        .engine
        .store()
        .reclaim_expired_leases(h.clock.now())
        .await
        .expect("reclaim");
    assert_eq!(n, 1);
    std::fs::write(&gate, "go").expect("release");
    let report = run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    assert_eq!(
        j.payload["connector_state"]["order_url"].as_str(),
        Some(order_url.as_str()),
        "the same order was completed"
    );
    assert_eq!(j.attempts, 2);
    assert_eq!(versions(h, &cert).await.len(), 1);
}

// ---------------------------------------------------------------- RFC 2136 (knot)

struct Knot {
    _proc: Peer,
    _dir: tempfile::TempDir,
    port: u16,
    secret: String,
}

impl Knot {
    async fn start() -> Option<Knot> {
        let knotd = peer_binary("CERTCTL_TEST_KNOTD", "knotd")?;
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let port = free_port();
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).expect("rng");
        let secret = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        std::fs::create_dir_all(dir.path().join("db")).expect("db dir");
        std::fs::write(
            dir.path().join("example.com.zone"),
            "$ORIGIN example.com.\n$TTL 60\n@ SOA ns1.example.com. hostmaster.example.com. 1 3600 900 604800 60\n@ NS ns1.example.com.\nns1 A 127.0.0.1\n",
        )
        .expect("zone");
        let conf = format!(
            "server:\n    listen: 127.0.0.1@{port}\n    rundir: {d}\n    pidfile: {d}/knot.pid\n\
             control:\n    listen: {d}/knot.sock\n\
             database:\n    storage: {d}/db\n\
             key:\n  - id: certctl-key\n    algorithm: hmac-sha256\n    secret: {secret}\n\
             acl:\n  - id: update\n    key: certctl-key\n    action: update\n\
             zone:\n  - domain: example.com\n    storage: {d}\n    file: example.com.zone\n    acl: update\n"
        );
        let conf_path = dir.path().join("knot.conf");
        std::fs::write(&conf_path, conf).expect("conf");
        let child = tokio::process::Command::new(knotd)
            .args(["-c", conf_path.to_str().expect("path")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start knotd");
        let proc = Peer(child);
        wait_for_port(port, "knotd").await;
        Some(Knot {
            _proc: proc,
            _dir: dir,
            port,
            secret,
        })
    }
}

async fn acme_dns01_rfc2136_against_knot(h: &Harness) {
    let Some(knot) = Knot::start().await else {
        return;
    };
    let Some(pebble) = Pebble::start_with(false, Some(format!("127.0.0.1:{}", knot.port))).await
    else {
        return;
    };
    let mut config = pebble.issuer_config("dns-01", None);
    config["rfc2136_server"] = format!("127.0.0.1:{}", knot.port).into();
    config["rfc2136_zone"] = "example.com".into();
    config["rfc2136_tsig_key"] = "certctl-key".into();
    let issuer = create_issuer(
        h,
        "pebble-knot",
        config.clone(),
        serde_json::json!({ "rfc2136_tsig_secret": knot.secret }),
    )
    .await;
    let (cert, job_id) = issue_via(h, &issuer.id, "rfc.example.com", &["*.rfc.example.com"]).await;
    let report = run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Completed, "{report:?} {j:?}");
    let v = versions(h, &cert).await.remove(0);
    openssl_verify(&pebble.issuing_root().await, &v.chain_pem, &v.cert_pem);
    // The challenge records were deleted again.
    let left = sh(
        "dig",
        &[
            "+short",
            "@127.0.0.1",
            "-p",
            &knot.port.to_string(),
            "TXT",
            "_acme-challenge.rfc.example.com",
        ],
    );
    assert!(left.trim().is_empty(), "left behind: {left}");

    // A wrong TSIG secret: knot's refusal, in the job's error.
    let issuer = create_issuer(
        h,
        "pebble-knot-badkey",
        config,
        serde_json::json!({ "rfc2136_tsig_secret": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }),
    )
    .await;
    let (_, job_id) = issue_via(h, &issuer.id, "badkey.example.com", &[]).await;
    run_jobs(h).await;
    let j = job(h, &job_id).await;
    assert_eq!(j.status, JobStatus::Failed, "{j:?}");
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("NOTAUTH"),
        "{j:?}"
    );
}

/// Pebble's directory plus ARI (RFC 9773 §4): `GET {renewalInfo}/{id}`
/// answers the window the test sets, with `Retry-After: 120`.
struct AriFront {
    directory_url: String,
    window: std::sync::Arc<std::sync::Mutex<(i64, i64)>>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for AriFront {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct AriState {
    pebble_dir: String,
    client: reqwest::Client,
    base: String,
    window: std::sync::Arc<std::sync::Mutex<(i64, i64)>>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl AriFront {
    async fn start(pebble: &Pebble) -> AriFront {
        use axum::extract::{Path as UrlPath, State};
        use std::sync::{Arc, Mutex};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().expect("addr").port()
        );
        let read = |n: &str| std::fs::read(pebble.dir.path().join(n)).expect("tls material");
        let cert = pem::parse(read("cert.pem")).expect("cert pem");
        let key = pem::parse(read("key.pem")).expect("key pem");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.contents().to_vec().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.contents().to_vec().into()),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let state = AriState {
            pebble_dir: pebble.directory_url.clone(),
            client: pebble.client(),
            base: base.clone(),
            window: Arc::new(Mutex::new((0, 0))),
            asked: Arc::new(Mutex::new(Vec::new())),
        };
        async fn directory(State(s): State<AriState>) -> axum::Json<serde_json::Value> {
            let mut dir: serde_json::Value = s
                .client
                .get(&s.pebble_dir)
                .send()
                .await
                .expect("pebble directory")
                .json()
                .await
                .expect("directory JSON");
            dir["renewalInfo"] = format!("{}/renewal-info", s.base).into();
            axum::Json(dir)
        }
        async fn renewal_info(
            State(s): State<AriState>,
            UrlPath(id): UrlPath<String>,
        ) -> impl axum::response::IntoResponse {
            s.asked.lock().expect("lock").push(id);
            let (start, end) = *s.window.lock().expect("lock");
            let rfc3339 = |t: i64| {
                time::OffsetDateTime::from_unix_timestamp(t)
                    .expect("time")
                    .format(&time::format_description::well_known::Rfc3339)
                    .expect("format")
            };
            (
                [("retry-after", "120")],
                axum::Json(serde_json::json!({
                    "suggestedWindow": { "start": rfc3339(start), "end": rfc3339(end) },
                    "explanationURL": "https://ca.example/incident-1",
                })),
            )
        }
        let (window, asked) = (state.window.clone(), state.asked.clone());
        let app = axum::Router::new()
            .route("/dir", axum::routing::get(directory))
            .route("/renewal-info/{id}", axum::routing::get(renewal_info))
            .with_state(state);
        let server = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(tls),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                    }
                });
            }
        });
        AriFront {
            directory_url: format!("{base}/dir"),
            window,
            asked,
            server,
        }
    }

    fn set_window(&self, start: i64, end: i64) {
        *self.window.lock().expect("lock") = (start, end);
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }
}

async fn renewal_jobs(h: &Harness, cert: &str) -> usize {
    h.done::<ops::ListJobs>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({ "certificate_id": cert, "kind": "renewal" }))
            .expect("input"),
    )
    .await
    .data
    .len()
}

/// One renewal-loop run, on a scheduler whose renewal loop is due at once.
async fn renewal_loop(h: &Harness) {
    let s = std::sync::Arc::new(
        certctl_engine::scheduler::Scheduler::new(h.engine.clone(), "proc-ari")
            .with_interval(certctl_engine::scheduler::Loop::Renewal, 1),
    );
    s.run_once(certctl_engine::scheduler::Loop::Renewal, h.engine.now())
        .await;
}

async fn acme_renewal_follows_the_ca_renewal_window(h: &Harness) {
    let Some(pebble) = Pebble::start(false).await else {
        return;
    };
    // Without ARI at the CA, nothing moves and nothing fails.
    let plain = create_issuer(
        h,
        "pebble-plain",
        pebble.issuer_config("http-01", None),
        serde_json::json!({}),
    )
    .await;
    let (plain_cert, _) = issue_via(h, &plain.id, "plain.example.com", &[]).await;
    run_jobs(h).await;

    let ari = AriFront::start(&pebble).await;
    let mut config = pebble.issuer_config("http-01", None);
    config["directory_url"] = ari.directory_url.clone().into();
    let issuer = create_issuer(h, "pebble-ari", config, serde_json::json!({})).await;
    let (cert, job_id) = issue_via(h, &issuer.id, "ari.example.com", &[]).await;
    run_jobs(h).await;
    assert_eq!(job(h, &job_id).await.status, JobStatus::Completed);

    // The CA wants renewal 10 to 11 days from now (Pebble's certificates
    // last five years, so certctl's own rule would wait years).
    let now = h.engine.now();
    let (start, end) = (now + 10 * 86400, now + 11 * 86400);
    ari.set_window(start, end);
    renewal_loop(h).await;
    let asked = ari.asked();
    assert_eq!(
        asked.len(),
        1,
        "one ARI request, for the ARI certificate only: {asked:?}"
    );
    let (aki, serial) = asked[0].split_once('.').expect("keyIdentifier.serial");
    assert!(!aki.is_empty() && !serial.is_empty(), "{asked:?}");
    let events = h
        .done::<ops::GetAuditLog>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "action": "certificate.renewal_window" }))
                .expect("input"),
        )
        .await
        .data;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].resource_id.as_deref(), Some(cert.as_str()));
    let at = events[0].details["renew_after"]
        .as_i64()
        .expect("renew_after");
    assert!((start..=end).contains(&at), "{at} not in [{start}, {end}]");
    assert_eq!(
        events[0].details["explanation_url"],
        "https://ca.example/incident-1"
    );
    assert_eq!(renewal_jobs(h, &cert).await, 0, "not due yet");
    assert_eq!(renewal_jobs(h, &plain_cert).await, 0);

    // Before Retry-After the CA is not asked again.
    h.clock.advance(60);
    renewal_loop(h).await;
    assert_eq!(ari.asked().len(), 1);

    // The CA pulls the window into the past (it will revoke): renewed now.
    ari.set_window(now - 2 * 86400, now - 86400);
    h.clock.advance(61);
    renewal_loop(h).await;
    assert_eq!(ari.asked().len(), 2);
    assert_eq!(
        renewal_jobs(h, &cert).await,
        1,
        "the renewal loop follows the CA's window"
    );
    assert_eq!(
        renewal_jobs(h, &plain_cert).await,
        0,
        "a CA without ARI changes nothing"
    );
}
