//! GitHub's REST API as a GitHub App: installation tokens cached in the warm process, and the
//! handful of calls the notifier makes.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::comment::is_environments_comment;
use crate::config::ConfigError;
use crate::failure::{Failure, classify, request_id};
use crate::jwt::AppKey;

/// The media type GitHub recommends for its REST API.
pub const MEDIA_TYPE: &str = "application/vnd.github+json";
/// The REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// Sent as `User-Agent` (GitHub refuses requests without one).
pub const USER_AGENT_VALUE: &str = concat!("kubetempura-notifier/", env!("CARGO_PKG_VERSION"));
/// An installation token is used until this long before it expires.
pub const TOKEN_MARGIN_SECS: i64 = 5 * 60;
/// One GitHub call may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many pages of comments are read (100 a page).
pub const MAX_COMMENT_PAGES: usize = 50;

/// An installation access token and when GitHub expires it.
#[derive(Clone)]
struct InstallationToken {
    token: String,
    expires_at: DateTime<Utc>,
}

/// The GitHub App's client: built once at cold start, shared by every invocation.
pub struct GitHub {
    http: reqwest::Client,
    api_url: String,
    key: AppKey,
    /// Installation id by lowercased `owner/name`.
    installations: Mutex<HashMap<String, u64>>,
    /// Installation tokens by installation id.
    tokens: Mutex<HashMap<u64, InstallationToken>>,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// A successful response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    fn json<T: DeserializeOwned>(&self, call: &'static str) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| Failure::Unexpected {
            call,
            request_id: request_id(&self.headers),
            problem: e.to_string(),
        })
    }
}

/// A deployment, as much of it as the notifier reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Deployment {
    pub id: u64,
    #[serde(default)]
    pub sha: String,
    #[serde(default)]
    pub environment: String,
}

/// An issue comment, as much of it as the notifier reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IssueComment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub performed_via_github_app: Option<AppRef>,
}

impl IssueComment {
    /// The comment's markdown.
    pub fn body(&self) -> &str {
        self.body.as_deref().unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct User {
    #[serde(rename = "type", default)]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AppRef {
    pub id: u64,
}

/// Whether `comment` is the environments comment this App wrote: it carries the marker and was
/// written by a bot (a person cannot forge the state by pasting the marker), and not by another
/// App on someone's behalf.
pub fn is_own_comment(comment: &IssueComment, app_id: &str) -> bool {
    is_environments_comment(comment.body())
        && comment.user.as_ref().is_some_and(|u| u.kind == "Bot")
        && comment
            .performed_via_github_app
            .as_ref()
            .is_none_or(|app| app.id.to_string() == app_id)
}

/// The `rel="next"` URL of a `Link` header, if any.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        let is_next = params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
        let url = url.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| url.to_owned())
    })
}

fn now() -> i64 {
    Utc::now().timestamp()
}

impl GitHub {
    /// A client for the REST API at `api_url` (no trailing `/`), signing as the App of `key`.
    pub fn new(api_url: &str, key: AppKey) -> Result<Self, ConfigError> {
        // reqwest's rustls without a built-in provider uses the process default: aws-lc-rs, the
        // one kube and the AWS SDK use (an error means one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static(MEDIA_TYPE));
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;
        Ok(Self {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            key,
            installations: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The REST API's base URL.
    pub fn api_url(&self) -> &str {
        &self.api_url
    }

    /// The App's id.
    pub fn app_id(&self) -> &str {
        self.key.app_id()
    }

    /// One request; a non-success status becomes a classified [`Failure`].
    async fn send(
        &self,
        call: &'static str,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        bearer: &str,
    ) -> Result<Reply, Failure> {
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {bearer}"));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| Failure::Network { call, source })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|source| Failure::Network { call, source })?
            .to_vec();
        if !status.is_success() {
            return Err(classify(call, status.as_u16(), &headers, &body, now()));
        }
        tracing::debug!(call, status = status.as_u16(), request_id = %request_id(&headers), "github call");
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A request authenticated as the App itself (JWT).
    async fn as_app(
        &self,
        call: &'static str,
        method: Method,
        path: &str,
    ) -> Result<Reply, Failure> {
        let jwt = self.key.jwt(now()).map_err(Failure::Jwt)?;
        let url = format!("{}{path}", self.api_url);
        self.send(call, method, &url, &[], None, &jwt).await
    }

    /// The installation of the App on `repository`, cached per repository.
    async fn installation_id(&self, repository: &str) -> Result<u64, Failure> {
        let key = repository.to_ascii_lowercase();
        if let Some(id) = self.installations.lock().await.get(&key) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let call = "get repository installation";
        let reply = self
            .as_app(
                call,
                Method::GET,
                &format!("/repos/{repository}/installation"),
            )
            .await?;
        let Installation { id } = reply.json(call)?;
        self.installations.lock().await.insert(key, id);
        Ok(id)
    }

    /// An installation token for `repository`: the cached one while it has more than
    /// [`TOKEN_MARGIN_SECS`] left, else a new one. Returns the token and whether it was cached.
    async fn token(&self, repository: &str) -> Result<(String, bool), Failure> {
        let installation = self.installation_id(repository).await?;
        if let Some(cached) = self.tokens.lock().await.get(&installation)
            && cached.expires_at.timestamp() - now() > TOKEN_MARGIN_SECS
        {
            return Ok((cached.token.clone(), true));
        }
        #[derive(Deserialize)]
        struct AccessToken {
            token: String,
            expires_at: DateTime<Utc>,
        }
        let call = "create installation access token";
        let path = format!("/app/installations/{installation}/access_tokens");
        let reply = match self.as_app(call, Method::POST, &path).await {
            Ok(reply) => reply,
            Err(failure) => {
                if failure.status() == Some(404) {
                    // The App was reinstalled (a new installation id) or removed: look again next time.
                    self.installations
                        .lock()
                        .await
                        .remove(&repository.to_ascii_lowercase());
                }
                return Err(failure);
            }
        };
        let AccessToken { token, expires_at } = reply.json(call)?;
        self.tokens.lock().await.insert(
            installation,
            InstallationToken {
                token: token.clone(),
                expires_at,
            },
        );
        Ok((token, false))
    }

    /// Forgets `repository`'s installation token (GitHub refused it).
    async fn drop_token(&self, repository: &str) {
        let key = repository.to_ascii_lowercase();
        if let Some(installation) = self.installations.lock().await.get(&key) {
            self.tokens.lock().await.remove(installation);
        }
    }

    /// A request on `repository` with its installation token. A 401 with a cached token (it
    /// was revoked or expired early) drops the token and tries once more with a new one.
    async fn api(
        &self,
        repository: &str,
        call: &'static str,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Reply, Failure> {
        let (token, cached) = self.token(repository).await?;
        match self
            .send(call, method.clone(), url, query, body, &token)
            .await
        {
            Err(failure) if cached && failure.status() == Some(401) => {
                tracing::info!(
                    call,
                    request_id = failure.request_id().unwrap_or("-"),
                    "installation token refused; minting a new one"
                );
                self.drop_token(repository).await;
                let (token, _) = self.token(repository).await?;
                self.send(call, method, url, query, body, &token).await
            }
            other => other,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_url)
    }

    /// The App's environments comment on the pull request, if there is one (every page read).
    pub async fn find_comment(
        &self,
        repository: &str,
        pr_number: u64,
    ) -> Result<Option<IssueComment>, Failure> {
        let call = "list issue comments";
        let mut url = self.url(&format!("/repos/{repository}/issues/{pr_number}/comments"));
        let mut query: &[(&str, &str)] = &[("per_page", "100")];
        for _ in 0..MAX_COMMENT_PAGES {
            let reply = self
                .api(repository, call, Method::GET, &url, query, None)
                .await?;
            let comments: Vec<IssueComment> = reply.json(call)?;
            if let Some(own) = comments
                .into_iter()
                .find(|c| is_own_comment(c, self.app_id()))
            {
                return Ok(Some(own));
            }
            match next_link(&reply.headers) {
                // The next page carries its own query; never send the token to another host.
                Some(next) if next.starts_with(&format!("{}/", self.api_url)) => {
                    url = next;
                    query = &[];
                }
                Some(next) => {
                    return Err(Failure::Unexpected {
                        call,
                        request_id: request_id(&reply.headers),
                        problem: format!("the next page {next:?} is not under {}", self.api_url),
                    });
                }
                None => return Ok(None),
            }
        }
        tracing::warn!(
            repository,
            pr_number,
            pages = MAX_COMMENT_PAGES,
            "environments comment not found in the pages read; a new one is created"
        );
        Ok(None)
    }

    /// Creates the environments comment.
    pub async fn create_comment(
        &self,
        repository: &str,
        pr_number: u64,
        body: &str,
    ) -> Result<u64, Failure> {
        let call = "create issue comment";
        let url = self.url(&format!("/repos/{repository}/issues/{pr_number}/comments"));
        let reply = self
            .api(
                repository,
                call,
                Method::POST,
                &url,
                &[],
                Some(&serde_json::json!({ "body": body })),
            )
            .await?;
        Ok(reply.json::<IssueComment>(call)?.id)
    }

    /// Replaces the environments comment's body.
    pub async fn update_comment(
        &self,
        repository: &str,
        comment_id: u64,
        body: &str,
    ) -> Result<(), Failure> {
        let call = "update issue comment";
        let url = self.url(&format!("/repos/{repository}/issues/comments/{comment_id}"));
        self.api(
            repository,
            call,
            Method::PATCH,
            &url,
            &[],
            Some(&serde_json::json!({ "body": body })),
        )
        .await?;
        Ok(())
    }

    /// The deployments of `environment` (of commit `sha` when given), newest first: the first
    /// page of 100, filtered again here on what was asked.
    pub async fn deployments(
        &self,
        repository: &str,
        sha: Option<&str>,
        environment: &str,
    ) -> Result<Vec<Deployment>, Failure> {
        let call = "list deployments";
        let url = self.url(&format!("/repos/{repository}/deployments"));
        let mut query = vec![("environment", environment), ("per_page", "100")];
        if let Some(sha) = sha {
            query.insert(0, ("sha", sha));
        }
        let reply = self
            .api(repository, call, Method::GET, &url, &query, None)
            .await?;
        let all: Vec<Deployment> = reply.json(call)?;
        Ok(all
            .into_iter()
            .filter(|d| d.environment == environment && sha.is_none_or(|s| d.sha == s))
            .collect())
    }

    /// Creates a deployment. GitHub answers 201 with it, or 202 when it merged the default
    /// branch into the ref instead (never asked for here): anything but a 201 is refused.
    pub async fn create_deployment(
        &self,
        repository: &str,
        body: &Value,
    ) -> Result<Deployment, Failure> {
        let call = "create deployment";
        let url = self.url(&format!("/repos/{repository}/deployments"));
        let reply = self
            .api(repository, call, Method::POST, &url, &[], Some(body))
            .await?;
        if reply.status != StatusCode::CREATED {
            return Err(Failure::Unexpected {
                call,
                request_id: request_id(&reply.headers),
                problem: format!(
                    "HTTP {} without a deployment: {}",
                    reply.status.as_u16(),
                    crate::failure::error_message(&reply.body)
                ),
            });
        }
        reply.json(call)
    }

    /// Adds a status to a deployment.
    pub async fn create_status(
        &self,
        repository: &str,
        deployment_id: u64,
        body: &Value,
    ) -> Result<(), Failure> {
        let call = "create deployment status";
        let url = self.url(&format!(
            "/repos/{repository}/deployments/{deployment_id}/statuses"
        ));
        self.api(repository, call, Method::POST, &url, &[], Some(body))
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(body: &str, kind: &str, app: Option<u64>) -> IssueComment {
        IssueComment {
            id: 1,
            body: Some(body.into()),
            user: Some(User { kind: kind.into() }),
            performed_via_github_app: app.map(|id| AppRef { id }),
        }
    }

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "link",
            HeaderValue::from_static(
                r#"<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel="next", <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=5>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&headers).as_deref(),
            Some("https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2")
        );
        headers.insert(
            "link",
            HeaderValue::from_static(
                r#"<https://api.github.com/x?page=1>; rel="prev", <https://api.github.com/x?page=1>; rel="first""#,
            ),
        );
        assert_eq!(next_link(&headers), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }

    #[test]
    fn only_a_bot_comment_with_the_marker_is_the_apps_comment() {
        let body = format!("{}\nhello", crate::comment::MARKER);
        assert!(is_own_comment(&comment(&body, "Bot", None), "7"));
        assert!(is_own_comment(&comment(&body, "Bot", Some(7)), "7"));
        assert!(
            !is_own_comment(&comment(&body, "User", None), "7"),
            "a person pasted the marker"
        );
        assert!(
            !is_own_comment(&comment(&body, "Bot", Some(8)), "7"),
            "another App"
        );
        assert!(!is_own_comment(&comment("hello", "Bot", None), "7"));
    }

    #[test]
    fn a_comment_decodes_from_github_json_with_a_null_app() {
        let c: IssueComment = serde_json::from_str(
            r#"{"id": 5, "body": "x", "user": {"login": "kubetempura[bot]", "type": "Bot"}, "performed_via_github_app": null}"#,
        )
        .unwrap();
        assert_eq!(c.id, 5);
        assert_eq!(c.user.unwrap().kind, "Bot");
        assert_eq!(c.performed_via_github_app, None);
    }
}
