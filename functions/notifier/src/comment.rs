//! The one comment per pull request: a table of its environments, with its own state inside.
//!
//! The comment is found again by [`MARKER`]. Its machine-readable state (each environment's
//! last event, with that event's time) rides along in a hidden HTML comment as base64 JSON, so
//! the notifier merges a new event into what the comment shows without remembering anything
//! between invocations and without ever parsing the rendered markdown.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use kubetempura_common::feedback::{FeedbackEvent, FeedbackState};
use serde::{Deserialize, Serialize};

use crate::deployment::truncate_chars;

/// The hidden line that identifies the comment.
pub const MARKER: &str = "<!-- kubetempura:environments -->";
const STATE_OPEN: &str = "<!-- kubetempura:state ";
const STATE_CLOSE: &str = " -->";
/// The version of the embedded state written by this code.
pub const STATE_VERSION: u32 = 1;
/// Longest message kept for a row, in characters (the event's message can be 1 KiB).
pub const MAX_ROW_MESSAGE_CHARS: usize = 300;
/// GitHub's limit on a comment body, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;

/// What the comment shows of one environment: its last event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub review_app: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub head_sha: String,
    pub state: FeedbackState,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_url: Option<String>,
    /// The time of the event the row shows; only a later event replaces the row.
    pub time: DateTime<Utc>,
}

/// The comment's state: a row per GitHub environment name, kept sorted by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommentState {
    pub version: u32,
    pub environments: BTreeMap<String, Row>,
}

impl Default for CommentState {
    fn default() -> Self {
        Self {
            version: STATE_VERSION,
            environments: BTreeMap::new(),
        }
    }
}

/// Why a comment carrying the marker has no state this code can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    #[error("the comment has no state line")]
    Missing,
    #[error("the comment's state is not base64 JSON of the expected shape: {0}")]
    Malformed(String),
    #[error("the comment's state version {0} is not supported (this build reads {STATE_VERSION})")]
    Version(u32),
}

/// Whether a comment body is the environments comment.
pub fn is_environments_comment(body: &str) -> bool {
    body.contains(MARKER)
}

/// Where links in the comment point: the repository's web address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Links {
    /// The web (not API) base URL, without a trailing `/`.
    pub web_url: String,
    /// `owner/name`.
    pub repository: String,
}

/// The web address of the GitHub whose REST API is at `api_url`: `https://api.github.com` is
/// github.com, `https://HOST/api/v3` (Enterprise Server) is `https://HOST`, and anything else
/// (a stand-in) is taken as it is.
pub fn web_url(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if let Some(rest) = api.strip_prefix("https://api.") {
        return format!("https://{rest}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_owned()
}

impl CommentState {
    /// Reads the state embedded in a comment body.
    pub fn parse(body: &str) -> Result<Self, StateError> {
        let start = body.find(STATE_OPEN).ok_or(StateError::Missing)? + STATE_OPEN.len();
        let len = body[start..].find(STATE_CLOSE).ok_or(StateError::Missing)?;
        let encoded = body[start..start + len].trim();
        let json = BASE64
            .decode(encoded)
            .map_err(|e| StateError::Malformed(e.to_string()))?;
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let Version { version } =
            serde_json::from_slice(&json).map_err(|e| StateError::Malformed(e.to_string()))?;
        if version != STATE_VERSION {
            return Err(StateError::Version(version));
        }
        serde_json::from_slice(&json).map_err(|e| StateError::Malformed(e.to_string()))
    }

    /// The time of the event shown for `environment`, if any.
    pub fn shown(&self, environment: &str) -> Option<DateTime<Utc>> {
        self.environments.get(environment).map(|row| row.time)
    }

    /// Whether `event` would change what is shown: it is later than the shown event of its
    /// environment (or the environment is new).
    pub fn is_news(&self, event: &FeedbackEvent) -> bool {
        self.shown(&event.github_environment())
            .is_none_or(|shown| event.is_newer_than(shown))
    }

    /// Records `event` in its environment's row; returns false (and changes nothing) when the
    /// row already shows the same or a later event.
    pub fn record(&mut self, event: &FeedbackEvent) -> bool {
        if !self.is_news(event) {
            return false;
        }
        let message = event
            .message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        self.environments.insert(
            event.github_environment(),
            Row {
                review_app: event.review_app.clone(),
                namespace: event.namespace.clone(),
                cluster: event.cluster.clone(),
                head_sha: event.head_sha.clone(),
                state: event.state,
                message: truncate_chars(&message, MAX_ROW_MESSAGE_CHARS),
                environment_url: event.environment_url.clone(),
                log_url: event.log_url.clone(),
                time: event.time,
            },
        );
        true
    }

    /// The comment body. If it would be longer than GitHub allows, the rows' messages are left
    /// out (of the table and of the state).
    pub fn render(&self, links: &Links) -> String {
        let body = self.render_full(links);
        if body.chars().count() <= MAX_COMMENT_CHARS {
            return body;
        }
        let mut short = self.clone();
        for row in short.environments.values_mut() {
            row.message.clear();
        }
        short.render_full(links)
    }

    fn render_full(&self, links: &Links) -> String {
        let mut out = String::new();
        out.push_str(MARKER);
        out.push_str("\n### Review environments\n\n");
        if !self.environments.is_empty() && self.environments.values().all(|r| r.state.is_removed())
        {
            out.push_str("All review environments of this pull request have been removed.\n\n");
        }
        out.push_str("| Environment | URL | Commit | State | Updated (UTC) |\n");
        out.push_str("| --- | --- | --- | --- | --- |\n");
        for (name, row) in &self.environments {
            out.push_str(&render_row(name, row, links));
        }
        out.push_str(
            "\n<sub>Kept up to date by kubetempura: the latest state of each environment of this pull request.</sub>\n",
        );
        let json = serde_json::to_vec(self).unwrap_or_default();
        out.push_str(STATE_OPEN);
        out.push_str(&BASE64.encode(json));
        out.push_str(STATE_CLOSE);
        out.push('\n');
        out
    }
}

fn render_row(name: &str, row: &Row, links: &Links) -> String {
    let url = match (
        row.state.is_removed(),
        row.environment_url.as_deref().and_then(safe_url),
    ) {
        (false, Some(url)) => format!("[{}]({url})", escape(link_text(&url))),
        _ => "—".to_owned(),
    };
    let short: String = row.head_sha.chars().take(7).collect();
    let commit = format!(
        "[`{short}`]({}/{}/commit/{})",
        links.web_url, links.repository, row.head_sha
    );
    let mut state = format!("**{}**", state_word(row.state));
    if !row.message.is_empty() {
        state.push_str(": ");
        state.push_str(&escape(&row.message));
    }
    if let Some(log) = row.log_url.as_deref().and_then(safe_url) {
        state.push_str(&format!(" ([logs]({log}))"));
    }
    format!(
        "| `{}` | {url} | {commit} | {state} | {} |\n",
        name.replace(['`', '|'], ""),
        row.time.format("%Y-%m-%d %H:%M:%S"),
    )
}

/// The word shown for a state.
pub fn state_word(state: FeedbackState) -> &'static str {
    match state {
        FeedbackState::Deploying => "Deploying",
        FeedbackState::Ready => "Ready",
        FeedbackState::Failed => "Failed",
        FeedbackState::Closed => "Removed",
        FeedbackState::Skipped => "Skipped",
        FeedbackState::Waiting => "Waiting",
        FeedbackState::Blocked => "Blocked",
        FeedbackState::Queued => "Queued",
        FeedbackState::Expired => "Expired",
    }
}

/// An http(s) URL, serialised so it cannot end a markdown link or a table cell early.
fn safe_url(raw: &str) -> Option<String> {
    let url = url::Url::parse(raw.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    Some(
        url.as_str()
            .replace('(', "%28")
            .replace(')', "%29")
            .replace('|', "%7C"),
    )
}

fn link_text(url: &str) -> &str {
    let text = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    text.strip_suffix('/').unwrap_or(text)
}

/// Text that renders as itself in a table cell: no markup, no HTML, no cell break.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' | '\t' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deployment::tests::{ALL_STATES, event};

    fn links() -> Links {
        Links {
            web_url: "https://github.com".into(),
            repository: "Mercari/Web".into(),
        }
    }

    fn at(time: &str) -> DateTime<Utc> {
        time.parse().expect("time")
    }

    #[test]
    fn the_web_address_is_derived_from_the_api_address() {
        assert_eq!(web_url("https://api.github.com"), "https://github.com");
        assert_eq!(
            web_url("https://ghe.example.com/api/v3/"),
            "https://ghe.example.com"
        );
        assert_eq!(web_url("http://127.0.0.1:9000"), "http://127.0.0.1:9000");
    }

    #[test]
    fn a_rendered_comment_parses_back_to_its_state() {
        let mut state = CommentState::default();
        assert!(state.record(&event(FeedbackState::Ready)));
        let mut other = event(FeedbackState::Failed);
        other.environment = "api-pr12".into();
        other.review_app = "api".into();
        other.message = "apply failed: --> | `x` <script>".into();
        assert!(state.record(&other));
        let body = state.render(&links());
        assert!(is_environments_comment(&body));
        assert_eq!(CommentState::parse(&body), Ok(state));
    }

    #[test]
    fn the_whole_comment_reads_as_documented() {
        let mut state = CommentState::default();
        state.record(&event(FeedbackState::Ready));
        let mut api = event(FeedbackState::Failed);
        api.environment = "api-pr12".into();
        api.review_app = "api".into();
        api.message = "rollout of Deployment/api did not finish within 10m".into();
        api.environment_url = None;
        api.log_url = None;
        api.time = at("2026-12-01T10:05:30Z");
        state.record(&api);
        let body = state.render(&links());
        let (visible, state_line) = body.split_at(body.find(STATE_OPEN).expect("state line"));
        assert_eq!(
            visible,
            "<!-- kubetempura:environments -->
### Review environments

| Environment | URL | Commit | State | Updated (UTC) |
| --- | --- | --- | --- | --- |
| `api-pr12` | — | [`0123456`](https://github.com/Mercari/Web/commit/0123456789abcdef0123456789abcdef01234567) | **Failed**: rollout of Deployment/api did not finish within 10m | 2026-12-01 10:05:30 |
| `web-pr12` | [pr12.review.example.com](https://pr12.review.example.com/) | [`0123456`](https://github.com/Mercari/Web/commit/0123456789abcdef0123456789abcdef01234567) | **Ready**: 1 of 1 replicas available ([logs](https://logs.example.com/web-pr12)) | 2026-12-01 10:00:00 |

<sub>Kept up to date by kubetempura: the latest state of each environment of this pull request.</sub>
"
        );
        assert!(state_line.ends_with(" -->\n"), "{state_line}");
    }

    #[test]
    fn the_table_has_a_row_per_environment_sorted_by_name() {
        let mut state = CommentState::default();
        let mut web = event(FeedbackState::Ready);
        web.cluster = Some("tokyo-1".into());
        state.record(&web);
        let mut api = event(FeedbackState::Deploying);
        api.environment = "api-pr12".into();
        api.message = String::new();
        api.environment_url = None;
        api.log_url = None;
        state.record(&api);
        let body = state.render(&links());
        let api_at = body.find("| `api-pr12` |").expect("api row");
        let web_at = body.find("| `tokyo-1/web-pr12` |").expect("web row");
        assert!(api_at < web_at, "{body}");
        assert!(body.contains(
            "| `tokyo-1/web-pr12` | [pr12.review.example.com](https://pr12.review.example.com/) | [`0123456`](https://github.com/Mercari/Web/commit/0123456789abcdef0123456789abcdef01234567) | **Ready**: 1 of 1 replicas available ([logs](https://logs.example.com/web-pr12)) | 2026-12-01 10:00:00 |"
        ), "{body}");
        assert!(body.contains("| `api-pr12` | — | [`0123456`]"), "{body}");
        assert!(body.contains("| **Deploying** |"), "{body}");
        assert!(!body.contains("have been removed"), "{body}");
    }

    #[test]
    fn an_event_as_old_as_or_older_than_the_shown_one_changes_nothing() {
        let mut state = CommentState::default();
        let ready = event(FeedbackState::Ready);
        assert!(state.record(&ready));
        let before = state.clone();
        let mut redelivered = ready.clone();
        redelivered.message = "other".into();
        assert!(!state.record(&redelivered), "same time is a redelivery");
        let mut late = event(FeedbackState::Deploying);
        late.time = at("2026-12-01T09:59:00Z");
        assert!(!state.is_news(&late));
        assert!(!state.record(&late));
        assert_eq!(state, before);
        let mut newer = event(FeedbackState::Failed);
        newer.time = at("2026-12-01T10:00:01Z");
        assert!(state.record(&newer));
        assert_eq!(state.environments["web-pr12"].state, FeedbackState::Failed);
    }

    #[test]
    fn removed_environments_keep_their_row_and_a_fully_removed_pull_request_says_so() {
        let mut state = CommentState::default();
        state.record(&event(FeedbackState::Ready));
        let mut api = event(FeedbackState::Ready);
        api.environment = "api-pr12".into();
        state.record(&api);
        let mut closed = event(FeedbackState::Closed);
        closed.time = at("2026-12-01T11:00:00Z");
        closed.message = "pull request closed".into();
        state.record(&closed);
        let body = state.render(&links());
        assert!(body.contains("| `web-pr12` | — |"), "{body}");
        assert!(body.contains("**Removed**: pull request closed"), "{body}");
        assert!(!body.contains("have been removed"), "{body}");
        let mut skipped = api.clone();
        skipped.state = FeedbackState::Skipped;
        skipped.time = at("2026-12-01T11:00:01Z");
        state.record(&skipped);
        let body = state.render(&links());
        assert!(body.contains("**Skipped**"), "{body}");
        assert!(
            body.contains("All review environments of this pull request have been removed."),
            "{body}"
        );
    }

    /// The row the comment shows for `e` alone.
    fn only_row(e: &FeedbackEvent) -> String {
        let mut state = CommentState::default();
        state.record(e);
        let body = state.render(&links());
        let rows: Vec<&str> = body.lines().filter(|l| l.starts_with("| `")).collect();
        assert_eq!(rows.len(), 1, "{body}");
        rows[0].to_owned()
    }

    #[test]
    fn each_state_has_its_own_word() {
        let words: std::collections::HashSet<&str> =
            ALL_STATES.iter().map(|&s| state_word(s)).collect();
        assert_eq!(words.len(), ALL_STATES.len(), "{words:?}");
    }

    #[test]
    fn gated_queued_and_expired_rows_say_so_with_the_applier_s_words() {
        let commit = "[`0123456`](https://github.com/Mercari/Web/commit/0123456789abcdef0123456789abcdef01234567)";
        let url = "[pr12.review.example.com](https://pr12.review.example.com/)";
        let logs = "([logs](https://logs.example.com/web-pr12))";
        let cases = [
            (
                FeedbackState::Waiting,
                "waiting for check run `build` on 0123456",
                true,
                format!(
                    "{url} | {commit} | **Waiting**: waiting for check run \\`build\\` on 0123456 {logs}"
                ),
            ),
            (
                FeedbackState::Blocked,
                "check run `build` failed on 0123456: https://ci.example.com/runs/7",
                true,
                format!(
                    "{url} | {commit} | **Blocked**: check run \\`build\\` failed on 0123456: https://ci.example.com/runs/7 {logs}"
                ),
            ),
            (
                FeedbackState::Queued,
                "queued: 2 ahead (maxActive 3)",
                false,
                format!("— | {commit} | **Queued**: queued: 2 ahead (maxActive 3) {logs}"),
            ),
            (
                FeedbackState::Expired,
                "expired after 48h without a push: push or add `preview` to wake",
                // Even with a URL in the event: the environment is gone.
                true,
                format!(
                    "— | {commit} | **Expired**: expired after 48h without a push: push or add \\`preview\\` to wake {logs}"
                ),
            ),
        ];
        for (state, message, with_url, cells) in cases {
            let mut e = event(state);
            e.message = message.into();
            if !with_url {
                e.environment_url = None;
            }
            assert_eq!(
                only_row(&e),
                format!("| `web-pr12` | {cells} | 2026-12-01 10:00:00 |"),
                "{state}"
            );
        }
    }

    #[test]
    fn an_expired_pull_request_counts_as_removed_and_a_waiting_one_does_not() {
        let mut state = CommentState::default();
        state.record(&event(FeedbackState::Expired));
        let body = state.render(&links());
        assert!(body.contains("have been removed"), "{body}");
        let mut api = event(FeedbackState::Waiting);
        api.environment = "api-pr12".into();
        state.record(&api);
        let body = state.render(&links());
        assert!(!body.contains("have been removed"), "{body}");
    }

    #[test]
    fn messages_cannot_break_the_table_or_inject_markup() {
        let mut state = CommentState::default();
        let mut e = event(FeedbackState::Failed);
        e.message = "a | b\n<img src=x> [x](javascript:y) `c` -->".into();
        e.environment_url = Some("javascript:alert(1)".into());
        e.log_url = Some("https://logs.example.com/a|b)c".into());
        state.record(&e);
        let body = state.render(&links());
        let row = body
            .lines()
            .find(|l| l.starts_with("| `web-pr12`"))
            .expect("row");
        assert!(
            row.contains(r"a \| b \<img src=x\> \[x\](javascript:y) \`c\` --\>"),
            "{row}"
        );
        assert!(row.contains("| — |"), "a non-http URL is not linked: {row}");
        assert!(
            row.contains("(https://logs.example.com/a%7Cb%29c)"),
            "{row}"
        );
        // Five cells: the row splits into seven parts on unescaped bars.
        let cells = row.replace(r"\|", "").split('|').count();
        assert_eq!(cells, 7, "{row}");
        assert_eq!(
            body.matches("-->").count(),
            2,
            "only the marker and the state end: {body}"
        );
    }

    #[test]
    fn long_messages_are_bounded_and_an_oversized_comment_drops_them() {
        let mut state = CommentState::default();
        let mut e = event(FeedbackState::Failed);
        e.message = "y".repeat(1000);
        state.record(&e);
        assert_eq!(
            state.environments["web-pr12"].message.chars().count(),
            MAX_ROW_MESSAGE_CHARS
        );
        for i in 0..80 {
            let mut e = event(FeedbackState::Failed);
            e.environment = format!("app{i:03}-pr12");
            e.message = "z".repeat(1000);
            state.record(&e);
        }
        assert!(state.render_full(&links()).chars().count() > MAX_COMMENT_CHARS);
        let body = state.render(&links());
        assert!(body.chars().count() <= MAX_COMMENT_CHARS, "{}", body.len());
        let parsed = CommentState::parse(&body).unwrap();
        assert_eq!(parsed.environments.len(), 81);
        assert!(parsed.environments.values().all(|r| r.message.is_empty()));
    }

    #[test]
    fn a_comment_without_readable_state_is_reported() {
        assert_eq!(CommentState::parse(MARKER), Err(StateError::Missing));
        assert!(matches!(
            CommentState::parse(&format!("{MARKER}\n{STATE_OPEN}!!!{STATE_CLOSE}")),
            Err(StateError::Malformed(_))
        ));
        let v2 = BASE64.encode(br#"{"version":2,"environments":{}}"#);
        assert_eq!(
            CommentState::parse(&format!("{STATE_OPEN}{v2}{STATE_CLOSE}")),
            Err(StateError::Version(2))
        );
    }
}
