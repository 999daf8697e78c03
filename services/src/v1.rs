//! The v1 Incrementer: replies `value + 1`, nothing more.

use crate::arithmetic::{DEFAULT_STEP, increment};
use crate::pb::v1::{IncrementReply, IncrementRequest, incrementer_server};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// The v1 implementation. Stateless, so cloning it is free.
#[derive(Debug, Clone, Default)]
pub struct IncrementerV1;

impl IncrementerV1 {
    /// The tonic server for this implementation, ready to mount.
    pub fn server() -> incrementer_server::IncrementerServer<Self> {
        incrementer_server::IncrementerServer::new(Self)
    }
}

fn reply(request: &IncrementRequest) -> Result<IncrementReply, Status> {
    Ok(IncrementReply {
        value: increment(request.value, DEFAULT_STEP)?,
    })
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<IncrementReply, Status>> + Send>>;

#[tonic::async_trait]
impl incrementer_server::Incrementer for IncrementerV1 {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        reply(request.get_ref()).map(Response::new)
    }

    type IncrementStreamStream = ReplyStream;

    async fn increment_stream(
        &self,
        request: Request<Streaming<IncrementRequest>>,
    ) -> Result<Response<Self::IncrementStreamStream>, Status> {
        let mut inbound = request.into_inner();
        // Pulled by the server as the client reads, so replies keep request order; the first
        // error is yielded and ends the stream.
        let outbound = async_stream::try_stream! {
            while let Some(request) = inbound.message().await? {
                yield reply(&request)?;
            }
        };
        Ok(Response::new(Box::pin(outbound)))
    }
}
