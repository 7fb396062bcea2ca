//! `make demo`: the whole system on loopback, playing the announcement's walkthrough with signed
//! webhook deliveries and printing what exists in the cluster after each step.

use std::fmt::Write as _;
use std::path::PathBuf;

use kube::ResourceExt;
use kube::api::Api;
use kubetempura_common::crd::PR;

use crate::harness::stack::{Stack, StackOptions, workspace_file};

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
    let deploys = stack.list("apps/v1", "Deployment", "default").await;
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
    let services = stack.list("v1", "Service", "default").await;
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

    crate::walkthrough::play(&stack, &[], async |i| {
        step(crate::walkthrough::STEPS[i]);
        print_cluster(&stack).await;
    })
    .await;

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
