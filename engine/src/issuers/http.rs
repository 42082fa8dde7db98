//! HTTP clients for the connectors, on rustls with the one crypto provider
//! (aws-lc-rs) passed explicitly, so no connector depends on which provider
//! the process installed as its default.

use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;

use super::IssuerError;
use crate::error::{Error, Result};
use crate::net_guard::OutboundPolicy;

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

/// A reqwest client trusting `roots`, with bounded timeouts, that reaches
/// only addresses the outbound policy allows (names filtered when resolved,
/// redirects checked; literal hosts are checked by [`check_url`]).
pub(crate) fn reqwest_client(
    roots: RootCertStore,
    timeout: Duration,
    policy: OutboundPolicy,
) -> Result<reqwest::Client> {
    crate::net_guard::reqwest_builder(policy)
        .tls_backend_preconfigured(client_config(roots)?)
        .connect_timeout(Duration::from_secs(10))
        .timeout(timeout)
        .build()
        .map_err(|e| Error::internal(format!("HTTP client: {e}")))
}

/// A network failure: worth retrying, with the URL left out of the message
/// and its causes kept (an address refusal is one of them).
pub(crate) fn transport(what: &str, e: reqwest::Error) -> IssuerError {
    let e = e.without_url();
    let mut text = format!("{what}: {e}");
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    IssuerError::transient(text)
}

/// Checks a CA URL saved in an issuer's config: a literal IP host must be
/// allowed by the outbound address policy (names are checked when resolved).
pub(crate) fn check_url(what: &str, url: &str, policy: OutboundPolicy) -> Result<()> {
    crate::net_guard::check_url(url, policy).map_err(|e| Error::invalid(format!("{what}: {e}")))
}
