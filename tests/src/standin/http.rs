//! The HTTP front: hyper HTTP/1.1 server, URL routing to discovery and resources, content
//! negotiation (JSON, YAML bodies, Table output), fault injection, the request log and the
//! admin endpoints under `/__standin/`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Shared;
use super::discovery;
use super::faults::{FaultRule, RequestRecord};
use super::openapi;
use super::registry::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{DeleteOptions, PatchType, Propagation, State, Writer, meta_str};
use super::table::{IncludeObject, table};
use super::watch::{self, WatchRequest};

/// Response body type: whole or streamed.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

const MAX_BODY: usize = 32 * 1024 * 1024;
const ADMIN_PREFIX: &str = "/__standin/";

/// A body fed by a channel (watch streams).
struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut resp = Response::new(full(v.to_string()));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(err: &ApiError) -> Response<Body> {
    let mut resp = json_response(err.code, &err.to_status());
    if let Some(secs) = err.retry_after
        && let Ok(v) = HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Accept connections until the task is aborted (dropping the JoinSet aborts connections).
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let shared = shared.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let shared = shared.clone();
                            async move { Ok::<_, Infallible>(handle(shared, req).await) }
                        });
                        if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn now_millis() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if path.starts_with(ADMIN_PREFIX) {
        return admin(&shared, req)
            .await
            .unwrap_or_else(|e| error_response(&e));
    }
    let time = now_millis();
    let fault = shared.faults().take(&method, &path);
    let mut faulted = false;
    let resp = match fault {
        Some(action) => {
            if let Some(ms) = action.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            match action.status {
                Some(code) => {
                    faulted = true;
                    let mut err = ApiError::for_code(
                        code,
                        format!("injected fault: {code} for {method} {path}"),
                    );
                    if code == 429 || code == 503 {
                        err.retry_after = Some(action.retry_after);
                    }
                    error_response(&err)
                }
                None => route(&shared, req)
                    .await
                    .unwrap_or_else(|e| error_response(&e)),
            }
        }
        None => route(&shared, req)
            .await
            .unwrap_or_else(|e| error_response(&e)),
    };
    let status = resp.status().as_u16();
    tracing::debug!(%method, %path, %query, status, "request");
    shared.faults().record(RequestRecord {
        method,
        path,
        query,
        status,
        time,
        faulted,
        content_type,
    });
    resp
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| {
            ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!("request body unreadable or too large: {e}"),
            )
        })
}

async fn admin(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_string();
    match (method, path.as_str()) {
        (Method::GET, "/__standin/faults") => {
            Ok(json_response(200, &json!(shared.faults().rules())))
        }
        (Method::POST, "/__standin/faults") => {
            let body = read_body(req).await?;
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("fault rule: {e}")))?;
            let rules: Vec<FaultRule> = if v.is_array() {
                serde_json::from_value(v)
            } else {
                serde_json::from_value(v).map(|r| vec![r])
            }
            .map_err(|e| ApiError::bad_request(format!("fault rule: {e}")))?;
            let mut faults = shared.faults();
            for r in rules {
                faults
                    .add(r)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
            }
            Ok(json_response(201, &json!(faults.rules())))
        }
        (Method::DELETE, "/__standin/faults") => {
            shared.faults().clear();
            Ok(json_response(200, &json!([])))
        }
        (Method::GET, "/__standin/requests") => {
            Ok(json_response(200, &json!(shared.faults().log())))
        }
        (Method::DELETE, "/__standin/requests") => {
            shared.faults().clear_log();
            Ok(json_response(200, &json!([])))
        }
        (Method::POST, "/__standin/compact") => {
            shared.state().compact();
            Ok(json_response(200, &json!({"compacted": true})))
        }
        (_, "/__standin/faults" | "/__standin/requests" | "/__standin/compact") => {
            Err(ApiError::method_not_allowed(req_method_name(&req)))
        }
        _ => Err(ApiError::path_not_found()),
    }
}

fn req_method_name<B>(req: &Request<B>) -> &str {
    req.method().as_str()
}

/// Where a resource request points.
struct Target {
    rt: ResourceType,
    version: String,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_target(
    state: &State,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Target, ApiError> {
    let (namespace, plural, name, sub) = if rest.first() == Some(&"namespaces")
        && rest.len() >= 3
        && state
            .registry
            .lookup(group, version, rest[2])
            .is_some_and(|t| t.namespaced)
    {
        if rest.len() > 5 {
            return Err(ApiError::path_not_found());
        }
        (Some(rest[1].to_string()), rest[2], rest.get(3), rest.get(4))
    } else {
        if rest.len() > 3 {
            return Err(ApiError::path_not_found());
        }
        (None, rest[0], rest.get(1), rest.get(2))
    };
    let rt = state.resource(group, version, plural)?;
    if !rt.namespaced && namespace.is_some() {
        return Err(ApiError::path_not_found());
    }
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::path_not_found());
    }
    let status = match sub {
        None => false,
        Some(&"status") if rt.status_subresource => true,
        Some(_) => return Err(ApiError::path_not_found()),
    };
    Ok(Target {
        rt,
        version: version.to_string(),
        namespace,
        name: name.map(|n| n.to_string()),
        status,
    })
}

fn query_map(q: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(q.as_bytes())
        .into_owned()
        .collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

fn acceptable(accept: &str) -> bool {
    accept.is_empty()
        || accept.split(',').any(|a| {
            let t = a.split(';').next().unwrap_or_default().trim();
            t == "application/json" || t == "*/*" || t == "application/*" || t.is_empty()
        })
}

fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|a| a.contains("as=Table"))
}

fn parse_body(bytes: &[u8], content_type: &str) -> Result<Value, ApiError> {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !matches!(
        media,
        "" | "json" | "yaml" | "application/json" | "application/yaml" | "*/*"
    ) {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml ({media})"
            ),
        ));
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    let v: Value = if content_type.contains("yaml") {
        serde_yaml::from_slice(bytes)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request(format!(
                "the object provided is unrecognized: couldn't decode JSON: {e}"
            ))
        })?
    };
    if !v.is_object() && !v.is_array() {
        return Err(ApiError::bad_request(
            "the object provided is not a JSON object",
        ));
    }
    Ok(v)
}

fn writer(q: &HashMap<String, String>, user_agent: &str) -> Writer {
    let manager = q
        .get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            let prefix = user_agent.split('/').next().unwrap_or_default().trim();
            if prefix.is_empty() {
                "unknown".to_string()
            } else {
                prefix.to_string()
            }
        });
    Writer {
        manager,
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
    }
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let accept = header_str(&req, header::ACCEPT);
    let is_get = req.method() == Method::GET;
    match segs.as_slice() {
        ["version"] if is_get => return Ok(json_response(200, &discovery::version())),
        ["healthz"] | ["readyz"] | ["livez"] if is_get => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(r);
        }
        ["api"] if is_get => {
            return Ok(json_response(
                200,
                &discovery::core_versions(&shared.addr.to_string()),
            ));
        }
        ["apis"] if is_get => {
            return Ok(json_response(
                200,
                &discovery::groups(&shared.state().registry),
            ));
        }
        ["apis", group] if is_get => {
            return discovery::group(&shared.state().registry, group)
                .map(|g| json_response(200, &g))
                .ok_or_else(ApiError::path_not_found);
        }
        ["openapi", "v3"] if is_get => {
            return Ok(json_response(
                200,
                &openapi::index(&shared.state().registry),
            ));
        }
        ["openapi", "v3", "api", version] if is_get => {
            return openapi::group_version(&shared.state().registry, "", version)
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::path_not_found);
        }
        ["openapi", "v3", "apis", group, version] if is_get => {
            return openapi::group_version(&shared.state().registry, group, version)
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::path_not_found);
        }
        ["api"] | ["apis"] | ["apis", _] | ["version"] => {
            return Err(ApiError::method_not_allowed(req.method().as_str()));
        }
        _ => {}
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", version, rest),
        ["apis", group, version, rest @ ..] => (group, version, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    if rest.is_empty() {
        if !is_get {
            return Err(ApiError::method_not_allowed(req.method().as_str()));
        }
        return discovery::resource_list(&shared.state().registry, group, version)
            .map(|l| json_response(200, &l))
            .ok_or_else(ApiError::path_not_found);
    }
    if !acceptable(&accept) {
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: application/json ({accept})"),
        ));
    }
    let target = parse_target(&shared.state(), group, version, rest)?;
    let q = query_map(req.uri().query().unwrap_or_default());
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let user_agent = header_str(&req, header::USER_AGENT);
    let method = req.method().clone();
    let ns = target.namespace.as_deref();
    let rt = &target.rt;
    let version = target.version.as_str();
    match (method, target.name.as_deref()) {
        (Method::GET, Some(name)) => {
            let obj = State::present(rt, version, &shared.state().get(rt, ns, name)?);
            if wants_table(&accept) {
                let rv = meta_str(&obj, "resourceVersion")
                    .unwrap_or_default()
                    .to_string();
                return Ok(json_response(
                    200,
                    &table(rt, &[obj], &rv, include_object(&q)),
                ));
            }
            Ok(json_response(200, &obj))
        }
        (Method::GET, None) => {
            let labels = LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let fields = FieldSelector::parse(
                q.get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            if target.status {
                return Err(ApiError::path_not_found());
            }
            if truthy(&q, "watch") {
                let timeout = q
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or(Duration::from_secs(1800));
                let wr = WatchRequest {
                    rt: rt.clone(),
                    version: version.to_string(),
                    namespace: target.namespace.clone(),
                    labels,
                    fields,
                    start: watch::parse_start(q.get("resourceVersion").map(String::as_str))?,
                    bookmarks: truthy(&q, "allowWatchBookmarks"),
                    send_initial_events: truthy(&q, "sendInitialEvents"),
                    timeout,
                    bookmark_interval: shared.options.bookmark_interval,
                };
                let rx = watch::start(&mut shared.state(), wr);
                let mut resp = Response::new(ChannelBody { rx }.boxed_unsync());
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("no-cache, private"),
                );
                return Ok(resp);
            }
            list(shared, rt, version, ns, &labels, &fields, &q, &accept)
        }
        (Method::POST, None) => {
            let body = parse_body(&read_body(req).await?, &content_type)?;
            let w = writer(&q, &user_agent);
            let obj = shared
                .state()
                .create(&rt.group, version, &rt.plural, ns, body, &w)?;
            Ok(json_response(201, &obj))
        }
        (Method::PUT, Some(name)) => {
            let body = parse_body(&read_body(req).await?, &content_type)?;
            let w = writer(&q, &user_agent);
            let obj = shared
                .state()
                .update(rt, version, ns, name, body, target.status, &w)?;
            Ok(json_response(200, &obj))
        }
        (Method::PATCH, Some(name)) => {
            let ct = content_type
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let patch_type = match ct.as_str() {
                "application/apply-patch+yaml" | "application/apply-patch+cbor" => PatchType::Apply,
                "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
                    PatchType::Merge
                }
                "application/json-patch+json" => PatchType::Json,
                other => return Err(ApiError::unsupported_media_type(other)),
            };
            let force = q.get("force").map(|f| f == "true");
            if patch_type == PatchType::Apply {
                if q.get("fieldManager").is_none_or(|m| m.is_empty()) {
                    return Err(ApiError::invalid_field(
                        "PatchOptions",
                        "meta.k8s.io",
                        "",
                        "fieldManager",
                        "FieldValueRequired",
                        "Required value: is required for apply patch",
                    ));
                }
            } else if force.is_some() {
                return Err(ApiError::invalid_field(
                    "PatchOptions",
                    "meta.k8s.io",
                    "",
                    "force",
                    "FieldValueForbidden",
                    "Forbidden: may not be specified for non-apply patch",
                ));
            }
            let bytes = read_body(req).await?;
            let body = parse_body(
                &bytes,
                if patch_type == PatchType::Apply {
                    "yaml"
                } else {
                    "json"
                },
            )?;
            let w = writer(&q, &user_agent);
            let mut state = shared.state();
            let existed = state.get(rt, ns, name).is_ok();
            let obj = state.patch(
                rt,
                version,
                ns,
                name,
                patch_type,
                body,
                target.status,
                &w,
                force == Some(true),
            )?;
            Ok(json_response(if existed { 200 } else { 201 }, &obj))
        }
        (Method::DELETE, Some(name)) => {
            let bytes = read_body(req).await?;
            let opts = delete_options(&bytes, &q)?;
            let out = shared.state().delete(rt, version, ns, name, &opts)?;
            Ok(json_response(200, &out))
        }
        (Method::DELETE, None) => {
            let bytes = read_body(req).await?;
            let opts = delete_options(&bytes, &q)?;
            let labels = LabelSelector::parse(
                q.get("labelSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let fields = FieldSelector::parse(
                q.get("fieldSelector")
                    .map(String::as_str)
                    .unwrap_or_default(),
            )?;
            let out = shared
                .state()
                .delete_collection(rt, version, ns, &labels, &fields, &opts)?;
            Ok(json_response(200, &out))
        }
        (m, _) => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

fn include_object(q: &HashMap<String, String>) -> IncludeObject {
    match q.get("includeObject").map(String::as_str) {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

#[allow(clippy::too_many_arguments)]
fn list(
    shared: &Shared,
    rt: &ResourceType,
    version: &str,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
    q: &HashMap<String, String>,
    accept: &str,
) -> Result<Response<Body>, ApiError> {
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let cont = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rv, rest) = c
                .split_once(':')
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            let (cns, cname) = rest
                .split_once('/')
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            Some((rv.to_string(), (cns.to_string(), cname.to_string())))
        }
        None => None,
    };
    let state = shared.state();
    let mut items = state.list(rt, ns, labels, fields, cont.as_ref().map(|(_, k)| k));
    let rv = cont
        .as_ref()
        .map(|(rv, _)| rv.clone())
        .unwrap_or_else(|| state.resource_version().to_string());
    drop(state);
    let mut meta = json!({"resourceVersion": rv});
    if let Some(limit) = limit
        && items.len() > limit
    {
        let remaining = items.len() - limit;
        items.truncate(limit);
        if let Some(last) = items.last() {
            let token = format!(
                "{rv}:{}/{}",
                meta_str(last, "namespace").unwrap_or_default(),
                meta_str(last, "name").unwrap_or_default()
            );
            if let Some(m) = meta.as_object_mut() {
                m.insert("continue".into(), json!(token));
                m.insert("remainingItemCount".into(), json!(remaining));
            }
        }
    }
    let items: Vec<Value> = items
        .iter()
        .map(|o| State::present(rt, version, o))
        .collect();
    if wants_table(accept) {
        let mut t = table(rt, &items, &rv, include_object(q));
        if let Some(m) = t.as_object_mut() {
            m.insert("metadata".into(), meta);
        }
        return Ok(json_response(200, &t));
    }
    Ok(json_response(
        200,
        &json!({
            "apiVersion": rt.api_version(version),
            "kind": format!("{}List", rt.kind),
            "metadata": meta,
            "items": items,
        }),
    ))
}

fn delete_options(body: &[u8], q: &HashMap<String, String>) -> Result<DeleteOptions, ApiError> {
    let v: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))?
    };
    let policy = v
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| q.get("propagationPolicy").cloned());
    let orphan = v
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| q.get("orphanDependents").map(|o| o == "true"));
    let propagation = match policy.as_deref() {
        Some("Background") => Some(Propagation::Background),
        Some("Foreground") => Some(Propagation::Foreground),
        Some("Orphan") => Some(Propagation::Orphan),
        Some(other) => {
            return Err(ApiError::invalid_field(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                "propagationPolicy",
                "FieldValueNotSupported",
                &format!(
                    "Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                ),
            ));
        }
        None => match orphan {
            Some(true) => Some(Propagation::Orphan),
            _ => None,
        },
    };
    let dry_run = v
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"))
        || q.get("dryRun").is_some_and(|d| d == "All");
    Ok(DeleteOptions {
        propagation,
        uid: v
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert!(acceptable(""));
        assert!(acceptable(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(acceptable("application/vnd.kubernetes.protobuf,*/*"));
        assert!(!acceptable("application/vnd.kubernetes.protobuf"));
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
    }

    #[test]
    fn delete_options_from_body_or_query() {
        let q = HashMap::new();
        let o = delete_options(
            br#"{"propagationPolicy":"Foreground","preconditions":{"uid":"u"}}"#,
            &q,
        )
        .expect("ok");
        assert_eq!(o.propagation, Some(Propagation::Foreground));
        assert_eq!(o.uid.as_deref(), Some("u"));
        let q: HashMap<String, String> =
            [("propagationPolicy".to_string(), "Orphan".to_string())].into();
        assert_eq!(
            delete_options(b"", &q).expect("ok").propagation,
            Some(Propagation::Orphan)
        );
        let q: HashMap<String, String> =
            [("propagationPolicy".to_string(), "Sideways".to_string())].into();
        assert_eq!(delete_options(b"", &q).map_err(|e| e.code).err(), Some(422));
    }

    #[test]
    fn default_field_manager_comes_from_user_agent() {
        let q = HashMap::new();
        assert_eq!(
            writer(&q, "kubectl/v1.37.1 (linux/amd64)").manager,
            "kubectl"
        );
        let q: HashMap<String, String> = [("fieldManager".to_string(), "me".to_string())].into();
        assert_eq!(writer(&q, "x").manager, "me");
    }
}
