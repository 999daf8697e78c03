//! The probe over TLS and mutual TLS: the testbed's own backends give the plaintext probe's
//! cells, and every TLS mistake is refused before any call, saying which.

use super::{backend, check_own_backends, path, probe, refused, servers};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_testbeds_own_backends_probed_over_tls_as_over_plaintext() {
    let (_, files, _dir) = crate::common::credentials::pki();
    let (cert, key, ca) = (
        path(&files.server_cert),
        path(&files.server_key),
        path(&files.ca_cert),
    );
    let tls = ["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    let v1 = backend("v1", &tls).await;
    let v2 = backend("v2", &tls).await;
    let (plain_v1, plain_v2) = (backend("v1", &[]).await, backend("v2", &[]).await);

    // Descriptors by reflection over TLS, every call over TLS: the plaintext probe's cells.
    let (code, text, report) = probe(&servers("https", &v1, &v2, &["--ca", &ca])).await;
    check_own_backends(&report);
    assert_eq!(code, 0, "{text}");
    assert_eq!(report["old"], format!("https://{}", v1.addr));
    assert!(
        text.contains(&format!(
            "old clients (old descriptors) → server https://{} (compared with their own server https://{})",
            v2.addr, v1.addr
        )),
        "{text}"
    );
    let (plain_code, plain_text, plain) = probe(&servers("grpc", &plain_v1, &plain_v2, &[])).await;
    assert_eq!(code, plain_code);
    for d in 0..2 {
        assert_eq!(
            report["directions"][d]["methods"], plain["directions"][d]["methods"],
            "direction {d}"
        );
    }
    let anonymous =
        |text: &str, old: String, new: String| text.replace(&old, "OLD").replace(&new, "NEW");
    assert_eq!(
        anonymous(
            &text,
            format!("https://{}", v1.addr),
            format!("https://{}", v2.addr)
        ),
        anonymous(
            &plain_text,
            plain_v1.addr.to_string(),
            plain_v2.addr.to_string()
        )
    );

    // Refused, each with what is wrong, before any probe call.
    let other = port::tls::TestPki::generate().expect("certificates are made");
    let other_dir = crate::common::temp_dir("probe-other-ca");
    let other = other.write_to(other_dir.path()).expect("written");
    let https = |extra: &[&str]| servers("https", &v1, &v2, extra);
    let missing = path(&files.dir.join("missing.pem"));
    for (args, says) in [
        (
            https(&["--ca", &path(&other.ca_cert)]),
            "the server's certificate is not accepted with --ca",
        ),
        (https(&[]), "an https:// server needs --ca FILE"),
        (
            https(&["--ca", &key]),
            "holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)",
        ),
        (https(&["--ca", &missing]), "cannot read the file"),
        (
            servers("https", &plain_v1, &v2, &["--ca", &ca]),
            "the server does not speak TLS there",
        ),
    ] {
        let stderr = refused(&args, 1).await;
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }

    // Mutual TLS: without a client certificate refused, with the CA's one served.
    let mutual = backend("v2", &[&tls[..], &["--tls-client-ca", &ca]].concat()).await;
    let to_mutual = |extra: &[&str]| servers("https", &v1, &mutual, extra);
    let stderr = refused(&to_mutual(&["--ca", &ca]), 1).await;
    assert!(
        // Under TLS 1.3 the server's alert may or may not arrive before the connection closes:
        // either way the message names the missing certificate.
        stderr.contains("requires a client certificate (mutual TLS)")
            && stderr.contains("--cert FILE --key FILE"),
        "{stderr}"
    );
    let (stranger, stranger_key) = (path(&files.stranger_cert), path(&files.stranger_key));
    let stderr = refused(
        &to_mutual(&["--ca", &ca, "--cert", &stranger, "--key", &stranger_key]),
        1,
    )
    .await;
    assert!(stderr.contains("client certificate of --cert"), "{stderr}");
    let (client, client_key) = (path(&files.client_cert), path(&files.client_key));
    let with_identity = ["--ca", ca.as_str(), "--cert", &client, "--key", &client_key];
    let (code, text, report) = probe(&to_mutual(&with_identity)).await;
    check_own_backends(&report);
    assert_eq!(code, 0, "{text}");
}
