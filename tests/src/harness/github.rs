//! Sending deliveries exactly as GitHub sends them: the raw JSON body, `X-GitHub-Event`,
//! `X-GitHub-Delivery` and `X-Hub-Signature-256` over the raw bytes (the same code as
//! `kubetempura send-event`).

/// POSTs one signed delivery; returns the status and the response body as JSON (`Null` when it
/// is not JSON).
pub async fn post_delivery(
    url: &str,
    secret: &str,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let (status, text) =
        kubetempura_applier::send_event::post(url, secret, event, delivery_id, body)
            .await
            .expect("POST delivery");
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}
