//! The agent rides out restarts (issue 5): a control-plane restart while
//! the agent's CSR is in flight, and an agent killed with SIGKILL after it
//! made the job's key but before the CSR was accepted. Either way the job
//! completes once, from the one key the agent made for it.
//!
//! A relay between agent and server holds the agent's CSR request
//! (`POST /api/v1/operations/submit_agent_csr`, the operation route the
//! agent's client calls) for as long as the test wants, which is
//! the deterministic point: the key and the job's state file are on disk,
//! the server has not seen the CSR.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use certctl_api::client::Client;
use serde_json::{Value, json};

use super::agent::{
    Proc, bootstrap_cert, call, free_port, nginx_conf, require_peer, served_eventually, spawn,
    until, wait_tls,
};
use super::{BIN, Server, wait_healthy};

/// The request line of the agent's CSR call.
const CSR_CALL: &[u8] = b"/api/v1/operations/submit_agent_csr ";

/// A TCP relay from the agent to the current server that can hold the
/// agent's requests to one operation (`call`, its request path), a
/// deterministic point in the middle of the agent's work.
pub(super) struct Relay {
    pub(super) port: u16,
    upstream: Arc<Mutex<String>>,
    pub(super) hold: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    pub(super) fn start(base: &str, call: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let relay = Self {
            port,
            upstream: Arc::new(Mutex::new(String::new())),
            hold: Arc::new(AtomicBool::new(false)),
            held: Arc::new(Mutex::new(Vec::new())),
        };
        relay.point_to(base);
        let (upstream, hold, held) = (
            relay.upstream.clone(),
            relay.hold.clone(),
            relay.held.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { break };
                let to = upstream.lock().unwrap().clone();
                let Ok(mut server) = TcpStream::connect(&to) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (hold, held) = (hold.clone(), held.clone());
                // Agent to server: a `call` request is held while `hold` is set.
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16384];
                    loop {
                        match c2.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                let chunk = &buf[..n];
                                if hold.load(Ordering::SeqCst)
                                    && chunk.windows(call.len()).any(|w| w == call)
                                {
                                    held.lock().unwrap().push(c2);
                                    return;
                                }
                                if s2.write_all(chunk).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server, &mut client);
                    let _ = client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        relay
    }

    pub(super) fn point_to(&self, base: &str) {
        *self.upstream.lock().unwrap() = base
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
    }

    pub(super) fn held(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Stops holding, and drops the held requests unanswered (the agent
    /// sees its connection close).
    pub(super) fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        for c in self.held.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Control plane, nginx, a registered agent behind the relay.
struct Setup {
    dir: tempfile::TempDir,
    server: Option<Server>,
    admin: Client,
    agent_id: String,
    agent_key: String,
    relay: Relay,
    www: PathBuf,
    port: u16,
    _nginx: Proc,
    cert: String,
}

impl Setup {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start(&dir.path().join("cp"), &[]);
        let admin = admin_client(dir.path(), &server);
        wait_healthy(&admin).await;
        let reg = call(&admin, "register_agent", json!({"name": "web-1"})).await;
        let relay = Relay::start(&server.base, CSR_CALL);
        let www = dir.path().join("nginx");
        std::fs::create_dir_all(www.join("tmp")).unwrap();
        let (cert_path, key_path) = bootstrap_cert(&www);
        let port = free_port();
        let conf = www.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&www, port, &cert_path, &key_path)).unwrap();
        let nginx = spawn("nginx", &["-c", conf.to_str().unwrap()], &[]);
        wait_tls(port).await;
        let agent_id = reg["agent"]["id"].as_str().unwrap().to_owned();
        let t = call(
            &admin,
            "save_target",
            json!({"name": "nginx-1", "kind": "nginx", "agent_id": agent_id,
                   "config": {"cert_path": cert_path, "key_path": key_path, "config_file": conf,
                              "verify_endpoint": format!("127.0.0.1:{port}"), "server_name": "app.test"}}),
        )
        .await;
        let c = call(
            &admin,
            "create_certificate",
            json!({"common_name": "app.test", "target_ids": [t["id"]]}),
        )
        .await;
        let cert = c["id"].as_str().unwrap().to_owned();
        let r = call(&admin, "renew_certificate", json!({"id": cert})).await;
        assert_eq!(r["job"]["status"], "awaiting_csr", "{r}");
        Self {
            agent_id,
            agent_key: reg["api_key"].as_str().unwrap().to_owned(),
            dir,
            server: Some(server),
            admin,
            relay,
            www,
            port,
            _nginx: nginx,
            cert,
        }
    }

    fn key_dir(&self) -> PathBuf {
        self.dir.path().join("agent-keys")
    }

    fn start_agent(&self) -> Proc {
        let child = Command::new(BIN)
            .args([
                "agent",
                "--server",
                &format!("http://127.0.0.1:{}", self.relay.port),
            ])
            .args(["--agent-id", &self.agent_id, "--poll-seconds", "0.2"])
            .args(["--verify-seconds", "20"])
            .arg("--key-dir")
            .arg(self.key_dir())
            .arg("--deploy-roots")
            .arg(&self.www)
            .env("CERTCTL_API_KEY", &self.agent_key)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("spawn certctl agent");
        Proc(child)
    }

    /// The key files in the agent's key directory, with their bytes.
    fn keys(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(self.key_dir().join("keys"))
            .map(|d| {
                d.map(|e| {
                    let p = e.unwrap().path();
                    let b = std::fs::read(&p).unwrap();
                    (p, b)
                })
                .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until the agent made the job's key, wrote its state, and its
    /// CSR request is held at the relay; returns the key file.
    async fn key_made_and_csr_held(&self) -> (PathBuf, Vec<u8>) {
        until(
            "the agent's CSR to be held after its key was made",
            async || {
                let states = std::fs::read_dir(self.key_dir().join("jobs")).ok()?.count();
                let keys = self.keys();
                (self.relay.held() > 0 && states == 1 && keys.len() == 1)
                    .then(|| keys.into_iter().next().unwrap())
            },
        )
        .await
    }

    /// Waits for the deployment to end and checks the job completed once,
    /// from `key`.
    async fn completed_once_from(&self, key: &(PathBuf, Vec<u8>)) {
        let deployment = until("the deployment job to end", async || {
            let jobs = call(
                &self.admin,
                "list_jobs",
                json!({"certificate_id": self.cert, "kind": "deployment"}),
            )
            .await;
            jobs["data"]
                .as_array()?
                .iter()
                .find(|j| matches!(j["status"].as_str(), Some("completed" | "failed")))
                .cloned()
        })
        .await;
        assert_eq!(deployment["status"], "completed", "{deployment}");
        let issuance = call(
            &self.admin,
            "list_jobs",
            json!({"certificate_id": self.cert, "kind": "issuance"}),
        )
        .await;
        let issuance = issuance["data"].as_array().unwrap();
        assert_eq!(issuance.len(), 1, "{issuance:?}");
        assert_eq!(issuance[0]["status"], "completed", "{issuance:?}");
        let details = call(&self.admin, "get_certificate", json!({"id": self.cert})).await;
        let versions = details["versions"].as_array().unwrap();
        assert_eq!(versions.len(), 1, "one version: {versions:?}");
        // One key, the same bytes as before the interruption, and it is the
        // key of the issued (and served) certificate.
        assert_eq!(self.keys(), vec![key.clone()], "no second key was made");
        assert_eq!(
            public_key_of_cert(versions[0]["cert_pem"].as_str().unwrap()),
            public_key_of_key(&key.0)
        );
        let fp = details["certificate"]["fingerprint"].as_str().unwrap();
        served_eventually(self.port, "app.test", fp).await;
    }
}

fn admin_client(dir: &Path, server: &Server) -> Client {
    let key = std::fs::read_to_string(dir.join("cp/admin.key")).expect("admin.key");
    Client::new(&server.base, Some(key.trim().to_owned())).expect("client")
}

fn openssl_stdout(args: &[&str], input: Option<&str>) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    } else {
        drop(child.stdin.take());
    }
    let out = child.wait_with_output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn public_key_of_cert(pem: &str) -> String {
    openssl_stdout(&["x509", "-noout", "-pubkey"], Some(pem))
}

fn public_key_of_key(path: &Path) -> String {
    openssl_stdout(&["pkey", "-pubout", "-in", path.to_str().unwrap()], None)
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_between_key_and_csr_reuses_its_key() {
    if !require_peer("nginx") || !require_peer("openssl") {
        return;
    }
    let s = Setup::start().await;
    s.relay.hold.store(true, Ordering::SeqCst);
    let agent = s.start_agent();
    let key = s.key_made_and_csr_held().await;
    // SIGKILL: no chance to clean up or report anything.
    drop(agent);
    s.relay.release();
    let state: Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(s.key_dir().join("jobs"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(
        state["version_id"].is_null(),
        "the CSR was not accepted: {state}"
    );
    let _agent = s.start_agent();
    s.completed_once_from(&key).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn control_plane_restart_with_a_csr_in_flight_loses_nothing() {
    if !require_peer("nginx") || !require_peer("openssl") {
        return;
    }
    let mut s = Setup::start().await;
    s.relay.hold.store(true, Ordering::SeqCst);
    let mut agent = s.start_agent();
    let key = s.key_made_and_csr_held().await;
    // The control plane restarts (new process, same data, another port)
    // while the agent waits for the answer to its CSR...
    let status = s.server.take().unwrap().terminate();
    assert!(status.success(), "{status:?}");
    let server = Server::start(&s.dir.path().join("cp"), &[]);
    s.admin = admin_client(s.dir.path(), &server);
    wait_healthy(&s.admin).await;
    s.relay.point_to(&server.base);
    s.server = Some(server);
    // ...and that request is lost: its connection closes unanswered.
    s.relay.release();
    s.completed_once_from(&key).await;
    assert!(agent.0.try_wait().unwrap().is_none(), "the agent exited");
}
