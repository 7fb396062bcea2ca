//! The harness itself: all three stand-ins start on loopback, a message goes through the SQS
//! emulator and back, the shared example ReviewApp applies to the Kubernetes stand-in through the
//! real kubectl, and what the harness started is stopped — also when a test panics.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::process::Command;

use kubetempura_tests::harness::lambda::WebhookFunction;
use kubetempura_tests::harness::process::ChildGuard;
use kubetempura_tests::harness::sqs::SqsEmulator;
use kubetempura_tests::harness::stack::workspace_file;
use kubetempura_tests::harness::tools;
use kubetempura_tests::standin::StandIn;

fn alive(pid: u32) -> bool {
    // Signal 0 checks existence; a zombie is reaped by the guard's wait, so "gone" means gone.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()),
        None,
    )
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn all_three_stand_ins_start_carry_a_message_and_take_the_example_reviewapp_through_kubectl()
{
    let kube = StandIn::start_loopback().await.unwrap();
    assert!(kube.addr().ip().is_loopback());
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
    let kubeconfig = kube.kubeconfig_path().unwrap();
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
        String::from_utf8(out.stdout).unwrap()
    };
    let crds = workspace_file("infra/crds/crds.yaml");
    let sample = workspace_file("infra/examples/reviewapp-sample.yaml");
    kubectl(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    kubectl(&["apply", "--server-side", "-f", sample.to_str().unwrap()]);
    let listed = kubectl(&["get", "reviewapps", "-n", "default", "-o", "name"]);
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
