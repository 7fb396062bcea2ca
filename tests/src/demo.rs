//! `make demo`: the whole system on loopback, playing the announcement's walkthrough with signed
//! webhook deliveries and printing what exists in the cluster after each step.

use std::fmt::Write as _;
use std::path::PathBuf;

use chrono::{Duration as Minutes, Utc};
use kube::ResourceExt;
use kube::api::Api;
use kubetempura_applier::send_event::Delivery;
use kubetempura_common::crd::{PR, Phase};

use crate::harness::stack::{Stack, StackOptions, workspace_file};

/// Repository of the sample ReviewApp.
pub const REPO: &str = "https://github.com/mercari/not-exists";
const SHA_1: &str = "32f7bfe8b7279912ce1eb6dfb6653ee297936cf7";
const SHA_2: &str = "d0451ad4d774c8fbc843d3251530dcabb3c635a9";

/// Demo settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kubetempura-demo", version)]
pub struct DemoArgs {
    /// Run against the cluster of this kubeconfig instead of the local Kubernetes stand-in.
    /// The CRDs and the sample ReviewApp (namespace `default`) are applied to it, and the
    /// applier runs on this machine with that kubeconfig.
    #[arg(long, env = "DEMO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The ReviewApp to play the walkthrough with.
    #[arg(long, default_value = "infra/examples/reviewapp-sample.yaml")]
    pub reviewapp: PathBuf,
}

fn step(title: &str) {
    println!("\n=== {title}");
}

fn table(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("   ").trim_end());
    }
    out
}

/// Prints Deployments, Services and PRs the way `kubectl get deploy,svc,prs -o wide` would.
pub async fn print_cluster(stack: &Stack) {
    let deploys = stack
        .api("apps/v1", "Deployment", "default")
        .await
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "IMAGE".to_owned(),
        "OWNER".to_owned(),
    ]];
    for d in &deploys {
        let image = d.data["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let owner = d
            .metadata
            .owner_references
            .as_ref()
            .and_then(|o| o.first())
            .map(|o| format!("{}/{}", o.kind, o.name))
            .unwrap_or_default();
        rows.push(vec![
            format!("deployment.apps/{}", d.name_any()),
            image,
            owner,
        ]);
    }
    if rows.len() > 1 {
        print!("{}", table(&rows));
    } else {
        println!("No deployments in namespace default.");
    }
    let services = stack
        .api("v1", "Service", "default")
        .await
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "PORT(S)".to_owned(),
        "SELECTOR".to_owned(),
    ]];
    for s in services.iter().filter(|s| s.name_any() != "kubernetes") {
        let ports: Vec<String> = s.data["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
            .collect();
        let selector = s.data["spec"]["selector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        rows.push(vec![
            format!("service/{}", s.name_any()),
            ports.join(","),
            selector,
        ]);
    }
    if rows.len() > 1 {
        println!();
        print!("{}", table(&rows));
    }
    let prs: Vec<PR> = Api::<PR>::namespaced(stack.client.clone(), "default")
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "REVIEWAPP".to_owned(),
        "PR".to_owned(),
        "BRANCH".to_owned(),
        "COMMIT".to_owned(),
        "PHASE".to_owned(),
        "OBJECTS".to_owned(),
    ]];
    for p in &prs {
        let status = p.status.clone().unwrap_or_default();
        rows.push(vec![
            format!("pr.kubetempura.mercari.com/{}", p.name_any()),
            p.spec.review_app.clone(),
            p.spec.number.to_string(),
            p.spec.head_branch.clone(),
            status.commit_short.unwrap_or_default(),
            status.phase.map(|ph| format!("{ph:?}")).unwrap_or_default(),
            status.inventory.len().to_string(),
        ]);
    }
    if rows.len() > 1 {
        println!();
        print!("{}", table(&rows));
    }
}

fn delivery(pr: u64, sha: &str, action: &str, minute: i64) -> Delivery {
    let mut d = Delivery::new(REPO, pr, sha, action);
    d.branch = format!("feature/pr-{pr}");
    d.author = "octocat".into();
    d.updated_at = Utc::now() + Minutes::minutes(minute);
    d
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let reviewapp = if args.reviewapp.is_absolute() {
        args.reviewapp.clone()
    } else {
        workspace_file(&args.reviewapp.to_string_lossy())
    };
    let target = match &args.kubeconfig {
        Some(p) => format!("the cluster of {}", p.display()),
        None => "kube-standin (a loopback Kubernetes API stand-in)".to_owned(),
    };
    println!(
        "kubetempura demo: starting the SQS emulator, the webhook function under `cargo lambda watch`,"
    );
    println!("`kubetempura run` and {target}; everything listens on 127.0.0.1 only.");
    let stack = Stack::start(StackOptions {
        queue: "kubetempura-demo".into(),
        manifests: vec![reviewapp.clone()],
        kubeconfig: args.kubeconfig.clone(),
        ..StackOptions::default()
    })
    .await;
    println!(
        "ready: webhook {}  queue {}",
        stack
            .function
            .as_ref()
            .map(|f| f.url.as_str())
            .unwrap_or(""),
        stack.queues.url
    );
    println!(
        "applied {} and the CRDs; the applier's metrics are at {}/metrics",
        reviewapp.display(),
        stack.applier().metrics_url
    );

    step("1. PR 123 is opened at 32f7bfe (signed pull_request delivery, action opened)");
    stack
        .deliver(
            &delivery(123, SHA_1, "opened", 0),
            &format!("demo-{}-1", std::process::id()),
        )
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-32f7bfe",
        )
        .await;
    stack
        .wait_pr_phase("default", "reviewapp-sample-pr123", Phase::Applied)
        .await;
    print_cluster(&stack).await;

    step("2. PR 124 is opened");
    stack
        .deliver(
            &delivery(124, SHA_1, "opened", 1),
            &format!("demo-{}-2", std::process::id()),
        )
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr124",
            "ghcr.io/stefanprodan/podinfo:pr124-32f7bfe",
        )
        .await;
    stack
        .wait_pr_phase("default", "reviewapp-sample-pr124", Phase::Applied)
        .await;
    print_cluster(&stack).await;

    step("3. A new commit d0451ad is pushed to PR 123 (action synchronize)");
    stack
        .deliver(
            &delivery(123, SHA_2, "synchronize", 2),
            &format!("demo-{}-3", std::process::id()),
        )
        .await;
    stack
        .wait_deployment_image(
            "default",
            "reviewapp-sample-pr123",
            "ghcr.io/stefanprodan/podinfo:pr123-d0451ad",
        )
        .await;
    print_cluster(&stack).await;

    step("4. PR 123 is merged (action closed, merged true)");
    let mut merged = delivery(123, SHA_2, "closed", 3);
    merged.merged = true;
    stack
        .deliver(&merged, &format!("demo-{}-4", std::process::id()))
        .await;
    stack
        .wait_gone("apps/v1", "Deployment", "default", "reviewapp-sample-pr123")
        .await;
    stack
        .wait_gone("v1", "Service", "default", "reviewapp-sample-pr123")
        .await;
    stack
        .wait_pr_phase("default", "reviewapp-sample-pr123", Phase::Closed)
        .await;
    print_cluster(&stack).await;

    stack.wait_queue_drained().await;
    let m = stack.applier().metrics().await;
    let get = |s: &str| crate::harness::applier::parse_metric(&m, s);
    println!(
        "\nDone: {} messages received, {} objects applied, {} deleted; the PR 123 tombstone stays for the retention period.",
        get("kubetempura_messages_received_total"),
        get("kubetempura_objects_applied_total"),
        get("kubetempura_objects_deleted_total")
    );
    println!("Stopping everything.");
    Ok(())
}
