//! The OpenAPI document: served at /api/v1/openapi.json without
//! authentication, equal to the committed `docs/openapi.json`
//! (`UPDATE_SNAPSHOTS=1` rewrites it), and covering every route.

use crate::support::Rig;

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");

#[tokio::test]
async fn served_document_matches_the_committed_snapshot() {
    let rig = Rig::new().await;
    let served = rig.get("/api/v1/openapi.json", None).await;
    assert_eq!(served.status, 200);
    assert_eq!(&served.body, certctl_api::openapi_document());
    let text = serde_json::to_string_pretty(&served.body).unwrap() + "\n";
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::write(SNAPSHOT, &text).expect("write docs/openapi.json");
    }
    let committed = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    assert!(
        committed == text,
        "docs/openapi.json differs from the served document; regenerate it with UPDATE_SNAPSHOTS=1 cargo test -p certctl-api --test api openapi"
    );
    rig.finish().await;
}

#[test]
fn document_is_openapi_3_1_and_covers_every_route() {
    let doc = certctl_api::openapi_document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = std::collections::HashSet::new();
    for r in certctl_api::routes::routes() {
        let path = format!("/api/v1{}", r.path);
        let op = &doc["paths"][&path][r.method.as_str()];
        // The operation's name, made unique per route (`get_object_owner`).
        let id = op["operationId"].as_str().expect("operationId");
        assert!(id.starts_with(r.op), "{path}: {id}");
        assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        assert!(op["responses"]["401"].is_object(), "{path}");
    }
    // Every reference resolves.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"").skip(1) {
        let reference = piece.split('"').next().unwrap();
        let name = reference
            .strip_prefix("#/components/schemas/")
            .expect("component reference");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {reference}"
        );
    }
}
