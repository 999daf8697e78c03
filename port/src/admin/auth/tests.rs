//! Tokens, certificate names and the interceptor, as unit tests.

use super::*;

fn request(authorization: Option<&str>) -> Request<()> {
    let mut request = Request::new(());
    if let Some(value) = authorization {
        request
            .metadata_mut()
            .insert("authorization", value.parse().unwrap());
    }
    request
}

#[test]
fn each_token_names_its_holder_and_others_are_told_why_not() {
    let tokens = Tokens::single("alice", "aaaaaaaaaaaaaaaa")
        .unwrap()
        .merged(Tokens::single("bob", "bbbbbbbbbbbbbbbb").unwrap())
        .unwrap();
    let who = |auth| tokens.authenticate(&request(auth));
    assert_eq!(
        who(Some("Bearer bbbbbbbbbbbbbbbb")).unwrap(),
        Caller("bob".into())
    );
    assert_eq!(
        who(Some("bearer aaaaaaaaaaaaaaaa")).unwrap(),
        Caller("alice".into())
    );
    for (auth, code) in [
        (None, tonic::Code::Unauthenticated),
        (Some("Basic aaaaaaaaaaaaaaaa"), tonic::Code::Unauthenticated),
        (Some("Bearer "), tonic::Code::Unauthenticated),
        (
            Some("Bearer aaaaaaaaaaaaaaab"),
            tonic::Code::PermissionDenied,
        ),
        (Some("Bearer aaaa"), tonic::Code::PermissionDenied),
    ] {
        assert_eq!(who(auth).unwrap_err().code(), code, "{auth:?}");
    }
    assert_eq!(format!("{tokens:?}"), r#"["alice", "bob"]"#);
}

#[test]
fn weak_or_shared_tokens_are_refused() {
    assert!(Tokens::single("a", "short").is_err());
    assert!(Tokens::single("two words", "aaaaaaaaaaaaaaaa").is_err());
    // A holder's name that could pass for a certificate's or for two holders.
    for name in ["cert:alice", "alice+bob", "alice\"", ""] {
        assert!(
            Tokens::single(name, "aaaaaaaaaaaaaaaa").is_err(),
            "{name:?}"
        );
    }
    assert!(Tokens::single("ci-bot_1@example.org", "aaaaaaaaaaaaaaaa").is_ok());
    assert!(Tokens::single("a", "aaaaaaaa aaaaaaaa").is_err());
    let a = Tokens::single("a", "aaaaaaaaaaaaaaaa").unwrap();
    let err = a
        .clone()
        .merged(Tokens::single("b", "aaaaaaaaaaaaaaaa").unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("same admin token"), "{err}");
    assert!(a.clone().merged(a).is_err());
}

/// A self-signed certificate (DER) with this subject common name and these DNS names.
fn certificate(common_name: Option<&str>, dns: &[&str]) -> Vec<u8> {
    let names: Vec<String> = dns.iter().map(|name| name.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(name) = common_name {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
    }
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn a_certificate_names_its_holder_by_common_name_else_by_first_dns_name_marked() {
    let both = certificate(Some("alice"), &["a.example", "b.example"]);
    assert_eq!(certificate_name(&both).as_deref(), Ok("alice"));
    let dns_only = certificate(None, &["b.example", "c.example"]);
    assert_eq!(certificate_name(&dns_only).as_deref(), Ok("dns:b.example"));
    assert!(
        certificate_name(&certificate(None, &[]))
            .unwrap_err()
            .contains("names nobody")
    );
    assert!(
        certificate_name(b"not a certificate")
            .unwrap_err()
            .contains("does not parse")
    );
}

#[test]
fn a_certificate_name_that_could_forge_a_log_line_or_another_holder_is_refused() {
    for (common_name, dns) in [
        (Some(r#"alice action="remove" target="v1""#), &[][..]),
        (Some("alice+bob"), &[]),
        (Some("cert:alice"), &[]),
        (Some("alice\nadmin change"), &[]),
        // A bad common name is not passed over for a good DNS name.
        (Some(" "), &["d.example"]),
        (None, &["*.example"]),
    ] {
        let der = certificate(common_name, dns);
        let why = certificate_name(&der).unwrap_err();
        assert!(why.contains("letters, digits and . _ @ - only"), "{why}");
        let status = CertificateHolders::default().holder(&der).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert!(!status.message().contains('\n'), "{status:?}");
    }
}

#[test]
fn only_the_named_certificate_holders_are_accepted() {
    let alice = certificate(Some("alice"), &[]);
    let bob = certificate(Some("bob"), &[]);
    let nobody = certificate(None, &[]);
    let anyone = CertificateHolders::named(Vec::new()).unwrap();
    assert_eq!(anyone.holder(&bob).unwrap(), "bob");
    let only_alice = CertificateHolders::named(vec!["alice".into()]).unwrap();
    assert_eq!(only_alice.holder(&alice).unwrap(), "alice");
    let denied = only_alice.holder(&bob).unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(denied.message().contains(r#""bob""#), "{denied:?}");
    let denied = anyone.holder(&nobody).unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    assert!(CertificateHolders::named(vec!["".into()]).is_err());
    // A DNS name is accepted in its marked form only.
    let dns_only = certificate(None, &["alice"]);
    let by_dns = CertificateHolders::named(vec!["dns:alice".into()]).unwrap();
    assert_eq!(by_dns.holder(&dns_only).unwrap(), "dns:alice");
    assert!(by_dns.holder(&alice).is_err());
    assert!(only_alice.holder(&dns_only).is_err());
    for bad in ["dns:", "a b", "alice+bob", "dns:dns:alice", "x:alice"] {
        assert!(
            CertificateHolders::named(vec![bad.into()]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn every_credential_a_call_presents_must_be_good() {
    let access = Access {
        tokens: Tokens::single("bob", "bbbbbbbbbbbbbbbb").unwrap(),
        certificates: Some(CertificateHolders::named(vec!["alice".into()]).unwrap()),
    };
    let alice = certificate(Some("alice"), &[]);
    let carol = certificate(Some("carol"), &[]);
    let who = |cert: Option<&[u8]>, auth| access.authenticate_with(cert, &request(auth));
    assert_eq!(
        who(Some(&alice), None).unwrap(),
        Caller("cert:alice".into())
    );
    assert_eq!(
        who(Some(&alice), Some("Bearer bbbbbbbbbbbbbbbb")).unwrap(),
        Caller("cert:alice+bob".into())
    );
    assert_eq!(
        who(None, Some("Bearer bbbbbbbbbbbbbbbb")).unwrap(),
        Caller("bob".into())
    );
    for (cert, auth, code) in [
        (
            Some(&alice[..]),
            Some("Bearer wrong-token-000000"),
            tonic::Code::PermissionDenied,
        ),
        (
            Some(&carol[..]),
            Some("Bearer bbbbbbbbbbbbbbbb"),
            tonic::Code::PermissionDenied,
        ),
        (Some(&carol[..]), None, tonic::Code::PermissionDenied),
        (None, None, tonic::Code::Unauthenticated),
    ] {
        assert_eq!(who(cert, auth).unwrap_err().code(), code, "{auth:?}");
    }
    assert!(
        who(None, None)
            .unwrap_err()
            .message()
            .contains("--cert FILE")
    );
    // Certificates only: a token is refused, and the refusal says none is taken.
    let certificates_only = Access {
        tokens: Tokens::default(),
        certificates: Some(CertificateHolders::default()),
    };
    let status = certificates_only
        .authenticate_with(Some(&alice), &request(Some("Bearer bbbbbbbbbbbbbbbb")))
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied);
    assert!(
        status.message().contains("accepts no bearer tokens"),
        "{status:?}"
    );
    // Without a client CA a certificate counts for nothing: the token decides.
    let tokens_only = Access::tokens(Tokens::single("bob", "bbbbbbbbbbbbbbbb").unwrap());
    let status = tokens_only
        .authenticate_with(Some(&alice), &request(None))
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
}
