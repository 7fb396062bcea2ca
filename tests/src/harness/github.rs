//! Sending deliveries exactly as GitHub sends them: the raw JSON body, `X-GitHub-Event`,
//! `X-GitHub-Delivery` and `X-Hub-Signature-256` over the raw bytes.

use std::time::Duration;

use kubetempura_common::signature::sign;

/// POSTs one signed delivery; returns the status and the response body.
pub async fn post_delivery(
    url: &str,
    secret: &str,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/kubetempura-tests")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery_id)
        .header("x-hub-signature-256", sign(secret.as_bytes(), body))
        .body(body.to_vec())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("POST delivery");
    let status = resp.status().as_u16();
    let json = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, json)
}
