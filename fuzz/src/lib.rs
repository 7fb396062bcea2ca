//! What the fuzz targets share with `seed-corpora`, which writes the seed corpora: the input
//! formats (so seeds are written exactly as the targets read them) and the checks that hold
//! for every input.

use kubetempura_common::check::QueueMessage;
use serde_json::Value;

/// The webhook secret of the `webhook_request` target, used to sign part of the inputs.
pub const SECRET: &[u8] = b"fuzz-secret";

/// The event kinds of the `normalize` target, picked by the first input byte.
pub const KINDS: [&str; 5] = [
    "pull_request",
    "check_run",
    "check_suite",
    "workflow_run",
    "status",
];

/// The `webhook_request` input: one flags byte, then either a Lambda event (flag
/// [`request::RAW_EVENT`]) or header lines (`name: value`), a blank line and the body.
pub mod request {
    /// Sign the body (as the handler sees it) with [`super::SECRET`].
    pub const SIGN: u8 = 0x01;
    /// Send the body form-encoded as `payload=…` (GitHub's `application/x-www-form-urlencoded`).
    pub const FORM: u8 = 0x02;
    /// Pass the request through a function-URL event with a base64 body (lambda_http decodes).
    pub const BASE64: u8 = 0x04;
    /// The rest is a raw Lambda event (function URL / API Gateway HTTP API JSON, payload 2.0).
    pub const RAW_EVENT: u8 = 0x08;
    /// Use GET instead of POST.
    pub const NOT_POST: u8 = 0x10;
    /// Run with a body limit of [`SMALL_LIMIT`] bytes instead of the default.
    pub const SMALL_LIMIT: u8 = 0x20;
    /// The body limit of [`SMALL_LIMIT`] inputs.
    pub const SMALL_LIMIT_BYTES: usize = 512;

    /// Writes an input of the header-lines form.
    pub fn encode(flags: u8, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        for (name, value) in headers {
            out.extend_from_slice(format!("{name}: {value}\n").as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(body);
        out
    }

    /// Splits the header-lines form at its first blank line: (header lines, body). Without a
    /// blank line everything is headers and the body is empty.
    pub fn split(rest: &[u8]) -> (&[u8], &[u8]) {
        match rest.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (&rest[..i], &rest[i + 2..]),
            None => (rest, &[]),
        }
    }

    /// A Lambda function-URL event (payload format 2.0) carrying a request, as JSON text.
    pub fn function_url_event(
        method: &str,
        headers: &[(String, String)],
        body: &[u8],
        base64: bool,
    ) -> String {
        kubetempura_common::testing::function_url_event(method, headers, body, base64).to_string()
    }
}

/// The shape of a JSON tree: keys and structure, every string replaced by `""`.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::String(_) => Value::String(String::new()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        other => other.clone(),
    }
}

/// What the applier reads back from the queue is what the function sent, and its FIFO group
/// fits SQS's 128 characters.
pub fn assert_message_round_trips(message: &QueueMessage) {
    let json = message.to_json();
    let back = QueueMessage::from_json(&json)
        .unwrap_or_else(|e| panic!("a message the function sends is refused: {e}\n{json}"));
    assert_eq!(&back, message, "the message changed on its way: {json}");
    let group = message.message_group_id();
    assert!(
        !group.is_empty() && group.len() <= 128,
        "message group {group:?} is not 1..=128 characters"
    );
}
