//! Post-deployment verification: a TLS handshake with the target's endpoint
//! and the SHA-256 of the leaf it serves. Any certificate is accepted here,
//! on purpose: the check is that the served leaf is byte for byte the one
//! deployed, which is stronger than chain validation.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts every certificate; only used to read what a server serves.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// SHA-256 (hex) of the leaf `endpoint` serves for `server_name`.
pub fn served_fingerprint(endpoint: &str, server_name: &str) -> Result<String, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
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
