//! External issuers through jobs: the script CA (a real `openssl x509 -req`)
//! and Vault PKI against a real OpenBao dev server. Issuing records a job;
//! the job worker runs the connector outside any transaction and records the
//! version; failures carry the CA's own explanation.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use certctl_engine::domain::{Issuer, JobKind, JobStatus, KeyAlgorithm};
use certctl_engine::ops::{self, Outcome};
use certctl_engine::scheduler::{Loop, Scheduler};

use super::support::{Harness, Peer, csr, free_port, peer_binary, run_jobs, sh, wait_for_port};
use crate::backend_tests;

backend_tests!(
    script_issuer_issues_through_a_job_and_renews_by_the_scheduler,
    failing_script_fails_the_job_with_its_stderr,
    issuer_secrets_are_sealed_and_never_returned,
    a_certificate_for_another_key_is_refused,
    vault_issuer_issues_renews_its_token_and_revokes,
    an_agents_csr_signed_by_an_external_ca_is_deployed_and_renewed,
);

fn write_script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.display().to_string()
}

/// A CA made with openssl, and a script that signs with `openssl x509 -req`.
fn openssl_ca(dir: &Path) -> (String, String) {
    let key = dir.join("ca.key");
    let cert = dir.join("ca.pem");
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
            key.to_str().expect("path"),
            "-out",
            cert.to_str().expect("path"),
            "-subj",
            "/CN=certctl script test CA",
            "-days",
            "30",
        ],
    );
    let script = write_script(
        dir,
        "sign.sh",
        r#"#!/bin/sh
set -eu
# Names arrive as data (environment), never as shell code.
sans=$(printf '%s' "$CERTCTL_SANS" | tr ',' '\n' | sed 's/^/DNS:/' | paste -sd, -)
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$sans" > ext.cnf
openssl x509 -req -in "$CERTCTL_CSR_FILE" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$CERTCTL_TTL_DAYS" -extfile ext.cnf \
    -out "$CERTCTL_CERT_FILE" 2>/dev/null
cat "$CA_DIR/ca.pem" > "$CERTCTL_CHAIN_FILE"
"#,
    );
    (script, cert.display().to_string())
}

async fn create_issuer(h: &Harness, body: serde_json::Value) -> Issuer {
    h.done::<ops::CreateIssuer>(&h.admin(), serde_json::from_value(body).expect("input"))
        .await
}

async fn cert_for(h: &Harness, issuer: &str, cn: &str, sans: &[&str]) -> String {
    h.done::<ops::CreateCertificate>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "common_name": cn, "sans": sans, "issuer_id": issuer
        }))
        .expect("input"),
    )
    .await
    .id
}

async fn issue(h: &Harness, id: &str, csr_pem: String) -> ops::IssueOutput {
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: id.to_owned(),
            csr_pem: Some(csr_pem),
            ttl_seconds: Some(10 * 86400),
        },
    )
    .await
}

async fn job(h: &Harness, id: &str) -> certctl_engine::domain::Job {
    h.get::<certctl_engine::domain::Job>(&h.admin(), "job", id)
        .await
}

async fn details(h: &Harness, id: &str) -> ops::CertificateDetails {
    h.done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.to_owned() })
        .await
}

fn verify(ca_pem: &str, chain_pem: &str, leaf_pem: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let chain = dir.path().join("chain.pem");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(&ca, ca_pem).expect("write");
    std::fs::write(
        &chain,
        if chain_pem.is_empty() {
            ca_pem
        } else {
            chain_pem
        },
    )
    .expect("write");
    std::fs::write(&leaf, leaf_pem).expect("write");
    sh(
        "openssl",
        &[
            "verify",
            "-CAfile",
            ca.to_str().expect("p"),
            "-untrusted",
            chain.to_str().expect("p"),
            leaf.to_str().expect("p"),
        ],
    );
}

async fn script_issuer_issues_through_a_job_and_renews_by_the_scheduler(h: &Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, ca_path) = openssl_ca(dir.path());
    let issuer = create_issuer(
        h,
        serde_json::json!({
            "name": "openssl", "kind": "script",
            "config": { "command": script, "timeout_seconds": 30 },
            "secrets": { "env": { "CA_DIR": dir.path().display().to_string() } },
        }),
    )
    .await;
    let tested = h
        .done::<ops::TestIssuer>(
            &h.admin(),
            ops::IdInput {
                id: issuer.id.clone(),
            },
        )
        .await;
    assert!(tested.ok, "{tested:?}");

    let id = cert_for(h, &issuer.id, "app.example.com", &["www.example.com"]).await;
    let out = issue(
        h,
        &id,
        csr(
            KeyAlgorithm::EcdsaP256,
            "app.example.com",
            &["app.example.com", "www.example.com"],
        ),
    )
    .await;
    assert!(out.version.is_none(), "an external CA signs in a job");
    let queued = out.job.expect("job");
    assert_eq!(
        (queued.kind, queued.status),
        (JobKind::Issuance, JobStatus::Pending)
    );

    let report = run_jobs(h).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let done = job(h, &queued.id).await;
    assert_eq!(done.status, JobStatus::Completed, "{done:?}");
    assert!(done.payload.get("csr_pem").is_none());
    let d = details(h, &id).await;
    assert_eq!(d.versions.len(), 1);
    // Ten days of validity is inside the 30-day expiring window.
    assert_eq!(d.certificate.status.as_str(), "expiring");
    let ca_pem = std::fs::read_to_string(&ca_path).expect("ca");
    verify(&ca_pem, &d.versions[0].chain_pem, &d.versions[0].cert_pem);
    // The version is audited as the job worker, naming the job.
    let events = h
        .engine
        .store()
        .list_audit(&Default::default(), 100)
        .await
        .expect("audit");
    let e = events
        .iter()
        .find(|e| e.action == "issuance.completed")
        .expect("issuance audited");
    assert_eq!(e.actor, "system:issuer-jobs");
    assert_eq!(e.details["job_id"], queued.id.as_str());

    // A renewal with a fresh CSR is a job too; the scheduler's job loop runs it.
    h.clock.advance(60);
    let renewed = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: Some(csr(
                    KeyAlgorithm::EcdsaP256,
                    "app.example.com",
                    &["app.example.com"],
                )),
            },
        )
        .await;
    assert_eq!(renewed.job.status, JobStatus::Pending);
    let s = std::sync::Arc::new(Scheduler::new(h.engine.clone(), "proc-a"));
    let ticks = s.tick().await;
    assert!(ticks.iter().any(|(l, _)| *l == Loop::Jobs), "{ticks:?}");
    assert_eq!(job(h, &renewed.job.id).await.status, JobStatus::Completed);
    let d = details(h, &id).await;
    assert_eq!(d.versions.len(), 2);
    assert_eq!(
        d.certificate.current_version_id.as_deref(),
        Some(d.versions[0].id.as_str())
    );
}

async fn failing_script_fails_the_job_with_its_stderr(h: &Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = write_script(
        dir.path(),
        "fail.sh",
        "#!/bin/sh\necho 'signing refused: the HSM is offline' >&2\nexit 3\n",
    );
    let issuer = create_issuer(
        h,
        serde_json::json!({ "name": "broken", "kind": "script", "config": { "command": script } }),
    )
    .await;
    let id = cert_for(h, &issuer.id, "down.example.com", &[]).await;
    let out = issue(
        h,
        &id,
        csr(KeyAlgorithm::EcdsaP256, "down.example.com", &[]),
    )
    .await;
    let queued = out.job.expect("job");
    let report = run_jobs(h).await;
    assert_eq!(report.failed, 1);
    let failed = job(h, &queued.id).await;
    assert_eq!(failed.status, JobStatus::Failed, "a refusal is not retried");
    let err = failed.last_error.expect("error");
    assert!(err.contains("signing refused: the HSM is offline"), "{err}");
    assert!(err.contains("exit code 3"), "{err}");
    assert!(details(h, &id).await.versions.is_empty());
    assert!(
        h.audit_actions()
            .await
            .iter()
            .any(|(a, o, who)| a == "issuance.failed"
                && o == "failure"
                && who == "system:issuer-jobs")
    );

    // A script that is not there: test_issuer says so, without failing the call.
    let missing = create_issuer(
        h,
        serde_json::json!({ "name": "gone", "kind": "script", "config": { "command": "/nonexistent/sign" } }),
    )
    .await;
    let t = h
        .done::<ops::TestIssuer>(&h.admin(), ops::IdInput { id: missing.id })
        .await;
    assert!(!t.ok);
    assert!(t.detail.contains("/nonexistent/sign"), "{}", t.detail);
}

async fn issuer_secrets_are_sealed_and_never_returned(h: &Harness) {
    let issuer = create_issuer(
        h,
        serde_json::json!({
            "name": "vault-a", "kind": "vault",
            "config": { "url": "http://127.0.0.1:1", "role": "web" },
            "secrets": { "token": "s.very-secret-token" },
        }),
    )
    .await;
    assert_eq!(issuer.secret_fields, vec!["token".to_owned()]);
    let got = h
        .get::<certctl_engine::domain::Issuer>(&h.admin(), "issuer", &issuer.id)
        .await;
    let listed = h
        .done::<ops::ListIssuers>(&h.admin(), Default::default())
        .await;
    let text = format!(
        "{}{}",
        serde_json::to_string(&got).expect("json"),
        serde_json::to_string(&listed).expect("json")
    );
    assert!(!text.contains("very-secret-token"), "{text}");
    // Nor is it in the database in clear.
    let row = h
        .engine
        .store()
        .issuer(&issuer.id)
        .await
        .expect("read")
        .expect("issuer");
    assert!(!row.secrets.expect("sealed").sealed.contains("very-secret"));

    // A secret in the plain config is refused, not stored in clear.
    let bad = h
        .call::<ops::CreateIssuer>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "name": "vault-b", "kind": "vault",
                "config": { "url": "http://127.0.0.1:1", "role": "web", "token": "oops" },
            }))
            .expect("input"),
        )
        .await;
    let err = bad.expect_err("refused");
    assert_eq!(err.code(), "invalid-input");
    assert!(err.to_string().contains("token"), "{err}");
    // An unreachable CA: test_issuer answers ok=false with the reason.
    let t = h
        .done::<ops::TestIssuer>(&h.admin(), ops::IdInput { id: issuer.id })
        .await;
    assert!(!t.ok && !t.detail.is_empty(), "{t:?}");
}

async fn a_certificate_for_another_key_is_refused(h: &Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, _) = openssl_ca(dir.path());
    // This "CA" ignores the CSR and certifies a key of its own.
    let script = write_script(
        dir.path(),
        "swap.sh",
        r#"#!/bin/sh
set -eu
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key \
    -subj "/CN=$CERTCTL_COMMON_NAME" -out other.csr 2>/dev/null
printf 'subjectAltName=DNS:%s\n' "$CERTCTL_COMMON_NAME" > ext.cnf
openssl x509 -req -in other.csr -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" -days 5 \
    -extfile ext.cnf -out "$CERTCTL_CERT_FILE" 2>/dev/null
"#,
    );
    let issuer = create_issuer(
        h,
        serde_json::json!({
            "name": "swapper", "kind": "script", "config": { "command": script },
            "secrets": { "env": { "CA_DIR": dir.path().display().to_string() } },
        }),
    )
    .await;
    let id = cert_for(h, &issuer.id, "swap.example.com", &[]).await;
    let queued = issue(
        h,
        &id,
        csr(KeyAlgorithm::EcdsaP256, "swap.example.com", &[]),
    )
    .await
    .job
    .expect("job");
    run_jobs(h).await;
    let j = job(h, &queued.id).await;
    assert_eq!(j.status, JobStatus::Failed);
    assert!(
        j.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("different public key"),
        "{j:?}"
    );
    assert!(details(h, &id).await.versions.is_empty());
}

// ---------------------------------------------------------------- Vault / OpenBao

struct Bao {
    _proc: Peer,
    url: String,
    http: reqwest::Client,
}

impl Bao {
    async fn start() -> Option<Bao> {
        let bin = peer_binary("CERTCTL_TEST_BAO", "bao")?;
        let port = free_port();
        let child = tokio::process::Command::new(bin)
            .args([
                "server",
                "-dev",
                "-dev-root-token-id=root",
                &format!("-dev-listen-address=127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start bao");
        let proc = Peer(child);
        wait_for_port(port, "OpenBao").await;
        let bao = Bao {
            _proc: proc,
            url: format!("http://127.0.0.1:{port}"),
            http: {
                // The test's own client: the process provider, as the binary installs it.
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
                reqwest::Client::new()
            },
        };
        // The dev server may accept connections a moment before it unseals.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let ok = bao
                .http
                .get(format!("{}/v1/sys/health", bao.url))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ok {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "OpenBao did not become healthy"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Some(bao)
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let rsp = self
            .http
            .post(format!("{}/v1/{path}", self.url))
            .header("X-Vault-Token", "root")
            .json(&body)
            .send()
            .await
            .expect("bao request");
        let status = rsp.status();
        let text = rsp.text().await.expect("body");
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

async fn vault_issuer_issues_renews_its_token_and_revokes(h: &Harness) {
    let Some(bao) = Bao::start().await else {
        return;
    };
    bao.post("sys/mounts/pki", serde_json::json!({ "type": "pki" }))
        .await;
    bao.post(
        "sys/mounts/pki/tune",
        serde_json::json!({ "max_lease_ttl": "87600h" }),
    )
    .await;
    let root = bao
        .post(
            "pki/root/generate/internal",
            serde_json::json!({ "common_name": "OpenBao Test Root", "ttl": "87600h" }),
        )
        .await;
    let root_pem = root["data"]["certificate"]
        .as_str()
        .expect("root")
        .to_owned();
    bao.post(
        "pki/roles/web",
        serde_json::json!({ "allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "720h", "key_type": "any" }),
    )
    .await;
    // A renewable token with a short TTL, so the connector renews it.
    let token = bao
        .post(
            "auth/token/create",
            serde_json::json!({ "policies": ["root"], "ttl": "10m", "renewable": true }),
        )
        .await["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let issuer = create_issuer(
        h,
        serde_json::json!({
            "name": "openbao", "kind": "vault",
            "config": { "url": bao.url, "role": "web", "renew_below_seconds": 3600 },
            "secrets": { "token": token },
        }),
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
    assert!(t.detail.contains("renewed"), "{}", t.detail);

    let id = cert_for(h, &issuer.id, "api.example.com", &["api2.example.com"]).await;
    let queued = issue(
        h,
        &id,
        csr(
            KeyAlgorithm::EcdsaP256,
            "api.example.com",
            &["api.example.com", "api2.example.com"],
        ),
    )
    .await
    .job
    .expect("job");
    let report = run_jobs(h).await;
    assert_eq!(
        report.completed,
        1,
        "{report:?} {:?}",
        job(h, &queued.id).await
    );
    // Renewed through the scheduler's job loop like every external issuer.
    h.clock.advance(60);
    let renewed = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: Some(csr(
                    KeyAlgorithm::EcdsaP256,
                    "api.example.com",
                    &["api.example.com", "api2.example.com"],
                )),
            },
        )
        .await;
    let s = std::sync::Arc::new(Scheduler::new(h.engine.clone(), "proc-vault"));
    s.tick().await;
    assert_eq!(job(h, &renewed.job.id).await.status, JobStatus::Completed);
    let d = details(h, &id).await;
    assert_eq!(d.versions.len(), 2);
    let v = &d.versions[0];
    verify(&root_pem, &v.chain_pem, &v.cert_pem);

    // Revocation: certctl's records at once, the CA through a job.
    let revoked = h
        .call::<ops::RevokeCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": id, "reason": "keyCompromise" }))
                .expect("input"),
        )
        .await
        .expect("revoke");
    if let Outcome::ApprovalRequired(ticket) = revoked {
        h.done::<ops::ApproveRequest>(
            &super::support::principal("pr-approver", certctl_engine::domain::Role::Approver),
            serde_json::from_value(serde_json::json!({ "approval_id": ticket.approval_id }))
                .expect("input"),
        )
        .await;
    }
    let report = run_jobs(h).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let serial: Vec<String> = v
        .serial
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let rsp: serde_json::Value = bao
        .http
        .get(format!("{}/v1/pki/cert/{}", bao.url, serial.join(":")))
        .send()
        .await
        .expect("read cert")
        .json()
        .await
        .expect("json");
    assert!(
        rsp["data"]["revocation_time"].as_i64().unwrap_or(0) > 0,
        "OpenBao has the certificate revoked: {rsp}"
    );

    // A wrong token: the CA's own refusal, in test_issuer and in the job.
    h.done::<ops::UpdateIssuer>(
        &h.admin(),
        serde_json::from_value(serde_json::json!({
            "id": issuer.id, "secrets": { "token": "not-a-token" }
        }))
        .expect("input"),
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
    assert!(!t.ok && t.detail.contains("permission denied"), "{t:?}");
}

/// The agent's open work of one kind.
async fn agent_work(
    h: &Harness,
    agent: &certctl_engine::domain::Principal,
    agent_id: &str,
    kind: &str,
) -> Vec<certctl_engine::store::WorkItem> {
    h.done::<ops::GetAgentWork>(
        agent,
        serde_json::from_value(serde_json::json!({ "id": agent_id })).expect("input"),
    )
    .await
    .data
    .into_iter()
    .filter(|w| w.kind == kind)
    .collect()
}

/// The agent answers its one open CSR job; the external CA signs in the job
/// worker, which queues the deployment; returns the deployed version id.
async fn agent_round(
    h: &Harness,
    agent: &certctl_engine::domain::Principal,
    agent_id: &str,
    kind: &str,
) -> String {
    let open = agent_work(h, agent, agent_id, kind).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].status, "awaiting_csr");
    let out = h
        .done::<ops::SubmitAgentCsr>(
            agent,
            serde_json::from_value(serde_json::json!({
                "id": agent_id, "job_id": open[0].job_id,
                "csr_pem": csr(KeyAlgorithm::EcdsaP256, "app.example.com", &["app.example.com"]),
            }))
            .expect("input"),
        )
        .await;
    assert!(out.version.is_none(), "the external CA signs later");
    let issuer_job = out.issuer_job.expect("an issuer job");
    assert!(
        agent_work(h, agent, agent_id, "deployment")
            .await
            .is_empty(),
        "nothing to deploy before the CA has signed"
    );
    let report = run_jobs(h).await;
    assert_eq!(report.completed, 1, "{report:?}");
    let done = job(h, &issuer_job.id).await;
    let version_id = done.payload["version_id"]
        .as_str()
        .expect("version")
        .to_owned();
    let deployments = agent_work(h, agent, agent_id, "deployment").await;
    assert_eq!(deployments.len(), 1, "{deployments:?}");
    let d = h
        .done::<ops::GetAgentJob>(
            agent,
            serde_json::from_value(
                serde_json::json!({ "id": agent_id, "job_id": deployments[0].job_id }),
            )
            .expect("input"),
        )
        .await;
    assert_eq!(d.version.expect("a version").id, version_id);
    // The agent deploys it (what the e2e tests do against real servers).
    for status in ["running", "completed"] {
        h.done::<ops::ReportAgentJob>(
            agent,
            serde_json::from_value(serde_json::json!({
                "id": agent_id, "job_id": deployments[0].job_id, "status": status,
            }))
            .expect("input"),
        )
        .await;
    }
    version_id
}

/// Issue 8: an external CA's certificates deploy like the local CA's. The
/// agent's CSR becomes an issuer job; when the job worker records the
/// version it queues the deployment to the agent's target; the scheduler's
/// renewal goes the same way.
async fn an_agents_csr_signed_by_an_external_ca_is_deployed_and_renewed(h: &Harness) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (script, _) = openssl_ca(dir.path());
    let issuer = create_issuer(
        h,
        serde_json::json!({
            "name": "openssl", "kind": "script",
            "config": { "command": script, "timeout_seconds": 30 },
            "secrets": { "env": { "CA_DIR": dir.path().display().to_string() } },
        }),
    )
    .await;
    let admin = h.admin();
    let a = h
        .done::<ops::RegisterAgent>(
            &admin,
            serde_json::from_value(serde_json::json!({ "name": "web-1" })).expect("input"),
        )
        .await;
    let agent_id = a.agent.id.clone();
    let mut agent = super::support::principal("pr-web-1", certctl_engine::domain::Role::Agent);
    agent.agent_id = Some(agent_id.clone());
    let t = h
        .done::<ops::SaveTarget>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "name": "t1", "kind": "nginx", "agent_id": agent_id,
                "config": { "cert_path": "/etc/nginx/a.pem", "key_path": "/etc/nginx/a.key" },
            }))
            .expect("input"),
        )
        .await;
    let c = h
        .done::<ops::CreateCertificate>(
            &admin,
            serde_json::from_value(serde_json::json!({
                "common_name": "app.example.com", "issuer_id": issuer.id, "target_ids": [t.id],
            }))
            .expect("input"),
        )
        .await;
    h.done::<ops::RenewCertificate>(
        &admin,
        serde_json::from_value(serde_json::json!({ "id": c.id })).expect("input"),
    )
    .await;
    let first = agent_round(h, &agent, &agent_id, "issuance").await;
    let d = details(h, &c.id).await;
    assert_eq!(
        d.certificate.current_version_id.as_deref(),
        Some(first.as_str())
    );
    let events = h
        .engine
        .store()
        .list_audit(&Default::default(), 100)
        .await
        .expect("audit");
    let e = events
        .iter()
        .find(|e| e.action == "issuance.completed")
        .expect("issuance audited");
    assert_eq!(
        e.details["deployment_jobs"].as_array().map(Vec::len),
        Some(1)
    );

    // The scheduler renews it when due: the agent's CSR, the CA, the deployment.
    h.clock.advance(40 * 86400);
    let s = std::sync::Arc::new(Scheduler::new(h.engine.clone(), "proc-a"));
    let ticks = s.tick().await;
    assert!(ticks.iter().any(|(l, _)| *l == Loop::Renewal), "{ticks:?}");
    let second = agent_round(h, &agent, &agent_id, "renewal").await;
    assert_ne!(first, second);
    let d = details(h, &c.id).await;
    assert_eq!(
        d.certificate.current_version_id.as_deref(),
        Some(second.as_str())
    );
}
