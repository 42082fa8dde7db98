//! Policies that act: an enforce-mode rule refuses issuance, creation,
//! metadata changes and enrollment with the rule's reason and records the
//! attempt (audit event + violation + notification); a warn-mode rule lets
//! the operation go on and records a violation and a notification.

use certctl_engine::Error;
use certctl_engine::domain::{KeyAlgorithm, PolicyViolation, Role};
use certctl_engine::ops;

use super::support::{Harness, csr, principal, sh};
use crate::backend_tests;

backend_tests!(
    enforce_refuses_a_domain_outside_the_list_and_records_the_attempt,
    warn_records_a_violation_and_a_notification,
    enforce_applies_to_updates_enrollment_and_key_strength,
    rule_params_are_checked_when_saved,
    smime_and_code_signing_profiles_and_stats_by_owner_and_team,
);

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("input")
}

async fn policy(
    h: &Harness,
    name: &str,
    kind: &str,
    mode: &str,
    params: serde_json::Value,
) -> String {
    h.done::<ops::SavePolicy>(
        &h.admin(),
        from(serde_json::json!({
            "name": name, "kind": kind, "severity": "high", "mode": mode, "params": params,
        })),
    )
    .await
    .id
}

async fn violations(h: &Harness, filter: serde_json::Value) -> Vec<PolicyViolation> {
    h.done::<ops::ListPolicyViolations>(&h.admin(), from(filter))
        .await
        .data
}

async fn count(h: &Harness) -> usize {
    h.done::<ops::ListCertificates>(&h.admin(), from(serde_json::json!({ "per_page": 1000 })))
        .await
        .data
        .len()
}

/// (kind, details) of the notification events stored so far.
async fn events(h: &Harness) -> Vec<(String, serde_json::Value)> {
    let mut tx = h.engine.store().begin_write().await.expect("tx");
    let rows = tx.unrouted_events(1000).await.expect("events");
    tx.rollback().await.expect("rollback");
    rows.into_iter()
        .map(|e| (e.kind, serde_json::from_str(&e.details).expect("details")))
        .collect()
}

async fn enforce_refuses_a_domain_outside_the_list_and_records_the_attempt(h: &Harness) {
    let rule = policy(
        h,
        "corp domains",
        "allowed_domains",
        "enforce",
        serde_json::json!({ "domains": ["*.example.com", "example.com"] }),
    )
    .await;
    let user = principal("pr-dev", Role::Operator);

    // Inside the list: created and issued.
    let ok = h.create_cert("www.example.com", &["api.example.com"]).await;
    h.done::<ops::IssueCertificate>(
        &user,
        ops::IssueCertificateInput {
            id: ok.id.clone(),
            csr_pem: Some(csr(
                KeyAlgorithm::EcdsaP256,
                "www.example.com",
                &["www.example.com", "api.example.com"],
            )),
            ttl_seconds: None,
        },
    )
    .await;

    // Outside: refused with the rule's name and reason, nothing created.
    let before = count(h).await;
    let err = h
        .call::<ops::CreateCertificate>(
            &user,
            from(serde_json::json!({ "common_name": "shop.evil.org" })),
        )
        .await
        .expect_err("refused");
    let Error::PolicyViolation(msg) = &err else {
        panic!("expected a policy violation, got {err:?}")
    };
    assert!(
        msg.contains("'corp domains'")
            && msg.contains("shop.evil.org is outside the allowed domains"),
        "{msg}"
    );
    assert_eq!(count(h).await, before);

    // The attempt is recorded: a refused violation, an audit failure, a notification.
    let v = violations(h, serde_json::json!({ "rule_id": rule })).await;
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(v[0].refused && v[0].operation == "create_certificate" && v[0].actor == "pr-dev");
    assert_eq!(v[0].common_name, "shop.evil.org");
    assert_eq!(v[0].certificate_id, None);
    let audit = h.audit_actions().await;
    assert!(
        audit
            .iter()
            .any(|(a, o, who)| a == "create_certificate" && o == "failure" && who == "pr-dev"),
        "{audit:?}"
    );
    let ev = events(h).await;
    assert!(
        ev.iter().any(|(k, d)| k == "policy_violation"
            && d["refused"] == true
            && d["rule_id"] == rule.as_str()),
        "{ev:?}"
    );
    assert_eq!(
        violations(h, serde_json::json!({ "refused": false }))
            .await
            .len(),
        0
    );
}

async fn warn_records_a_violation_and_a_notification(h: &Harness) {
    let rule = policy(
        h,
        "short lives",
        "max_lifetime",
        "warn",
        serde_json::json!({ "max_days": 10 }),
    )
    .await;
    policy(
        h,
        "tagged",
        "required_metadata",
        "warn",
        serde_json::json!({ "keys": ["cost_center"] }),
    )
    .await;
    // Issued with the default 90-day lifetime: allowed, with a warning.
    let out = h.issued_cert("warned.example.com").await;
    let id = out.certificate.id.clone();
    assert!(out.version.is_some());
    let v = violations(
        h,
        serde_json::json!({ "certificate_id": id, "rule_id": rule }),
    )
    .await;
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(!v[0].refused && v[0].operation == "issue_certificate");
    assert!(
        v[0].reason.contains("exceeds the maximum of 10 days"),
        "{}",
        v[0].reason
    );
    // Each operation reports what does not hold for it: the missing label
    // at creation and at issuance, the lifetime at issuance.
    let all = violations(h, serde_json::json!({ "certificate_id": id })).await;
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(
        all.iter()
            .filter(|v| v.operation == "create_certificate")
            .count(),
        1
    );
    let details = h
        .done::<ops::GetCertificate>(&h.admin(), from(serde_json::json!({ "id": id })))
        .await;
    assert_eq!(details.policy_violations.len(), 3);
    let ev = events(h).await;
    let notes: Vec<_> = ev.iter().filter(|(k, _)| k == "policy_violation").collect();
    assert_eq!(notes.len(), 3, "{ev:?}");
    assert!(
        notes
            .iter()
            .all(|(_, d)| d["refused"] == false && d["certificate_id"] == id.as_str())
    );
    // Filters.
    assert_eq!(
        violations(h, serde_json::json!({ "kind": "max_lifetime" }))
            .await
            .len(),
        1
    );
    assert_eq!(
        violations(h, serde_json::json!({ "severity": "low" }))
            .await
            .len(),
        0
    );
    assert_eq!(
        violations(h, serde_json::json!({ "refused": true }))
            .await
            .len(),
        0
    );
    // A disabled rule is not checked.
    h.done::<ops::SavePolicy>(
        &h.admin(),
        from(serde_json::json!({
            "id": rule, "name": "short lives", "kind": "max_lifetime", "severity": "high",
            "mode": "enforce", "params": { "max_days": 10 }, "enabled": false,
        })),
    )
    .await;
    h.issued_cert("again.example.com").await;
}

async fn enforce_applies_to_updates_enrollment_and_key_strength(h: &Harness) {
    let c = h.create_cert("app.example.com", &[]).await;
    policy(
        h,
        "prod only",
        "allowed_environments",
        "enforce",
        serde_json::json!({ "environments": ["production"] }),
    )
    .await;
    // A metadata change that leaves the certificate outside the rule is refused.
    let err = h
        .call::<ops::UpdateCertificate>(
            &h.admin(),
            from(serde_json::json!({ "id": c.id, "name": "renamed" })),
        )
        .await
        .expect_err("refused");
    assert!(
        err.to_string().contains("environment '' is not allowed"),
        "{err}"
    );
    let got = h
        .done::<ops::GetCertificate>(&h.admin(), from(serde_json::json!({ "id": c.id })))
        .await;
    assert_eq!(got.certificate.name, "app.example.com", "nothing changed");
    // One that brings it inside is allowed.
    h.done::<ops::UpdateCertificate>(
        &h.admin(),
        from(serde_json::json!({ "id": c.id, "environment": "production" })),
    )
    .await;

    // Key strength: an RSA-2048 CSR is refused when 3072 bits are required.
    policy(
        h,
        "strong keys",
        "min_key_strength",
        "enforce",
        serde_json::json!({ "min_rsa_bits": 3072 }),
    )
    .await;
    let rsa = csr(
        KeyAlgorithm::Rsa2048,
        "app.example.com",
        &["app.example.com"],
    );
    let err = h
        .call::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id.clone(),
                csr_pem: Some(rsa),
                ttl_seconds: None,
            },
        )
        .await
        .expect_err("refused");
    // Either the profile or the policy refuses an RSA-2048 key; both are policy violations.
    assert!(matches!(err, Error::PolicyViolation(_)), "{err:?}");

    // EST-style enrollment (enroll_certificate) outside the environment list is refused.
    let err = h
        .call::<ops::EnrollCertificate>(
            &h.admin(),
            from(serde_json::json!({ "csr_pem": csr(KeyAlgorithm::EcdsaP256, "est.example.com", &["est.example.com"]) })),
        )
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("'prod only'"), "{err}");
    let v = violations(h, serde_json::json!({ "refused": true })).await;
    assert!(
        v.iter().any(|v| v.operation == "enroll_certificate"),
        "{v:?}"
    );
    assert!(
        v.iter().any(|v| v.operation == "update_certificate"
            && v.certificate_id.as_deref() == Some(c.id.as_str())),
        "{v:?}"
    );
}

async fn rule_params_are_checked_when_saved(h: &Harness) {
    for (kind, params, needle) in [
        ("max_lifetime", serde_json::json!({ "days": 3 }), "max_days"),
        (
            "allowed_domains",
            serde_json::json!({ "domains": [] }),
            "at least one",
        ),
        (
            "allowed_domains",
            serde_json::json!({ "domains": ["not a name"] }),
            "not a DNS name",
        ),
        (
            "renewal_lead_time",
            serde_json::json!({ "min_days": -1 }),
            "positive",
        ),
    ] {
        let err = h
            .call::<ops::SavePolicy>(
                &h.admin(),
                from(serde_json::json!({ "name": "bad", "kind": kind, "severity": "low", "mode": "warn", "params": params })),
            )
            .await
            .expect_err("refused");
        assert!(
            matches!(err, Error::InvalidInput(_)) && err.to_string().contains(needle),
            "{kind}: {err}"
        );
    }
    let rules = h
        .list::<certctl_engine::domain::PolicyRule>(&h.admin(), "policy", serde_json::json!({}))
        .await;
    assert_eq!(rules.data.len(), 0, "nothing half-saved");
}

async fn smime_and_code_signing_profiles_and_stats_by_owner_and_team(h: &Harness) {
    // An S/MIME profile (e-mail names, emailProtection) and a code-signing
    // profile: the local CA writes their EKUs, openssl reads them back.
    let smime = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            from(
                serde_json::json!({ "name": "smime", "ekus": ["email_protection"],
                "san_rules": { "allow_emails": true } }),
            ),
        )
        .await;
    let signing = h
        .done::<ops::SaveProfile>(
            &h.admin(),
            from(serde_json::json!({ "name": "signing", "ekus": ["code_signing"] })),
        )
        .await;
    let owner = h
        .done::<ops::SaveOwner>(&h.admin(), from(serde_json::json!({ "name": "Ada" })))
        .await;
    let team = h
        .done::<ops::SaveTeam>(&h.admin(), from(serde_json::json!({ "name": "sec" })))
        .await;
    let dir = tempfile::tempdir().unwrap();
    for (cn, names, profile, want) in [
        (
            "ada@example.com",
            vec!["ada@example.com"],
            &smime.id,
            "E-mail Protection",
        ),
        (
            "build.example.com",
            vec!["build.example.com"],
            &signing.id,
            "Code Signing",
        ),
    ] {
        let c = h
            .done::<ops::CreateCertificate>(
                &h.admin(),
                from(
                    serde_json::json!({ "common_name": cn, "sans": names, "profile_id": profile,
                    "owner_id": owner.id, "team_id": team.id }),
                ),
            )
            .await;
        let dns: Vec<&str> = names.iter().copied().filter(|n| !n.contains('@')).collect();
        let mut req = csr(KeyAlgorithm::EcdsaP256, cn, &dns);
        if cn.contains('@') {
            req = csr(KeyAlgorithm::EcdsaP256, cn, &[]);
        }
        let out = h
            .done::<ops::IssueCertificate>(
                &h.admin(),
                ops::IssueCertificateInput {
                    id: c.id.clone(),
                    csr_pem: Some(req),
                    ttl_seconds: None,
                },
            )
            .await;
        let path = dir.path().join("leaf.pem");
        std::fs::write(&path, out.version.unwrap().cert_pem).unwrap();
        let text = sh(
            "openssl",
            &["x509", "-in", path.to_str().unwrap(), "-noout", "-text"],
        );
        assert!(text.contains(want), "{cn}: {text}");
    }
    h.create_cert("nobody.example.com", &[]).await;
    let stats = h
        .done::<ops::GetStats>(
            &h.admin(),
            from(serde_json::json!({"view": "by_ownership"})),
        )
        .await;
    let ops::Stats::Ownership(stats) = stats else {
        panic!("by_ownership answers ownership stats: {stats:?}")
    };
    let ada = stats
        .by_owner
        .iter()
        .find(|o| o.id.as_deref() == Some(owner.id.as_str()))
        .unwrap();
    assert_eq!(ada.total, 2);
    let none = stats.by_owner.iter().find(|o| o.id.is_none()).unwrap();
    assert_eq!(none.total, 1);
    assert_eq!(
        stats
            .by_team
            .iter()
            .find(|t| t.id.as_deref() == Some(team.id.as_str()))
            .unwrap()
            .total,
        2
    );
}
