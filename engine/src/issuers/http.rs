//! HTTP clients for the connectors, on rustls with the one crypto provider
//! (aws-lc-rs) passed explicitly, so no connector depends on which provider
//! the process installed as its default.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::IssuerError;
use crate::error::{Error, Result};

/// The root store: the given PEM roots only, or the system's roots.
pub(crate) fn roots(ca_pem: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for der in crate::pki::cert::certificate_ders(pem, "CA bundle")? {
                store
                    .add(CertificateDer::from(der))
                    .map_err(|e| Error::invalid(format!("CA bundle: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
        }
    }
    if store.is_empty() {
        return Err(Error::invalid("no trusted root certificate for the CA"));
    }
    Ok(store)
}

pub(crate) fn client_config(roots: RootCertStore) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A reqwest client trusting `roots`, with bounded timeouts.
pub(crate) fn reqwest_client(roots: RootCertStore, timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(client_config(roots)?)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| Error::internal(format!("HTTP client: {e}")))
}

/// A network failure: worth retrying, with the URL left out of the message.
pub(crate) fn transport(what: &str, e: reqwest::Error) -> IssuerError {
    let e = e.without_url();
    IssuerError::transient(format!("{what}: {e}"))
}
