//! `make demo`: the whole system on loopback, playing the announcement's walkthrough with signed
//! webhook deliveries and printing what exists in the cluster after each step.

use std::path::PathBuf;

use crate::harness::stack::{Stack, StackOptions, workspace_file};

/// Demo settings.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "kubetempura-demo", version)]
pub struct DemoArgs {
    /// Run against the cluster of this kubeconfig instead of a local control plane. The CRDs,
    /// infra/'s RBAC (renamed after the demo's namespace) and the sample ReviewApp (namespace
    /// `kubetempura-demo`) are applied to it, and the applier runs on this machine with a token
    /// of its ServiceAccount.
    #[arg(long, env = "DEMO_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// The ReviewApp to play the walkthrough with.
    #[arg(long, default_value = DEFAULT_REVIEWAPP)]
    pub reviewapp: PathBuf,
}

/// The default `--reviewapp`.
const DEFAULT_REVIEWAPP: &str = "infra/examples/reviewapp-sample.yaml";

/// Prints the pull request's comment as GitHub would show its markdown (the hidden lines left
/// out).
fn print_comment(feedback: &crate::walkthrough::Feedback, pr: u64) {
    println!("\n--- GitHub, PR #{pr}: the comment kubetempura keeps current");
    match feedback.comment(pr) {
        Some(body) => body
            .lines()
            .filter(|l| !l.starts_with("<!--"))
            .for_each(|l| println!("  {l}")),
        None => println!("  (no comment yet)"),
    }
}

fn step(title: &str) {
    println!("\n=== {title}");
}

/// Prints the environments as `kubectl get deployments,services,prs -o wide` does: it runs that
/// command against the cluster, with the admin kubeconfig of the demo.
pub fn print_cluster(stack: &Stack) {
    let out = std::process::Command::new(crate::harness::tools::kubectl())
        .arg("--kubeconfig")
        .arg(&stack.kubeconfig)
        .args(["--namespace", &stack.ns])
        .args(["get", "deployments,services,prs", "-o", "wide"])
        .output();
    match out {
        Ok(o) => {
            print!("{}", String::from_utf8_lossy(&o.stdout));
            eprint!("{}", String::from_utf8_lossy(&o.stderr));
        }
        Err(e) => println!("(kubectl get failed: {e})"),
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
        None => "a Kubernetes control plane (kube-apiserver, etcd, controller-manager)".to_owned(),
    };
    println!(
        "kubetempura demo: starting the SQS emulator, the webhook function under `cargo lambda watch`,"
    );
    println!("`kubetempura run` and {target}; everything listens on 127.0.0.1 only.");
    // The sample gets an environment URL, so the pull request's comment links it.
    let with_url = (args.reviewapp == std::path::Path::new(DEFAULT_REVIEWAPP))
        .then(crate::walkthrough::sample_with_url);
    let manifest = with_url
        .as_ref()
        .map_or_else(|| reviewapp.clone(), |f| f.path().to_owned());
    let stack = Stack::start(StackOptions {
        queue: "kubetempura-demo".into(),
        manifests: vec![manifest],
        kubeconfig: args.kubeconfig.clone(),
        namespace: Some("kubetempura-demo".into()),
        feedback: true,
        ..StackOptions::default()
    })
    .await;
    println!(
        "starting the notifier function and a GitHub API stand-in (it checks every request against GitHub's OpenAPI description)"
    );
    let feedback = crate::walkthrough::Feedback::start(&stack).await;
    // On the local control plane nothing runs pods: the demo marks each Deployment available as
    // its controller would. On a real cluster the rollout is real (and the sample's images do
    // not exist), so environments stay `deploying` there.
    let roll_out = args.kubeconfig.is_none();
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

    use crate::walkthrough::{SHA_1, SHA_2};
    crate::walkthrough::play(&stack, &[], async |i| {
        step(crate::walkthrough::STEPS[i]);
        let (pr, sha) = [(123, SHA_1), (124, SHA_1), (123, SHA_2), (123, SHA_2)][i];
        if i < 3 {
            feedback.follow(&stack, pr, sha, roll_out).await;
        }
        println!(
            "$ kubectl --namespace {} get deployments,services,prs -o wide",
            stack.ns
        );
        print_cluster(&stack);
        if i < 3 {
            print_comment(&feedback, pr);
        }
    })
    .await;
    stack
        .wait_feedback_sent("reviewapp-sample-pr123", "closed", SHA_2)
        .await;
    feedback.drain(&stack).await;
    print_comment(&feedback, 123);
    feedback.github.assert_no_violations();

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
