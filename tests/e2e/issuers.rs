//! Issue 8: every issuer's certificates are deployed by the agent and
//! renewed by the scheduler. One `certctl serve` (renewal and job loops every
//! second) and one agent; per issuer an nginx on its own port and a
//! certificate on it. Issue from the agent's key, deploy, check the served
//! chain with `openssl s_client`, then let the scheduler renew (a renewal
//! policy that makes the certificate due at once) and wait for the agent to
//! deploy and verify the new version.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

#[path = "../../engine/tests/engine/stepca_double.rs"]
mod stepca_double;

use super::{
    Proc, Rig, bootstrap_cert, call, free_port, free_ports, nginx_conf, require_peer, spawn,
    wait_tls,
};

/// An nginx on a free port with a bootstrap certificate, under `dir`.
struct Nginx {
    _proc: Proc,
    port: u16,
    cert: PathBuf,
    key: PathBuf,
    conf: PathBuf,
}

async fn nginx(dir: &Path) -> Nginx {
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let (cert, key) = bootstrap_cert(dir);
    let port = free_port();
    let conf = dir.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(dir, port, &cert, &key)).unwrap();
    let proc = spawn("nginx", &["-c", conf.to_str().unwrap()], &[]);
    wait_tls(port).await;
    Nginx {
        _proc: proc,
        port,
        cert,
        key,
        conf,
    }
}

/// A CA made with openssl and a script issuer that signs with `openssl x509 -req`.
fn openssl_ca(dir: &Path) -> (String, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, cert) = (dir.join("ca.key"), dir.join("ca.pem"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args(["-subj", "/CN=certctl e2e script CA", "-days", "30"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = dir.join("sign.sh");
    std::fs::write(
        &script,
        r#"#!/bin/sh
set -eu
sans=$(printf '%s' "$CERTCTL_SANS" | tr ',' '\n' | sed 's/^/DNS:/' | paste -sd, -)
printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$sans" > ext.cnf
openssl x509 -req -in "$CERTCTL_CSR_FILE" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days "$CERTCTL_TTL_DAYS" -extfile ext.cnf \
    -out "$CERTCTL_CERT_FILE" 2>/dev/null
cat "$CA_DIR/ca.pem" > "$CERTCTL_CHAIN_FILE"
"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script.display().to_string(), cert)
}

/// A peer binary from `env` or PATH; `None` (skip) when absent unless
/// CERTCTL_REQUIRE_PEERS=1 (then it fails).
pub(super) fn peer(env: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{name} is required (set {env}; scripts/test installs it)"
        );
        eprintln!("skipping the {name} round: set {env}");
    }
    found
}

/// An OpenBao dev server with a PKI mount, a root CA and a role for `*.test`;
/// returns it, its URL, a root token and the root CA file.
async fn openbao(bin: &Path, dir: &Path) -> (Proc, String, PathBuf) {
    let port = free_port();
    let proc = Proc(
        Command::new(bin)
            .args(["server", "-dev", "-dev-root-token-id=root"])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start bao"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let bao = |method: &str, path: &str, body: Value| -> Option<Value> {
        let out = Command::new("curl")
            .args(["-sf", "-X", method, "-H", "X-Vault-Token: root"])
            .args(["-H", "Content-Type: application/json", "--data"])
            .arg(body.to_string())
            .arg(format!("{url}/v1/{path}"))
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).unwrap_or(Value::Null))
    };
    super::until("OpenBao to unseal", async || {
        let out = Command::new("curl")
            .args(["-sf", &format!("{url}/v1/sys/health")])
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .await;
    bao(
        "POST",
        "sys/mounts/pki",
        json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
    )
    .expect("enable pki");
    let root = bao(
        "POST",
        "pki/root/generate/internal",
        json!({"common_name": "OpenBao e2e Root", "ttl": "87600h"}),
    )
    .expect("root CA");
    let root_file = dir.join("bao-root.pem");
    std::fs::write(&root_file, root["data"]["certificate"].as_str().unwrap()).unwrap();
    bao(
        "POST",
        "pki/roles/web",
        json!({"allowed_domains": "test", "allow_subdomains": true, "max_ttl": "2000h", "key_type": "any"}),
    )
    .expect("role");
    (proc, url, root_file)
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pebble (HTTP-01 validated for real: pebble-challtestsrv answers every
/// name with 127.0.0.1, the control plane's built-in solver answers the
/// challenge), as the engine's ACME tests start it; returns the processes,
/// the issuer config and Pebble's issuing root file.
pub(super) async fn pebble(
    bin: &Path,
    chall_bin: &Path,
    dir: &Path,
) -> (Vec<Proc>, Value, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-subj",
                "/CN=pebble TLS CA",
                "-days",
                "2",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req", "-new"][..],
            &ec,
            &[
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    );
    let [dns, chall_mgmt, listen, mgmt, http01] = free_ports();
    let chall = Proc(
        Command::new(chall_bin)
            .args([
                "-defaultIPv6",
                "",
                "-defaultIPv4",
                "127.0.0.1",
                "-http01",
                "",
                "-https01",
                "",
            ])
            .args(["-tlsalpn01", "", "-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-management", &format!("127.0.0.1:{chall_mgmt}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pebble-challtestsrv"),
    );
    let config = json!({ "pebble": {
        "listenAddress": format!("127.0.0.1:{listen}"),
        "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("cert.pem"), "privateKey": dir.join("key.pem"),
        "httpPort": http01, "tlsPort": free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": false,
    }});
    std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
    let peb = Proc(
        Command::new(bin)
            .args(["-config", dir.join("pebble.json").to_str().unwrap()])
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pebble"),
    );
    let root_file = dir.join("issuing-root.pem");
    super::until("Pebble's issuing root", async || {
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(dir.join("ca.pem"))
            .arg(format!("https://127.0.0.1:{mgmt}/roots/0"))
            .arg("-o")
            .arg(&root_file)
            .output()
            .ok()?;
        out.status.success().then_some(())
    })
    .await;
    super::until("pebble-challtestsrv", async || {
        std::net::TcpStream::connect(("127.0.0.1", chall_mgmt))
            .ok()
            .map(|_| ())
    })
    .await;
    let issuer_config = json!({
        "directory_url": format!("https://127.0.0.1:{listen}/dir"),
        "ca_cert_pem": std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
        "email": "pki@example.com",
        "challenge": "http-01",
        "http01_listen": format!("127.0.0.1:{http01}"),
        "validation_timeout_seconds": 60,
    });
    (vec![chall, peb], issuer_config, root_file)
}

/// `openssl s_client` checks the served chain against `ca_file` and the name.
pub(super) fn served_chain_verifies(port: u16, ca_file: &Path) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", "app.test", "-verify_hostname", "app.test"])
        .args(["-verify_return_error", "-CAfile"])
        .arg(ca_file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    let text = String::from_utf8_lossy(&out.stdout);
    if out.status.success() && text.contains("Verify return code: 0 (ok)") {
        Ok(())
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Polls [`served_chain_verifies`] until it holds: after a reload, nginx's
/// old workers may still take a connection or two while they drain.
async fn eventually_served(label: &str, port: u16, ca_file: &Path) {
    let start = std::time::Instant::now();
    loop {
        match served_chain_verifies(port, ca_file) {
            Ok(()) => return,
            Err(e) if start.elapsed() > std::time::Duration::from_secs(30) => {
                panic!("{label}: the served chain never verified: {e}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
}

/// The newest completed deployment of `cert` not in `known`, with its verification.
async fn next_deployment(rig: &Rig, cert: &str, known: &[String]) -> (String, Value) {
    let job = rig.deployment_after(cert, known).await;
    assert_eq!(job["status"], "completed", "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let v = call(
        &rig.admin,
        "get_object",
        json!({"kind": "verification", "id": id}),
    )
    .await;
    assert_eq!(v["verified"], true, "{v}");
    (id, v)
}

/// One issuer's round: issue, deploy, verify the served chain, scheduler renewal, redeploy.
async fn deploy_and_renew(rig: &Rig, label: &str, issuer_id: &str, ca_file: &Path, nginx: &Nginx) {
    let t = call(
        &rig.admin,
        "save_target",
        json!({"name": format!("nginx-{label}"), "kind": "nginx", "agent_id": rig.agent_id,
               "config": {"cert_path": nginx.cert, "key_path": nginx.key, "config_file": nginx.conf,
                          "verify_endpoint": format!("127.0.0.1:{}", nginx.port), "server_name": "app.test"}}),
    )
    .await;
    let c = call(
        &rig.admin,
        "create_certificate",
        json!({"common_name": "app.test", "name": format!("app-{label}"),
               "issuer_id": issuer_id, "target_ids": [t["id"]]}),
    )
    .await;
    let cert = c["id"].as_str().unwrap().to_owned();
    call(&rig.admin, "renew_certificate", json!({"id": cert})).await;
    let (first, v1) = next_deployment(rig, &cert, &[]).await;
    eventually_served(label, nginx.port, ca_file).await;
    let fp1 = v1["served_fingerprint"].as_str().unwrap().to_owned();

    // A policy that makes it due at once: the scheduler's renewal loop (every
    // second) asks the agent for a CSR; nobody calls renew here.
    let policy = call(
        &rig.admin,
        "save_renewal_policy",
        json!({"name": format!("due-now-{label}"), "renew_before_days": 3650, "jitter_percent": 0}),
    )
    .await;
    call(
        &rig.admin,
        "update_certificate",
        json!({"id": cert, "renewal_policy_id": policy["id"]}),
    )
    .await;
    let (_, v2) = next_deployment(rig, &cert, &[first]).await;
    let fp2 = v2["served_fingerprint"].as_str().unwrap().to_owned();
    assert_ne!(fp1, fp2, "{label}: the renewal deployed a new certificate");
    let jobs = call(
        &rig.admin,
        "list_jobs",
        json!({"certificate_id": cert, "kind": "renewal"}),
    )
    .await;
    assert!(
        jobs["data"].as_array().is_some_and(|j| !j.is_empty()),
        "{label}: the scheduler queued a renewal: {jobs}"
    );
    // Back to the default policy, so it stops renewing every second.
    call(
        &rig.admin,
        "update_certificate",
        json!({"id": cert, "renewal_policy_id": ""}),
    )
    .await;
    eventually_served(label, nginx.port, ca_file).await;
    println!(
        "{label}: issued, deployed, served chain verified; renewed by the scheduler, redeployed, verified"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_issuer_deploys_and_renews() {
    if !require_peer("nginx") || !require_peer("openssl") {
        return;
    }
    let mut rig = Rig::start_with(&[
        "--renewal-check-interval-seconds",
        "1",
        "--job-interval-seconds",
        "1",
    ])
    .await;
    let root = rig.dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    rig.start_agent(&root);

    // The local CA: it signs at once.
    let local = call(
        &rig.admin,
        "get_object",
        json!({"kind": "issuer", "id": "iss-local"}),
    )
    .await;
    let local_root = root.join("local-root.pem");
    std::fs::write(&local_root, local["ca_chain_pem"].as_str().unwrap()).unwrap();
    let n = nginx(&root.join("local")).await;
    deploy_and_renew(&rig, "local", "iss-local", &local_root, &n).await;

    // A script CA (openssl): it signs later, in an issuer job.
    let (script, ca) = openssl_ca(&rig.dir.path().join("script-ca"));
    let issuer = call(
        &rig.admin,
        "create_issuer",
        json!({"name": "openssl", "kind": "script",
               "config": {"command": script, "timeout_seconds": 30},
               "secrets": {"env": {"CA_DIR": rig.dir.path().join("script-ca")}}}),
    )
    .await;
    let n = nginx(&root.join("script")).await;
    deploy_and_renew(&rig, "script", issuer["id"].as_str().unwrap(), &ca, &n).await;

    // Vault PKI (a real OpenBao dev server): signs in an issuer job.
    if let Some(bin) = peer("CERTCTL_TEST_BAO", "bao") {
        let (_bao, url, bao_root) = openbao(&bin, rig.dir.path()).await;
        let issuer = call(
            &rig.admin,
            "create_issuer",
            json!({"name": "openbao", "kind": "vault",
                   "config": {"url": url, "role": "web"}, "secrets": {"token": "root"}}),
        )
        .await;
        let n = nginx(&root.join("vault")).await;
        deploy_and_renew(&rig, "vault", issuer["id"].as_str().unwrap(), &bao_root, &n).await;
    }

    // step-ca: its documented API, served by the engine tests' double (no
    // step-ca binary can be installed here), in this process.
    let double = stepca_double::StepCaDouble::start().await;
    let step_root = rig.dir.path().join("stepca-root.pem");
    std::fs::write(&step_root, &double.root_pem).unwrap();
    let issuer = call(
        &rig.admin,
        "create_issuer",
        json!({"name": "step-ca", "kind": "step_ca", "config": double.config(),
               "secrets": {"provisioner_key_pem": double.provisioner_key_pem}}),
    )
    .await;
    let n = nginx(&root.join("stepca")).await;
    deploy_and_renew(
        &rig,
        "step-ca",
        issuer["id"].as_str().unwrap(),
        &step_root,
        &n,
    )
    .await;

    // ACME against Pebble, HTTP-01 answered by the built-in solver.
    if let (Some(bin), Some(chall)) = (
        peer("CERTCTL_TEST_PEBBLE", "pebble"),
        peer("CERTCTL_TEST_CHALLTESTSRV", "pebble-challtestsrv"),
    ) {
        let (_peers, config, pebble_root) =
            pebble(&bin, &chall, &rig.dir.path().join("pebble")).await;
        let issuer = call(
            &rig.admin,
            "create_issuer",
            json!({"name": "pebble", "kind": "acme", "config": config}),
        )
        .await;
        let n = nginx(&root.join("acme")).await;
        deploy_and_renew(
            &rig,
            "acme",
            issuer["id"].as_str().unwrap(),
            &pebble_root,
            &n,
        )
        .await;
    }
}
