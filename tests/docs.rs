//! `testbed docs`: an API of nested messages, a map, a oneof, a proto3 `optional`, enums with a
//! deprecated value, a deprecated bidi method and `google.api.http` bindings (googleapis'
//! `HttpRule`, its field numbers as published, trimmed to what the test uses), documented as
//! Markdown and as an HTML page that headless Chromium loads; with `--against` an older version,
//! the changelog lists the removed field as breaking (buf's WIRE_JSON rules) and the added
//! message and fields as added, verdict major.

use std::path::Path;
use std::process::Command;

/// googleapis' `google/api/http.proto` and `annotations.proto`, trimmed (shared with the JSON
/// transcoding tests).
const HTTP_PROTO: &str = include_str!("../port/testdata/google/api/http.proto");
const ANNOTATIONS_PROTO: &str = include_str!("../port/testdata/google/api/annotations.proto");

const NEW: &str = r#"syntax = "proto3";
package acme.v1;
import "google/api/annotations.proto";

// Accounts of the bank.
service Accounts {
  // One account by its name.
  rpc Get(GetRequest) returns (Account) {
    option (google.api.http) = {
      get: "/v1/{name=accounts/*}"
      additional_bindings { post: "/v1/accounts:get" body: "*" }
    };
  }
  // Use Get.
  rpc Watch(stream GetRequest) returns (stream Account) {
    option deprecated = true;
  }
}

message GetRequest {
  string name = 1;
}

// An account.
message Account {
  // Its resource name.
  string name = 1;
  map<string, int64> balances = 2;
  oneof contact {
    string email = 3;
    string phone = 4;
  }
  optional int32 age = 5;
  Status status = 6;
  // Where statements go.
  message Address {
    string city = 1;
  }
  Address address = 7;
}

enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_OPEN = 1;
  STATUS_CLOSED = 2 [deprecated = true];
}
"#;

/// The older version: no age, no address, and a `nickname` since removed.
const OLD: &str = r#"syntax = "proto3";
package acme.v1;
import "google/api/annotations.proto";
service Accounts {
  rpc Get(GetRequest) returns (Account) {
    option (google.api.http) = { get: "/v1/{name=accounts/*}" };
  }
  rpc Watch(stream GetRequest) returns (stream Account);
}
message GetRequest {
  string name = 1;
}
message Account {
  string name = 1;
  map<string, int64> balances = 2;
  oneof contact {
    string email = 3;
    string phone = 4;
  }
  Status status = 6;
  string nickname = 8;
}
enum Status {
  STATUS_UNSPECIFIED = 0;
  STATUS_OPEN = 1;
  STATUS_CLOSED = 2;
}
"#;

/// A version folder holding `acme.proto`; the googleapis files it imports go beside it, in
/// `googleapis/`, an import path (-I) as a team vendors them.
fn version(root: &Path, name: &str, acme: &str) -> String {
    let google = root.join("googleapis/google/api");
    std::fs::create_dir_all(&google).unwrap();
    std::fs::write(google.join("http.proto"), HTTP_PROTO).unwrap();
    std::fs::write(google.join("annotations.proto"), ANNOTATIONS_PROTO).unwrap();
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("acme.proto"), acme).unwrap();
    dir.display().to_string()
}

#[test]
fn an_api_is_documented_as_markdown_and_a_page_with_its_changelog() {
    let root = crate::common::temp_dir("docs");
    let (old, new) = (
        version(root.path(), "old", OLD),
        version(root.path(), "new", NEW),
    );
    let html = root.path().join("api.html");
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["docs", &new, "--against", &old, "--markdown", "-", "-I"])
        .arg(root.path().join("googleapis"))
        .arg("--html")
        .arg(&html)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "## Changelog from `OLD`: major",
        // buf's WIRE_JSON rules, the default categories: the number and the name are free again.
        "### Breaking (2)",
        "- **FIELD_NO_DELETE_UNLESS_NAME_RESERVED** `acme.v1.Account.nickname`",
        "- **FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED** `acme.v1.Account.nickname`",
        "### Added (3)",
        "- **MESSAGE_ADDED** `acme.v1.Account.Address`",
        "- **FIELD_ADDED** `acme.v1.Account.age`",
        "- **FIELD_ADDED** `acme.v1.Account.address`",
        "## Package `acme.v1`",
        "### Service `acme.v1.Accounts`",
        "Accounts of the bank.",
        "| `rpc Get (GetRequest) returns (Account)` | unary | GET /v1/{name=accounts/*}, POST /v1/accounts:get | One account by its name. |",
        "| `rpc Watch (stream GetRequest) returns (stream Account)` **(deprecated)** | bidi streaming |  | Use Get. |",
        "| 1 | `name` | `string` | Its resource name. |",
        "| 2 | `balances` | `map<string, int64>` |  |",
        "| 3 | `email` | `string` (oneof `contact`) |  |",
        "| 5 | `age` | `optional int32` |  |",
        "| 7 | `address` | `Account.Address` |  |",
        "### Message `acme.v1.Account.Address`",
        "Where statements go.",
        "| `STATUS_CLOSED` **(deprecated)** | 2 |  |",
    ] {
        let line = line.replace("OLD", &old);
        assert!(md.contains(&line), "no {line:?} in:\n{md}");
    }
    // The map's entry is not a message of its own, nor are the imports documented.
    assert!(!md.contains("BalancesEntry"), "{md}");
    assert!(!md.contains("HttpRule"), "{md}");
    // The nested message comes right after its parent, before the top-level enum.
    let at = |s: &str| md.find(s).unwrap_or(usize::MAX);
    let (parent, nested) = (
        at("### Message `acme.v1.Account`"),
        at("### Message `acme.v1.Account.Address`"),
    );
    assert!(
        parent < nested && nested < at("### Enum `acme.v1.Status`"),
        "{md}"
    );

    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<tr data-method=\"Get\">"), "{page}");
    assert!(page.contains("data-field=\"acme.v1.Account.balances\""));
    assert!(page.contains("<li data-rule=\"FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED\">"));
    assert!(!page.contains("<script"), "a page with no script");
    let Some(browser) = crate::report::chromium() else {
        return;
    };
    let out = crate::report::headless(&browser, &root.path().join("profile"))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed:\n{stderr}");
    assert!(
        !stderr.contains("ERROR:CONSOLE") && !stderr.contains("net::ERR_"),
        "{stderr}"
    );
    // What the browser built holds every section and row the page was written with.
    for needle in [
        "id=\"changelog\"",
        "id=\"acme.v1\"",
        "id=\"acme.v1.Account.Address\"",
        "data-method=\"Watch\"",
        "data-field=\"acme.v1.Account.age\"",
    ] {
        assert!(dom.contains(needle), "no {needle} in the DOM");
    }
}

#[test]
fn an_input_with_nothing_to_document_or_unreadable_says_so() {
    let root = crate::common::temp_dir("docs-bad");
    let run = |input: &str| {
        Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(["docs", input])
            .output()
            .unwrap()
    };
    let missing = root.path().join("nope");
    let out = run(&missing.display().to_string());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read"), "{stderr}");
    let broken = root.path().join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("a.proto"), "syntax = \"proto3\"; message {").unwrap();
    let out = run(&broken.display().to_string());
    assert_eq!(out.status.code(), Some(1));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn proto2_labels_nested_names_an_empty_package_and_odd_comments_render_as_written() {
    let root = crate::common::temp_dir("docs-odd");
    std::fs::write(
        root.path().join("legacy.proto"),
        r#"syntax = "proto2";
message Inner { optional int32 a = 1; }
// Holds a | b and <b>markup</b>.
message Outer {
  message Inner { optional string b = 1; }
  required int32 id = 1;
  optional Inner nested = 2;
  optional .Inner top = 3;
  repeated string tags = 4;
  extensions 100 to 199;
  extend Outer { optional int64 nested_ext = 101; }
}
extend Outer {
  // Marks a legacy record.
  repeated Inner ext_field = 100;
}
"#,
    )
    .unwrap();
    let html = root.path().join("legacy.html");
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["docs", &root.path().display().to_string(), "--html"])
        .arg(&html)
        .args(["--markdown", "-"])
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "## Package (no package)",
        "Holds a | b and &lt;b&gt;markup&lt;/b&gt;.",
        "| 1 | `id` | `required int32` |  |",
        "| 2 | `nested` | `optional Outer.Inner` |  |",
        "| 3 | `top` | `optional Inner` |  |",
        "| 4 | `tags` | `repeated string` |  |",
        "### Message `Outer.Inner`",
        "| `Outer` | 100 | `ext_field` | `repeated Inner` | Marks a legacy record. |",
        "| `Outer` | 101 | `Outer.nested_ext` | `int64` |  |",
    ] {
        assert!(md.contains(line), "no {line:?} in:\n{md}");
    }
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<section id=\"no-package\"><h2>Package (no package)</h2>"));
    assert!(page.contains("Holds a | b and &lt;b&gt;markup&lt;/b&gt;."));
}

/// The changelog is `testbed check`'s verdict, accept file and all: the shop example's v2
/// breaks v1 at `price_cents`; accepted, the check passes and the changelog says so.
#[test]
fn the_changelog_is_the_checks_verdict_with_accepted_breaks_marked() {
    let root = crate::common::temp_dir("docs-accept");
    let repo = env!("CARGO_MANIFEST_DIR");
    let (v1, v2) = (
        format!("{repo}/examples/shop/proto/shop/v1"),
        format!("{repo}/examples/shop/proto/shop/v2"),
    );
    let accepted = root.path().join("accepted.yaml");
    let testbed = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_testbed"))
            .args(args)
            .output()
            .unwrap()
    };
    let write = testbed(&[
        "check",
        &v1,
        &v2,
        "--write-accepted",
        &accepted.display().to_string(),
    ]);
    assert_eq!(write.status.code(), Some(100));
    let text = std::fs::read_to_string(&accepted).unwrap();
    std::fs::write(
        &accepted,
        text.replace("TODO: say why", "no price reaches 2^31"),
    )
    .unwrap();
    let accept = accepted.display().to_string();
    let check = testbed(&["check", &v1, &v2, "--accept", &accept]);
    assert_eq!(check.status.code(), Some(0));
    // "Verdict: minor — ...": the check's own first line.
    let said = String::from_utf8_lossy(&check.stdout);
    let want = said
        .strip_prefix("Verdict: ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no verdict in {said}"));
    let docs = testbed(&["docs", &v2, "--against", &v1, "--accept", &accept]);
    let md = String::from_utf8_lossy(&docs.stdout);
    assert!(
        docs.status.success(),
        "{}",
        String::from_utf8_lossy(&docs.stderr)
    );
    assert!(
        md.contains(&format!("## Changelog from `{v1}`: {want}")),
        "check says {want}:\n{md}"
    );
    assert!(
        md.contains("- **GRPC_FIELD_SAME_VALUE_RANGE** `shop.v1.Product.price_cents`")
            && md.contains("(accepted)"),
        "{md}"
    );
}
