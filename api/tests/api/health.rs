use serde_json::json;

use crate::support::Rig;

#[tokio::test]
async fn health_and_ready() {
    let rig = Rig::new().await;
    let r = rig.get("/health", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({ "status": "healthy" }));
    let r = rig.get("/ready", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, json!({ "status": "ready" }));
}

#[tokio::test]
async fn not_ready_once_the_store_is_gone() {
    let rig = Rig::new().await;
    rig.store.close().await;
    let r = rig.get("/ready", None).await;
    r.assert_problem(503, "not-ready");
    // Liveness does not depend on the store.
    assert_eq!(rig.get("/health", None).await.status, 200);
}
