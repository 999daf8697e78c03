//! The TLS admin API from the command line: `testbed route --admin https://...` with a client
//! certificate changes routes and is logged as `cert:NAME`, says what is missing before it
//! connects and how to name a plaintext admin API; `serve` refuses admin TLS files and flags it
//! cannot use.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_route_over_https_with_a_client_certificate_changes_routes_and_logs_its_name() {
    let (_pki, files, _pki_dir) = pki();
    let v2_process = backend("v2").await;
    let dir = temp_dir("admin-mtls-cli");
    let log_path = dir.path().join("router.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let mut command = tokio::process::Command::new(exe());
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--deployment", "v1-only"])
        .args(["--admin-addr", "127.0.0.1:0"])
        .args(["--admin-tls-cert", &path(&files.server_cert)])
        .args(["--admin-tls-key", &path(&files.server_key)])
        .args(["--admin-client-ca", &path(&files.ca_cert)])
        // Refused handshakes are logged at debug only (anyone may connect): ask for them.
        .env("RUST_LOG", "info,port::accept=debug")
        // Plain text, so that a field reads `name="value"` in the log.
        .env("NO_COLOR", "1")
        .stderr(log);
    let mut router = ChildServer::spawn(command, "the router")
        .await
        .expect("the router starts with client certificates and no token");
    let line = router.next_line().await.unwrap();
    let admin = line.rsplit(' ').next().unwrap().to_string();
    assert!(
        line.starts_with("testbed admin API on https://127.0.0.1:"),
        "{line}"
    );
    let port = router.addr;
    let (ca, cert, key) = (
        path(&files.ca_cert),
        path(&files.client_cert),
        path(&files.client_key),
    );
    // testbed route ARGS... --admin ADMIN --ca CA EXTRA...: its output.
    let route = |args: &[&str], extra: &[&str]| {
        let mut all = vec!["route"];
        all.extend(args);
        all.extend(["--admin", &admin, "--ca", &ca]);
        all.extend(extra);
        let all: Vec<String> = all.into_iter().map(str::to_string).collect();
        async move {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            testbed(&all, &[]).await
        }
    };
    let identity = ["--cert", cert.as_str(), "--key", key.as_str()];
    let ok = |output: Output| {
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    let upstream_v2 = format!("v2=2.0.0@{}", v2_process.addr);
    assert_eq!(call_v2(port).await, Err(Code::Unimplemented));
    let added = ok(route(&["add", &upstream_v2], &identity).await);
    assert!(added.starts_with("added v2"), "{added}");
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));

    // Without a certificate or token, and with another CA's certificate: refused, no change.
    let bare = route(&["remove", "v2"], &[]).await;
    assert!(!bare.status.success());
    assert!(
        stderr(&bare).contains("no admin token"),
        "{}",
        stderr(&bare)
    );
    let (stranger_cert, stranger_key) = (path(&files.stranger_cert), path(&files.stranger_key));
    let stranger = route(
        &["remove", "v2"],
        &["--cert", &stranger_cert, "--key", &stranger_key],
    )
    .await;
    assert!(!stranger.status.success(), "a stranger removed v2");
    assert!(
        stderr(&stranger).contains("the connection broke")
            || stderr(&stranger).contains("cannot connect to the admin API"),
        "{}",
        stderr(&stranger)
    );
    assert_eq!(call_v2(port).await, Ok((46, "2.0.0".into())));

    let listed = ok(route(&["list", "--json"], &identity).await);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let names: Vec<&str> = listed["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["v1", "v2"], "{listed}");
    // A token left in the environment (as the README's walk-through leaves it) is not sent
    // beside --cert: this admin API takes no tokens and would refuse the call.
    let mut all = vec!["route", "list", "--admin", &admin, "--ca", &ca];
    all.extend(identity);
    let with_env_token = testbed(&all, &[("TESTBED_ADMIN_TOKEN", TOKEN)]).await;
    assert!(
        with_env_token.status.success(),
        "{}",
        stderr(&with_env_token)
    );
    let removed = ok(route(&["remove", "v2"], &identity).await);
    assert!(removed.starts_with("removed v2"), "{removed}");
    assert_eq!(call_v2(port).await, Err(Code::Unimplemented));
    assert_eq!(call_v1(port).await, Ok((42, "1.0.0".into())));
    router.terminate().await.unwrap();

    // Each change is logged with the certificate's holder (its CN), marked as a certificate
    // and quoted.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let logged = |action: &str| {
        log.lines().any(|line| {
            line.contains("admin change")
                && line.contains(r#"who="cert:testbed""#)
                && line.contains(action)
                && line.contains("v2")
        })
    };
    assert!(logged("\"add\"") && logged("\"remove\""), "{log}");
    // The stranger's refused handshake: logged, at debug, naming the listener.
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("TLS handshake refused"))
        .collect();
    assert!(!refused.is_empty(), "{log}");
    assert!(
        refused
            .iter()
            .all(|line| line.contains("DEBUG") && line.contains(r#"listener="admin API""#)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn testbed_route_over_https_says_what_is_missing_before_connecting() {
    let (_pki, files, _dir) = pki();
    let junk = files.dir.join("junk.pem");
    std::fs::write(&junk, "not PEM at all\n").unwrap();
    let (ca, cert, key, junk) = (
        files.ca_cert.to_str().unwrap(),
        files.client_cert.to_str().unwrap(),
        files.client_key.to_str().unwrap(),
        junk.to_str().unwrap(),
    );
    // Port 1: nothing listens there, so any of these that connected would fail differently.
    let https = "https://127.0.0.1:1";
    for (args, says) in [
        (
            &["--admin", https][..],
            "an https:// server needs --ca FILE",
        ),
        (
            &["--admin", https, "--ca", "/nonexistent/ca.pem"][..],
            "--ca /nonexistent/ca.pem: cannot read the file",
        ),
        (
            &["--admin", https, "--ca", junk][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin", https, "--ca", ca, "--cert", junk, "--key", key][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin", https, "--ca", ca, "--cert", cert, "--key", junk][..],
            "holds no PEM private key",
        ),
        (
            &["--admin", "127.0.0.1:1", "--ca", ca][..],
            "are for https:// servers",
        ),
        (&["--admin", https, "--ca", ca, "--cert", cert][..], "--key"),
        (&["--admin", "ftp://127.0.0.1:1"][..], "https://HOST:PORT"),
        (&["--admin", "https://127.0.0.1"][..], "names no port"),
    ] {
        let mut all = vec!["route", "list"];
        all.extend(args);
        let output = testbed(&all, &[("TESTBED_ADMIN_TOKEN", TOKEN)]).await;
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&output).contains(says),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("panicked"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn serve_refuses_admin_tls_files_and_flags_it_cannot_use() {
    let (_pki, files, _dir) = pki();
    let dir = temp_dir("admin-tls-refusal");
    let good = token_file_named(dir.path(), "good", &format!("alice {TOKEN}\n"));
    let (cert, key, ca, other_key, good) = (
        files.server_cert.to_str().unwrap(),
        files.server_key.to_str().unwrap(),
        files.ca_cert.to_str().unwrap(),
        files.client_key.to_str().unwrap(),
        good.to_str().unwrap(),
    );
    let serve = [
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ];
    for (extra, says) in [
        (
            &["--admin-token-file", good, "--admin-tls-cert", cert][..],
            "--admin-tls-key",
        ),
        (
            &["--admin-client-ca", ca, "--admin-client-name", "alice"][..],
            "--admin-tls-cert",
        ),
        (
            &["--admin-token-file", good, "--admin-client-name", "alice"][..],
            "--admin-client-ca",
        ),
        (
            &[
                "--admin-tls-cert",
                "/nonexistent/c.pem",
                "--admin-tls-key",
                key,
                "--admin-token-file",
                good,
            ][..],
            "cannot read certificates from /nonexistent/c.pem",
        ),
        (
            &[
                "--admin-tls-cert",
                cert,
                "--admin-tls-key",
                other_key,
                "--admin-client-ca",
                ca,
            ][..],
            "do not make a usable identity",
        ),
        (
            &[
                "--admin-tls-cert",
                cert,
                "--admin-tls-key",
                key,
                "--admin-client-ca",
                key,
            ][..],
            "holds no PEM certificate",
        ),
        (
            &["--admin-tls-cert", cert, "--admin-tls-key", key][..],
            "the admin API needs a token",
        ),
    ] {
        let mut args = serve.to_vec();
        args.extend(extra);
        let output = testbed(&args, &[]).await;
        assert!(!output.status.success(), "{extra:?} started");
        assert!(
            stderr(&output).contains(says),
            "{extra:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{extra:?} printed that it serves");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testbed_route_over_https_to_a_plaintext_admin_api_says_how_to_name_it() {
    let (_server, admin) = router_with_admin().await;
    let (_pki, files, _dir) = pki();
    let https = format!("https://{}", admin.addr);
    let ca = files.ca_cert.to_str().unwrap();
    let output = testbed(
        &["route", "list", "--admin", &https, "--ca", ca],
        &[("TESTBED_ADMIN_TOKEN", TOKEN)],
    )
    .await;
    assert!(!output.status.success());
    let said = stderr(&output);
    assert!(said.contains("does not speak TLS"), "{said}");
    assert!(
        said.contains(&format!("name it {}, without https://", admin.addr)),
        "{said}"
    );
    assert!(!said.contains("grpc://"), "{said}");
}
