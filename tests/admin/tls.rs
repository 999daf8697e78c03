//! The admin API over TLS: a client certificate from `--admin-client-ca` changes routes, one
//! not named by `--admin-client-name` is PERMISSION_DENIED, another CA's or an expired one is
//! refused at the handshake (logged at debug), neither certificate nor token is
//! UNAUTHENTICATED, a token still works (and one sent to an API that takes certificates only is
//! refused, saying so). Connections that stay silent before or after the TLS handshake are
//! closed at the handshake deadline; past the listener's limit a connection that never
//! authenticated makes room, and when every one did, new connections are closed at once (more
//! in `tests/limits.rs`).

use super::*;

/// The admin API over TLS (`pki`'s server certificate) on a free loopback port, set up from
/// the flags `serve` would have been given: `--admin-client-ca` the PKI's CA, and `tweak` adds
/// the rest (tokens, client names).
fn tls_admin_config(
    files: &port::tls::PkiFiles,
    tweak: impl FnOnce(&mut port::admin::AdminOptions),
) -> AdminConfig {
    let mut options = port::admin::AdminOptions {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        admin_tls_cert: Some(files.server_cert.clone()),
        admin_tls_key: Some(files.server_key.clone()),
        admin_client_ca: Some(files.ca_cert.clone()),
        ..Default::default()
    };
    tweak(&mut options);
    options.config().expect("usable flags").expect("enabled")
}

/// The admin API of `config` over `server`'s router.
async fn start_admin(server: &RunningServer, config: AdminConfig) -> RunningAdmin {
    let handle = server.router.clone().expect("a routed deployment");
    port::admin::start(config, handle, HashMap::new(), None)
        .await
        .expect("the admin API starts")
}

/// A v1-only router in this process with its admin API over TLS ([`tls_admin_config`]).
async fn router_with_tls_admin(
    files: &port::tls::PkiFiles,
    tweak: impl FnOnce(&mut port::admin::AdminOptions),
) -> (RunningServer, RunningAdmin) {
    let server = start(Deployment::V1Only).await;
    let admin = start_admin(&server, tls_admin_config(files, tweak)).await;
    assert!(
        admin.address().starts_with("https://"),
        "{}",
        admin.address()
    );
    (server, admin)
}

/// A client of the TLS admin API at `admin` trusting `pki`'s CA, presenting the client
/// certificate `identity` and sending `token` when given.
async fn tls_admin(
    admin: SocketAddr,
    pki: &port::tls::TestPki,
    identity: Option<(&str, &str)>,
    token: Option<&str>,
) -> anyhow::Result<port::admin::AdminClient> {
    let address = port::admin::AdminAddress::Https {
        host: "localhost".into(),
        port: admin.port(),
    };
    port::admin::connect_to(&address, Some(&pki.client(identity)), token).await
}

/// The `(name, draining)` of each backend in `server`'s route table, read in this process.
fn table(server: &RunningServer) -> Vec<(String, bool)> {
    let router = server.router.as_ref().expect("a routed deployment");
    router
        .table()
        .backends()
        .into_iter()
        .map(|b| (b.name, b.draining))
        .collect()
}

/// Checks that a client presenting `identity` is kept from removing v1 at the handshake: the
/// connection fails, or its first call fails as a transport failure (UNAVAILABLE, or a status
/// carrying the connection's error as its source), never with a status of the admin API.
async fn assert_refused_at_handshake(
    admin: SocketAddr,
    pki: &port::tls::TestPki,
    identity: Option<(&str, &str)>,
) {
    let Ok(mut client) = tls_admin(admin, pki, identity, Some(TOKEN)).await else {
        return;
    };
    let removed = tokio::time::timeout(
        PATIENCE,
        client.remove(RemoveRequest {
            name: "v1".into(),
            force: false,
        }),
    )
    .await
    .expect("the refusal is prompt, not a hang");
    match removed {
        Ok(reply) => panic!("served: {reply:?}"),
        Err(status) => assert!(
            status.code() == Code::Unavailable || std::error::Error::source(&status).is_some(),
            "not a transport failure: {status:?}"
        ),
    }
}

#[tokio::test]
async fn over_tls_no_certificate_and_no_token_is_unauthenticated_and_a_token_still_works() {
    let (pki, files, _dir) = pki();
    let dir = temp_dir("admin-tls-token");
    let tokens = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let (server, admin) = router_with_tls_admin(&files, |options| {
        options.admin_token_file = Some(tokens);
    })
    .await;
    let v1_only = [("v1".to_string(), false)];
    assert_eq!(table(&server), v1_only);

    // Tokens and certificates together: a certificate is optional at the handshake, but a
    // call with neither gets nowhere.
    let mut anonymous = tls_admin(admin.addr, &pki, None, None).await.unwrap();
    assert_all_refused(
        &mut anonymous,
        Code::Unauthenticated,
        "no client certificate",
    )
    .await;

    // A token over TLS, without a certificate, still works; a wrong one is denied.
    let mut by_token = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    let listed = by_token.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    let status = by_token
        .remove(RemoveRequest {
            name: "nope".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    let mut wrong = tls_admin(admin.addr, &pki, None, Some("mallory-token-0123456789"))
        .await
        .unwrap();
    assert_all_refused(
        &mut wrong,
        Code::PermissionDenied,
        "not one this admin API accepts",
    )
    .await;

    // A certificate from another CA, or an expired one, is refused at the handshake, even
    // with a good token; so is plaintext.
    let stranger = (pki.stranger_cert.as_str(), pki.stranger_key.as_str());
    assert_refused_at_handshake(admin.addr, &pki, Some(stranger)).await;
    let expired = (pki.expired_cert.as_str(), pki.expired_key.as_str());
    assert_refused_at_handshake(admin.addr, &pki, Some(expired)).await;
    let plaintext = match port::admin::connect(admin.addr, TOKEN).await {
        Err(_) => true,
        Ok(mut client) => client.list(ListRequest {}).await.is_err(),
    };
    assert!(plaintext, "plaintext was served on the TLS admin listener");

    // The certificate from the CA is served, and nothing refused changed the table.
    let good = (pki.client_cert.as_str(), pki.client_key.as_str());
    let mut by_cert = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    let listed = by_cert.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    assert_eq!(table(&server), v1_only);
    assert_eq!(call_v1(server.addr).await, Ok((42, "1.0.0".into())));
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_certificate_not_named_by_admin_client_name_is_permission_denied() {
    let (pki, files, _dir) = pki();
    // The PKI's client certificate names "testbed" (its CN; its DNS name is client.testbed).
    let (server, admin) = router_with_tls_admin(&files, |options| {
        options.admin_client_names = vec!["alice".into()];
    })
    .await;
    let good = (pki.client_cert.as_str(), pki.client_key.as_str());
    let mut not_alice = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    assert_all_refused(&mut not_alice, Code::PermissionDenied, r#""testbed""#).await;
    // Without tokens every client must present a certificate: none is refused at the handshake.
    assert_refused_at_handshake(admin.addr, &pki, None).await;
    assert_eq!(table(&server), [("v1".to_string(), false)]);
    admin.shutdown().await.unwrap();

    // Named, the same certificate is let in.
    let config = tls_admin_config(&files, |options| {
        options.admin_client_names = vec!["alice".into(), "testbed".into()];
    });
    let admin = start_admin(&server, config).await;
    let mut testbed = tls_admin(admin.addr, &pki, Some(good), None).await.unwrap();
    let listed = testbed.list(ListRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.backends.len(), 1, "{listed:?}");
    // This API takes no tokens: one sent with the certificate is refused, and told so.
    let mut with_token = tls_admin(admin.addr, &pki, Some(good), Some(TOKEN))
        .await
        .unwrap();
    let status = with_token.list(ListRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .contains("this admin API accepts no bearer tokens (it takes client certificates)"),
        "{status:?}"
    );
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

/// The TLS admin API taking tokens too (so a client without a certificate finishes its
/// handshake), with its listener's limits set to `max_connections` and `handshake_timeout`.
async fn router_with_limited_tls_admin(
    files: &port::tls::PkiFiles,
    max_connections: usize,
    handshake_timeout: Duration,
) -> (RunningServer, RunningAdmin, tempfile::TempDir) {
    let dir = temp_dir("admin-limits");
    let tokens = token_file(dir.path(), &format!("alice {TOKEN}\n"));
    let config = tls_admin_config(files, |options| options.admin_token_file = Some(tokens))
        .with_limits(max_connections, handshake_timeout);
    let server = start(Deployment::V1Only).await;
    let admin = start_admin(&server, config).await;
    (server, admin, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_tls_admin_api_are_closed_at_the_handshake_deadline() {
    let (pki, files, _dir) = pki();
    let (server, admin, _tokens) =
        router_with_limited_tls_admin(&files, 64, Duration::from_secs(1)).await;
    // Silent before the TLS handshake, silent after it, and a preface cut short after it.
    let mut silent_tcp = RawConn::connect(admin.addr).await;
    let mut silent_tls = tls_handshake(admin.addr, &pki.ca_cert).await;
    let mut half_preface = tls_handshake(admin.addr, &pki.ca_cert).await;
    half_preface
        .write_all(&frames::PREFACE[..10])
        .await
        .unwrap();
    half_preface.flush().await.unwrap();
    // A client that speaks in time is served meanwhile.
    let mut client = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    client.list(ListRequest {}).await.unwrap();
    assert!(
        silent_tcp.closed_within(PATIENCE).await,
        "a connection that never started its TLS handshake is still open"
    );
    assert!(
        frames::closed_within(&mut silent_tls, PATIENCE).await,
        "a TLS connection that never sent the HTTP/2 preface is still open"
    );
    assert!(
        frames::closed_within(&mut half_preface, PATIENCE).await,
        "a TLS connection that sent half the HTTP/2 preface is still open"
    );
    client
        .list(ListRequest {})
        .await
        .expect("the client that spoke in time is still served");
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn past_the_tls_admin_apis_limit_an_idle_connection_makes_room_and_then_new_ones_are_closed()
{
    let (pki, files, _dir) = pki();
    // A handshake deadline far off: only the limit can close a connection here.
    let (server, admin, _tokens) =
        router_with_limited_tls_admin(&files, 2, Duration::from_secs(300)).await;
    let mut idle = RawConn::connect(admin.addr).await;
    let mut client = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    client.list(ListRequest {}).await.unwrap();
    // The listener is full: a new connection closes the one that never authenticated.
    let mut second = tls_admin(admin.addr, &pki, None, Some(TOKEN))
        .await
        .unwrap();
    assert!(
        idle.closed_within(PATIENCE).await,
        "the idle connection is still open past the limit of 2"
    );
    second.list(ListRequest {}).await.unwrap();
    // Both slots are held by connections that authenticated: new ones are closed at once.
    for i in 0..3 {
        let mut extra = RawConn::connect(admin.addr).await;
        assert!(
            extra.closed_within(PATIENCE).await,
            "connection {i} past the limit of 2 is still open"
        );
    }
    for client in [&mut client, &mut second] {
        client
            .list(ListRequest {})
            .await
            .expect("a connection that authenticated is still served");
    }
    admin.shutdown().await.unwrap();
    server.shutdown().await.unwrap();
}
