//! The one address guard for every connection certctl makes on someone
//! else's say-so: the network scanner's targets, webhook and chat
//! notification URLs, and external CA URLs (ACME, step-ca, Vault).
//!
//! An IPv6 address can carry an IPv4 address inside it (IPv4-mapped
//! `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96` and
//! the local-use `64:ff9b:1::/48`, 6to4 `2002::/16`, Teredo `2001::/32`), and
//! a packet to it reaches that IPv4 host (the kernel, a NAT64 gateway or a
//! relay unwraps it). Comparing families naively lets
//! `::ffff:169.254.169.254` past a rule about `169.254.0.0/16`, so every
//! check here classifies the addresses a destination *reaches* ([`reached`])
//! and the worst of them decides. Zone ids (`fe80::1%eth0`) are refused: they
//! only name link-local addresses, which are never a legitimate destination.
//!
//! The scanner refuses embedded forms outright unless an admin allowed
//! restricted ranges on the target (`netscan.rs`); outbound HTTP applies the
//! [`OutboundPolicy`] after DNS resolution ([`GuardedResolver`]) and to
//! literal IP hosts ([`check_url`]), including redirects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Result};

/// How an IPv6 address carries an IPv4 one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (RFC 4291): the socket talks IPv4 to the host.
    Ipv4Mapped,
    /// `::a.b.c.d` (deprecated, RFC 4291).
    Ipv4Compatible,
    /// `64:ff9b::/96` (RFC 6052), the well-known NAT64 prefix.
    Nat64,
    /// `64:ff9b:1::/48` (RFC 8215), local-use NAT64; the operator picks the
    /// prefix length, so both the /96 and the /48 layouts are considered.
    Nat64LocalUse,
    /// `2002::/16` (RFC 3056): the IPv4 address is bits 16 to 48.
    SixToFour,
    /// `2001::/32` (RFC 4380): the client's IPv4 address, inverted, is the
    /// last 32 bits.
    Teredo,
}

impl Embedding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ipv4Mapped => "an IPv4-mapped address",
            Self::Ipv4Compatible => "an IPv4-compatible address",
            Self::Nat64 => "the NAT64 prefix 64:ff9b::/96",
            Self::Nat64LocalUse => "the local-use NAT64 prefix 64:ff9b:1::/48",
            Self::SixToFour => "the 6to4 prefix 2002::/16",
            Self::Teredo => "the Teredo prefix 2001::/32",
        }
    }

    /// The IPv6 prefix the embedding lives in.
    fn prefix(self) -> Ipv6Net {
        let (addr, len) = match self {
            Self::Ipv4Mapped => (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96),
            Self::Ipv4Compatible => (Ipv6Addr::UNSPECIFIED, 96),
            Self::Nat64 => (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96),
            Self::Nat64LocalUse => (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48),
            Self::SixToFour => (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16),
            Self::Teredo => (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),
        };
        Ipv6Net::new(addr, len).unwrap_or_default()
    }

    const ALL: [Embedding; 6] = [
        Self::Ipv4Mapped,
        Self::Ipv4Compatible,
        Self::Nat64,
        Self::Nat64LocalUse,
        Self::SixToFour,
        Self::Teredo,
    ];

    /// The IPv4 addresses `ip` (inside this embedding's prefix) stands for.
    fn decode(self, ip: Ipv6Addr) -> Vec<Ipv4Addr> {
        let bits = u128::from(ip);
        let low32 = Ipv4Addr::from(bits as u32);
        match self {
            Self::Ipv4Mapped | Self::Nat64 => vec![low32],
            // `::` and `::1` are IPv6's own unspecified and loopback addresses.
            Self::Ipv4Compatible if bits <= 1 => vec![],
            Self::Ipv4Compatible => vec![low32],
            Self::Nat64LocalUse => {
                // RFC 6052 /48 layout: IPv4 in bits 48..64 and 72..88.
                let hi = ((bits >> 64) & 0xffff) as u32;
                let lo = ((bits >> 40) & 0xffff) as u32;
                vec![low32, Ipv4Addr::from((hi << 16) | lo)]
            }
            Self::SixToFour => vec![Ipv4Addr::from((bits >> 80) as u32)],
            Self::Teredo => vec![Ipv4Addr::from(!(bits as u32))],
        }
    }
}

/// The embedding `ip` uses, if any, with the IPv4 addresses it reaches.
pub fn embedded(ip: Ipv6Addr) -> Option<(Embedding, Vec<Ipv4Addr>)> {
    Embedding::ALL
        .into_iter()
        .find(|e| e.prefix().contains(&ip))
        .map(|e| (e, e.decode(ip)))
        .filter(|(_, v4)| !v4.is_empty())
}

/// Every address a packet to `ip` may reach: `ip` itself and, for an
/// IPv6 address carrying an IPv4 one, that IPv4 address.
pub fn reached(ip: IpAddr) -> Vec<IpAddr> {
    let mut out = vec![ip];
    if let IpAddr::V6(v6) = ip
        && let Some((_, v4)) = embedded(v6)
    {
        out.extend(v4.into_iter().map(IpAddr::V4));
    }
    out
}

/// The canonical form of `ip`: the IPv4 address an IPv4-mapped or
/// IPv4-compatible address really is; other addresses unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match embedded(v6) {
            Some((Embedding::Ipv4Mapped | Embedding::Ipv4Compatible, v4)) => IpAddr::V4(v4[0]),
            _ => ip,
        },
        v4 => v4,
    }
}

/// What kind of destination an address is, from the most to the least
/// sensitive (the order decides which rule a refusal names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AddressClass {
    /// A cloud metadata service (169.254.169.254, fd00:ec2::254, 100.100.100.200).
    Metadata,
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// 127.0.0.0/8 or `::1`.
    Loopback,
    /// RFC 1918, fc00::/7 (unique local).
    Private,
    /// 100.64.0.0/10 (carrier-grade NAT, RFC 6598).
    SharedCgnat,
    /// 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
    Documentation,
    /// Other ranges that are not globally routed (240.0.0.0/4, 198.18.0.0/15,
    /// 192.0.0.0/24).
    Reserved,
    /// Everything else.
    Public,
}

impl AddressClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metadata => "a cloud metadata service address",
            Self::Unspecified => "an unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::LinkLocal => "a link-local address",
            Self::Loopback => "a loopback address",
            Self::Private => "a private address",
            Self::SharedCgnat => "a carrier-grade NAT address (100.64.0.0/10)",
            Self::Documentation => "a documentation address",
            Self::Reserved => "a reserved address",
            Self::Public => "a public address",
        }
    }
}

fn v4_class(ip: Ipv4Addr) -> AddressClass {
    let o = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) {
        AddressClass::Metadata
    } else if o[0] == 0 {
        AddressClass::Unspecified
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_private() {
        AddressClass::Private
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        AddressClass::SharedCgnat
    } else if ip.is_documentation() {
        AddressClass::Documentation
    } else if o[0] >= 240
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || (o[0], o[1], o[2]) == (192, 0, 0)
    {
        AddressClass::Reserved
    } else {
        AddressClass::Public
    }
}

fn v6_class(ip: Ipv6Addr) -> AddressClass {
    let s = ip.segments();
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::Metadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if (s[0] & 0xffc0) == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if (s[0] & 0xfe00) == 0xfc00 {
        AddressClass::Private
    } else if s[0] == 0x2001 && s[1] == 0xdb8 {
        AddressClass::Documentation
    } else {
        AddressClass::Public
    }
}

/// The class of one address as written (no unwrapping).
fn class_of(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

/// The most sensitive class among the addresses `ip` reaches, and the
/// address that has it.
pub fn classify(ip: IpAddr) -> (AddressClass, IpAddr) {
    reached(ip)
        .into_iter()
        .map(|a| (class_of(a), a))
        .min_by_key(|(c, _)| *c)
        .unwrap_or((class_of(ip), ip))
}

/// Which destinations outbound HTTP (webhooks, chat and incident
/// notifiers, external CAs) may reach. Link-local and metadata,
/// unspecified, multicast and broadcast addresses are refused under every
/// policy, in every form (IPv4-mapped, NAT64, 6to4, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum OutboundPolicy {
    /// Public addresses only.
    Public,
    /// Public and private addresses (RFC 1918, unique local, CGNAT,
    /// documentation and reserved ranges); no loopback.
    Private,
    /// Also loopback: self-hosted CAs and webhooks on the same host. The
    /// default, because certctl is often deployed next to them.
    #[default]
    Loopback,
}

impl OutboundPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Loopback => "loopback",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "public" => Ok(Self::Public),
            "private" => Ok(Self::Private),
            "loopback" => Ok(Self::Loopback),
            other => Err(Error::invalid(format!(
                "outbound address policy '{other}' is not one of public, private, loopback"
            ))),
        }
    }

    fn allows(self, class: AddressClass) -> bool {
        use AddressClass as C;
        match class {
            C::Metadata | C::Unspecified | C::Multicast | C::Broadcast | C::LinkLocal => false,
            C::Public => true,
            C::Private | C::SharedCgnat | C::Documentation | C::Reserved => {
                matches!(self, Self::Private | Self::Loopback)
            }
            C::Loopback => self == Self::Loopback,
        }
    }
}

impl fmt::Display for OutboundPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why `ip` may not be connected to under `policy`, naming the address
/// and the rule; `None` when it may.
pub fn refusal(ip: IpAddr, policy: OutboundPolicy) -> Option<String> {
    let (class, at) = classify(ip);
    if policy.allows(class) {
        return None;
    }
    let via = if at == ip {
        String::new()
    } else {
        let how = match ip {
            IpAddr::V6(v6) => embedded(v6).map(|(e, _)| e.as_str()).unwrap_or("it"),
            IpAddr::V4(_) => "it",
        };
        format!(" (it reaches {at} through {how})")
    };
    Some(format!(
        "{ip}{via} is {}, which the outbound address policy '{policy}' refuses",
        class.as_str()
    ))
}

/// Checks one destination address.
pub fn check_outbound(ip: IpAddr, policy: OutboundPolicy) -> Result<()> {
    match refusal(ip, policy) {
        Some(why) => Err(Error::invalid(why)),
        None => Ok(()),
    }
}

/// Checks a URL's host when it is a literal IP address (a name is checked
/// after resolution by [`GuardedResolver`]). Zone ids are refused.
pub fn check_url(url: &str, policy: OutboundPolicy) -> Result<()> {
    let u = reqwest::Url::parse(url).map_err(|_| {
        Error::invalid("the URL is not valid (an IPv6 zone id such as %eth0 is not accepted)")
    })?;
    check_parsed_url(&u, policy)
}

fn check_parsed_url(u: &reqwest::Url, policy: OutboundPolicy) -> Result<()> {
    let host = u
        .host_str()
        .ok_or_else(|| Error::invalid("the URL has no host"))?;
    if host.contains('%') {
        return Err(Error::invalid("zone ids are not accepted in URLs"));
    }
    // The URL parser has already turned other spellings of an IPv4 address
    // (decimal, octal, hex) into dotted quads; IPv6 hosts come in brackets.
    // A name is resolved, then checked, by the resolver.
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(ip) => check_outbound(ip, policy),
        Err(_) => Ok(()),
    }
}

/// A DNS resolver for reqwest that drops resolved addresses the policy
/// refuses, so a name cannot lead to a refused address (a rebinding name
/// is checked on every connection, not once when saved).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: OutboundPolicy,
}

impl GuardedResolver {
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }

    /// Resolves `host` and keeps the allowed addresses; errs (naming the
    /// first refused address and its rule) when none is left.
    pub async fn resolve_host(
        &self,
        host: &str,
    ) -> std::result::Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        if host.contains('%') {
            return Err("zone ids are not accepted in host names".into());
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        let mut refused = None;
        let kept: Vec<SocketAddr> = found
            .into_iter()
            .filter(|a| match refusal(a.ip(), self.policy) {
                Some(why) => {
                    tracing::warn!(host, address = %a.ip(), "outbound address refused: {why}");
                    refused.get_or_insert(why);
                    false
                }
                None => true,
            })
            .collect();
        match (kept.is_empty(), refused) {
            (false, _) => Ok(kept),
            (true, Some(why)) => Err(format!("{host} resolves to {why}").into()),
            (true, None) => Err(format!("{host} resolves to no address").into()),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_host(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// A reqwest client builder that applies `policy`: resolved names are
/// filtered, redirects to refused literal addresses are stopped (names
/// in redirects go through the resolver). Callers still check a literal IP
/// host of the first URL with [`check_url`], since reqwest does not resolve it.
pub fn reqwest_builder(policy: OutboundPolicy) -> reqwest::ClientBuilder {
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 5 {
            return attempt.error("too many redirects");
        }
        match check_parsed_url(attempt.url(), policy) {
            Ok(()) => attempt.follow(),
            Err(e) => attempt.error(e.to_string()),
        }
    });
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .redirect(redirect)
}

// hyper-util's resolver interface (a tower service over names), for the
// ACME client, which runs on hyper rather than reqwest.
impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>>
                + Send,
        >,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.resolve_host(name.as_str()).await?.into_iter()) })
    }
}

/// A connector wrapper that checks a URI's literal IP host before
/// connecting (hyper-util connects to a literal without resolving it).
#[derive(Debug, Clone)]
pub struct GuardedConnector<C> {
    inner: C,
    policy: OutboundPolicy,
}

impl<C> GuardedConnector<C> {
    pub fn new(inner: C, policy: OutboundPolicy) -> Self {
        Self { inner, policy }
    }
}

impl<C> tower_service::Service<http::Uri> for GuardedConnector<C>
where
    C: tower_service::Service<http::Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = C::Response;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Self::Response, Self::Error>>
                + Send,
        >,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default();
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>();
        if let Ok(ip) = literal
            && let Some(why) = refusal(ip, self.policy)
        {
            return Box::pin(async move { Err(why.into()) });
        }
        let fut = self.inner.call(uri);
        Box::pin(async move { fut.await.map_err(Into::into) })
    }
}

/// For a network (a scan target): the embedding it lies in, if it
/// overlaps one, with the IPv4 networks it reaches. A network that
/// overlaps an embedding prefix without lying inside it is answered with
/// the whole IPv4 space, which every rule then refuses.
pub fn embedded_network(n: &IpNet) -> Option<(Embedding, Vec<Ipv4Net>)> {
    let IpNet::V6(n6) = n else { return None };
    for e in Embedding::ALL {
        let p = e.prefix();
        if p.contains(n6) {
            let (first, last) = (n6.network(), n6.broadcast());
            if e == Embedding::Ipv4Compatible && u128::from(last) <= 1 {
                continue;
            }
            let a = e.decode(first);
            let b = e.decode(last);
            let nets = a
                .iter()
                .zip(b.iter())
                .flat_map(|(x, y)| {
                    let (lo, hi) = if x <= y { (*x, *y) } else { (*y, *x) };
                    ipnet::Ipv4Subnets::new(lo, hi, 0)
                })
                .collect();
            return Some((e, nets));
        }
        if n6.contains(&p) {
            let all = Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).unwrap_or_default();
            return Some((e, vec![all]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn embedded_forms_reach_their_ipv4_host() {
        for (form, v4) in [
            ("::ffff:169.254.169.254", "169.254.169.254"),
            ("::169.254.169.254", "169.254.169.254"),
            ("64:ff9b::a9fe:a9fe", "169.254.169.254"),
            ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),
            ("2002:a9fe:a9fe::1", "169.254.169.254"),
            ("2001:0:4136:e378:8000:63bf:5601:5601", "169.254.169.254"),
        ] {
            assert!(reached(ip(form)).contains(&ip(v4)), "{form}");
            assert_eq!(classify(ip(form)).0, AddressClass::Metadata, "{form}");
        }
        assert_eq!(canonical(ip("::ffff:127.0.0.1")), ip("127.0.0.1"));
        assert_eq!(canonical(ip("::1")), ip("::1"));
        assert_eq!(classify(ip("::1")).0, AddressClass::Loopback);
        assert_eq!(classify(ip("::")).0, AddressClass::Unspecified);
    }

    #[test]
    fn policy_refuses_link_local_in_every_form() {
        for p in [
            OutboundPolicy::Public,
            OutboundPolicy::Private,
            OutboundPolicy::Loopback,
        ] {
            for a in [
                "169.254.169.254",
                "::ffff:169.254.169.254",
                "64:ff9b::a9fe:a9fe",
                "2002:a9fe:a9fe::1",
                "fe80::1",
                "fd00:ec2::254",
                "0.0.0.0",
                "::",
                "::ffff:0.0.0.0",
                "224.0.0.1",
                "::ffff:224.0.0.1",
                "ff02::1",
                "255.255.255.255",
            ] {
                let why = refusal(ip(a), p).unwrap_or_default();
                assert!(
                    why.contains(a) && why.contains(p.as_str()),
                    "{a} {p}: {why}"
                );
            }
        }
        let p = OutboundPolicy::default();
        assert!(refusal(ip("127.0.0.1"), p).is_none());
        assert!(refusal(ip("::ffff:127.0.0.1"), p).is_none());
        assert!(refusal(ip("10.1.2.3"), p).is_none());
        assert!(refusal(ip("8.8.8.8"), OutboundPolicy::Public).is_none());
        assert!(refusal(ip("127.0.0.1"), OutboundPolicy::Private).is_some());
        let why = refusal(ip("::ffff:10.0.0.1"), OutboundPolicy::Public).unwrap();
        assert!(why.contains("reaches 10.0.0.1"), "{why}");
        assert!(refusal(ip("100.100.100.200"), p).is_some());
    }

    #[test]
    fn urls_with_literal_hosts_and_zones() {
        let p = OutboundPolicy::default();
        assert!(check_url("http://[::ffff:169.254.169.254]/", p).is_err());
        assert!(check_url("http://[::ffff:a9fe:a9fe]:8080/x", p).is_err());
        assert!(check_url("http://169.254.169.254/latest", p).is_err());
        // Other spellings of the same address are parsed as IPv4.
        assert!(check_url("http://2852039166/", p).is_err());
        assert!(check_url("http://0xa9.0xfe.0xa9.0xfe/", p).is_err());
        assert!(check_url("http://[fe80::1%25eth0]/", p).is_err());
        assert!(check_url("http://127.0.0.1:9/hook", p).is_ok());
        assert!(check_url("https://hooks.example.com/x", p).is_ok());
    }

    #[test]
    fn networks_inside_an_embedding() {
        let n: IpNet = "::ffff:169.254.169.0/120".parse().unwrap();
        let (e, v4) = embedded_network(&n).unwrap();
        assert_eq!(e, Embedding::Ipv4Mapped);
        assert_eq!(v4, vec!["169.254.169.0/24".parse::<Ipv4Net>().unwrap()]);
        let n: IpNet = "2002:a9fe:a9fe::1/128".parse().unwrap();
        let (e, v4) = embedded_network(&n).unwrap();
        assert_eq!(e, Embedding::SixToFour);
        assert!(v4.contains(&"169.254.169.254/32".parse().unwrap()));
        assert!(embedded_network(&"::1/128".parse().unwrap()).is_none());
        assert!(embedded_network(&"2001:db8::/120".parse().unwrap()).is_none());
        let (_, v4) = embedded_network(&"::/0".parse().unwrap()).unwrap();
        assert_eq!(v4[0].prefix_len(), 0);
    }
}
