//! `common::event::normalize` on every accepted event kind (the first byte picks it, the rest
//! is the payload): no panic, a check result is never empty, and every event read back from the
//! queue is the one written.
#![no_main]

use chrono::{DateTime, Utc};
use kubetempura_common::check::QueueMessage;
use kubetempura_common::event::{Normalized, normalize};
use kubetempura_fuzz::{KINDS, assert_message_round_trips};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let event = KINDS[usize::from(kind) % KINDS.len()];
    let received_at =
        DateTime::<Utc>::from_timestamp(1_767_225_600, 123_456_789).expect("a valid timestamp");
    match normalize(
        event,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        body,
        received_at,
    ) {
        Ok(Normalized::Event(e)) => {
            assert_eq!(event, "pull_request");
            assert_message_round_trips(&QueueMessage::PullRequest(e));
        }
        Ok(Normalized::Checks(checks)) => {
            assert!(!checks.is_empty(), "an empty check result");
            for check in checks {
                assert_message_round_trips(&QueueMessage::Check(Box::new(check)));
            }
        }
        Ok(Normalized::Ignored(_)) | Err(_) => {}
    }
});
