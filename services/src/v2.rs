//! The v2 Incrementer: `value + step` (step defaults to 1), echoes `request_id`, and names the
//! version of the implementation in every reply.

use crate::arithmetic::{DEFAULT_STEP, increment};
use crate::pb::v2::{IncrementReply, IncrementRequest, incrementer_server};
use std::{pin::Pin, sync::Arc};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// The v2 implementation, labelled with the semantic version it reports in replies.
#[derive(Debug, Clone)]
pub struct IncrementerV2 {
    version: Arc<str>,
}

impl IncrementerV2 {
    /// An implementation that reports `version` in `served_by_version`.
    pub fn new(version: &semver::Version) -> Self {
        Self {
            version: version.to_string().into(),
        }
    }

    /// The tonic server for this implementation, ready to mount.
    pub fn server(version: &semver::Version) -> incrementer_server::IncrementerServer<Self> {
        incrementer_server::IncrementerServer::new(Self::new(version))
    }

    fn reply(&self, request: &IncrementRequest) -> Result<IncrementReply, Status> {
        Ok(IncrementReply {
            value: increment(request.value, request.step.unwrap_or(DEFAULT_STEP))?,
            request_id: request.request_id,
            served_by_version: self.version.to_string(),
        })
    }
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<IncrementReply, Status>> + Send>>;

#[tonic::async_trait]
impl incrementer_server::Incrementer for IncrementerV2 {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        self.reply(request.get_ref()).map(Response::new)
    }

    type IncrementStreamStream = ReplyStream;

    async fn increment_stream(
        &self,
        request: Request<Streaming<IncrementRequest>>,
    ) -> Result<Response<Self::IncrementStreamStream>, Status> {
        let mut inbound = request.into_inner();
        let this = self.clone();
        // Pulled by the server as the client reads, so replies keep request order; the first
        // error is yielded and ends the stream.
        let outbound = async_stream::try_stream! {
            while let Some(request) = inbound.message().await? {
                yield this.reply(&request)?;
            }
        };
        Ok(Response::new(Box::pin(outbound)))
    }
}
