//! Listing (filters, sort, keyset cursor, sparse fields), update, archive
//! and renewal.

use std::collections::HashSet;

use certctl_engine::Error;
use certctl_engine::domain::{EffectiveStatus, JobStatus, KeyAlgorithm};
use certctl_engine::ops;
use certctl_engine::store::CertificateFilter;

use super::support::{Harness, csr};
use crate::backend_tests;

backend_tests!(list_filters_sorts_and_pages, update_archive_and_renew);

fn list(
    filter: CertificateFilter,
    sort: &str,
    per_page: i64,
    cursor: Option<String>,
) -> ops::ListCertificatesInput {
    ops::ListCertificatesInput {
        filter,
        sort: Some(serde_json::from_value(serde_json::json!(sort)).expect("sort")),
        cursor,
        page: None,
        per_page: Some(per_page),
        fields: None,
    }
}

async fn issue_with_ttl(h: &Harness, cn: &str, days: i64) -> String {
    let c = h.create_cert(cn, &[]).await;
    h.done::<ops::IssueCertificate>(
        &h.admin(),
        ops::IssueCertificateInput {
            id: c.id.clone(),
            csr_pem: Some(csr(KeyAlgorithm::EcdsaP256, cn, &[])),
            ttl_seconds: Some(days * 86400),
        },
    )
    .await;
    c.id
}

async fn list_filters_sorts_and_pages(h: &Harness) {
    let mut ids = Vec::new();
    for (i, days) in [90, 10, 45, 5, 200, 20, 60].iter().enumerate() {
        ids.push(issue_with_ttl(h, &format!("host{i}.example.com"), *days).await);
    }
    let pending = h.create_cert("pending.example.com", &[]).await;

    // Walk all pages sorted by expiry: every certificate once, in order.
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut first = true;
    loop {
        let page = h
            .done::<ops::ListCertificates>(
                &h.admin(),
                list(Default::default(), "not_after", 3, cursor),
            )
            .await;
        if first {
            assert_eq!(page.total, Some(8));
            first = false;
        } else {
            assert_eq!(page.total, None);
        }
        seen.extend(
            page.data
                .iter()
                .map(|c| c.0["id"].as_str().unwrap_or_default().to_owned()),
        );
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 8);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        8,
        "no duplicates"
    );
    let expect_order = [3, 1, 5, 2, 6, 0, 4];
    for (pos, idx) in expect_order.iter().enumerate() {
        assert_eq!(seen[pos], ids[*idx], "position {pos}");
    }
    assert_eq!(seen[7], pending.id, "never-issued certificates sort last");

    // Descending.
    let page = h
        .done::<ops::ListCertificates>(&h.admin(), list(Default::default(), "-not_after", 2, None))
        .await;
    assert_eq!(page.data[0].0["id"], pending.id.as_str());
    assert_eq!(page.data[1].0["id"], ids[4].as_str());

    // Status filter: expiring within 30 days.
    let expiring = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            list(
                CertificateFilter {
                    status: Some(EffectiveStatus::Expiring),
                    ..Default::default()
                },
                "not_after",
                50,
                None,
            ),
        )
        .await;
    let got: HashSet<_> = expiring
        .data
        .iter()
        .map(|c| c.0["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    let want: HashSet<_> = [1, 3, 5].iter().map(|i| ids[*i].clone()).collect();
    assert_eq!(got, want);
    // Time moves: 11 days later host1 (10 days) has expired.
    h.clock.advance(11 * 86400);
    let expired = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            list(
                CertificateFilter {
                    status: Some(EffectiveStatus::Expired),
                    ..Default::default()
                },
                "not_after",
                50,
                None,
            ),
        )
        .await;
    assert_eq!(expired.total, Some(2));
    let stats = h
        .done::<ops::GetStatsSummary>(&h.admin(), Default::default())
        .await;
    assert_eq!(stats.total_certificates, 8);
    for (status, n) in [
        ("valid", 4),
        ("expiring", 1),
        ("expired", 2),
        ("pending", 1),
        ("revoked", 0),
    ] {
        assert_eq!(
            stats.by_status[status], n,
            "{status}: {:?}",
            stats.by_status
        );
    }

    // Sparse fields.
    let mut input = list(Default::default(), "common_name", 2, None);
    input.fields = Some(vec!["common_name".into(), "not_after".into()]);
    let page = h.done::<ops::ListCertificates>(&h.admin(), input).await;
    let keys: HashSet<_> = page.data[0].0.keys().cloned().collect();
    assert_eq!(
        keys,
        HashSet::from(["id".into(), "common_name".into(), "not_after".into()])
    );
    let mut input = list(Default::default(), "common_name", 2, None);
    input.fields = Some(vec!["password".into()]);
    let err = h
        .call::<ops::ListCertificates>(&h.admin(), input)
        .await
        .expect_err("unknown field");
    assert!(matches!(err, Error::InvalidInput(_)));

    // A cursor made for one sort is refused for another; garbage is refused.
    let page = h
        .done::<ops::ListCertificates>(&h.admin(), list(Default::default(), "not_after", 2, None))
        .await;
    let err = h
        .call::<ops::ListCertificates>(
            &h.admin(),
            list(Default::default(), "created_at", 2, page.next_cursor),
        )
        .await
        .expect_err("foreign cursor");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = h
        .call::<ops::ListCertificates>(
            &h.admin(),
            list(Default::default(), "not_after", 2, Some("!!".into())),
        )
        .await
        .expect_err("garbage cursor");
    assert!(matches!(err, Error::InvalidInput(_)));
    let err = h
        .call::<ops::ListCertificates>(&h.admin(), list(Default::default(), "not_after", 0, None))
        .await
        .expect_err("per_page 0");
    assert!(matches!(err, Error::InvalidInput(_)));
}

async fn update_archive_and_renew(h: &Harness) {
    let team = h
        .done::<ops::SaveTeam>(
            &h.admin(),
            ops::TeamInput {
                id: None,
                name: "platform".into(),
                description: String::new(),
            },
        )
        .await;
    let owner = h
        .done::<ops::SaveOwner>(
            &h.admin(),
            ops::OwnerInput {
                id: None,
                name: "Ada".into(),
                email: "ada@example.com".into(),
                team_id: Some(team.id.clone()),
            },
        )
        .await;
    let issued = h.issued_cert("edge.example.com").await;
    let id = issued.certificate.id.clone();
    let updated = h
        .done::<ops::UpdateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({
                "id": id, "owner_id": owner.id, "team_id": team.id, "environment": "production",
            }))
            .expect("input"),
        )
        .await;
    assert_eq!(updated.owner_id.as_deref(), Some(owner.id.as_str()));
    let by_owner = h
        .done::<ops::ListCertificates>(
            &h.admin(),
            ops::ListCertificatesInput {
                filter: CertificateFilter {
                    owner_id: Some(owner.id.clone()),
                    environment: Some("production".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
    assert_eq!(by_owner.total, Some(1));
    // Unknown references are refused.
    let err = h
        .call::<ops::UpdateCertificate>(
            &h.admin(),
            serde_json::from_value(serde_json::json!({ "id": id, "owner_id": "own-nope" }))
                .expect("input"),
        )
        .await
        .expect_err("unknown owner");
    assert!(matches!(err, Error::InvalidInput(_)));
    // The team cannot be deleted while in use: the (gated) delete is
    // confirmed, fails when it runs, and its approval is marked failed.
    let out = h.delete(&h.admin(), "team", &team.id).await.expect("gated");
    let certctl_engine::ops::Outcome::ApprovalRequired(t) = out else {
        panic!("delete is gated")
    };
    let err = h
        .engine
        .confirm_in_chat(&h.admin(), &t.approval_id)
        .await
        .expect_err("in use");
    assert!(matches!(err, Error::Conflict(_)), "{err:?}");
    let a = h
        .done::<ops::GetApproval>(
            &h.admin(),
            ops::IdInput {
                id: t.approval_id.clone(),
            },
        )
        .await;
    assert_eq!(a.status, certctl_engine::domain::ApprovalStatus::Failed);
    assert!(
        a.result.expect("error kept")["error"]
            .as_str()
            .unwrap_or_default()
            .contains("still referenced")
    );
    assert!(
        h.get::<certctl_engine::domain::Team>(&h.admin(), "team", &team.id)
            .await
            .id
            == team.id
    );

    // Renewal without a CSR queues a job for the agent; with one, it issues now.
    let r = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: None,
            },
        )
        .await;
    assert_eq!(r.job.status, JobStatus::AwaitingCsr);
    assert!(r.version.is_none());
    let r = h
        .done::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: Some(csr(KeyAlgorithm::Ed25519, "edge.example.com", &[])),
            },
        )
        .await;
    assert_eq!(r.job.status, JobStatus::Completed);
    let v = r.version.expect("new version");
    let details = h
        .done::<ops::GetCertificate>(&h.admin(), ops::CertificateIdInput { id: id.clone() })
        .await;
    assert_eq!(details.versions.len(), 2);
    assert_eq!(
        details.certificate.current_version_id.as_deref(),
        Some(v.id.as_str())
    );
    assert_eq!(
        details.certificate.key_algorithm,
        Some(KeyAlgorithm::Ed25519)
    );
    let jobs = h
        .done::<ops::ListJobs>(
            &h.admin(),
            ops::ListJobsInput {
                certificate_id: Some(id.clone()),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(jobs.data.len(), 2);

    // Archive: hidden from default lists, not renewable, archiving twice conflicts.
    h.done::<ops::ArchiveCertificate>(&h.admin(), ops::CertificateIdInput { id: id.clone() })
        .await;
    let all = h
        .done::<ops::ListCertificates>(&h.admin(), Default::default())
        .await;
    assert!(all.data.iter().all(|c| c.0["id"] != id.as_str()));
    let err = h
        .call::<ops::RenewCertificate>(
            &h.admin(),
            ops::RenewCertificateInput {
                id: id.clone(),
                csr_pem: None,
            },
        )
        .await
        .expect_err("archived");
    assert!(matches!(err, Error::Conflict(_)));
    let err = h
        .call::<ops::ArchiveCertificate>(&h.admin(), ops::CertificateIdInput { id })
        .await
        .expect_err("twice");
    assert!(matches!(err, Error::Conflict(_)));
}
