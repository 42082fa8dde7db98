//! The network scanner: TLS handshakes with every address and port of a
//! scan target, recording the leaf each endpoint serves. Any certificate is
//! accepted, on purpose: the scanner records what is out there, it does not
//! trust it, and nothing it learns is used to authenticate anything.
//!
//! Guard rails, checked before a single packet is sent ([`ScanPlan::new`]):
//! a target may cover at most `max_endpoints` (addresses times ports times
//! server names), and link-local and cloud metadata addresses are refused
//! unless an admin allowed them on the target. Unspecified, multicast and
//! broadcast addresses are never scanned. A closed port or one that does not
//! speak TLS is counted, never an error.
//!
//! Every rule applies to the addresses a target *reaches*, through the
//! shared guard (`net_guard`): an IPv6 form that carries an IPv4 address
//! (`::ffff:169.254.169.254`, NAT64, 6to4, Teredo) is checked as that IPv4
//! address, and is itself refused unless an admin allowed restricted ranges
//! (write the IPv4 form instead). Zone ids (`fe80::1%eth0`) are refused.
//! The scan loop checks each address again before it connects.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::config::NetworkScanConfig;
use crate::error::{Error, Result};

/// Ranges refused unless an admin allows them: link-local (where cloud
/// metadata services live) and the metadata addresses outside it.
const RESTRICTED: &[(&str, &str)] = &[
    (
        "169.254.0.0/16",
        "IPv4 link-local, home of cloud metadata services",
    ),
    ("fe80::/10", "IPv6 link-local"),
    ("fd00:ec2::254/128", "the AWS IPv6 metadata service"),
    ("100.100.100.200/32", "the Alibaba Cloud metadata service"),
];

/// Ranges never scanned.
const NEVER: &[(&str, &str)] = &[
    ("0.0.0.0/8", "'this network' (unspecified)"),
    ("224.0.0.0/4", "IPv4 multicast"),
    ("255.255.255.255/32", "IPv4 broadcast"),
    ("::/128", "the unspecified IPv6 address"),
    ("ff00::/8", "IPv6 multicast"),
];

/// Most ports and server names one target may list.
const MAX_PORTS: usize = 64;
const MAX_NAMES: usize = 16;
const MAX_NETWORKS: usize = 64;

/// A checked scan: the networks, ports and names to try.
#[derive(Debug, Clone)]
pub struct ScanPlan {
    networks: Vec<IpNet>,
    allow_restricted: bool,
    ports: Vec<u16>,
    server_names: Vec<String>,
    /// Addresses times ports times names (at least one handshake per endpoint).
    pub endpoints: u64,
}

/// Parses one CIDR (a bare address is a host network).
pub fn parse_network(s: &str) -> Result<IpNet> {
    let t = s.trim();
    if t.contains('%') {
        return Err(Error::invalid(format!(
            "'{s}' carries a zone id; zone ids name link-local addresses, which a scan target may not"
        )));
    }
    if let Ok(n) = t.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    t.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        Error::invalid(format!(
            "'{s}' is not a network in CIDR notation (10.0.0.0/24) or an address"
        ))
    })
}

/// Whether the scanner may connect to `ip`: never to what it reaches when
/// that is unspecified, multicast or broadcast; to link-local and metadata
/// addresses and IPv4-carrying IPv6 forms only when an admin allowed it.
fn address_allowed(ip: IpAddr, allow_restricted: bool) -> bool {
    use crate::net_guard::AddressClass as C;
    let (class, _) = crate::net_guard::classify(ip);
    let embedded = matches!(ip, IpAddr::V6(v6) if crate::net_guard::embedded(v6).is_some());
    match class {
        C::Unspecified | C::Multicast | C::Broadcast => false,
        C::Metadata | C::LinkLocal => allow_restricted,
        _ => allow_restricted || !embedded,
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn address_count(n: &IpNet) -> u64 {
    let host_bits = u32::from(n.max_prefix_len() - n.prefix_len());
    1u64.checked_shl(host_bits).unwrap_or(u64::MAX)
}

impl ScanPlan {
    /// Checks a target against the guard rails; the error says which rule
    /// refused it and why.
    pub fn new(
        cidrs: &[String],
        ports: &[u16],
        server_names: &[String],
        allow_restricted: bool,
        cfg: &NetworkScanConfig,
    ) -> Result<Self> {
        if cidrs.is_empty() || cidrs.len() > MAX_NETWORKS {
            return Err(Error::invalid(format!(
                "a scan target lists 1 to {MAX_NETWORKS} networks"
            )));
        }
        if ports.is_empty() || ports.len() > MAX_PORTS || ports.contains(&0) {
            return Err(Error::invalid(format!(
                "a scan target lists 1 to {MAX_PORTS} ports, each 1 to 65535"
            )));
        }
        if server_names.len() > MAX_NAMES {
            return Err(Error::invalid(format!(
                "a scan target lists at most {MAX_NAMES} server names"
            )));
        }
        for n in server_names {
            crate::pki::validate_dns_name(n)
                .map_err(|e| Error::invalid(format!("server name '{n}': {e}")))?;
        }
        let networks = cidrs
            .iter()
            .map(|c| parse_network(c))
            .collect::<Result<Vec<_>>>()?;
        let parse = |s: &str| s.parse::<IpNet>().expect("constant network");
        let mut addresses: u64 = 0;
        for (n, raw) in networks.iter().zip(cidrs) {
            // The networks a target reaches: itself and, for an IPv6 form
            // carrying IPv4 addresses, those IPv4 networks.
            let mut reached = vec![*n];
            if let Some((how, v4)) = crate::net_guard::embedded_network(n) {
                if !allow_restricted {
                    let shown: Vec<String> = v4.iter().map(ToString::to_string).collect();
                    return Err(Error::invalid(format!(
                        "{raw} reaches IPv4 {} through {}; write the IPv4 form, or only an admin \
                         may allow it (allow_restricted)",
                        shown.join(", "),
                        how.as_str()
                    )));
                }
                reached.extend(v4.into_iter().map(IpNet::V4));
            }
            for r in &reached {
                let shown = if r == n {
                    raw.to_string()
                } else {
                    format!("{raw} (as {r})")
                };
                for (deny, why) in NEVER {
                    if overlaps(r, &parse(deny)) {
                        return Err(Error::invalid(format!(
                            "{shown} overlaps {deny} ({why}), which is never scanned"
                        )));
                    }
                }
                if !allow_restricted {
                    for (deny, why) in RESTRICTED {
                        if overlaps(r, &parse(deny)) {
                            return Err(Error::invalid(format!(
                                "{shown} overlaps {deny} ({why}); only an admin may allow it (allow_restricted)"
                            )));
                        }
                    }
                }
            }
            addresses = addresses.saturating_add(address_count(n));
        }
        let per_address = ports.len() as u64 * server_names.len().max(1) as u64;
        let endpoints = addresses.saturating_mul(per_address);
        if endpoints > cfg.max_endpoints {
            return Err(Error::invalid(format!(
                "the target covers {addresses} addresses x {} ports{} = {endpoints} handshakes, \
                 over the limit of {} (a /20 on one port by default); split it into smaller targets",
                ports.len(),
                if server_names.len() > 1 {
                    format!(" x {} names", server_names.len())
                } else {
                    String::new()
                },
                cfg.max_endpoints
            )));
        }
        Ok(Self {
            networks,
            allow_restricted,
            ports: ports.to_vec(),
            server_names: server_names.to_vec(),
            endpoints,
        })
    }

    /// Every address of the plan (network and broadcast addresses of IPv4
    /// networks wider than /31 excluded, as they serve nothing), each checked
    /// again by the shared guard before anything connects to it: a rule the
    /// network check missed still stops the packet.
    fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.networks
            .iter()
            .flat_map(|n| n.hosts())
            .filter(|ip| address_allowed(*ip, self.allow_restricted))
    }
}

/// What an endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A TLS handshake completed: the served chain, leaf first (DER).
    Tls(Vec<Vec<u8>>),
    /// Nothing listens (refused, unreachable, or no answer to the connect).
    Closed,
    /// Something listens but did not complete a TLS handshake.
    NotTls(String),
}

/// One endpoint that served a certificate.
#[derive(Debug, Clone)]
pub struct Served {
    pub endpoint: SocketAddr,
    pub server_name: Option<String>,
    /// The leaf (DER).
    pub leaf: Vec<u8>,
}

/// The figures and findings of one scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOutcome {
    pub handshakes: u64,
    pub closed: u64,
    pub not_tls: u64,
    pub served: Vec<Served>,
    pub duration_ms: u64,
}

/// Scans every endpoint of `plan` with at most `cfg.concurrency` handshakes
/// at once, each bounded by `cfg.timeout_ms`.
pub async fn scan(plan: &ScanPlan, cfg: &NetworkScanConfig) -> ScanOutcome {
    let started = std::time::Instant::now();
    let client = Arc::new(record_only_client_config());
    let limit = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let timeout = Duration::from_millis(cfg.timeout_ms.max(1));
    let names: Vec<Option<String>> = if plan.server_names.is_empty() {
        vec![None]
    } else {
        plan.server_names.iter().cloned().map(Some).collect()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for ip in plan.addresses() {
        for port in &plan.ports {
            for name in &names {
                let endpoint = SocketAddr::new(ip, *port);
                let (client, name) = (client.clone(), name.clone());
                // Acquired before spawning, so at most `concurrency` tasks exist.
                let permit = match limit.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => break,
                };
                tasks.spawn(async move {
                    let _permit = permit;
                    let probe = probe(&client, endpoint, name.as_deref(), timeout).await;
                    (endpoint, name, probe)
                });
            }
        }
    }
    let mut out = ScanOutcome::default();
    while let Some(done) = tasks.join_next().await {
        let Ok((endpoint, server_name, probe)) = done else {
            continue;
        };
        out.handshakes += 1;
        match probe {
            Probe::Tls(mut chain) if !chain.is_empty() => out.served.push(Served {
                endpoint,
                server_name,
                leaf: chain.swap_remove(0),
            }),
            Probe::Tls(_) => out.not_tls += 1,
            Probe::Closed => out.closed += 1,
            Probe::NotTls(why) => {
                tracing::debug!(%endpoint, why = %why, "no TLS");
                out.not_tls += 1;
            }
        }
    }
    out.served
        .sort_by(|a, b| (a.endpoint, &a.server_name).cmp(&(b.endpoint, &b.server_name)));
    out.duration_ms = started.elapsed().as_millis() as u64;
    out
}

/// One handshake with `endpoint`, sending `server_name` as SNI when given.
pub async fn probe(
    client: &Arc<rustls::ClientConfig>,
    endpoint: SocketAddr,
    server_name: Option<&str>,
    timeout: Duration,
) -> Probe {
    let connect = tokio::time::timeout(timeout, TcpStream::connect(endpoint)).await;
    let tcp = match connect {
        Ok(Ok(s)) => s,
        Ok(Err(_)) | Err(_) => return Probe::Closed,
    };
    // An IP address as the server name sends no SNI (RFC 6066 forbids it).
    let name = match server_name.map(|n| ServerName::try_from(n.to_owned())) {
        Some(Ok(n)) => n,
        _ => ServerName::IpAddress(endpoint.ip().into()),
    };
    let connector = tokio_rustls::TlsConnector::from(client.clone());
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => {
            let (_, conn) = stream.get_ref();
            let chain = conn
                .peer_certificates()
                .map(|c| c.iter().map(|d| d.as_ref().to_vec()).collect())
                .unwrap_or_default();
            Probe::Tls(chain)
        }
        Ok(Err(e)) => Probe::NotTls(e.to_string()),
        Err(_) => Probe::NotTls("the handshake timed out".into()),
    }
}

/// A TLS client that accepts any certificate: it records what a server
/// serves, never trusts it. Used by the scanner and by the agent's
/// post-deployment check (which compares the served leaf byte for byte).
pub fn record_only_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the aws-lc-rs provider supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordAny(provider)))
        .with_no_client_auth();
    c.enable_sni = true;
    c
}

#[derive(Debug)]
struct RecordAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for RecordAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(cidrs: &[&str], ports: &[u16], allow: bool) -> Result<ScanPlan> {
        let cidrs: Vec<String> = cidrs.iter().map(|s| s.to_string()).collect();
        ScanPlan::new(&cidrs, ports, &[], allow, &NetworkScanConfig::default())
    }

    #[test]
    fn guard_rails() {
        let p = plan(&["127.0.0.1/32"], &[443, 8443], false).unwrap();
        assert_eq!(p.endpoints, 2);
        assert_eq!(p.addresses().count(), 1);
        let p = plan(&["127.0.0.8/29"], &[443], false).unwrap();
        assert_eq!(p.addresses().count(), 6);
        let e = plan(&["127.0.0.0/8"], &[443], false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("16777216 addresses") && e.contains("limit of 4096"),
            "{e}"
        );
        let e = plan(&["169.254.169.254"], &[80], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only an admin"), "{e}");
        assert!(plan(&["169.254.169.254"], &[80], true).is_ok());
        assert!(plan(&["fe80::1"], &[443], false).is_err());
        assert!(plan(&["224.0.0.1"], &[443], true).is_err());
        assert!(plan(&["10.0.0.0/24"], &[0], false).is_err());
        assert!(plan(&["nonsense"], &[443], false).is_err());
        assert!(plan(&[], &[443], false).is_err());
    }
}
