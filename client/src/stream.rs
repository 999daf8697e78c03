//! Request/reply calls over one long-lived v2 bidirectional stream.
//!
//! This is the "abstraction layer" the original experiment asked for: a caller awaits the reply
//! to its own request, as with a unary call, while all calls share one stream (no per-call
//! HTTP/2 stream setup). Replies are matched to requests by `request_id`; a reply for another
//! request is an error, never silently taken as the answer.

use services::pb::v2::{IncrementReply, IncrementRequest, incrementer_client::IncrementerClient};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

/// One open `IncrementStream`, used for one call at a time.
#[derive(Debug)]
pub struct StreamIncrementer {
    outbound: mpsc::Sender<IncrementRequest>,
    inbound: Streaming<IncrementReply>,
    next_id: u64,
}

impl StreamIncrementer {
    /// Opens the stream on `channel`.
    pub async fn open(channel: Channel) -> Result<Self, Status> {
        let (outbound, requests) = mpsc::channel(1);
        let inbound = IncrementerClient::new(channel)
            .increment_stream(ReceiverStream::new(requests))
            .await?
            .into_inner();
        Ok(Self {
            outbound,
            inbound,
            next_id: 1,
        })
    }

    /// Sends `value` (with `step`, default 1) and waits for its reply.
    pub async fn increment(
        &mut self,
        value: i64,
        step: Option<i64>,
    ) -> Result<IncrementReply, Status> {
        let request_id = self.next_id;
        self.next_id += 1;
        let request = IncrementRequest {
            value,
            step,
            request_id,
        };
        self.outbound
            .send(request)
            .await
            .map_err(|_| Status::unavailable("the stream's request side is closed"))?;
        let reply = self
            .inbound
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("the server ended the stream"))?;
        if reply.request_id != request_id {
            return Err(Status::internal(format!(
                "reply for request {} arrived while waiting for request {request_id}",
                reply.request_id
            )));
        }
        Ok(reply)
    }
}
