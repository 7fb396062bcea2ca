//! The load benchmark: drives the whole local chain (signed POST to the webhook function under
//! `cargo lambda watch` -> SQS FIFO emulator -> `kubetempura run` -> kube-apiserver) with
//! many pull requests and measures, in one run:
//!
//! - latency from the moment a delivery is POSTed (or, with `--direct`, sent to SQS) to the
//!   moment the API server holds the last object of that event, observed by watches in this
//!   process: an `opened` event is applied when the PR's Deployment runs its image *and* its
//!   Service exists; a `synchronize` when the Deployment runs the pushed image (the Service
//!   does not change, so the API server reports nothing for it); a `closed` when both the
//!   Deployment and the Service are gone. A later image also completes earlier pushes of the
//!   same PR that were overtaken (they are never lost, only superseded);
//! - sustained events per second: events / (last event applied - first event sent);
//! - the applier's peak RSS (`VmHWM` of `/proc/<pid>/status`, every replica);
//! - Kubernetes API requests per event, from the fault proxy's request log between the first
//!   send and the queue being drained (every message deleted). Counted: every request except
//!   watch streams (`GET ...?watch=true`, long-lived) and this harness's own requests (its
//!   watches and their lists, recognisable by their `labelSelector`; the applier never sends
//!   one). So the count is: writes (apply PATCH, POST, DELETE), discovery, GETs of the applier.
//!
//! The budget it is compared with is "objects of the event + 3" (the `PR` object, its status,
//! the Kubernetes Event) — 5 per event for the sample ReviewApp (2 objects applied or deleted).
//!
//! With `--fanout` the function publishes to an SNS FIFO topic (`TOPIC_ARN`) and two appliers,
//! standing for two clusters, each read their own queue subscribed to it (the filter policies of
//! tests/fixtures/fanout/appliers.json, both matching the sample repository) and watch a
//! namespace of their own: one report per cluster, latency from the POST to that cluster's
//! objects.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::signature::sign;
use tokio::sync::{Semaphore, oneshot};

use crate::harness::applier::ApplierProcess;
use crate::harness::faults::RequestRecord;
use crate::harness::stack::{SECRET, Stack, StackOptions, workspace_file};

/// Repository of the sample ReviewApp (infra/examples/reviewapp-sample.yaml).
pub const REPO: &str = "https://github.com/mercari/not-exists";
/// The sample ReviewApp's name; its objects are `<name>-pr<N>`.
pub const REVIEWAPP: &str = "reviewapp-sample";
/// Objects the sample ReviewApp renders per pull request (Deployment, Service).
pub const OBJECTS_PER_PR: usize = 2;
/// The label selector of this harness's watches (the applier never sends a selector).
const SELECTOR: &str = "kubetempura.mercari.com/reviewapp=reviewapp-sample";

/// Load benchmark of the whole local chain: webhook function -> SQS -> applier -> kube-apiserver.
///
/// Sends, per run, N pull requests x (opened, M synchronize, closed) at a fixed rate, and prints
/// p50/p95/p99 latency from POST to the last object applied (seen by watches on the API server),
/// sustained events/s, the applier's peak RSS and Kubernetes API requests per event. Without
/// --replicas it runs once with one applier and once with three on the same queue.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "loadbench")]
pub struct Args {
    /// Open pull requests per run.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub prs: u32,
    /// Pushes (synchronize events) per pull request, between its opened and its closed event.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=4000))]
    pub pushes: u32,
    /// Events sent per second; 0 sends as fast as possible (bounded by --max-in-flight).
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Applier replicas on the same queue (default: one run with 1, then one with 3).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub replicas: Option<u8>,
    /// Send events straight to the SQS queue (as the function would) instead of POSTing signed
    /// deliveries to the webhook function; for when the function is the bottleneck.
    #[arg(long)]
    pub direct: bool,
    /// Separate mode: open this many pull requests, wait until every one is applied, and
    /// report the applier's peak RSS with that many live environments (no pushes, no closes).
    #[arg(long)]
    pub live: Option<u32>,
    /// Most deliveries in flight at once (matters with --rate 0).
    #[arg(long, default_value_t = 32)]
    pub max_in_flight: usize,
    /// Give up waiting for the cluster to catch up after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    /// Extra `kubetempura run` argument (repeatable), e.g. `--applier-arg=--concurrency=16`.
    #[arg(long = "applier-arg", allow_hyphen_values = true)]
    pub applier_args: Vec<String>,
    /// Fan-out mode: the function publishes to an SNS FIFO topic; two appliers (two clusters:
    /// two namespaces) each read their own queue subscribed to it; one report per cluster.
    #[arg(long, conflicts_with_all = ["direct", "live", "replicas"])]
    pub fanout: bool,
}

/// The appliers of `--fanout`, named as in tests/fixtures/fanout/appliers.json.
pub const FANOUT_CLUSTERS: [&str; 2] = ["cluster-a", "cluster-b"];

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum LoadbenchError {
    /// `--rate` is negative or not a number.
    #[error("--rate must be 0 or a positive number of events per second, got {0}")]
    Rate(f64),
    /// The cluster did not reach the expected state in time.
    #[error(
        "timed out after {0:?}: {1} of the events were never seen applied (is the applier running?)"
    )]
    Timeout(Duration, usize),
    /// Reading the applier's memory failed.
    #[error("cannot read /proc/{pid}/status")]
    Proc {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// The kind of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Opened,
    Pushed,
    Closed,
}

/// One scheduled event: pull request `pr`, `index`-th event of that pull request.
#[derive(Debug, Clone, Copy)]
struct Planned {
    pr: u32,
    index: u32,
    kind: Kind,
}

/// The SHA of event `index` of pull request `pr`: its first 7 characters (the image tag) encode
/// both, so an observed image names the event it came from.
pub fn sha_for(pr: u32, index: u32) -> String {
    format!("{pr:04x}{index:03x}{:033x}", 0xabcdef_u32)
}

/// The image the sample ReviewApp renders for event `index` of pull request `pr`.
pub fn image_for(pr: u32, index: u32) -> String {
    format!(
        "ghcr.io/stefanprodan/podinfo:pr{pr}-{}",
        &sha_for(pr, index)[..7]
    )
}

/// The event index encoded in an image rendered by [`image_for`].
pub fn index_of_image(image: &str) -> Option<u32> {
    let tag = image.rsplit('-').next()?;
    u32::from_str_radix(tag.get(4..7)?, 16).ok()
}

/// Events of a run in sending order: every PR opened, then round after round of one push to
/// each, then every PR closed — so consecutive events of one PR are `prs` events apart.
fn plan(prs: u32, pushes: u32, close: bool) -> Vec<Planned> {
    let mut out = Vec::new();
    let rounds = if close { pushes + 2 } else { 1 };
    for round in 0..rounds {
        let kind = match round {
            0 => Kind::Opened,
            r if close && r == pushes + 1 => Kind::Closed,
            _ => Kind::Pushed,
        };
        for pr in 1..=prs {
            out.push(Planned {
                pr,
                index: round,
                kind,
            });
        }
    }
    out
}

fn delivery(p: Planned, pushes: u32) -> Delivery {
    let sha_index = match p.kind {
        // A close carries the last pushed head.
        Kind::Closed => pushes,
        _ => p.index,
    };
    let action = match p.kind {
        Kind::Opened => "opened",
        Kind::Pushed => "synchronize",
        Kind::Closed => "closed",
    };
    let mut d = Delivery::new(REPO, u64::from(p.pr), &sha_for(p.pr, sha_index), action);
    d.branch = format!("feature-{}", p.pr);
    // Strictly increasing per PR, so no event is skipped as stale.
    d.updated_at = Utc
        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::seconds(i64::from(p.index));
    d
}

/// What the watches saw of one pull request's objects.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// First time the Deployment ran the image of each event index.
    image: HashMap<u32, Instant>,
    service: Option<Instant>,
    deployment_present: bool,
    service_present: bool,
    deployment_gone: Option<Instant>,
    service_gone: Option<Instant>,
}

impl Seen {
    /// When the Deployment first ran the image of event `index` or of a later event.
    fn reached(&self, index: u32) -> Option<Instant> {
        self.image
            .iter()
            .filter(|(i, _)| **i >= index)
            .map(|(_, t)| *t)
            .min()
    }

    fn applied(&self, p: Planned) -> Option<Instant> {
        match p.kind {
            Kind::Opened => Some(self.reached(0)?.max(self.service?)),
            Kind::Pushed => self.reached(p.index),
            Kind::Closed => Some(self.deployment_gone?.max(self.service_gone?)),
        }
    }
}

type Observed = Arc<Mutex<HashMap<u32, Seen>>>;

fn lock(o: &Observed) -> std::sync::MutexGuard<'_, HashMap<u32, Seen>> {
    o.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pr_label<K: ResourceExt>(obj: &K) -> Option<u32> {
    obj.labels().get("kubetempura.mercari.com/pr")?.parse().ok()
}

fn deployment_image(d: &DynamicObject) -> Option<&str> {
    d.data["spec"]["template"]["spec"]["containers"][0]["image"].as_str()
}

/// Watches one kind, calling `present(obj, now)` for every object that exists and
/// `gone(pr, now)` for every one deleted (also when a re-list shows it missing).
fn spawn_watch<K, P, G>(
    api: Api<K>,
    observed: Observed,
    synced: Arc<std::sync::atomic::AtomicUsize>,
    present: P,
    gone: G,
) -> tokio::task::JoinHandle<()>
where
    K: kube::Resource
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
    P: Fn(&mut Seen, &K, Instant) + Send + 'static,
    G: Fn(&mut Seen, Instant) + Send + 'static,
{
    tokio::spawn(async move {
        let config = watcher::Config::default().labels(SELECTOR);
        let mut stream = watcher(api, config).default_backoff().boxed();
        let mut live: HashSet<u32> = HashSet::new();
        let mut relisted: HashSet<u32> = HashSet::new();
        while let Some(ev) = stream.next().await {
            let now = Instant::now();
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::warn!(error = %e, "harness watch error; retrying with backoff");
                    continue;
                }
            };
            let mut seen = lock(&observed);
            match ev {
                watcher::Event::Init => relisted.clear(),
                watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                    if let Some(pr) = pr_label(&obj) {
                        live.insert(pr);
                        relisted.insert(pr);
                        present(seen.entry(pr).or_default(), &obj, now);
                    }
                }
                watcher::Event::InitDone => {
                    synced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    for pr in live.difference(&relisted) {
                        gone(seen.entry(*pr).or_default(), now);
                    }
                    live = std::mem::take(&mut relisted);
                }
                watcher::Event::Delete(obj) => {
                    if let Some(pr) = pr_label(&obj) {
                        live.remove(&pr);
                        gone(seen.entry(pr).or_default(), now);
                    }
                }
            }
        }
    })
}

/// The harness's watches; they stop when this is dropped.
struct Watches {
    observed: Observed,
    /// How many initial lists completed (each watch adds one per (re)list).
    synced: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the Deployment and Service watches (see [`wait_watches`] for when they are open).
fn watch_objects(client: &Client, ns: &str) -> Watches {
    let observed: Observed = Arc::default();
    let synced: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let deployments = spawn_watch(
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &ApiResource::erase::<Deployment>(&()),
        ),
        observed.clone(),
        synced.clone(),
        |s, d, now| {
            s.deployment_present = true;
            if let Some(i) = deployment_image(d).and_then(index_of_image) {
                s.image.entry(i).or_insert(now);
            }
        },
        |s, now| {
            if s.deployment_present {
                s.deployment_present = false;
                s.deployment_gone.get_or_insert(now);
            }
        },
    );
    let services = spawn_watch(
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &ApiResource::erase::<Service>(&()),
        ),
        observed.clone(),
        synced.clone(),
        |s, _, now| {
            s.service_present = true;
            s.service.get_or_insert(now);
        },
        |s, now| {
            if s.service_present {
                s.service_present = false;
                s.service_gone.get_or_insert(now);
            }
        },
    );
    Watches {
        observed,
        synced,
        tasks: vec![deployments, services],
    }
}

/// Waits until both harness watches have listed their kind (their watch streams follow).
async fn wait_watches(watches: &Watches) {
    crate::harness::wait_for(
        "the harness's Deployment and Service watches",
        Duration::from_secs(30),
        || async { (watches.synced.load(std::sync::atomic::Ordering::SeqCst) >= 2).then_some(()) },
    )
    .await;
}

/// The result of one run.
#[derive(Debug, Clone)]
pub struct Report {
    pub label: String,
    pub replicas: u8,
    pub direct: bool,
    /// Through the SNS topic to a queue per cluster (`--fanout`).
    pub fanout: bool,
    pub rate: f64,
    pub events: usize,
    pub applied: usize,
    pub failed_sends: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// POST (or SendMessage) round trip, p50 and p99.
    pub send_p50_ms: f64,
    pub send_p99_ms: f64,
    /// Events / (last sent - first sent).
    pub offered_per_s: f64,
    /// Events / (last applied - first sent).
    pub sustained_per_s: f64,
    pub wall_s: f64,
    /// VmHWM per replica, KiB.
    pub peak_rss_kib: Vec<u64>,
    /// VmRSS per replica at the end, KiB.
    pub rss_kib: Vec<u64>,
    /// Counted Kubernetes API requests (see the module docs).
    pub api_requests: usize,
    /// Watch requests (all clients) and the harness's own requests, not counted.
    pub watch_requests: usize,
    pub harness_requests: usize,
    /// The budget: objects applied or deleted per event + 3, summed.
    pub api_budget: usize,
    /// Counted requests by "METHOD resource[/subresource] status".
    pub breakdown: BTreeMap<String, usize>,
    /// The appliers' own view (from /metrics, summed over replicas): mean age of a message
    /// when its processing starts (queue wait, including the emulator's long-poll quantum),
    /// and mean time to apply one environment's objects.
    pub message_age_mean_ms: f64,
    pub apply_mean_ms: f64,
    /// `messages_acknowledged` and `messages_failed` samples, summed over replicas.
    pub outcomes: BTreeMap<String, f64>,
    /// CPU seconds used during the run by each process of the local system (see [`cpu_used`]).
    pub cpu_s: BTreeMap<String, f64>,
}

impl Report {
    pub fn api_per_event(&self) -> f64 {
        self.api_requests as f64 / self.events.max(1) as f64
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `VmHWM` and `VmRSS` of a process, KiB.
pub fn memory_kib(pid: u32) -> Result<(u64, u64), LoadbenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|source| LoadbenchError::Proc { pid, source })?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

/// Sums, over replicas, every sample of the metrics whose name starts with one of `prefixes`.
async fn scrape(appliers: &[&ApplierProcess], prefixes: &[&str]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for a in appliers {
        let text = a.metrics().await;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((name, value)) = line.rsplit_once(' ')
                && prefixes.iter().any(|p| name.starts_with(p))
                && let Ok(v) = value.trim().parse::<f64>()
            {
                *out.entry(name.to_owned()).or_default() += v;
            }
        }
    }
    out
}

/// CPU time (user + system, clock ticks) of this process and every descendant, by pid, with
/// the command name.
fn cpu_snapshot() -> HashMap<u32, (String, u64)> {
    let mut all: HashMap<u32, (String, u32, u64)> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let num = |i: usize| rest.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let ppid = u32::try_from(num(1)).unwrap_or(0);
        all.insert(pid, (comm, ppid, num(11) + num(12)));
    }
    let me = std::process::id();
    let is_ours = |mut pid: u32| {
        for _ in 0..64 {
            if pid == me {
                return true;
            }
            match all.get(&pid) {
                Some((_, ppid, _)) if *ppid != 0 => pid = *ppid,
                _ => return false,
            }
        }
        false
    };
    all.iter()
        .filter(|(pid, _)| is_ours(**pid))
        .map(|(pid, (comm, _, ticks))| (*pid, (comm.clone(), *ticks)))
        .collect()
}

/// CPU seconds used between two snapshots, by command name (clock ticks of 1/100 s, Linux's
/// USER_HZ). The control plane runs in its own process (kube-controlplane).
fn cpu_used(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for (pid, (comm, ticks)) in after {
        let base = before.get(pid).map_or(0, |(_, t)| *t);
        *out.entry(comm.clone()).or_default() += ticks.saturating_sub(base) as f64 / 100.0;
    }
    out.retain(|_, v| *v > 0.0);
    out
}

/// `METHOD resource[/sub]` of a request path, or `METHOD discovery` for the rest.
fn resource_of(r: &RequestRecord) -> String {
    let segs: Vec<&str> = r.path.split('/').filter(|s| !s.is_empty()).collect();
    let res = match segs.iter().position(|s| *s == "namespaces") {
        Some(i) if segs.len() > i + 2 => {
            let mut res = segs[i + 2].to_owned();
            if let Some(sub) = segs.get(i + 4) {
                res.push('/');
                res.push_str(sub);
            }
            res
        }
        _ => "discovery/cluster-scoped".to_owned(),
    };
    format!("{} {res} {}", r.method, r.status)
}

struct Counted {
    api: usize,
    watch: usize,
    harness: usize,
    breakdown: BTreeMap<String, usize>,
}

fn count_requests(log: &[RequestRecord]) -> Counted {
    let mut c = Counted {
        api: 0,
        watch: 0,
        harness: 0,
        breakdown: BTreeMap::new(),
    };
    for r in log {
        if r.method == "GET" && r.query.contains("labelSelector") {
            c.harness += 1;
        } else if r.method == "GET"
            && (r.query.contains("watch=true") || r.query.contains("watch=1"))
        {
            c.watch += 1;
        } else {
            c.api += 1;
            *c.breakdown.entry(resource_of(r)).or_default() += 1;
        }
    }
    c
}

/// Starts the stack (without an applier) and `replicas` appliers on its queue.
async fn start(args: &Args, replicas: u8, queue: &str) -> (Stack, Vec<ApplierProcess>) {
    let mut applier_args = StackOptions::default().applier_args;
    applier_args.extend(args.applier_args.iter().cloned());
    let stack = Stack::start(StackOptions {
        queue: queue.into(),
        function: !args.direct,
        applier: false,
        manifests: vec![workspace_file("infra/examples/reviewapp-sample.yaml")],
        applier_args,
        // Long enough that a busy applier never sees its own message redelivered.
        visibility_timeout_secs: 120,
        ..StackOptions::default()
    })
    .await;
    let mut appliers = Vec::new();
    for _ in 0..replicas {
        appliers.push(
            ApplierProcess::start(
                &stack.queues.url,
                &stack.applier_kubeconfig,
                &stack.applier_env(),
                &stack.applier_args(),
            )
            .await,
        );
    }
    (stack, appliers)
}

/// Sends one event through the function (signed POST) or straight to the queue; true on 2xx.
async fn send(stack: &Stack, http: &reqwest::Client, direct: bool, d: &Delivery, id: &str) -> bool {
    if direct {
        stack.enqueue(d, id).await;
        return true;
    }
    let Some(function) = stack.function.as_ref() else {
        return false;
    };
    let Ok(body) = d.payload() else { return false };
    let resp = http
        .post(&function.url)
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/kubetempura-loadbench")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), &body))
        .body(body)
        .timeout(Duration::from_secs(60))
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => true,
        Ok(r) => {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            eprintln!("delivery {id}: HTTP {status} {text}");
            false
        }
        Err(e) => {
            eprintln!("delivery {id}: {e}");
            false
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct SendTimes {
    start: Option<Instant>,
    end: Option<Instant>,
    ok: bool,
}

/// Sends `events` at `rate` per second (0: as fast as `max_in_flight` allows), keeping each
/// PR's events in order: an event is sent only after the previous one of its PR was accepted.
async fn send_all(
    stack: &Arc<Stack>,
    events: &[Planned],
    args: &Args,
    run: &str,
) -> Vec<SendTimes> {
    let http = crate::harness::http();
    let limit = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let times: Arc<Mutex<Vec<SendTimes>>> =
        Arc::new(Mutex::new(vec![SendTimes::default(); events.len()]));
    let mut previous: HashMap<u32, oneshot::Receiver<()>> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    let begin = tokio::time::Instant::now();
    for (i, p) in events.iter().copied().enumerate() {
        if args.rate > 0.0 {
            tokio::time::sleep_until(begin + Duration::from_secs_f64(i as f64 / args.rate)).await;
        }
        let permit = limit.clone().acquire_owned().await;
        let (done_tx, done_rx) = oneshot::channel();
        let before = previous.insert(p.pr, done_rx);
        let (stack, http, times) = (stack.clone(), http.clone(), times.clone());
        let d = delivery(p, args.pushes);
        let id = format!("{run}-pr{}-{}", p.pr, p.index);
        let direct = args.direct;
        tasks.spawn(async move {
            if let Some(before) = before {
                let _ = before.await;
            }
            let start = Instant::now();
            let ok = send(&stack, &http, direct, &d, &id).await;
            let end = Instant::now();
            times.lock().unwrap_or_else(PoisonError::into_inner)[i] = SendTimes {
                start: Some(start),
                end: Some(end),
                ok,
            };
            let _ = done_tx.send(());
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    times.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Waits until every event was seen applied (or the deadline); returns how many were not.
async fn wait_applied(
    observed: &Observed,
    events: &[Planned],
    sent: &[SendTimes],
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let missing = {
            let seen = lock(observed);
            events
                .iter()
                .zip(sent)
                .filter(|(p, s)| s.ok && seen.get(&p.pr).and_then(|x| x.applied(**p)).is_none())
                .count()
        };
        if missing == 0 || Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the queue holds no message (every one processed and deleted).
async fn wait_drained(stack: &Stack, queue_url: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while stack.sqs.depth(queue_url).await != (0, 0) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn check_rate(args: &Args) -> Result<(), LoadbenchError> {
    if args.rate >= 0.0 && args.rate.is_finite() {
        Ok(())
    } else {
        Err(LoadbenchError::Rate(args.rate))
    }
}

/// One measured run: start the system, send, wait, measure, stop.
pub async fn run_once(
    args: &Args,
    replicas: u8,
    live: Option<u32>,
) -> Result<Report, LoadbenchError> {
    check_rate(args)?;
    let label = match live {
        Some(n) => format!("live-{n}-r{replicas}"),
        None => format!("load-r{replicas}"),
    };
    let queue = format!("loadbench-{label}-{}", std::process::id());
    eprintln!("[{label}] starting the stack ({replicas} applier replica(s))");
    let (stack, appliers) = start(args, replicas, &queue).await;
    let watches = watch_objects(&stack.client, &stack.ns);
    wait_watches(&watches).await;
    let events = match live {
        Some(n) => plan(n, 0, false),
        None => plan(args.prs, args.pushes, true),
    };
    stack.proxy.clear_requests();
    let cpu_before = cpu_snapshot();
    let stack = Arc::new(stack);
    let sent = send_and_report(&stack, &events, args, &label).await;
    let timeout = Duration::from_secs(args.timeout_secs);
    let missing = wait_applied(&watches.observed, &events, &sent, timeout).await;
    wait_drained(&stack, &stack.queues.url, Duration::from_secs(60)).await;
    let run = Run {
        label,
        replicas,
        fanout: false,
        args,
        events: &events,
        sent: &sent,
        cpu: cpu_used(&cpu_before, &cpu_snapshot()),
    };
    let appliers_ref: Vec<&ApplierProcess> = appliers.iter().collect();
    let report = measure(
        run,
        &watches.observed,
        &appliers_ref,
        &stack.proxy.requests(),
    )
    .await?;
    drop(watches);
    drop(appliers);
    finish(vec![report], missing, timeout).map(|mut r| r.remove(0))
}

/// Sends every event (see [`send_all`]), saying so on stderr.
async fn send_and_report(
    stack: &Arc<Stack>,
    events: &[Planned],
    args: &Args,
    label: &str,
) -> Vec<SendTimes> {
    eprintln!(
        "[{label}] sending {} events at {}",
        events.len(),
        rate_text(args.rate)
    );
    let sent = send_all(stack, events, args, label).await;
    eprintln!("[{label}] all sent; waiting for the cluster");
    sent
}

/// The reports, or the timeout (printing what was measured) when events were never applied.
fn finish(
    reports: Vec<Report>,
    missing: usize,
    timeout: Duration,
) -> Result<Vec<Report>, LoadbenchError> {
    if missing > 0 {
        eprintln!("{}", render(&reports));
        return Err(LoadbenchError::Timeout(timeout, missing));
    }
    Ok(reports)
}

/// The fan-out run (`--fanout`): one webhook, a topic, a queue, an applier and a namespace per
/// cluster; one report per cluster.
pub async fn run_fanout(args: &Args) -> Result<Vec<Report>, LoadbenchError> {
    check_rate(args)?;
    let label = "fanout";
    let policies = crate::harness::fanout::terraform_filter_policies();
    let mut applier_args = StackOptions::default().applier_args;
    applier_args.extend(args.applier_args.iter().cloned());
    let sample = workspace_file("infra/examples/reviewapp-sample.yaml");
    eprintln!("[{label}] starting the stack (a topic, two queues, two appliers)");
    let stack = Stack::start(StackOptions {
        queue: format!("loadbench-{label}-{}", std::process::id()),
        function: true,
        applier: false,
        manifests: vec![sample.clone()],
        applier_args,
        visibility_timeout_secs: 120,
        fanout: FANOUT_CLUSTERS
            .iter()
            .map(|name| ((*name).to_owned(), policies[*name].clone()))
            .collect(),
        ..StackOptions::default()
    })
    .await;
    // The first cluster is the stack's namespace; the second one of its own, same ReviewApp.
    let second = format!("{}-b", stack.ns);
    stack.create_namespace_with(&second, &[&sample]).await;
    let fanout = stack
        .fanout
        .clone()
        .expect("Stack::start creates the fan-out its options ask for");
    let mut clusters = Vec::new();
    for (name, ns) in FANOUT_CLUSTERS.iter().zip([stack.ns.clone(), second]) {
        let applier = stack.start_fanout_applier(name, &ns, name).await;
        let queue_url = fanout.queues(name).url.clone();
        let watches = watch_objects(&stack.client, &ns);
        wait_watches(&watches).await;
        clusters.push((*name, queue_url, applier, watches));
    }
    let events = plan(args.prs, args.pushes, true);
    for (_, _, applier, _) in &clusters {
        applier.proxy.clear_requests();
    }
    let cpu_before = cpu_snapshot();
    let stack = Arc::new(stack);
    let sent = send_and_report(&stack, &events, args, label).await;
    let timeout = Duration::from_secs(args.timeout_secs);
    let mut missing = 0;
    for (_, queue_url, _, watches) in &clusters {
        missing += wait_applied(&watches.observed, &events, &sent, timeout).await;
        wait_drained(&stack, queue_url, Duration::from_secs(60)).await;
    }
    let cpu = cpu_used(&cpu_before, &cpu_snapshot());
    let mut reports = Vec::new();
    for (name, _, applier, watches) in &clusters {
        let run = Run {
            label: format!("{label}-{name}"),
            replicas: 1,
            fanout: true,
            args,
            events: &events,
            sent: &sent,
            cpu: cpu.clone(),
        };
        let requests = applier.proxy.requests();
        reports.push(measure(run, &watches.observed, &[&applier.process], &requests).await?);
    }
    drop(clusters);
    finish(reports, missing, timeout)
}

/// What one run sent, for [`measure`].
struct Run<'a> {
    label: String,
    replicas: u8,
    fanout: bool,
    args: &'a Args,
    events: &'a [Planned],
    sent: &'a [SendTimes],
    /// CPU seconds by process during the run (the whole local system).
    cpu: BTreeMap<String, f64>,
}

/// The report of one cluster: its watches' latencies, its appliers' memory and metrics, the
/// API requests through its proxy.
async fn measure(
    run: Run<'_>,
    observed: &Observed,
    appliers: &[&ApplierProcess],
    log: &[RequestRecord],
) -> Result<Report, LoadbenchError> {
    let Run {
        label,
        replicas,
        fanout,
        args,
        events,
        sent,
        cpu,
    } = run;
    let mut peak_rss_kib = Vec::new();
    let mut rss_kib = Vec::new();
    for a in appliers {
        let (hwm, rss) = memory_kib(a.pid())?;
        peak_rss_kib.push(hwm);
        rss_kib.push(rss);
    }

    let metrics = scrape(
        appliers,
        &[
            "kubetempura_message_age_seconds_",
            "kubetempura_apply_duration_seconds_",
            "kubetempura_messages_acknowledged",
            "kubetempura_messages_failed",
        ],
    )
    .await;
    let mean_ms = |name: &str| {
        let get = |suffix: &str| {
            metrics
                .get(&format!("{name}_{suffix}"))
                .copied()
                .unwrap_or(f64::NAN)
        };
        get("sum") / get("count") * 1e3
    };
    let message_age_mean_ms = mean_ms("kubetempura_message_age_seconds");
    let apply_mean_ms = mean_ms("kubetempura_apply_duration_seconds");
    let outcomes: BTreeMap<String, f64> = metrics
        .iter()
        .filter(|(k, _)| k.starts_with("kubetempura_messages_"))
        .map(|(k, v)| (k.trim_start_matches("kubetempura_").to_owned(), *v))
        .collect();
    let seen = lock(observed).clone();
    let mut latencies = Vec::new();
    let mut send_ms = Vec::new();
    let mut last_applied: Option<Instant> = None;
    let mut budget = 0;
    for (p, s) in events.iter().zip(sent) {
        budget += OBJECTS_PER_PR + 3;
        let (Some(start), Some(end)) = (s.start, s.end) else {
            continue;
        };
        send_ms.push(end.duration_since(start).as_secs_f64() * 1e3);
        if let Some(t) = seen.get(&p.pr).and_then(|x| x.applied(*p)) {
            latencies.push(t.saturating_duration_since(start).as_secs_f64() * 1e3);
            last_applied = Some(last_applied.map_or(t, |l| l.max(t)));
        }
    }
    latencies.sort_by(f64::total_cmp);
    send_ms.sort_by(f64::total_cmp);
    let first_sent = sent.iter().filter_map(|s| s.start).min();
    let last_sent = sent.iter().filter_map(|s| s.start).max();
    let span = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) if b > a => b.duration_since(a).as_secs_f64(),
        _ => f64::NAN,
    };
    let wall_s = span(first_sent, last_applied);
    let counted = count_requests(log);
    let report = Report {
        label,
        replicas,
        direct: args.direct,
        fanout,
        rate: args.rate,
        events: events.len(),
        applied: latencies.len(),
        failed_sends: sent.iter().filter(|s| !s.ok).count(),
        p50_ms: percentile(&latencies, 50.0),
        p95_ms: percentile(&latencies, 95.0),
        p99_ms: percentile(&latencies, 99.0),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        send_p50_ms: percentile(&send_ms, 50.0),
        send_p99_ms: percentile(&send_ms, 99.0),
        offered_per_s: events.len() as f64 / span(first_sent, last_sent),
        sustained_per_s: latencies.len() as f64 / wall_s,
        wall_s,
        peak_rss_kib,
        rss_kib,
        api_requests: counted.api,
        watch_requests: counted.watch,
        harness_requests: counted.harness,
        api_budget: budget,
        breakdown: counted.breakdown,
        message_age_mean_ms,
        apply_mean_ms,
        outcomes,
        cpu_s: cpu,
    };
    Ok(report)
}

fn rate_text(rate: f64) -> String {
    if rate > 0.0 {
        format!("{rate} events/s")
    } else {
        "full speed".to_owned()
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The results as a Markdown table, then each run's request breakdown.
pub fn render(reports: &[Report]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| run | replicas | path | rate (ev/s) | events | applied | p50 ms | p95 ms | p99 ms | max ms | send p50/p99 ms | offered ev/s | sustained ev/s | peak RSS MiB (VmHWM per replica) | API req/event | budget/event |"
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for r in reports {
        let rss: Vec<String> = r
            .peak_rss_kib
            .iter()
            .map(|k| format!("{:.1}", mib(*k)))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1}/{:.1} | {:.1} | {:.1} | {} | {:.2} | {:.2} |",
            r.label,
            r.replicas,
            match (r.direct, r.fanout) {
                (true, _) => "SQS direct",
                (false, true) => "webhook POST, SNS topic, own queue",
                (false, false) => "webhook POST",
            },
            if r.rate > 0.0 {
                format!("{}", r.rate)
            } else {
                "max".to_owned()
            },
            r.events,
            r.applied,
            r.p50_ms,
            r.p95_ms,
            r.p99_ms,
            r.max_ms,
            r.send_p50_ms,
            r.send_p99_ms,
            r.offered_per_s,
            r.sustained_per_s,
            rss.join(" / "),
            r.api_per_event(),
            r.api_budget as f64 / r.events.max(1) as f64,
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for r in reports {
        let _ = writeln!(
            s,
            "\n{}: {} counted API requests for {} events ({:.2}/event; budget {}); not counted: {} watch requests, {} harness requests; {} failed sends; wall {:.1} s; RSS at end {} MiB",
            r.label,
            r.api_requests,
            r.events,
            r.api_per_event(),
            r.api_budget,
            r.watch_requests,
            r.harness_requests,
            r.failed_sends,
            r.wall_s,
            r.rss_kib
                .iter()
                .map(|k| format!("{:.1}", mib(*k)))
                .collect::<Vec<_>>()
                .join(" / "),
        );
        let _ = writeln!(
            s,
            "  applier view: mean message age at processing start {:.1} ms; mean apply of one environment's objects {:.1} ms; {}",
            r.message_age_mean_ms,
            r.apply_mean_ms,
            r.outcomes
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let _ = writeln!(
            s,
            "  CPU seconds during the run ({cores} cores x {:.1} s wall = {:.1} available): {}",
            r.wall_s,
            cores as f64 * r.wall_s,
            r.cpu_s
                .iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let _ = writeln!(s, "  counted API requests by method, resource, status:");
        for (k, v) in &r.breakdown {
            let _ = writeln!(
                s,
                "  {k:<40} {v:>7}  ({:.2}/event)",
                *v as f64 / r.events.max(1) as f64
            );
        }
    }
    s
}

/// Runs what `args` asks for and returns the reports (printing progress on stderr).
pub async fn run(args: &Args) -> Result<Vec<Report>, LoadbenchError> {
    if args.fanout {
        return run_fanout(args).await;
    }
    let replicas: Vec<u8> = match (args.replicas, args.live) {
        (Some(r), _) => vec![r],
        (None, Some(_)) => vec![1],
        (None, None) => vec![1, 3],
    };
    let mut reports = Vec::new();
    for r in replicas {
        let report = run_once(args, r, args.live).await?;
        eprintln!("{}", render(std::slice::from_ref(&report)));
        reports.push(report);
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn an_image_names_the_event_it_came_from() {
        for (pr, i) in [(1, 0), (200, 6), (65535, 4000)] {
            assert_eq!(index_of_image(&image_for(pr, i)), Some(i));
            assert_eq!(sha_for(pr, i).len(), 40);
        }
    }

    #[test]
    fn the_plan_keeps_each_prs_events_in_order_and_spread_out() {
        let p = plan(3, 2, true);
        assert_eq!(p.len(), 3 * 4);
        assert_eq!(p[0].kind, Kind::Opened);
        assert_eq!(p[3].kind, Kind::Pushed);
        assert_eq!(p[11].kind, Kind::Closed);
        assert_eq!((p[4].pr, p[4].index), (2, 1));
    }

    #[test]
    fn an_event_is_applied_when_its_last_object_is() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(10);
        let mut s = Seen::default();
        s.image.insert(0, t0);
        let open = Planned {
            pr: 1,
            index: 0,
            kind: Kind::Opened,
        };
        assert_eq!(s.applied(open), None, "no Service yet");
        s.service = Some(t1);
        assert_eq!(s.applied(open), Some(t1));
        s.image.insert(3, t1);
        let push = |index| Planned {
            pr: 1,
            index,
            kind: Kind::Pushed,
        };
        assert_eq!(s.applied(push(2)), Some(t1), "superseded by a later push");
        assert_eq!(s.applied(push(4)), None);
    }

    #[test]
    fn watch_and_harness_requests_are_not_counted() {
        let rec = |method: &str, path: &str, query: &str| RequestRecord {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            status: 200,
            time: String::new(),
            faulted: false,
            content_type: None,
        };
        let log = [
            rec(
                "GET",
                "/apis/apps/v1/namespaces/default/deployments",
                "labelSelector=x&watch=true",
            ),
            rec(
                "GET",
                "/apis/kubetempura.mercari.com/v1/prs",
                "watch=true&resourceVersion=1",
            ),
            rec(
                "PATCH",
                "/apis/kubetempura.mercari.com/v1/namespaces/default/prs/a/status",
                "fieldManager=k",
            ),
            rec("GET", "/apis/apps/v1", ""),
        ];
        let c = count_requests(&log);
        assert_eq!((c.api, c.watch, c.harness), (2, 1, 1));
        assert!(c.breakdown.contains_key("PATCH prs/status 200"));
    }
}
