//! The v1 and v2 implementations over real gRPC: values, added fields, errors and streams,
//! both mounted directly and behind the router.

use crate::common::{start, v1_client, v2_client, v2_request};
use port::deployment::Deployment;
use services::pb::{v1, v2};
use tonic::Code;

const SERVED_DIRECTLY_AND_ROUTED: [Deployment; 2] = [Deployment::Direct, Deployment::SideBySide];

#[tokio::test]
async fn v1_unary_adds_one_and_rejects_overflow() {
    for deployment in SERVED_DIRECTLY_AND_ROUTED {
        let server = start(deployment).await;
        let mut client = v1_client(&server).await;
        let reply = client
            .increment(v1::IncrementRequest { value: 41 })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().value, 42);
        let reply = client
            .increment(v1::IncrementRequest { value: -1 })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().value, 0);

        let status = client
            .increment(v1::IncrementRequest { value: i64::MAX })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{deployment}");
        assert!(
            status.message().contains(&i64::MAX.to_string()),
            "{status:?}"
        );
        // The server keeps serving after an error.
        let reply = client
            .increment(v1::IncrementRequest { value: 1 })
            .await
            .unwrap();
        assert_eq!(reply.into_inner().value, 2);
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn v2_unary_uses_step_echoes_request_id_and_names_its_version() {
    for deployment in SERVED_DIRECTLY_AND_ROUTED {
        let server = start(deployment).await;
        let mut client = v2_client(&server).await;
        let reply = client
            .increment(v2_request(41, Some(5), 77))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.value, 46);
        assert_eq!(reply.request_id, 77);
        assert_eq!(reply.served_by_version, "2.0.0");
        // An absent step means 1, exactly like v1.
        let reply = client
            .increment(v2_request(41, None, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.value, 42);
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn v2_unary_rejects_bad_steps_and_overflow() {
    let server = start(Deployment::SideBySide).await;
    let mut client = v2_client(&server).await;
    for step in [0, -1, i64::MIN] {
        let status = client
            .increment(v2_request(1, Some(step), 1))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "step {step}");
        assert!(status.message().contains("step"), "{status:?}");
    }
    for (value, step) in [(i64::MAX, 1), (1, i64::MAX), (i64::MAX - 1, 2)] {
        let status = client
            .increment(v2_request(value, Some(step), 1))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{value} + {step}");
        assert!(status.message().contains(&value.to_string()), "{status:?}");
    }
    let reply = client
        .increment(v2_request(i64::MAX - 2, Some(2), 1))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().value, i64::MAX);
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn streams_answer_in_order_and_end_on_half_close() {
    for deployment in SERVED_DIRECTLY_AND_ROUTED {
        let server = start(deployment).await;
        let mut client = v2_client(&server).await;
        let requests: Vec<_> = (0..100)
            .map(|i| v2_request(i * 10, Some(3), i as u64))
            .collect();
        let mut replies = client
            .increment_stream(tokio_stream::iter(requests))
            .await
            .unwrap()
            .into_inner();
        for i in 0..100 {
            let reply = replies
                .message()
                .await
                .unwrap()
                .expect("one reply per request");
            assert_eq!((reply.value, reply.request_id), (i * 10 + 3, i as u64));
        }
        assert!(
            replies.message().await.unwrap().is_none(),
            "stream ends cleanly"
        );

        let mut v1 = v1_client(&server).await;
        let empty = tokio_stream::iter(Vec::<v1::IncrementRequest>::new());
        let mut replies = v1.increment_stream(empty).await.unwrap().into_inner();
        assert!(
            replies.message().await.unwrap().is_none(),
            "empty stream ends cleanly"
        );
        server.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn an_error_on_one_stream_message_ends_the_stream_with_its_status() {
    let server = start(Deployment::SideBySide).await;
    let mut client = v2_client(&server).await;
    let requests = vec![
        v2_request(1, None, 1),
        v2_request(2, Some(0), 2),
        v2_request(3, None, 3),
    ];
    let mut replies = client
        .increment_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().value, 2);
    let status = replies.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);

    let mut v1 = v1_client(&server).await;
    let requests = vec![
        v1::IncrementRequest { value: 5 },
        v1::IncrementRequest { value: i64::MAX },
    ];
    let mut replies = v1
        .increment_stream(tokio_stream::iter(requests))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replies.message().await.unwrap().unwrap().value, 6);
    assert_eq!(
        replies.message().await.unwrap_err().code(),
        Code::OutOfRange
    );
    server.shutdown().await.unwrap();
}

#[test]
fn v1_and_v2_messages_are_wire_compatible_both_ways() {
    use prost::Message;
    let v1_bytes = v1::IncrementRequest { value: 41 }.encode_to_vec();
    let as_v2 = v2::IncrementRequest::decode(v1_bytes.as_slice()).unwrap();
    assert_eq!(as_v2, v2_request(41, None, 0));

    let v2_bytes = v2::IncrementReply {
        value: 46,
        request_id: 9,
        served_by_version: "2.0.0".into(),
    }
    .encode_to_vec();
    let as_v1 = v1::IncrementReply::decode(v2_bytes.as_slice()).unwrap();
    assert_eq!(as_v1.value, 46);
}
