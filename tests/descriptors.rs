//! Untrusted descriptors (issue 22, case 3): a 1 KB descriptor set whose message holds 32
//! repeated fields of its own type, and an editions set (`edition = "2024"`, on which
//! prost-reflect 0.16.5 panics), given to `testbed check` and to the admin API's Add. Each is
//! refused at once with a clear message naming the message or file (exit 1, INVALID_ARGUMENT),
//! within bounded memory, and the public port keeps serving. The fixtures, with the protoc
//! command that made each, are in compat/tests/data.

use crate::admin::{TOKEN, router_with_admin};
use crate::common::{start, v1_client};
use port::admin::pb::{AddRequest, ListRequest};
use port::deployment::Deployment;
use services::pb::v1;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;
use tonic::Code;

/// The longest a refusal may take (it takes milliseconds; without the budget it takes minutes).
const PATIENCE: Duration = Duration::from_secs(60);
/// Most a refusing `testbed check` may hold resident (without the budget: gigabytes).
const MAX_RSS_KB: u64 = 512 * 1024;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("compat/tests/data")
        .join(name)
}

/// `testbed check OLD NEW` under `/usr/bin/time -v` (when present), killed past [`PATIENCE`].
async fn check(old: &str, new: &str) -> (Output, Option<u64>) {
    let exe = env!("CARGO_BIN_EXE_testbed");
    let old = fixture(old);
    let new = fixture(new);
    let timed = std::path::Path::new("/usr/bin/time").exists();
    let mut cmd = match timed {
        true => {
            let mut c = tokio::process::Command::new("/usr/bin/time");
            c.arg("-v").arg(exe);
            c
        }
        false => tokio::process::Command::new(exe),
    };
    cmd.arg("check").arg(old).arg(new).kill_on_drop(true);
    let out = tokio::time::timeout(PATIENCE, cmd.output())
        .await
        .expect("testbed check ends within PATIENCE")
        .expect("testbed check runs");
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|n| n.parse().ok());
    (out, rss)
}

/// The exit code of `testbed check` (as `/usr/bin/time -v` reports it when it ran it).
fn exit_code(out: &Output) -> Option<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Exit status: "))
        .map(str::to_string)
        .or_else(|| out.status.code().map(|c| c.to_string()))
}

#[tokio::test]
async fn check_refuses_a_self_recursive_message_naming_it_in_bounded_memory() {
    let (out, rss) = check("recursive_a.binpb", "recursive_b.binpb").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(exit_code(&out).as_deref(), Some("1"), "{stderr}");
    assert!(stderr.contains("message rec.v1.Node"), "{stderr}");
    assert!(stderr.contains("MAX_SAMPLE_NODES"), "{stderr}");
    if let Some(rss) = rss {
        assert!(rss < MAX_RSS_KB, "{rss} kB resident");
    }
}

#[tokio::test]
async fn check_reads_an_editions_set_without_a_panic() {
    // prost-reflect 0.16 panics on this set; check lowers it to proto2 first.
    let (out, _) = check("editions2024.binpb", "editions2024.binpb").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(exit_code(&out).as_deref(), Some("0"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_add_refuses_recursive_and_editions_descriptors_and_the_port_keeps_serving() {
    let (server, admin) = router_with_admin().await;
    // Some address that answers, for the upstream the descriptors describe.
    let other = start(Deployment::V1Only).await;
    let mut client = port::admin::connect(admin.addr, TOKEN).await.unwrap();
    let before = client.list(ListRequest {}).await.unwrap().into_inner();
    let cases = [
        ("recursive_a.binpb", "message rec.v1.Node"),
        (
            "editions2024.binpb",
            "protobuf editions (edition = \"2024\") are not supported yet: ed.proto",
        ),
    ];
    for (file, says) in cases {
        let add = client.add(AddRequest {
            upstream: format!("x=9.0.0@{}", other.addr),
            descriptor_set: std::fs::read(fixture(file)).unwrap(),
        });
        let status = tokio::time::timeout(PATIENCE, add)
            .await
            .expect("the Add is answered within PATIENCE")
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{file}: {status:?}");
        assert!(status.message().contains(says), "{file}: {status:?}");
    }
    let list = client.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(list, before, "nothing changed");
    let mut v1 = v1_client(&server).await;
    let reply = v1
        .increment(v1::IncrementRequest { value: 41 })
        .await
        .expect("the public port keeps serving");
    assert_eq!(reply.into_inner().value, 42);
}
