//! The v2 Incrementer: `value + step` (step defaults to 1), echoes `request_id`, and names the
//! version of the implementation in every reply.

use crate::arithmetic::{DEFAULT_STEP, increment};
use crate::pb::v2::{IncrementReply, IncrementRequest, incrementer_server};
use crate::stream::{ReplyStream, replies};
use std::sync::Arc;
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

#[tonic::async_trait]
impl incrementer_server::Incrementer for IncrementerV2 {
    async fn increment(
        &self,
        request: Request<IncrementRequest>,
    ) -> Result<Response<IncrementReply>, Status> {
        self.reply(request.get_ref()).map(Response::new)
    }

    type IncrementStreamStream = ReplyStream<IncrementReply>;

    async fn increment_stream(
        &self,
        request: Request<Streaming<IncrementRequest>>,
    ) -> Result<Response<Self::IncrementStreamStream>, Status> {
        let this = self.clone();
        Ok(Response::new(replies(request.into_inner(), move |r| {
            this.reply(r)
        })))
    }
}
