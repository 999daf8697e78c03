//! The v1 Incrementer: replies `value + 1`, nothing more.

use crate::arithmetic::{DEFAULT_STEP, increment};
use crate::pb::v1::{IncrementReply, IncrementRequest, incrementer_server};
use crate::stream::{ReplyStream, replies};
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

#[tonic::async_trait]
impl incrementer_server::Incrementer for IncrementerV1 {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        reply(request.get_ref()).map(Response::new)
    }

    type IncrementStreamStream = ReplyStream<IncrementReply>;

    async fn increment_stream(
        &self,
        request: Request<Streaming<IncrementRequest>>,
    ) -> Result<Response<Self::IncrementStreamStream>, Status> {
        Ok(Response::new(replies(request.into_inner(), reply)))
    }
}
