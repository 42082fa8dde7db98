//! Post-deployment verification: a TLS handshake with the target's endpoint
//! and the SHA-256 of the leaf it serves. Any certificate is accepted here,
//! on purpose: the check is that the served leaf is byte for byte the one
//! deployed, which is stronger than chain validation.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// SHA-256 (hex) of the leaf `endpoint` serves for `server_name`.
pub fn served_fingerprint(endpoint: &str, server_name: &str) -> Result<String, String> {
    let config = certctl_engine::netscan::record_only_client_config();
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|_| format!("'{server_name}' is not a valid server name"))?;
    let addr = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint} resolves to no address"))?;
    let mut sock = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    sock.set_read_timeout(Some(CONNECT_TIMEOUT)).ok();
    sock.set_write_timeout(Some(CONNECT_TIMEOUT)).ok();
    let mut conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)
            .map_err(|e| format!("TLS handshake with {endpoint} failed: {e}"))?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or_else(|| format!("{endpoint} sent no certificate"))?;
    let fp = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        leaf.as_ref(),
    ));
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let _ = (sock.flush(), sock.read(&mut [0; 1]));
    Ok(fp)
}

/// Polls the endpoint until it serves `expected` or `deadline` passes (a
/// reload takes effect when the server's workers have switched). Returns
/// the last served fingerprint, or the last error.
pub async fn wait_for(
    endpoint: &str,
    server_name: &str,
    expected: &str,
    deadline: Duration,
) -> (Option<String>, Option<String>) {
    let start = Instant::now();
    loop {
        let (e, n) = (endpoint.to_owned(), server_name.to_owned());
        let got = tokio::task::spawn_blocking(move || served_fingerprint(&e, &n))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        let done = start.elapsed() >= deadline;
        match got {
            Ok(fp) if fp == expected || done => return (Some(fp), None),
            Err(e) if done => return (None, Some(e)),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
