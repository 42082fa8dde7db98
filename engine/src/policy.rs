//! Policy rules that act: the checks every issuance, renewal, import,
//! enrollment and metadata change passes through.
//!
//! [`check`] evaluates the enabled rules against a [`Candidate`] (what the
//! certificate would be after the operation). A `warn` rule that does not
//! hold is recorded as a violation in the operation's own transaction, with a
//! `policy_violation` notification event, and the operation goes on. An
//! `enforce` rule that does not hold refuses the operation with
//! [`Error::PolicyViolation`] naming the rule and the reason; its violation
//! rows are written by the entry point together with the failure's audit
//! event, since the operation's own transaction is rolled back.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::domain::{
    EventKind, KeyAlgorithm, PolicyKind, PolicyMode, PolicyRule, PolicyViolation, RenewalPolicy,
};
use crate::error::{Error, Result};
use crate::ops::Ctx;
use crate::store::Tx;

/// What a certificate would be after the operation being checked.
#[derive(Debug, Clone, Default)]
pub struct Candidate<'a> {
    /// The operation name, for the violation record.
    pub operation: &'a str,
    pub certificate_id: Option<&'a str>,
    pub common_name: &'a str,
    /// All names (DNS names, IP addresses, e-mail addresses).
    pub names: &'a [String],
    pub issuer_id: &'a str,
    pub environment: &'a str,
    pub owner_id: Option<&'a str>,
    pub team_id: Option<&'a str>,
    pub labels: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// The validity asked for or found, when known.
    pub lifetime_seconds: Option<i64>,
    /// The key, when known (from a CSR, a generated key or an imported certificate).
    pub key: Option<KeyAlgorithm>,
    /// How long before expiry the certificate renews, when known.
    pub renewal_lead_seconds: Option<i64>,
}

// ---------------------------------------------------------------- parameters

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedIssuers {
    issuers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedDomains {
    domains: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequiredMetadata {
    #[serde(alias = "fields")]
    keys: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedEnvironments {
    environments: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxLifetime {
    max_days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MinKeyStrength {
    #[serde(default = "rsa_default")]
    min_rsa_bits: u32,
    #[serde(default = "ec_default")]
    min_ec_bits: u32,
}

fn rsa_default() -> u32 {
    2048
}

fn ec_default() -> u32 {
    256
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewalLeadTime {
    min_days: i64,
}

fn params<T: DeserializeOwned>(kind: PolicyKind, v: &serde_json::Value) -> Result<T> {
    serde_json::from_value(v.clone()).map_err(|e| {
        Error::invalid(format!(
            "params of a {} rule are not valid: {e}; expected {}",
            kind.as_str(),
            example(kind)
        ))
    })
}

/// The parameters each rule kind takes, as shown in error messages and docs.
pub fn example(kind: PolicyKind) -> &'static str {
    match kind {
        PolicyKind::AllowedIssuers => r#"{"issuers": ["iss-local"]}"#,
        PolicyKind::AllowedDomains => r#"{"domains": ["example.com", "*.example.com"]}"#,
        PolicyKind::RequiredMetadata => r#"{"keys": ["owner_id", "team_id", "cost_center"]}"#,
        PolicyKind::AllowedEnvironments => r#"{"environments": ["production", "staging"]}"#,
        PolicyKind::MaxLifetime => r#"{"max_days": 90}"#,
        PolicyKind::MinKeyStrength => r#"{"min_rsa_bits": 3072, "min_ec_bits": 256}"#,
        PolicyKind::RenewalLeadTime => r#"{"min_days": 14}"#,
    }
}

/// Checks a rule's parameters when it is saved, so a rule that cannot be
/// evaluated is refused up front rather than failing every operation later.
pub fn validate(kind: PolicyKind, v: &serde_json::Value) -> Result<()> {
    let nonempty = |what: &str, n: usize| {
        if n == 0 {
            Err(Error::invalid(format!(
                "a {} rule needs at least one entry in {what}",
                kind.as_str()
            )))
        } else {
            Ok(())
        }
    };
    match kind {
        PolicyKind::AllowedIssuers => {
            nonempty("issuers", params::<AllowedIssuers>(kind, v)?.issuers.len())
        }
        PolicyKind::AllowedDomains => {
            let p: AllowedDomains = params(kind, v)?;
            nonempty("domains", p.domains.len())?;
            for d in &p.domains {
                let base = d.strip_prefix("*.").unwrap_or(d);
                crate::pki::validate_dns_name(base).map_err(|_| {
                    Error::invalid(format!(
                        "allowed domain '{d}' is not a DNS name or a \"*.\" wildcard of one"
                    ))
                })?;
            }
            Ok(())
        }
        PolicyKind::RequiredMetadata => {
            nonempty("keys", params::<RequiredMetadata>(kind, v)?.keys.len())
        }
        PolicyKind::AllowedEnvironments => nonempty(
            "environments",
            params::<AllowedEnvironments>(kind, v)?.environments.len(),
        ),
        PolicyKind::MaxLifetime => positive(kind, params::<MaxLifetime>(kind, v)?.max_days),
        PolicyKind::MinKeyStrength => params::<MinKeyStrength>(kind, v).map(|_| ()),
        PolicyKind::RenewalLeadTime => positive(kind, params::<RenewalLeadTime>(kind, v)?.min_days),
    }
}

fn positive(kind: PolicyKind, days: i64) -> Result<()> {
    if days > 0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "a {} rule needs a positive number of days, got {days}",
            kind.as_str()
        )))
    }
}

// ---------------------------------------------------------------- evaluation

/// Whether `name` is covered by an allowed-domain entry: `example.com`
/// covers exactly that name; `*.example.com` covers every name below it (and
/// wildcard names below it), on a label boundary. Case-insensitive.
pub fn domain_allowed(name: &str, allowed: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let allowed = allowed.trim().trim_end_matches('.').to_ascii_lowercase();
    match allowed.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|head| head.ends_with('.') && head.len() > 1),
        None => name == allowed,
    }
}

/// The bits a key algorithm gives, and whether it is RSA.
fn strength(k: KeyAlgorithm) -> (u32, bool) {
    match k {
        KeyAlgorithm::Rsa2048 => (2048, true),
        KeyAlgorithm::Rsa3072 => (3072, true),
        KeyAlgorithm::Rsa4096 => (4096, true),
        KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Ed25519 => (256, false),
        KeyAlgorithm::EcdsaP384 => (384, false),
    }
}

/// Why `rule` does not hold for `c`, or `None` when it holds (or cannot be
/// judged yet, e.g. a key rule before any key exists).
pub fn evaluate(rule: &PolicyRule, c: &Candidate<'_>) -> Result<Option<String>> {
    let kind = rule.kind;
    Ok(match kind {
        PolicyKind::AllowedIssuers => {
            let p: AllowedIssuers = params(kind, &rule.params)?;
            (!p.issuers.iter().any(|i| i == c.issuer_id)).then(|| {
                format!(
                    "issuer {} is not allowed; allowed: {}",
                    c.issuer_id,
                    p.issuers.join(", ")
                )
            })
        }
        PolicyKind::AllowedDomains => {
            let p: AllowedDomains = params(kind, &rule.params)?;
            let outside: Vec<&str> = c
                .names
                .iter()
                .filter(|n| n.parse::<std::net::IpAddr>().is_err())
                .map(|n| n.rsplit_once('@').map_or(n.as_str(), |(_, d)| d))
                .filter(|n| !p.domains.iter().any(|d| domain_allowed(n, d)))
                .collect();
            (!outside.is_empty()).then(|| {
                format!(
                    "{} {} outside the allowed domains ({})",
                    outside.join(", "),
                    if outside.len() == 1 { "is" } else { "are" },
                    p.domains.join(", ")
                )
            })
        }
        PolicyKind::RequiredMetadata => {
            let p: RequiredMetadata = params(kind, &rule.params)?;
            let missing: Vec<&str> = p
                .keys
                .iter()
                .filter(|k| match k.as_str() {
                    "owner_id" | "owner" => c.owner_id.is_none_or(str::is_empty),
                    "team_id" | "team" => c.team_id.is_none_or(str::is_empty),
                    "environment" => c.environment.is_empty(),
                    label => c.labels.and_then(|l| l.get(label)).is_none_or(|v| {
                        v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty())
                    }),
                })
                .map(String::as_str)
                .collect();
            (!missing.is_empty())
                .then(|| format!("required metadata missing: {}", missing.join(", ")))
        }
        PolicyKind::AllowedEnvironments => {
            let p: AllowedEnvironments = params(kind, &rule.params)?;
            (!p.environments.iter().any(|e| e == c.environment)).then(|| {
                format!(
                    "environment '{}' is not allowed; allowed: {}",
                    c.environment,
                    p.environments.join(", ")
                )
            })
        }
        PolicyKind::MaxLifetime => {
            let p: MaxLifetime = params(kind, &rule.params)?;
            c.lifetime_seconds
                .filter(|s| *s > p.max_days * 86_400)
                .map(|s| {
                    format!(
                        "a lifetime of {:.1} days exceeds the maximum of {} days",
                        s as f64 / 86_400.0,
                        p.max_days
                    )
                })
        }
        PolicyKind::MinKeyStrength => {
            let p: MinKeyStrength = params(kind, &rule.params)?;
            c.key.and_then(|k| {
                let (bits, rsa) = strength(k);
                let min = if rsa { p.min_rsa_bits } else { p.min_ec_bits };
                (bits < min).then(|| {
                    format!(
                        "key {k} has {bits} bits; at least {min} {} bits are required",
                        if rsa { "RSA" } else { "elliptic-curve" }
                    )
                })
            })
        }
        PolicyKind::RenewalLeadTime => {
            let p: RenewalLeadTime = params(kind, &rule.params)?;
            c.renewal_lead_seconds
                .filter(|s| *s < p.min_days * 86_400)
                .map(|s| {
                    format!(
                        "it renews {:.1} days before expiry; at least {} days are required",
                        s as f64 / 86_400.0,
                        p.min_days
                    )
                })
        }
    })
}

/// How long before expiry a certificate of `lifetime` seconds renews under
/// `policy` (or the configured default), without jitter (which only renews earlier).
pub fn renewal_lead(
    id: &str,
    lifetime: i64,
    policy: Option<&RenewalPolicy>,
    default_before_days: i64,
) -> i64 {
    let unjittered = policy.map(|p| RenewalPolicy {
        jitter_percent: 0,
        ..p.clone()
    });
    let at =
        crate::notify::renew_after(id, 0, lifetime, unjittered.as_ref(), default_before_days, 0);
    lifetime - at
}

// ---------------------------------------------------------------- acting

/// Evaluates every enabled rule against `c` inside the operation. `warn`
/// violations are stored and notified in `ctx.tx`; `enforce` violations
/// refuse the operation (stored by the entry point with the failure, along
/// with the warnings found in the same check).
pub(crate) async fn check(ctx: &mut Ctx<'_>, c: &Candidate<'_>) -> Result<()> {
    check_new(ctx, c, false).await
}

/// [`check`]; `creating` marks a certificate not stored yet, which a refusal
/// leaves unstored, so its records then name no certificate.
async fn check_new(ctx: &mut Ctx<'_>, c: &Candidate<'_>, creating: bool) -> Result<()> {
    let (mut warnings, mut refusals) = findings(ctx, c).await?;
    if refusals.is_empty() {
        for v in &warnings {
            record(ctx.tx, v).await?;
            let list = warned(ctx, v);
            ctx.note("policy_warnings", list);
        }
        return Ok(());
    }
    let message = refusal_message(&refusals);
    if creating {
        for v in warnings.iter_mut().chain(refusals.iter_mut()) {
            v.certificate_id = None;
        }
    }
    ctx.refusals.extend(refusals);
    ctx.refusals.extend(warnings);
    Err(Error::PolicyViolation(message))
}

/// For one item of a batch (an imported certificate, one certificate of a
/// bulk renewal): every violation is stored in `ctx.tx`, since the batch
/// commits; returns the refusal message when an `enforce` rule does not
/// hold, and the caller skips the item.
/// `stored` says whether the item's certificate exists whatever the outcome;
/// when it does not and the item is refused, the records name no certificate.
pub(crate) async fn check_item(
    ctx: &mut Ctx<'_>,
    c: &Candidate<'_>,
    stored: bool,
) -> Result<Option<String>> {
    let (mut warnings, mut refusals) = findings(ctx, c).await?;
    if !stored && !refusals.is_empty() {
        for v in warnings.iter_mut().chain(refusals.iter_mut()) {
            v.certificate_id = None;
        }
    }
    for v in warnings.iter().chain(&refusals) {
        record(ctx.tx, v).await?;
    }
    Ok((!refusals.is_empty()).then(|| refusal_message(&refusals)))
}

/// A certificate as it will be after an issuance, renewal or metadata
/// change, checked with [`check`]. `creating` marks a certificate not stored
/// yet (a refusal then names no certificate id).
pub(crate) async fn check_certificate(
    ctx: &mut Ctx<'_>,
    cert: &crate::domain::ManagedCertificate,
    lifetime_seconds: Option<i64>,
    key: Option<KeyAlgorithm>,
    creating: bool,
) -> Result<()> {
    let c = candidate_of(ctx, cert, lifetime_seconds, key).await?;
    check_new(ctx, &c, creating).await
}

/// The candidate for `cert`, with its renewal lead when the lifetime is known.
pub(crate) async fn candidate_of<'a>(
    ctx: &mut Ctx<'_>,
    cert: &'a crate::domain::ManagedCertificate,
    lifetime_seconds: Option<i64>,
    key: Option<KeyAlgorithm>,
) -> Result<Candidate<'a>> {
    let renewal_lead_seconds = match lifetime_seconds {
        Some(life) => {
            let policy = match &cert.renewal_policy_id {
                Some(p) => ctx.tx.renewal_policy(p).await?,
                None => None,
            };
            let default = ctx.engine.config().scheduler.renew_before_days;
            Some(renewal_lead(&cert.id, life, policy.as_ref(), default))
        }
        None => None,
    };
    Ok(Candidate {
        operation: ctx.operation,
        certificate_id: Some(cert.id.as_str()),
        common_name: &cert.common_name,
        names: &cert.sans,
        issuer_id: &cert.issuer_id,
        environment: &cert.environment,
        owner_id: cert.owner_id.as_deref(),
        team_id: cert.team_id.as_deref(),
        labels: Some(&cert.labels),
        lifetime_seconds,
        key,
        renewal_lead_seconds,
    })
}

/// The violations of `c`: (warnings, refusals). A rule already reported in
/// this call with the same reason (an EST enrollment creates, then issues)
/// is not reported twice.
async fn findings(
    ctx: &mut Ctx<'_>,
    c: &Candidate<'_>,
) -> Result<(Vec<PolicyViolation>, Vec<PolicyViolation>)> {
    let rules = ctx.tx.enabled_policy_rules().await?;
    let (mut warnings, mut refusals) = (Vec::new(), Vec::new());
    for rule in &rules {
        let Some(reason) = evaluate(rule, c)? else {
            continue;
        };
        let key = (
            rule.id.clone(),
            c.certificate_id.map(str::to_owned),
            reason.clone(),
        );
        if !ctx.memo.policy_seen.insert(key) {
            continue;
        }
        let v = PolicyViolation {
            id: ctx.new_id("pv"),
            rule_id: rule.id.clone(),
            rule_name: rule.name.clone(),
            kind: rule.kind,
            severity: rule.severity,
            mode: rule.mode,
            refused: rule.mode == PolicyMode::Enforce,
            operation: c.operation.to_owned(),
            certificate_id: c.certificate_id.map(str::to_owned),
            common_name: c.common_name.to_owned(),
            actor: ctx.principal.id.clone(),
            reason,
            created_at: ctx.now,
        };
        if v.refused {
            refusals.push(v);
        } else {
            warnings.push(v);
        }
    }
    Ok((warnings, refusals))
}

fn refusal_message(refusals: &[PolicyViolation]) -> String {
    refusals
        .iter()
        .map(|v| {
            format!(
                "policy rule '{}' ({}, {} severity) refuses it: {}",
                v.rule_name,
                v.kind.as_str(),
                v.severity.as_str(),
                v.reason
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The audit detail listing this call's warnings so far, plus `v`.
fn warned(ctx: &Ctx<'_>, v: &PolicyViolation) -> serde_json::Value {
    let mut list = ctx
        .audit_details
        .get("policy_warnings")
        .and_then(|w| w.as_array().cloned())
        .unwrap_or_default();
    list.push(serde_json::json!({ "rule": v.rule_name, "reason": v.reason, "violation_id": v.id }));
    serde_json::Value::Array(list)
}

/// Stores a violation and its `policy_violation` notification event in `tx`.
pub(crate) async fn record(tx: &mut Tx, v: &PolicyViolation) -> Result<()> {
    tx.insert_policy_violation(v).await?;
    let facts = match &v.certificate_id {
        Some(id) => crate::notify::certificate_facts(tx, id).await?,
        None => None,
    };
    let verb = if v.refused {
        "refused"
    } else {
        "allowed with a warning"
    };
    crate::notify::emit(
        tx,
        v.created_at,
        EventKind::PolicyViolation,
        facts.as_ref(),
        format!(
            "Policy rule '{}' violated by {}",
            v.rule_name, v.common_name
        ),
        format!(
            "{} on {} was {verb}: policy rule '{}' ({}, {} severity): {}",
            v.operation,
            v.common_name,
            v.rule_name,
            v.kind.as_str(),
            v.severity.as_str(),
            v.reason
        ),
        serde_json::json!({
            "violation_id": v.id,
            "rule_id": v.rule_id,
            "rule_name": v.rule_name,
            "kind": v.kind.as_str(),
            "severity": v.severity.as_str(),
            "mode": v.mode.as_str(),
            "refused": v.refused,
            "operation": v.operation,
            "certificate_id": v.certificate_id,
            "common_name": v.common_name,
            "reason": v.reason,
        }),
        format!("policy_violation:{}", v.id),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Severity;

    fn rule(kind: PolicyKind, params: serde_json::Value) -> PolicyRule {
        validate(kind, &params).unwrap();
        PolicyRule {
            id: "pol-1".into(),
            name: "r".into(),
            kind,
            params,
            severity: Severity::High,
            mode: PolicyMode::Enforce,
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn domains_match_exactly_or_below_a_wildcard() {
        assert!(domain_allowed("example.com", "example.com"));
        assert!(!domain_allowed("www.example.com", "example.com"));
        assert!(domain_allowed("www.example.com", "*.example.com"));
        assert!(domain_allowed("a.b.Example.com", "*.example.com"));
        assert!(domain_allowed("*.example.com", "*.example.com"));
        assert!(!domain_allowed("example.com", "*.example.com"));
        assert!(!domain_allowed("evilexample.com", "*.example.com"));
        assert!(!domain_allowed("example.com.evil.org", "*.example.com"));
    }

    #[test]
    fn each_kind_names_what_does_not_hold() {
        let names = vec!["www.example.com".to_owned(), "shop.evil.org".to_owned()];
        let mut labels = serde_json::Map::new();
        labels.insert("cost_center".into(), "42".into());
        let c = Candidate {
            operation: "issue_certificate",
            common_name: "www.example.com",
            names: &names,
            issuer_id: "iss-local",
            environment: "dev",
            labels: Some(&labels),
            lifetime_seconds: Some(100 * 86_400),
            key: Some(KeyAlgorithm::Rsa2048),
            renewal_lead_seconds: Some(3 * 86_400),
            ..Default::default()
        };
        let r = |k, p| evaluate(&rule(k, p), &c).unwrap();
        use serde_json::json;
        assert_eq!(
            r(
                PolicyKind::AllowedDomains,
                json!({"domains": ["*.example.com"]})
            )
            .unwrap(),
            "shop.evil.org is outside the allowed domains (*.example.com)"
        );
        assert!(
            r(
                PolicyKind::AllowedDomains,
                json!({"domains": ["*.example.com", "*.evil.org"]})
            )
            .is_none()
        );
        assert!(
            r(PolicyKind::AllowedIssuers, json!({"issuers": ["iss-acme"]}))
                .unwrap()
                .contains("iss-local")
        );
        assert!(
            r(
                PolicyKind::AllowedIssuers,
                json!({"issuers": ["iss-local"]})
            )
            .is_none()
        );
        assert_eq!(
            r(
                PolicyKind::RequiredMetadata,
                json!({"keys": ["cost_center", "owner_id", "app"]})
            )
            .unwrap(),
            "required metadata missing: owner_id, app"
        );
        assert!(
            r(
                PolicyKind::AllowedEnvironments,
                json!({"environments": ["prod"]})
            )
            .unwrap()
            .contains("'dev'")
        );
        assert!(
            r(PolicyKind::MaxLifetime, json!({"max_days": 90}))
                .unwrap()
                .contains("100.0 days")
        );
        assert!(r(PolicyKind::MaxLifetime, json!({"max_days": 100})).is_none());
        assert!(
            r(PolicyKind::MinKeyStrength, json!({"min_rsa_bits": 3072}))
                .unwrap()
                .contains("2048 bits")
        );
        assert!(r(PolicyKind::MinKeyStrength, json!({})).is_none());
        assert!(
            r(PolicyKind::RenewalLeadTime, json!({"min_days": 7}))
                .unwrap()
                .contains("3.0 days")
        );
    }

    #[test]
    fn bad_params_are_refused_with_an_example() {
        let e = validate(PolicyKind::MaxLifetime, &serde_json::json!({"days": 3})).unwrap_err();
        assert!(e.to_string().contains("max_days"), "{e}");
        assert!(
            validate(
                PolicyKind::AllowedDomains,
                &serde_json::json!({"domains": []})
            )
            .is_err()
        );
        assert!(
            validate(
                PolicyKind::AllowedDomains,
                &serde_json::json!({"domains": ["a b"]})
            )
            .is_err()
        );
        assert!(
            validate(
                PolicyKind::RenewalLeadTime,
                &serde_json::json!({"min_days": 0})
            )
            .is_err()
        );
    }

    #[test]
    fn renewal_lead_follows_the_policy() {
        let p = RenewalPolicy {
            id: "rp".into(),
            name: "p".into(),
            renew_before_days: Some(10),
            renew_at_fraction: None,
            jitter_percent: 50,
            max_retries: 5,
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(renewal_lead("mc-1", 90 * 86_400, Some(&p), 30), 10 * 86_400);
        assert_eq!(renewal_lead("mc-1", 90 * 86_400, None, 30), 30 * 86_400);
    }
}
