//! ACME challenge solvers: the built-in HTTP-01 responder on the control
//! plane, and the DNS-01 hook-script provider.
//!
//! Both are traits so other parts can answer challenges: the agent serves
//! HTTP-01 on the target host (it implements [`Http01Solver`]), and other DNS
//! providers implement [`Dns01Solver`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::IssuerError;

/// Answers `http://NAME/.well-known/acme-challenge/TOKEN` with the key authorization.
#[async_trait::async_trait]
pub trait Http01Solver: Send + Sync {
    async fn present(&self, name: &str, token: &str, key_auth: &str) -> Result<(), IssuerError>;
    async fn cleanup(&self, name: &str, token: &str);
}

/// Publishes `_acme-challenge.NAME TXT value`.
#[async_trait::async_trait]
pub trait Dns01Solver: Send + Sync {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), IssuerError>;
    async fn cleanup(&self, fqdn: &str, value: &str);
}

type Tokens = Arc<Mutex<HashMap<String, String>>>;

/// The control plane's own HTTP-01 responder, for names that point at it:
/// a small HTTP/1.1 listener that serves only challenge tokens, bound while
/// an order is being validated and closed when the solver is dropped.
pub struct BuiltinHttp01 {
    listen: String,
    tokens: Tokens,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl BuiltinHttp01 {
    pub fn new(listen: impl Into<String>) -> Self {
        Self {
            listen: listen.into(),
            tokens: Arc::default(),
            server: Mutex::new(None),
        }
    }

    async fn ensure_listening(&self) -> Result<(), IssuerError> {
        if self
            .server
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(&self.listen)
            .await
            .map_err(|e| {
                IssuerError::transient(format!(
                    "the HTTP-01 responder cannot listen on {}: {e}",
                    self.listen
                ))
            })?;
        let tokens = self.tokens.clone();
        let handle = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, tokens.clone()));
            }
        });
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(())
    }
}

impl Drop for BuiltinHttp01 {
    fn drop(&mut self) {
        if let Some(h) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            h.abort();
        }
    }
}

const PREFIX: &str = "/.well-known/acme-challenge/";

async fn serve(mut stream: tokio::net::TcpStream, tokens: Tokens) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    // Read the request head (bounded in size and time).
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split(' ');
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let answer = match (method, path.strip_prefix(PREFIX)) {
        ("GET", Some(token)) => tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            .cloned(),
        _ => None,
    };
    let rsp = match answer {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
    };
    let _ = stream.write_all(rsp.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[async_trait::async_trait]
impl Http01Solver for BuiltinHttp01 {
    async fn present(&self, _name: &str, token: &str, key_auth: &str) -> Result<(), IssuerError> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_owned(), key_auth.to_owned());
        self.ensure_listening().await
    }

    async fn cleanup(&self, _name: &str, token: &str) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(token);
    }
}

/// DNS-01 through an operator's script: `HOOK present FQDN VALUE` and
/// `HOOK cleanup FQDN VALUE`, run directly (no shell), with a clean
/// environment plus the configured secrets, killed after the timeout.
pub struct HookDns01 {
    pub command: String,
    pub env: BTreeMap<String, String>,
    pub timeout: Duration,
    /// Waited after a successful `present`, for the record to reach the
    /// authoritative servers the CA asks.
    pub propagation: Duration,
}

impl HookDns01 {
    async fn run(&self, action: &str, fqdn: &str, value: &str) -> Result<(), IssuerError> {
        let child = tokio::process::Command::new(&self.command)
            .args([action, fqdn, value])
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .envs(&self.env)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                IssuerError::rejected(format!("cannot start the DNS hook {}: {e}", self.command))
            })?;
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) if out.status.success() => Ok(()),
            Ok(Ok(out)) => Err(IssuerError::transient(format!(
                "the DNS hook's {action} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))),
            Ok(Err(e)) => Err(IssuerError::transient(format!("the DNS hook: {e}"))),
            Err(_) => Err(IssuerError::transient(format!(
                "the DNS hook's {action} did not finish within {} s",
                self.timeout.as_secs()
            ))),
        }
    }
}

#[async_trait::async_trait]
impl Dns01Solver for HookDns01 {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), IssuerError> {
        self.run("present", fqdn, value).await?;
        if !self.propagation.is_zero() {
            tokio::time::sleep(self.propagation).await;
        }
        Ok(())
    }

    async fn cleanup(&self, fqdn: &str, value: &str) {
        if let Err(e) = self.run("cleanup", fqdn, value).await {
            tracing::warn!(error = %e, fqdn, "DNS-01 cleanup failed");
        }
    }
}
