//! The GitHub REST stand-in: it accepts what GitHub's published description allows, refuses and
//! records what it does not, authenticates like GitHub, keeps what a person would see, and
//! injects the failures the notifier must survive. No control plane is needed.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kubetempura_tests::harness::github_api::{
    APP_KEYS_DIR, DeploymentStatus, GitHubStandIn, RateLimit, openapi,
};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const APP_ID: u64 = 424_242;
const REPO: &str = "octo-org/app";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A JWT with `claims`, RS256-signed with the key in `key_file` under the fixtures.
fn jwt(key_file: &str, claims: &Value) -> String {
    let pem = std::fs::read(format!("{APP_KEYS_DIR}/{key_file}")).expect("key fixture");
    let key = EncodingKey::from_rsa_pem(&pem).expect("RSA private key");
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).expect("sign")
}

/// What the notifier sends: issued 60 s ago (GitHub's advice for clock drift), nine minutes left.
fn app_jwt() -> String {
    let claims = json!({ "iat": now() - 60, "exp": now() + 540, "iss": APP_ID.to_string() });
    jwt("test-app-private-key.pem", &claims)
}

struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

/// A client sending the notifier's headers.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(standin: &GitHubStandIn) -> Client {
        let http = kubetempura_tests::harness::http();
        Client {
            http,
            base: standin.url(),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: impl Into<String>,
        auth: &str,
        body: Option<Value>,
    ) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let url = format!("{}{}", self.base, path.into());
        let mut req = (self.http.request(method, url))
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
            .header("user-agent", "kubetempura-notifier-test")
            .header("authorization", auth);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("send");
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    /// A fresh installation token for `REPO`'s installation.
    async fn token(&self) -> String {
        let jwt = format!("Bearer {}", app_jwt());
        let installation = self.call("GET", format!("/repos/{REPO}/installation"), &jwt, None);
        let id = installation.await.body["id"]
            .as_u64()
            .expect("installation id");
        let path = format!("/app/installations/{id}/access_tokens");
        let created = self.call("POST", &path, &jwt, None).await;
        assert_eq!(created.status, 201, "{}", created.body);
        format!("Bearer {}", created.body["token"].as_str().expect("token"))
    }
}

async fn standin() -> (GitHubStandIn, Client) {
    let standin = GitHubStandIn::start_test_app(APP_ID).await;
    standin.install(REPO);
    let client = Client::new(&standin);
    (standin, client)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn deployment_status_and_comment_flow_is_accepted_and_visible_in_state() {
    let (standin, gh) = standin().await;
    let jwt = format!("Bearer {}", app_jwt());
    let installation = gh
        .call("GET", &format!("/repos/{REPO}/installation"), &jwt, None)
        .await;
    assert_eq!(installation.status, 200, "{}", installation.body);
    assert_eq!(installation.body["app_id"], APP_ID);
    assert_eq!(installation.body["account"]["login"], "octo-org");
    let id = installation.body["id"].as_u64().expect("id");
    let path = format!("/app/installations/{id}/access_tokens");
    let created = gh.call("POST", &path, &jwt, None).await;
    assert_eq!(created.status, 201);
    let token = created.body["token"].as_str().expect("token");
    assert!(token.starts_with("ghs_"), "{token}");
    let expires: chrono::DateTime<chrono::Utc> = created.body["expires_at"]
        .as_str()
        .expect("expires_at")
        .parse()
        .expect("RFC 3339");
    let lifetime = expires.timestamp() - now();
    assert!(
        (3590..=3600).contains(&lifetime),
        "token lifetime {lifetime} s"
    );
    let auth = format!("token {token}");

    let sha = "0123456789abcdef0123456789abcdef01234567";
    let list = format!("/repos/{REPO}/deployments?sha={sha}&environment=pr-7&per_page=1");
    assert_eq!(gh.call("GET", &list, &auth, None).await.body, json!([]));
    let deployment = json!({
        "ref": sha, "environment": "pr-7", "transient_environment": true,
        "production_environment": false, "auto_merge": false, "required_contexts": [],
        "description": "Review environment for #7", "payload": { "pr": 7 },
    });
    let path = format!("/repos/{REPO}/deployments");
    let created = gh.call("POST", &path, &auth, Some(deployment)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let deployment_id = created.body["id"].as_u64().expect("deployment id");
    let statuses = format!("/repos/{REPO}/deployments/{deployment_id}/statuses");
    for (state, url) in [
        ("in_progress", ""),
        ("success", "https://pr-7.review.example.com"),
    ] {
        let status = json!({ "state": state, "description": format!("{state} at {sha}"),
            "environment_url": url, "log_url": "https://logs.example.com/pr-7",
            "environment": "pr-7", "auto_inactive": true });
        let created = gh.call("POST", &statuses, &auth, Some(status)).await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert!(header(&created.headers, "location").ends_with(&created.body["id"].to_string()));
    }
    let listed = gh
        .call("GET", &format!("{statuses}?per_page=100"), &auth, None)
        .await;
    assert_eq!(listed.body[0]["state"], "success", "newest first");
    assert_eq!(listed.body[1]["state"], "in_progress");
    assert_eq!(
        gh.call("GET", &list, &auth, None).await.body[0]["id"],
        deployment_id
    );

    let comments = format!("/repos/{REPO}/issues/7/comments");
    let body = json!({ "body": "Deploying `0123456`" });
    let comment = gh.call("POST", &comments, &auth, Some(body)).await;
    assert_eq!(comment.status, 201, "{}", comment.body);
    let comment_path = format!("/repos/{REPO}/issues/comments/{}", comment.body["id"]);
    let edited = json!({ "body": "Ready at https://pr-7.review.example.com" });
    let patched = gh.call("PATCH", &comment_path, &auth, Some(edited)).await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    let listed = gh
        .call(
            "GET",
            &format!("{comments}?per_page=100&page=1"),
            &auth,
            None,
        )
        .await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(1));

    let deployments = standin.deployments();
    let d = &deployments[0];
    assert_eq!(
        (d.id, d.sha.as_str(), d.git_ref.as_str()),
        (deployment_id, sha, sha)
    );
    assert_eq!(
        (d.environment.as_str(), d.transient_environment),
        ("pr-7", true)
    );
    assert!(!d.production_environment && !d.auto_merge);
    assert_eq!(d.required_contexts, Some(vec![]));
    assert_eq!(d.payload, json!({ "pr": 7 }));
    let states: Vec<_> = d.statuses.iter().map(|s| s.state.as_str()).collect();
    assert_eq!(states, ["in_progress", "success"]);
    let success = &d.statuses[1];
    assert_eq!(success.environment_url, "https://pr-7.review.example.com");
    assert_eq!(success.log_url, "https://logs.example.com/pr-7");
    assert_eq!(success.description, format!("success at {sha}"));
    let comments = standin.comments(REPO, 7);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].body, "Ready at https://pr-7.review.example.com");
    assert!(comments[0].updated_at >= comments[0].created_at);

    let log = standin.requests();
    assert_eq!(log.len(), 11);
    assert!(log.iter().all(|r| r.status < 300), "{log:?}");
    let last = log.last().expect("a request");
    assert_eq!(last.operation.as_deref(), Some("issues/list-comments"));
    assert_eq!(
        last.request_id,
        header(&listed.headers, "x-github-request-id")
    );
    for name in ["limit", "remaining", "reset", "used"] {
        let value = header(&listed.headers, &format!("x-ratelimit-{name}"));
        value
            .parse::<u64>()
            .unwrap_or_else(|_| panic!("x-ratelimit-{name}: {value:?}"));
    }
    assert_eq!(header(&listed.headers, "x-ratelimit-used"), "11");
    assert_eq!(header(&listed.headers, "x-ratelimit-resource"), "core");
    standin.assert_no_violations();
}

#[tokio::test]
async fn a_success_status_marks_earlier_deployments_of_the_environment_inactive() {
    let (standin, gh) = standin().await;
    let auth = gh.token().await;
    let deploy = |environment: &str, transient: bool| {
        let body = json!({ "ref": "main", "environment": environment,
                           "transient_environment": transient, "required_contexts": [] });
        gh.call("POST", "/repos/octo-org/app/deployments", &auth, Some(body))
    };
    let status = |id: &Value, state: &str, auto_inactive: bool| {
        let path = format!("/repos/{REPO}/deployments/{id}/statuses");
        let body = json!({ "state": state, "auto_inactive": auto_inactive });
        gh.call("POST", path, &auth, Some(body))
    };
    let states = || -> Vec<Vec<(String, bool)>> {
        let all = standin.deployments();
        let state = |s: &DeploymentStatus| (s.state.clone(), s.automatic);
        all.iter()
            .map(|d| d.statuses.iter().map(state).collect())
            .collect()
    };
    let mut expected: Vec<Vec<(String, bool)>> = Vec::new();
    let listed = |states: &[&str]| -> Vec<(String, bool)> {
        states
            .iter()
            .map(|s| (s.to_string(), *s == "inactive"))
            .collect()
    };
    for (environment, transient, state, auto_inactive) in [
        ("staging", false, "success", true),
        ("staging", true, "success", false),
        ("qa", false, "success", true),
        ("staging", false, "failure", true),
    ] {
        let id = deploy(environment, transient).await.body["id"].clone();
        assert_eq!(status(&id, state, auto_inactive).await.status, 201);
        expected.push(listed(&[state]));
        assert_eq!(
            states(),
            expected,
            "{environment} transient={transient} {state} auto_inactive={auto_inactive} \
             touches no other deployment"
        );
    }
    let last = deploy("staging", false).await.body["id"].clone();
    assert_eq!(status(&last, "success", true).await.status, 201);
    expected[0] = listed(&["success", "inactive"]);
    expected.push(listed(&["success"]));
    assert_eq!(
        states(),
        expected,
        "only earlier non-transient deployments of the environment whose last state is success \
         turn inactive"
    );
    standin.assert_no_violations();
}

#[tokio::test]
async fn requests_the_description_refuses_are_answered_like_github_and_recorded() {
    let (standin, gh) = standin().await;
    let auth = gh.token().await;
    let created = gh
        .call(
            "POST",
            &format!("/repos/{REPO}/deployments"),
            &auth,
            Some(json!({ "ref": "main" })),
        )
        .await;
    let statuses = format!("/repos/{REPO}/deployments/{}/statuses", created.body["id"]);
    let comments = format!("/repos/{REPO}/issues/7/comments");
    let cases: Vec<(&str, String, Option<Value>, u16, &str)> = vec![
        (
            "POST",
            format!("/repos/{REPO}/deployments"),
            Some(json!({ "environment": "pr-7" })),
            422,
            "\"ref\" is a required property",
        ),
        (
            "POST",
            statuses.clone(),
            Some(json!({ "state": "done" })),
            422,
            "\"done\" is not one of",
        ),
        (
            "POST",
            comments.clone(),
            Some(json!({ "body": 7 })),
            422,
            "7 is not of type \"string\"",
        ),
        (
            "POST",
            format!("/repos/{REPO}/deployments"),
            Some(json!({ "ref": "main", "enviroment": "pr-7" })),
            422,
            "'enviroment' was unexpected",
        ),
        (
            "PATCH",
            format!("/repos/{REPO}/issues/comments/1"),
            Some(json!({})),
            422,
            "\"body\" is a required property",
        ),
        (
            "GET",
            format!("{comments}?perpage=5"),
            None,
            422,
            "unknown query parameter `perpage`",
        ),
        (
            "GET",
            format!("{comments}?per_page=many"),
            None,
            422,
            "query parameter `per_page`",
        ),
        (
            "GET",
            format!("/repos/{REPO}/deployments/latest/statuses"),
            None,
            404,
            "path parameter `deployment_id`",
        ),
        (
            "GET",
            format!("/repos/{REPO}/deploymentz"),
            None,
            404,
            "no operation GET",
        ),
        ("DELETE", comments.clone(), None, 404, "no operation DELETE"),
        (
            "POST",
            comments.clone(),
            None,
            422,
            "a JSON request body is required",
        ),
    ];
    for (method, path, body, status, message) in cases {
        let before = standin.violations().len();
        let answer = gh.call(method, &path, &auth, body.clone()).await;
        assert_eq!(
            answer.status, status,
            "{method} {path} {body:?}: {}",
            answer.body
        );
        assert!(answer.body["message"].is_string() && answer.body["documentation_url"].is_string());
        let new = &standin.violations()[before..];
        assert!(
            new.iter()
                .any(|v| v.message.contains(message) && !v.in_response),
            "{method} {path} {body:?}: no violation with {message:?} in {new:#?}"
        );
        assert!(new.iter().all(|v| !v.in_response), "{new:#?}");
    }
    assert_eq!(
        standin.deployments().len(),
        1,
        "refused requests change nothing"
    );
    assert!(standin.comments(REPO, 7).is_empty());

    let before = standin.violations().len();
    let bare = kubetempura_tests::harness::http().get(format!("{}{comments}", standin.url()));
    let answer = bare
        .header("authorization", &auth)
        .send()
        .await
        .expect("send");
    assert_eq!(
        answer.status(),
        403,
        "GitHub refuses a request without User-Agent"
    );
    let messages: Vec<_> = standin.violations()[before..]
        .iter()
        .map(|v| v.message.clone())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(messages[0].contains("User-Agent") && messages[1].contains("Accept"));
    assert!(messages[2].contains("X-GitHub-Api-Version"));
}

#[tokio::test]
async fn app_jwts_github_would_refuse_are_refused_with_its_messages() {
    let (standin, gh) = standin().await;
    let path = format!("/repos/{REPO}/installation");
    let (iat, exp) = (now() - 60, now() + 540);
    let cases = [
        (
            "other-private-key.pem",
            json!({ "iat": iat, "exp": exp, "iss": APP_ID }),
            "A JSON web token could not be decoded",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": iat, "exp": exp, "iss": APP_ID + 1 }),
            "A JSON web token could not be decoded",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": iat, "exp": exp, "iss": "Iv1.abc" }),
            "'Issuer' claim ('iss') must be an Integer",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": iat, "exp": exp }),
            "Missing 'issuer' claim ('iss') in assertion",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": now() - 700, "exp": now() - 100, "iss": APP_ID }),
            "'Expiration time' claim ('exp') must be a numeric value representing the future time \
          at which the assertion expires",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": iat, "exp": now() + 660, "iss": APP_ID }),
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            "test-app-private-key.pem",
            json!({ "iat": now() + 120, "exp": exp, "iss": APP_ID }),
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion \
          was issued",
        ),
    ];
    for (key, claims, message) in cases {
        let answer = gh
            .call("GET", &path, &format!("Bearer {}", jwt(key, &claims)), None)
            .await;
        assert_eq!(answer.status, 401, "{key} {claims}: {}", answer.body);
        assert_eq!(answer.body["message"], message, "{key} {claims}");
    }
    let garbage = gh.call("GET", &path, "Bearer not.a.jwt", None).await;
    assert_eq!(
        garbage.body["message"],
        "A JSON web token could not be decoded"
    );
    let numeric_iss = json!({ "iat": iat, "exp": exp, "iss": APP_ID });
    let numeric_iss = format!("Bearer {}", jwt("test-app-private-key.pem", &numeric_iss));
    assert_eq!(gh.call("GET", &path, &numeric_iss, None).await.status, 200);
    let string_iss = format!("Bearer {}", app_jwt());
    assert_eq!(gh.call("GET", &path, &string_iss, None).await.status, 200);
    let unknown = gh.call(
        "GET",
        "/repos/octo-org/elsewhere/installation",
        &string_iss,
        None,
    );
    assert_eq!(unknown.await.status, 404, "the App is not installed there");
    let no_installation = gh.call(
        "POST",
        "/app/installations/1/access_tokens",
        &string_iss,
        None,
    );
    assert_eq!(no_installation.await.status, 404);
    let on_repo_route = gh.call(
        "GET",
        format!("/repos/{REPO}/issues/7/comments"),
        &string_iss,
        None,
    );
    let on_repo_route = on_repo_route.await;
    assert_eq!(
        (on_repo_route.status, &on_repo_route.body["message"]),
        (401, &json!("Bad credentials"))
    );
    standin.assert_no_violations();
}

#[tokio::test]
async fn installation_tokens_expire_and_only_open_their_installations_repositories() {
    let (standin, gh) = standin().await;
    let comments = format!("/repos/{REPO}/issues/7/comments");
    let auth = gh.token().await;
    assert_eq!(gh.call("GET", &comments, &auth, None).await.status, 200);
    standin.expire_tokens();
    let expired = gh.call("GET", &comments, &auth, None).await;
    assert_eq!(
        (expired.status, &expired.body["message"]),
        (401, &json!("Bad credentials"))
    );
    let fresh = gh.token().await;
    assert_eq!(gh.call("GET", &comments, &fresh, None).await.status, 200);

    standin.set_token_lifetime(Duration::ZERO);
    let stillborn = gh.token().await;
    assert_eq!(
        gh.call("GET", &comments, &stillborn, None).await.status,
        401
    );
    let unknown = gh.call("GET", &comments, "token ghs_unknown", None).await;
    assert_eq!(unknown.status, 401);

    assert_eq!(
        standin.install("octo-org/other"),
        standin.install(REPO),
        "one per owner"
    );
    let foreign = standin.install("someone-else/app");
    assert_ne!(foreign, standin.install(REPO));
    let theirs = gh
        .call(
            "GET",
            "/repos/someone-else/app/issues/7/comments",
            &fresh,
            None,
        )
        .await;
    assert_eq!(
        theirs.status, 404,
        "a token opens only its installation's repositories"
    );
    standin.assert_no_violations();
}

#[tokio::test]
async fn injected_rate_limits_and_failures_carry_githubs_headers() {
    let (standin, gh) = standin().await;
    let auth = gh.token().await;
    let comments = format!("/repos/{REPO}/issues/7/comments");
    standin.rate_limit_next(1, RateLimit::Primary);
    standin.rate_limit_next(1, RateLimit::Secondary { retry_after: 7 });
    standin.rate_limit_next(1, RateLimit::TooManyRequests { retry_after: 3 });
    standin.fail_next(2, 502);

    let primary = gh.call("GET", &comments, &auth, None).await;
    assert_eq!(primary.status, 403);
    assert_eq!(header(&primary.headers, "x-ratelimit-remaining"), "0");
    let reset: i64 = header(&primary.headers, "x-ratelimit-reset")
        .parse()
        .expect("reset");
    assert!(reset > now(), "reset {reset} is in the future");
    assert!(
        primary.body["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("API rate limit exceeded"))
    );
    let secondary = gh.call("GET", &comments, &auth, None).await;
    assert_eq!(
        (secondary.status, header(&secondary.headers, "retry-after")),
        (403, "7")
    );
    let message = secondary.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("You have exceeded a secondary rate limit"),
        "{message}"
    );
    let too_many = gh.call("GET", &comments, &auth, None).await;
    assert_eq!(
        (too_many.status, header(&too_many.headers, "retry-after")),
        (429, "3")
    );
    for _ in 0..2 {
        assert_eq!(gh.call("GET", &comments, &auth, None).await.status, 502);
    }
    let recovered = gh.call("GET", &comments, &auth, None).await;
    assert_eq!(recovered.status, 200);
    assert_ne!(header(&recovered.headers, "x-ratelimit-remaining"), "0");

    standin.deny(REPO);
    let denied = gh
        .call("POST", &comments, &auth, Some(json!({ "body": "hi" })))
        .await;
    assert_eq!(denied.status, 403);
    assert_eq!(
        denied.body["message"],
        "Resource not accessible by integration"
    );
    assert!(standin.comments(REPO, 7).is_empty());
    let statuses: Vec<u16> = standin.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses[2..], [403, 403, 429, 502, 502, 200, 403]);
    standin.assert_no_violations();
}

#[tokio::test]
async fn comment_lists_page_with_githubs_link_header() {
    let (standin, gh) = standin().await;
    let auth = gh.token().await;
    let comments = format!("/repos/{REPO}/issues/7/comments");
    for i in 0..5 {
        let body = json!({ "body": format!("comment {i}") });
        assert_eq!(
            gh.call("POST", &comments, &auth, Some(body)).await.status,
            201
        );
    }
    let first = gh
        .call("GET", &format!("{comments}?per_page=2"), &auth, None)
        .await;
    assert_eq!(first.body.as_array().map(Vec::len), Some(2));
    assert_eq!(first.body[0]["body"], "comment 0", "oldest first");
    let base = format!("{}{comments}", standin.url());
    assert_eq!(
        header(&first.headers, "link"),
        format!(
            "<{base}?per_page=2&page=2>; rel=\"next\", <{base}?per_page=2&page=3>; rel=\"last\""
        )
    );
    let last = gh
        .call("GET", &format!("{comments}?per_page=2&page=3"), &auth, None)
        .await;
    assert_eq!(last.body[0]["body"], "comment 4");
    assert_eq!(
        header(&last.headers, "link"),
        format!(
            "<{base}?per_page=2&page=2>; rel=\"prev\", <{base}?per_page=2&page=1>; rel=\"first\""
        )
    );
    let all = gh.call("GET", &comments, &auth, None).await;
    assert!(all.headers.get("link").is_none(), "one page has no Link");
    standin.assert_no_violations();
}

#[tokio::test]
async fn the_response_check_refuses_what_github_would_not_send() {
    let (standin, gh) = standin().await;
    let auth = gh.token().await;
    let path = format!("/repos/{REPO}/deployments");
    let created = gh
        .call("POST", &path, &auth, Some(json!({ "ref": "main" })))
        .await;
    standin.assert_no_violations();
    let description = openapi::description();
    let op = description
        .find("POST", &path)
        .expect("create-deployment is described");
    assert_eq!(op.id, "repos/create-deployment");
    assert_eq!(
        description.check_response(&op, 201, &created.body),
        Vec::<String>::new()
    );
    let mut missing = created.body.clone();
    missing.as_object_mut().expect("object").remove("sha");
    let mut invented = created.body.clone();
    invented["deployed_by"] = json!("kubetempura");
    let mut mistyped = created.body.clone();
    mistyped["id"] = json!("1001");
    for (what, body) in [
        ("missing sha", missing),
        ("invented field", invented),
        ("string id", mistyped),
    ] {
        assert!(
            !description.check_response(&op, 201, &body).is_empty(),
            "{what} passed"
        );
    }
    let problems = description.check_response(&op, 200, &created.body);
    assert!(
        problems[0].contains("status 200 is not described"),
        "{problems:?}"
    );
    let error = json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest" });
    assert!(
        description.check_response(&op, 401, &error).is_empty(),
        "any route may answer 401"
    );
    assert!(
        !description
            .check_response(&op, 401, &json!({ "error": "no" }))
            .is_empty()
    );
}

#[test]
fn the_description_is_the_pinned_release_and_loads_once() {
    let package: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../package.json"))
            .expect("package.json"),
    )
    .expect("package.json is JSON");
    let description = openapi::description();
    assert_eq!(
        package["devDependencies"]["@octokit/openapi"],
        description.version()
    );
    assert!(std::ptr::eq(description, openapi::description()));
    eprintln!(
        "GitHub description {} loaded in {:?}",
        description.version(),
        description.load_time
    );
}
