//! Several processes starting on one empty database end with one local CA,
//! one default profile and one admin key; API keys authenticate.

use certctl_engine::Error;
use certctl_engine::config::EngineConfig;
use certctl_engine::domain::Role;
use certctl_engine::ops;

use super::support::Harness;
use crate::backend_tests;

backend_tests!(
    concurrent_start_bootstraps_once,
    api_keys_authenticate_and_revoke,
    a_key_revoked_on_another_replica_stops_within_the_cache_bound
);

async fn concurrent_start_bootstraps_once(h: &Harness) {
    // Two more "processes" start at once on the same database.
    let (a, b) = tokio::join!(
        Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master),
        Harness::engine_on(&h.db, &h.clock, EngineConfig::default(), &h.master),
    );
    let (ka, kb, kc) = tokio::join!(
        a.bootstrap_admin_key(),
        b.bootstrap_admin_key(),
        h.engine.bootstrap_admin_key()
    );
    let minted = [ka, kb, kc]
        .into_iter()
        .map(|k| k.expect("bootstrap"))
        .filter(Option::is_some)
        .count();
    assert_eq!(minted, 1, "exactly one admin key is minted");
    let issuers = h
        .done::<ops::ListIssuers>(&h.admin(), Default::default())
        .await;
    assert_eq!(issuers.data.len(), 1);
    let profiles = h
        .list::<certctl_engine::domain::Profile>(&h.admin(), "profile", serde_json::json!({}))
        .await;
    assert_eq!(profiles.data.len(), 1);
    // All three engines can sign with the one CA (same master key).
    let c = h.create_cert("shared.example.com", &[]).await;
    let out = a
        .call::<ops::IssueCertificate>(
            &h.admin(),
            ops::IssueCertificateInput {
                id: c.id,
                csr_pem: Some(super::support::csr(
                    certctl_engine::domain::KeyAlgorithm::EcdsaP256,
                    "shared.example.com",
                    &[],
                )),
                ttl_seconds: None,
            },
        )
        .await;
    assert!(out.is_ok(), "{out:?}");
    a.store().close().await;
    b.store().close().await;
}

async fn api_keys_authenticate_and_revoke(h: &Harness) {
    let admin_key = h
        .engine
        .bootstrap_admin_key()
        .await
        .expect("bootstrap")
        .expect("first start mints a key");
    assert!(admin_key.key.starts_with("cck_"));
    assert!(!format!("{admin_key:?}").contains(admin_key.key.as_str()));
    let admin = h
        .engine
        .authenticate(&admin_key.key)
        .await
        .expect("admin key works");
    assert_eq!(admin.role, Role::Admin);
    assert!(
        h.engine
            .bootstrap_admin_key()
            .await
            .expect("again")
            .is_none()
    );

    let created = h
        .done::<ops::CreatePrincipal>(
            &admin,
            ops::CreatePrincipalInput {
                name: "ci".into(),
                role: Role::Operator,
                agent_id: None,
            },
        )
        .await;
    let op = h
        .engine
        .authenticate(&created.api_key)
        .await
        .expect("operator key");
    assert_eq!(op.role, Role::Operator);
    // The key itself is not stored anywhere readable.
    let listed = serde_json::to_string(
        &h.list::<certctl_engine::domain::ApiPrincipal>(&admin, "principal", serde_json::json!({}))
            .await,
    )
    .expect("json");
    assert!(!listed.contains(&created.api_key));

    for bad in ["", "cck_", "cck_wrong", "Bearer x", &"x".repeat(5000)] {
        assert!(
            matches!(
                h.engine.authenticate(bad).await,
                Err(Error::Unauthenticated)
            ),
            "{bad}"
        );
    }
    // Revoked keys stop working at once (revocation is destructive: gated, so approve it).
    let out = h
        .call::<ops::RevokePrincipal>(
            &admin,
            ops::IdInput {
                id: created.principal.id.clone(),
            },
        )
        .await
        .expect("call");
    if let certctl_engine::ops::Outcome::ApprovalRequired(t) = out {
        let approver = super::support::principal("pr-second-admin", Role::Admin);
        h.done::<ops::ApproveRequest>(
            &approver,
            serde_json::from_value(serde_json::json!({ "approval_id": t.approval_id }))
                .expect("input"),
        )
        .await;
    }
    assert!(matches!(
        h.engine.authenticate(&created.api_key).await,
        Err(Error::Unauthenticated)
    ));
    // An agent principal must be bound to an agent.
    let err = h
        .call::<ops::CreatePrincipal>(
            &admin,
            ops::CreatePrincipalInput {
                name: "agent".into(),
                role: Role::Agent,
                agent_id: None,
            },
        )
        .await
        .expect_err("unbound agent");
    assert!(matches!(err, Error::InvalidInput(_)));
}

/// Keys are answered from a per-process cache; a revocation committed by
/// another replica is seen once the cached entry is older than
/// `PRINCIPAL_CACHE_SECONDS` of the clock.
async fn a_key_revoked_on_another_replica_stops_within_the_cache_bound(h: &Harness) {
    assert_eq!(certctl_engine::store::PRINCIPAL_CACHE_SECONDS, 1);
    let mut config = EngineConfig::default();
    config.approvals.gate_destructive = false;
    let other = Harness::engine_on(&h.db, &h.clock, config, &h.master).await;
    let admin = h.admin();
    let created = h
        .done::<ops::CreatePrincipal>(
            &admin,
            ops::CreatePrincipalInput {
                name: "ci".into(),
                role: Role::Operator,
                agent_id: None,
            },
        )
        .await;
    // Both replicas have seen the key this second.
    h.engine.authenticate(&created.api_key).await.expect("here");
    other.authenticate(&created.api_key).await.expect("there");
    match other
        .call::<ops::RevokePrincipal>(
            &admin,
            ops::IdInput {
                id: created.principal.id.clone(),
            },
        )
        .await
        .expect("revoke")
    {
        ops::Outcome::Completed { .. } => {}
        gated => panic!("revocation gated: {gated:?}"),
    }
    // The revoking replica refuses the key at once ...
    assert!(matches!(
        other.authenticate(&created.api_key).await,
        Err(Error::Unauthenticated)
    ));
    // ... this one may serve it from its cache for the rest of the second ...
    h.engine
        .authenticate(&created.api_key)
        .await
        .expect("still cached within the bound");
    // ... and refuses it once the clock has moved on.
    h.clock
        .advance(certctl_engine::store::PRINCIPAL_CACHE_SECONDS);
    assert!(matches!(
        h.engine.authenticate(&created.api_key).await,
        Err(Error::Unauthenticated)
    ));
    other.store().close().await;
}
