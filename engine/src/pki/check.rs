//! Profile rules applied to a certificate request before anything is signed.
//!
//! Every refusal is a [`Error::PolicyViolation`] whose message names the
//! offending value and the profile, because the message is shown as-is to the
//! requester (an agent log, an MCP tool result) and must say what to change.

use crate::domain::{KeyAlgorithm, Profile};
use crate::pki::csr::SubjectNames;
use crate::{Error, Result};

/// Longest DNS name in presentation form without the trailing dot (RFC 1035).
const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// Checks a request against `profile`. `names` are the SANs that will go into
/// the certificate (DNS names lower-case, as produced by the CSR parser).
pub fn check_request(
    profile: &Profile,
    key: KeyAlgorithm,
    names: &SubjectNames,
    ttl_seconds: i64,
) -> Result<()> {
    let p = &profile.name;
    let rules = &profile.san_rules;

    if !profile.allowed_key_types.contains(&key) {
        let allowed: Vec<&str> = profile
            .allowed_key_types
            .iter()
            .map(|k| k.as_str())
            .collect();
        return Err(Error::policy(format!(
            "key type {key} is not allowed by profile '{p}'; allowed: {}",
            allowed.join(", ")
        )));
    }

    if ttl_seconds <= 0 {
        return Err(Error::policy(format!(
            "requested validity of {ttl_seconds} seconds is not positive (profile '{p}')"
        )));
    }
    if ttl_seconds > profile.max_ttl_seconds {
        return Err(Error::policy(format!(
            "requested validity of {ttl_seconds} seconds exceeds the maximum of {} seconds allowed by profile '{p}'",
            profile.max_ttl_seconds
        )));
    }

    if names.is_empty() {
        return Err(Error::policy(format!(
            "the request names no DNS name, IP address or e-mail address; profile '{p}' requires at least one"
        )));
    }
    if names.len() > rules.max_names as usize {
        return Err(Error::policy(format!(
            "the request has {} names but profile '{p}' allows at most {}",
            names.len(),
            rules.max_names
        )));
    }

    for dns in &names.dns {
        check_dns_name(profile, dns)?;
    }

    if let Some(ip) = names.ips.first()
        && !rules.allow_ip_addresses
    {
        return Err(Error::policy(format!(
            "IP address {ip} is not allowed: profile '{p}' does not allow IP address names"
        )));
    }
    if let Some(email) = names.emails.first()
        && !rules.allow_emails
    {
        return Err(Error::policy(format!(
            "e-mail address {email} is not allowed: profile '{p}' does not allow e-mail names"
        )));
    }
    for email in &names.emails {
        validate_email(email).map_err(|reason| {
            Error::policy(format!(
                "e-mail address '{email}' is not valid: {reason} (profile '{p}')"
            ))
        })?;
    }
    Ok(())
}

/// One DNS name against the profile: syntax, wildcard rule, allowed suffixes.
fn check_dns_name(profile: &Profile, name: &str) -> Result<()> {
    let p = &profile.name;
    let rules = &profile.san_rules;

    let base = match name.strip_prefix("*.") {
        Some(base) => {
            if !rules.allow_wildcards {
                return Err(Error::policy(format!(
                    "wildcard name '{name}' is not allowed: profile '{p}' does not allow wildcards"
                )));
            }
            base
        }
        None => name,
    };
    if base.contains('*') {
        return Err(Error::policy(format!(
            "DNS name '{name}' is not valid: a wildcard may only be the whole left-most label (\"*.\") (profile '{p}')"
        )));
    }
    syntax(base).map_err(|reason| {
        Error::policy(format!(
            "DNS name '{name}' is not valid: {reason} (profile '{p}')"
        ))
    })?;
    // "*.com" style wildcards would cover a whole top-level domain.
    if base != name && !base.contains('.') {
        return Err(Error::policy(format!(
            "wildcard name '{name}' is too broad: it must have at least two labels after \"*.\" (profile '{p}')"
        )));
    }

    if !rules.allowed_dns_suffixes.is_empty()
        && !rules
            .allowed_dns_suffixes
            .iter()
            .any(|s| within_suffix(base, s))
    {
        return Err(Error::policy(format!(
            "DNS name '{name}' is not allowed by profile '{p}'; allowed suffixes: {}",
            rules.allowed_dns_suffixes.join(", ")
        )));
    }
    Ok(())
}

/// Whether `name` equals `suffix` or is a subdomain of it, on a label boundary
/// (`evilexample.com` is not within `example.com`). Case-insensitive; a
/// leading dot or trailing dot in the configured suffix is tolerated.
fn within_suffix(name: &str, suffix: &str) -> bool {
    let suffix = suffix.trim().trim_start_matches('.').trim_end_matches('.');
    if suffix.is_empty() || name.len() < suffix.len() {
        return false;
    }
    let split = name.len() - suffix.len();
    // `split` is a char boundary because validated names are ASCII.
    let (head, tail) = match (name.get(..split), name.get(split..)) {
        (Some(h), Some(t)) => (h, t),
        _ => return false,
    };
    tail.eq_ignore_ascii_case(suffix) && (head.is_empty() || head.ends_with('.'))
}

/// Checks that `name` is a syntactically valid host name (optionally a `*.`
/// wildcard): labels of 1-63 characters from `[a-z0-9-]` (upper case is
/// accepted), not starting or ending with `-`, at most 253 characters.
/// Refusals are [`Error::InvalidInput`].
pub fn validate_dns_name(name: &str) -> Result<()> {
    let base = name.strip_prefix("*.").unwrap_or(name);
    if base.contains('*') {
        return Err(Error::invalid(format!(
            "DNS name '{name}' is not valid: a wildcard may only be the whole left-most label (\"*.\")"
        )));
    }
    syntax(base)
        .map_err(|reason| Error::invalid(format!("DNS name '{name}' is not valid: {reason}")))
}

/// The host name syntax rules; the error is the reason, without the name.
fn syntax(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("it is empty".into());
    }
    if name.len() > MAX_DNS_NAME_LEN {
        return Err(format!("it is longer than {MAX_DNS_NAME_LEN} characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label".into());
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(format!(
                "label '{label}' is longer than {MAX_LABEL_LEN} characters"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(format!("it contains the character {c:?}"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label '{label}' starts or ends with '-'"));
        }
    }
    Ok(())
}

/// A deliberately loose e-mail check: one `@`, a non-empty local part without
/// spaces, and a valid host name as the domain. Full RFC 5321 parsing would
/// refuse little more and confuse people more.
fn validate_email(email: &str) -> std::result::Result<(), String> {
    let Some((local, domain)) = email.split_once('@') else {
        return Err("it has no '@'".into());
    };
    if local.is_empty()
        || local
            .chars()
            .any(|c| c.is_whitespace() || c == '@' || c.is_control())
    {
        return Err("the part before '@' is empty or contains spaces".into());
    }
    syntax(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ExtendedKeyUsage, KeygenMode, SanRules};

    fn profile() -> Profile {
        Profile {
            id: "prof-1".into(),
            name: "web".into(),
            description: String::new(),
            allowed_key_types: vec![KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384],
            default_key_type: KeyAlgorithm::EcdsaP256,
            max_ttl_seconds: 90 * 86_400,
            default_ttl_seconds: 30 * 86_400,
            ekus: vec![ExtendedKeyUsage::ServerAuth],
            san_rules: SanRules {
                allowed_dns_suffixes: vec!["example.com".into()],
                allow_wildcards: false,
                allow_ip_addresses: false,
                allow_emails: false,
                max_names: 3,
            },
            requires_approval: false,
            keygen_mode: KeygenMode::Agent,
            short_lived: false,
            allow_client_certificate_new_names: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn dns(names: &[&str]) -> SubjectNames {
        SubjectNames {
            dns: names.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The policy message, or a panic if the check passed or failed differently.
    fn refusal(p: &Profile, key: KeyAlgorithm, names: &SubjectNames, ttl: i64) -> String {
        match check_request(p, key, names, ttl) {
            Err(Error::PolicyViolation(m)) => m,
            other => panic!("expected a policy violation, got {other:?}"),
        }
    }

    const P256: KeyAlgorithm = KeyAlgorithm::EcdsaP256;
    const DAY: i64 = 86_400;

    #[test]
    fn accepts_a_good_request() {
        let p = profile();
        check_request(
            &p,
            P256,
            &dns(&["example.com", "www.example.com", "a.b.example.com"]),
            DAY,
        )
        .unwrap();
        check_request(
            &p,
            KeyAlgorithm::EcdsaP384,
            &dns(&["example.com"]),
            p.max_ttl_seconds,
        )
        .unwrap();
    }

    #[test]
    fn key_type() {
        let m = refusal(
            &profile(),
            KeyAlgorithm::Rsa2048,
            &dns(&["example.com"]),
            DAY,
        );
        assert_eq!(
            m,
            "key type rsa-2048 is not allowed by profile 'web'; allowed: ecdsa-p256, ecdsa-p384"
        );
    }

    #[test]
    fn ttl() {
        let p = profile();
        let m = refusal(&p, P256, &dns(&["example.com"]), 0);
        assert!(
            m.contains("0 seconds is not positive") && m.contains("'web'"),
            "{m}"
        );
        assert!(refusal(&p, P256, &dns(&["example.com"]), -5).contains("not positive"));
        let m = refusal(&p, P256, &dns(&["example.com"]), p.max_ttl_seconds + 1);
        assert!(
            m.contains("7776001 seconds exceeds the maximum of 7776000") && m.contains("'web'"),
            "{m}"
        );
    }

    #[test]
    fn name_count() {
        let p = profile();
        assert!(refusal(&p, P256, &SubjectNames::default(), DAY).contains("at least one"));
        let m = refusal(
            &p,
            P256,
            &dns(&[
                "a.example.com",
                "b.example.com",
                "c.example.com",
                "d.example.com",
            ]),
            DAY,
        );
        assert!(
            m.contains("4 names") && m.contains("at most 3") && m.contains("'web'"),
            "{m}"
        );
    }

    #[test]
    fn suffix_boundary() {
        let p = profile();
        let m = refusal(&p, P256, &dns(&["evilexample.com"]), DAY);
        assert_eq!(
            m,
            "DNS name 'evilexample.com' is not allowed by profile 'web'; allowed suffixes: example.com"
        );
        assert!(
            refusal(&p, P256, &dns(&["example.com.evil.org"]), DAY)
                .contains("example.com.evil.org")
        );
        assert!(refusal(&p, P256, &dns(&["com"]), DAY).contains("'com'"));
        // A configured suffix with a leading dot or different case still matches on labels.
        let mut p2 = profile();
        p2.san_rules.allowed_dns_suffixes = vec![".Example.COM".into(), "corp.internal".into()];
        check_request(&p2, P256, &dns(&["x.example.com", "db.corp.internal"]), DAY).unwrap();
        assert!(refusal(&p2, P256, &dns(&["xcorp.internal"]), DAY).contains("xcorp.internal"));
        // No suffixes configured: any valid name.
        p2.san_rules.allowed_dns_suffixes.clear();
        check_request(&p2, P256, &dns(&["anything.test"]), DAY).unwrap();
        assert!(within_suffix("example.com", "example.com"));
        assert!(!within_suffix("example.com", ""));
    }

    #[test]
    fn wildcards() {
        let mut p = profile();
        let m = refusal(&p, P256, &dns(&["*.example.com"]), DAY);
        assert_eq!(
            m,
            "wildcard name '*.example.com' is not allowed: profile 'web' does not allow wildcards"
        );
        p.san_rules.allow_wildcards = true;
        check_request(&p, P256, &dns(&["*.example.com", "*.a.example.com"]), DAY).unwrap();
        for bad in [
            "a.*.example.com",
            "*a.example.com",
            "**.example.com",
            "*",
            "*.*.example.com",
        ] {
            let m = refusal(&p, P256, &dns(&[bad]), DAY);
            assert!(
                m.contains(bad) && m.contains("not valid") && m.contains("'web'"),
                "{bad}: {m}"
            );
        }
        // The suffix rule applies to the part after "*.", on a label boundary.
        assert!(refusal(&p, P256, &dns(&["*.evilexample.com"]), DAY).contains("*.evilexample.com"));
        p.san_rules.allowed_dns_suffixes.clear();
        assert!(refusal(&p, P256, &dns(&["*.com"]), DAY).contains("too broad"));
    }

    #[test]
    fn ips_and_emails() {
        let mut p = profile();
        let mut names = dns(&["example.com"]);
        names.ips.push("192.0.2.7".parse().unwrap());
        let m = refusal(&p, P256, &names, DAY);
        assert_eq!(
            m,
            "IP address 192.0.2.7 is not allowed: profile 'web' does not allow IP address names"
        );
        p.san_rules.allow_ip_addresses = true;
        check_request(&p, P256, &names, DAY).unwrap();

        names.emails.push("ops@example.com".into());
        let m = refusal(&p, P256, &names, DAY);
        assert_eq!(
            m,
            "e-mail address ops@example.com is not allowed: profile 'web' does not allow e-mail names"
        );
        p.san_rules.allow_emails = true;
        check_request(&p, P256, &names, DAY).unwrap();
        names.emails[0] = "no-at-sign".into();
        assert!(refusal(&p, P256, &names, DAY).contains("'no-at-sign' is not valid"));
        // An IP-only request counts as named.
        let ip_only = SubjectNames {
            ips: vec!["10.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        check_request(&p, P256, &ip_only, DAY).unwrap();
    }

    #[test]
    fn dns_syntax() {
        let p = profile();
        let long_label = format!("{}.example.com", "a".repeat(64));
        let too_long = format!("{}example.com", "abcdefghi.".repeat(25));
        for (bad, reason) in [
            ("-a.example.com", "starts or ends with '-'"),
            ("a-.example.com", "starts or ends with '-'"),
            ("a..example.com", "empty label"),
            ("a_b.example.com", "'_'"),
            ("a b.example.com", "' '"),
            ("ä.example.com", "'ä'"),
            (long_label.as_str(), "longer than 63"),
            (too_long.as_str(), "longer than 253"),
            ("example.com.", "empty label"),
        ] {
            let m = refusal(&p, P256, &dns(&[bad]), DAY);
            assert!(
                m.contains(reason) && m.contains(bad) && m.contains("'web'"),
                "{bad}: {m}"
            );
            assert!(
                matches!(validate_dns_name(bad), Err(Error::InvalidInput(_))),
                "{bad}"
            );
        }
        validate_dns_name(&format!("{}.example.com", "a".repeat(63))).unwrap();
        validate_dns_name("xn--bcher-kva.example").unwrap();
        validate_dns_name("*.Example.com").unwrap();
        assert!(validate_dns_name("").is_err());
        assert!(validate_dns_name("a.*.b").is_err());
    }
}
