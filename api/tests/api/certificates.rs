use serde_json::json;

use crate::support::Rig;

#[tokio::test]
async fn listing_needs_a_valid_key() {
    let rig = Rig::new().await;
    let r = rig.get("/api/v1/certificates", None).await;
    r.assert_problem(401, "unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = rig
        .get("/api/v1/certificates", Some("cck_not-a-real-key"))
        .await;
    r.assert_problem(401, "unauthenticated");
    let r = rig.get("/api/v1/certificates", Some("garbage")).await;
    r.assert_problem(401, "unauthenticated");
}

#[tokio::test]
async fn empty_list_has_the_contract_shape() {
    let rig = Rig::new().await;
    let r = rig.get("/api/v1/certificates", Some(&rig.admin_key)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.content_type(), "application/json");
    assert_eq!(r.body, json!({ "data": [], "total": 0 }));
}

#[tokio::test]
async fn list_pages_filters_and_sparse_fields() {
    let rig = Rig::new().await;
    let a = rig.issued_certificate("a.example.com").await;
    let b = rig.issued_certificate("b.example.com").await;
    let viewer = rig.key("viewer").await;

    let r = rig.get("/api/v1/certificates", Some(&viewer)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["total"], 2);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    assert!(r.body.get("next_cursor").is_none(), "{r:?}");
    assert_eq!(r.body["data"][0]["status"], "valid");

    // Keyset pagination: one per page, the cursor leads to the other one.
    let r = rig
        .get(
            "/api/v1/certificates?per_page=1&sort=common_name",
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["data"][0]["id"], a.as_str());
    let cursor = r.body["next_cursor"]
        .as_str()
        .expect("next_cursor")
        .to_owned();
    let r = rig
        .get(
            &format!("/api/v1/certificates?per_page=1&sort=common_name&cursor={cursor}"),
            Some(&viewer),
        )
        .await;
    assert_eq!(r.body["data"][0]["id"], b.as_str(), "{r:?}");
    assert!(r.body.get("next_cursor").is_none(), "{r:?}");

    // Filters and a sparse fieldset.
    let r = rig
        .get(
            "/api/v1/certificates?common_name=b.example.com&fields=common_name,status",
            Some(&viewer),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["data"],
        json!([{ "id": b, "common_name": "b.example.com", "status": "valid" }])
    );
    let r = rig
        .get("/api/v1/certificates?status=expired", Some(&viewer))
        .await;
    assert_eq!(r.body["total"], 0, "{r:?}");
}

#[tokio::test]
async fn bad_queries_are_problems() {
    let rig = Rig::new().await;
    let key = Some(rig.admin_key.as_str());
    rig.get("/api/v1/certificates?status=sparkling", key)
        .await
        .assert_problem(422, "invalid-input");
    rig.get("/api/v1/certificates?per_page=lots", key)
        .await
        .assert_problem(422, "invalid-input");
    rig.get("/api/v1/certificates?per_page=0", key)
        .await
        .assert_problem(422, "invalid-input");
    rig.get("/api/v1/certificates?fields=id,private_key", key)
        .await
        .assert_problem(422, "invalid-input");
    rig.get("/api/v1/certificates?cursor=not-a-cursor", key)
        .await
        .assert_problem(422, "invalid-input");
}

#[tokio::test]
async fn get_one_certificate() {
    let rig = Rig::new().await;
    let id = rig.issued_certificate("one.example.com").await;
    let r = rig
        .get(&format!("/api/v1/certificates/{id}"), Some(&rig.admin_key))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["certificate"]["id"], id.as_str());
    let versions = r.body["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    assert!(
        versions[0]["cert_pem"]
            .as_str()
            .is_some_and(|p| p.starts_with("-----BEGIN CERTIFICATE-----"))
    );
}

#[tokio::test]
async fn unknown_certificate_is_404() {
    let rig = Rig::new().await;
    let r = rig
        .get("/api/v1/certificates/mc-doesnotexist", Some(&rig.admin_key))
        .await;
    r.assert_problem(404, "not-found");
    assert!(
        r.body["detail"]
            .as_str()
            .unwrap()
            .contains("mc-doesnotexist")
    );
}
