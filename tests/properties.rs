//! Property: for any value and step, the services (called over gRPC, through the router)
//! return value + step, or exactly the documented error: INVALID_ARGUMENT for a step below 1,
//! OUT_OF_RANGE when the sum overflows int64.

use port::deployment::Deployment;
use port::server::RunningServer;
use proptest::prelude::*;
use services::pb::{v1, v2};
use std::net::SocketAddr;
use std::sync::OnceLock;
use tonic::Code;

/// One server for all cases, on a runtime that keeps serving between them.
fn server() -> &'static (tokio::runtime::Runtime, RunningServer) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, RunningServer)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = runtime
            .block_on(port::server::start(addr, Deployment::SideBySide))
            .unwrap();
        (runtime, server)
    })
}

/// What the API documents for `value + step`.
fn documented(value: i64, step: i64) -> Result<i64, Code> {
    if step < 1 {
        return Err(Code::InvalidArgument);
    }
    value.checked_add(step).ok_or(Code::OutOfRange)
}

fn values() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        (i64::MAX - 8)..=i64::MAX,
        i64::MIN..=(i64::MIN + 8),
        -8i64..=8
    ]
}

fn steps() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(Some),
        (-3i64..=3).prop_map(Some),
        Just(Some(i64::MAX)),
        Just(Some(i64::MIN)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn v2_returns_value_plus_step_or_the_documented_error(value in values(), step in steps()) {
        let (runtime, server) = server();
        let got = runtime.block_on(async {
            let channel = client::connect(server.addr).await.unwrap();
            let mut client = v2::incrementer_client::IncrementerClient::new(channel);
            let request = v2::IncrementRequest { value, step, request_id: 7 };
            client.increment(request).await.map(|r| r.into_inner())
        });
        match (documented(value, step.unwrap_or(1)), got) {
            (Ok(sum), Ok(reply)) => {
                prop_assert_eq!(reply.value, sum);
                prop_assert_eq!(reply.request_id, 7);
            }
            (Err(code), Err(status)) => prop_assert_eq!(status.code(), code, "{:?}", status),
            (want, got) => prop_assert!(false, "value {value}, step {step:?}: want {want:?}, got {got:?}"),
        }
    }

    #[test]
    fn v1_returns_value_plus_one_or_out_of_range(value in values()) {
        let (runtime, server) = server();
        let got = runtime.block_on(async {
            let channel = client::connect(server.addr).await.unwrap();
            let mut client = v1::incrementer_client::IncrementerClient::new(channel);
            client.increment(v1::IncrementRequest { value }).await.map(|r| r.into_inner().value)
        });
        match (documented(value, 1), got) {
            (Ok(sum), Ok(reply)) => prop_assert_eq!(reply, sum),
            (Err(code), Err(status)) => prop_assert_eq!(status.code(), code),
            (want, got) => prop_assert!(false, "value {value}: want {want:?}, got {got:?}"),
        }
    }
}
