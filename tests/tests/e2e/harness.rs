//! The harness itself: the control plane, the SQS emulator and the Lambda emulator start on
//! loopback, a message goes through the SQS emulator and back, the shared example ReviewApp
//! applies to the control plane through the real kubectl, and what the harness started is
//! stopped — also when a test panics.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;

use kubetempura_tests::harness::controlplane::{Cluster, ControlPlane};
use kubetempura_tests::harness::lambda::WebhookFunction;
use kubetempura_tests::harness::process::ChildGuard;
use kubetempura_tests::harness::sqs::SqsEmulator;
use kubetempura_tests::harness::stack::workspace_file;
use kubetempura_tests::harness::tools;

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie is reaped by the guard's wait, so "gone" means gone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    )
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_parts_start_carry_a_message_and_take_the_example_reviewapp_through_kubectl() {
    let kube = Cluster::connect(None).await;
    assert!(
        kube.server.starts_with("https://127.0.0.1:"),
        "{}",
        kube.server
    );
    let sqs = SqsEmulator::start().await;
    let queues = sqs.create_fifo_with_dlq("harness", 3, 30).await;
    let mut env = sqs.env();
    env.push(("QUEUE_URL".into(), queues.url.clone()));
    env.push(("WEBHOOK_SECRET".into(), "harness-secret".into()));
    let function = WebhookFunction::start(&env).await;
    assert!(
        function.url.starts_with("http://127.0.0.1:"),
        "{}",
        function.url
    );
    assert!(sqs.endpoint.starts_with("http://127.0.0.1:"));

    // A message through the SQS emulator and back.
    sqs.client
        .send_message()
        .queue_url(&queues.url)
        .message_body("{\"hello\":\"queue\"}")
        .message_group_id("o/r#1")
        .message_deduplication_id("harness-1")
        .send()
        .await
        .unwrap();
    let got = sqs.receive(&queues.url, 5).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.as_deref(), Some("{\"hello\":\"queue\"}"));

    // The generated CRDs and the shared example through kubectl.
    let kubeconfig = kube.kubeconfig.clone();
    let kubectl = |args: &[&str]| {
        let out = Command::new(tools::kubectl())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(
            !stderr.contains("Warning"),
            "kubectl {args:?} warned (the API server objects to something): {stderr}"
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let crds = workspace_file("infra/crds/crds.yaml");
    let sample = workspace_file("infra/examples/reviewapp-sample.yaml");
    kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/reviewapps.kubetempura.mercari.com",
    ]);
    kubectl(&["apply", "--server-side", "-f", sample.to_str().unwrap()]);
    // `default` is shared with the other suites of the run: ask for this ReviewApp by name.
    let listed = kubectl(&[
        "get",
        "reviewapp",
        "reviewapp-sample",
        "-n",
        "default",
        "-o",
        "name",
    ]);
    assert_eq!(
        listed.trim(),
        "reviewapp.kubetempura.mercari.com/reviewapp-sample"
    );
}

#[test]
fn a_child_process_is_stopped_when_its_guard_drops_even_in_a_panicking_test() {
    let mut pid = 0;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        let guard = ChildGuard::spawn("sleeper", cmd);
        pid = guard.pid();
        assert!(alive(pid));
        panic!("a failing test");
    }));
    assert!(result.is_err());
    assert!(pid != 0 && !alive(pid), "process {pid} survived its guard");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_private_control_plane_serves_rbac_and_stops_with_its_data_when_dropped() {
    let cp = ControlPlane::start().await;
    let kubeconfig = cp.kubeconfig();
    let out = Command::new(tools::kubectl())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["auth", "can-i", "create", "clusterrolebindings"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "yes");
    let data: Vec<String> = cp
        .output()
        .lines()
        .filter_map(|l| l.split("data directory ").nth(1).map(str::to_owned))
        .collect();
    assert_eq!(
        data.len(),
        1,
        "the control plane names its data directory once"
    );
    let dir = std::path::PathBuf::from(data[0].trim());
    assert!(dir.is_dir(), "{} exists while it runs", dir.display());
    drop(cp);
    assert!(!dir.exists(), "{} removed after SIGTERM", dir.display());
}
