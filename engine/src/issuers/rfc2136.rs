//! DNS-01 through RFC 2136 dynamic updates signed with TSIG (RFC 8945), as
//! BIND, Knot, PowerDNS and Windows DNS accept them: add the
//! `_acme-challenge` TXT record, wait until the server answers with it, and
//! delete it after validation. Messages go over TCP (RFC 7766), so no
//! truncation handling is needed.
//!
//! Only what the provider needs is encoded here: an UPDATE with one zone and
//! TXT records, a TXT query, and the answer's RCODE and TXT data. The
//! server's reply to an update is not TSIG-verified: a forged "success"
//! would only make the CA's validation fail.

use std::time::Duration;

use aws_lc_rs::hmac;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::IssuerError;
use super::acme_dns::Dns01Solver;

const TYPE_SOA: u16 = 6;
const TYPE_TXT: u16 = 16;
const TYPE_TSIG: u16 = 250;
const CLASS_IN: u16 = 1;
const CLASS_NONE: u16 = 254;
const CLASS_ANY: u16 = 255;
const OPCODE_UPDATE: u16 = 5 << 11;

/// A TSIG key: its name, HMAC algorithm and secret.
#[derive(Clone)]
pub struct TsigKey {
    pub name: String,
    /// `hmac-sha256` or `hmac-sha512`.
    pub algorithm: String,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

impl TsigKey {
    fn hmac_algorithm(&self) -> Result<hmac::Algorithm, IssuerError> {
        match self.algorithm.as_str() {
            "hmac-sha256" => Ok(hmac::HMAC_SHA256),
            "hmac-sha512" => Ok(hmac::HMAC_SHA512),
            other => Err(IssuerError::rejected(format!(
                "TSIG algorithm {other} is not supported (hmac-sha256, hmac-sha512)"
            ))),
        }
    }
}

/// Appends `name` in uncompressed wire form (lower-cased, as TSIG's
/// canonical form wants it).
fn put_name(buf: &mut Vec<u8>, name: &str) -> Result<(), IssuerError> {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        if label.len() > 63 {
            return Err(IssuerError::rejected(format!(
                "DNS label too long in {name}"
            )));
        }
        buf.push(label.len() as u8);
        buf.extend(label.to_ascii_lowercase().bytes());
    }
    buf.push(0);
    Ok(())
}

fn put_u16(buf: &mut Vec<u8>, v: u16) {
    buf.extend_from_slice(&v.to_be_bytes());
}

fn put_u32(buf: &mut Vec<u8>, v: u32) {
    buf.extend_from_slice(&v.to_be_bytes());
}

/// TXT RDATA: character-strings of at most 255 bytes.
fn txt_rdata(value: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in value.as_bytes().chunks(255) {
        out.push(chunk.len() as u8);
        out.extend_from_slice(chunk);
    }
    if value.is_empty() {
        out.push(0);
    }
    out
}

fn header(id: u16, flags: u16, counts: [u16; 4]) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    put_u16(&mut b, id);
    put_u16(&mut b, flags);
    for c in counts {
        put_u16(&mut b, c);
    }
    b
}

/// Signs `msg` (whose ARCOUNT does not count the TSIG record yet) and
/// appends the TSIG record.
fn sign(msg: &mut Vec<u8>, key: &TsigKey, now: i64) -> Result<(), IssuerError> {
    let id = u16::from_be_bytes([msg[0], msg[1]]);
    let time = u64::try_from(now).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let fudge: u16 = 300;
    let mut algo = Vec::new();
    put_name(&mut algo, &key.algorithm)?;
    let mut key_name = Vec::new();
    put_name(&mut key_name, &key.name)?;
    // The TSIG variables (RFC 8945 section 4.3.3).
    let mut vars = Vec::new();
    vars.extend_from_slice(&key_name);
    put_u16(&mut vars, CLASS_ANY);
    put_u32(&mut vars, 0);
    vars.extend_from_slice(&algo);
    vars.extend_from_slice(&time.to_be_bytes()[2..]);
    put_u16(&mut vars, fudge);
    put_u16(&mut vars, 0); // error
    put_u16(&mut vars, 0); // other len
    let k = hmac::Key::new(key.hmac_algorithm()?, &key.secret);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(msg);
    ctx.update(&vars);
    let mac = ctx.sign();
    let mac = mac.as_ref();

    let mut rdata = Vec::new();
    rdata.extend_from_slice(&algo);
    rdata.extend_from_slice(&time.to_be_bytes()[2..]);
    put_u16(&mut rdata, fudge);
    put_u16(&mut rdata, mac.len() as u16);
    rdata.extend_from_slice(mac);
    put_u16(&mut rdata, id);
    put_u16(&mut rdata, 0);
    put_u16(&mut rdata, 0);

    msg.extend_from_slice(&key_name);
    put_u16(msg, TYPE_TSIG);
    put_u16(msg, CLASS_ANY);
    put_u32(msg, 0);
    put_u16(msg, rdata.len() as u16);
    msg.extend_from_slice(&rdata);
    let arcount = u16::from_be_bytes([msg[10], msg[11]]) + 1;
    msg[10..12].copy_from_slice(&arcount.to_be_bytes());
    Ok(())
}

/// An UPDATE for `zone` that adds (or deletes) `fqdn TXT value`.
fn update_message(
    id: u16,
    zone: &str,
    fqdn: &str,
    value: &str,
    add: bool,
    ttl: u32,
) -> Result<Vec<u8>, IssuerError> {
    let mut m = header(id, OPCODE_UPDATE, [1, 0, 1, 0]);
    put_name(&mut m, zone)?;
    put_u16(&mut m, TYPE_SOA);
    put_u16(&mut m, CLASS_IN);
    put_name(&mut m, fqdn)?;
    put_u16(&mut m, TYPE_TXT);
    let rdata = txt_rdata(value);
    if add {
        put_u16(&mut m, CLASS_IN);
        put_u32(&mut m, ttl);
    } else {
        // Delete this one RR (RFC 2136 section 2.5.4).
        put_u16(&mut m, CLASS_NONE);
        put_u32(&mut m, 0);
    }
    put_u16(&mut m, rdata.len() as u16);
    m.extend_from_slice(&rdata);
    Ok(m)
}

fn query_message(id: u16, fqdn: &str) -> Result<Vec<u8>, IssuerError> {
    let mut m = header(id, 0, [1, 0, 0, 0]);
    put_name(&mut m, fqdn)?;
    put_u16(&mut m, TYPE_TXT);
    put_u16(&mut m, CLASS_IN);
    Ok(m)
}

fn rcode_name(rcode: u16) -> &'static str {
    match rcode {
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED (the server does not allow this update)",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => {
            "NOTAUTH (the TSIG key, secret or clock was refused, or the server is not authoritative)"
        }
        10 => "NOTZONE",
        _ => "an unknown error",
    }
}

/// Skips a (possibly compressed) name at `pos`; returns the position after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        if len & 0xC0 == 0xC0 {
            return Some(pos + 2);
        }
        if len == 0 {
            return Some(pos + 1);
        }
        pos += 1 + len as usize;
    }
}

/// The TXT strings of a query's answer.
fn answer_txts(msg: &[u8]) -> Option<Vec<String>> {
    let qd = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    let an = u16::from_be_bytes([*msg.get(6)?, *msg.get(7)?]);
    let mut pos = 12;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        pos = skip_name(msg, pos)?;
        let rtype = u16::from_be_bytes([*msg.get(pos)?, *msg.get(pos + 1)?]);
        let rdlen = u16::from_be_bytes([*msg.get(pos + 8)?, *msg.get(pos + 9)?]) as usize;
        let start = pos + 10;
        let rdata = msg.get(start..start + rdlen)?;
        if rtype == TYPE_TXT {
            let mut text = Vec::new();
            let mut i = 0;
            while i < rdata.len() {
                let l = rdata[i] as usize;
                text.extend_from_slice(rdata.get(i + 1..i + 1 + l)?);
                i += 1 + l;
            }
            out.push(String::from_utf8_lossy(&text).into_owned());
        }
        pos = start + rdlen;
    }
    Some(out)
}

/// One exchange over TCP with a two-byte length prefix.
async fn exchange(server: &str, msg: &[u8], timeout: Duration) -> Result<Vec<u8>, IssuerError> {
    let run = async {
        let mut s = tokio::net::TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(msg.len() + 2);
        framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
        framed.extend_from_slice(msg);
        s.write_all(&framed).await?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await?;
        let mut rsp = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut rsp).await?;
        Ok::<_, std::io::Error>(rsp)
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(r)) if r.len() >= 12 => Ok(r),
        Ok(Ok(_)) => Err(IssuerError::transient(format!(
            "DNS server {server} sent a short answer"
        ))),
        Ok(Err(e)) => Err(IssuerError::transient(format!("DNS server {server}: {e}"))),
        Err(_) => Err(IssuerError::transient(format!(
            "DNS server {server} did not answer in time"
        ))),
    }
}

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    u16::from_be_bytes(b)
}

/// The RFC 2136 DNS-01 provider.
pub struct Rfc2136Dns01 {
    /// `host:port` of the primary that accepts updates (and answers for the zone).
    pub server: String,
    pub zone: String,
    pub key: TsigKey,
    pub ttl: u32,
    /// The engine's time, for TSIG's time-signed field.
    pub now: i64,
    /// How long to wait for the record to be served after the update.
    pub propagation_timeout: Duration,
}

impl Rfc2136Dns01 {
    async fn update(&self, fqdn: &str, value: &str, add: bool) -> Result<(), IssuerError> {
        let id = random_id();
        let mut msg = update_message(id, &self.zone, fqdn, value, add, self.ttl)?;
        sign(&mut msg, &self.key, self.now)?;
        let rsp = exchange(&self.server, &msg, Duration::from_secs(10)).await?;
        if u16::from_be_bytes([rsp[0], rsp[1]]) != id {
            return Err(IssuerError::transient(
                "the DNS server answered another message",
            ));
        }
        let rcode = u16::from_be_bytes([rsp[2], rsp[3]]) & 0x000F;
        if rcode != 0 {
            return Err(IssuerError::rejected(format!(
                "the DNS server {} refused the update of {fqdn}: {}",
                self.server,
                rcode_name(rcode)
            )));
        }
        Ok(())
    }

    /// Whether the server answers `fqdn TXT` with `value`.
    pub async fn serves(&self, fqdn: &str, value: &str) -> Result<bool, IssuerError> {
        let id = random_id();
        let rsp = exchange(
            &self.server,
            &query_message(id, fqdn)?,
            Duration::from_secs(5),
        )
        .await?;
        Ok(answer_txts(&rsp).is_some_and(|t| t.iter().any(|v| v == value)))
    }
}

#[async_trait::async_trait]
impl Dns01Solver for Rfc2136Dns01 {
    async fn present(&self, fqdn: &str, value: &str) -> Result<(), IssuerError> {
        self.update(fqdn, value, true).await?;
        // Wait until the server serves the record (bounded).
        let deadline = tokio::time::Instant::now() + self.propagation_timeout;
        let mut delay = Duration::from_millis(100);
        loop {
            if self.serves(fqdn, value).await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(IssuerError::transient(format!(
                    "{fqdn} TXT was not served by {} within {} s of the update",
                    self.server,
                    self.propagation_timeout.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn cleanup(&self, fqdn: &str, value: &str) {
        if let Err(e) = self.update(fqdn, value, false).await {
            tracing::warn!(error = %e, fqdn, "DNS-01 cleanup (RFC 2136) failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_txt_encode_as_on_the_wire() {
        let mut b = Vec::new();
        put_name(&mut b, "_acme-challenge.Example.COM.").expect("name");
        assert_eq!(b, b"\x0f_acme-challenge\x07example\x03com\x00");
        assert_eq!(txt_rdata("abc"), b"\x03abc");
        assert_eq!(txt_rdata(&"x".repeat(300)).len(), 302);
    }

    #[test]
    fn signing_appends_one_tsig_record() {
        let key = TsigKey {
            name: "k".into(),
            algorithm: "hmac-sha256".into(),
            secret: vec![1; 32],
        };
        let mut m = update_message(
            7,
            "example.com",
            "_acme-challenge.example.com",
            "v",
            true,
            60,
        )
        .expect("message");
        let before = m.len();
        sign(&mut m, &key, 1_700_000_000).expect("sign");
        assert_eq!(u16::from_be_bytes([m[10], m[11]]), 1);
        // name(3) + type/class/ttl/rdlen(10) + rdata(algo 13 + 6 + 2 + 2 + 32 + 6)
        assert_eq!(m.len() - before, 3 + 10 + 13 + 6 + 2 + 2 + 32 + 6);
    }
}
