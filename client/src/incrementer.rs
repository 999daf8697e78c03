//! [`IncrementerClient`]: one client for both API versions. The generated v1 and v2 clients
//! share no trait, so this type holds the version and picks the generated client per call; the
//! rest of the testbed never touches generated clients directly.

use serde::Serialize;
use services::Api;
use services::pb::{v1, v2};
use std::net::SocketAddr;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

/// A channel to `addr` with Nagle off, as every testbed client uses.
pub async fn connect(addr: SocketAddr) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await
}

/// Unary calls or one bidirectional stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One `Increment` call per value.
    Unary,
    /// All values on one `IncrementStream`.
    Stream,
}

impl Mode {
    /// Lower-case name, as the external clients take it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Unary => "unary",
            Mode::Stream => "stream",
        }
    }
}

/// One reply, whichever version answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reply {
    /// The incremented value.
    pub value: i64,
    /// The echoed request id (0 from v1 clients and v1 servers).
    pub request_id: u64,
    /// The version that served the call: the router's `x-api-version` response header, else
    /// v2's `served_by_version`; `None` when neither says (v1 served directly).
    pub served_by: Option<String>,
}

/// A client of one API version on one channel, optionally sending an `x-api-version`
/// requirement with every call. Cloning is cheap and shares the connection.
#[derive(Debug, Clone)]
pub struct IncrementerClient {
    api: Api,
    channel: Channel,
    requirement: Option<MetadataValue<Ascii>>,
}

impl IncrementerClient {
    /// A client of `api` on `channel`.
    pub fn new(api: Api, channel: Channel) -> Self {
        Self {
            api,
            channel,
            requirement: None,
        }
    }

    /// Connects a client of `api` to `addr`.
    pub async fn connect(api: Api, addr: SocketAddr) -> Result<Self, tonic::transport::Error> {
        Ok(Self::new(api, connect(addr).await?))
    }

    /// Sends `requirement` as `x-api-version` with every call.
    pub fn with_requirement(mut self, requirement: &semver::VersionReq) -> Self {
        // A parsed requirement prints as ASCII, so this cannot fail; if it ever did, sending no
        // header would be wrong, so keep whatever was set and let the caller see the reply.
        if let Ok(value) = MetadataValue::try_from(requirement.to_string()) {
            self.requirement = Some(value);
        }
        self
    }

    /// The API version this client speaks.
    pub fn api(&self) -> Api {
        self.api
    }

    /// The channel it calls on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// One unary `Increment`. v1 has no `step` or `request_id`: for a v1 client they are not
    /// sent, and the reply's `request_id` is the one asked for (v1 cannot echo it).
    pub async fn increment(
        &self,
        value: i64,
        step: Option<i64>,
        request_id: u64,
    ) -> Result<Reply, Status> {
        match self.api {
            Api::V1 => {
                let mut client =
                    v1::incrementer_client::IncrementerClient::new(self.channel.clone());
                let response = client
                    .increment(self.request(v1::IncrementRequest { value }))
                    .await?;
                let served_by = header_version(response.metadata());
                Ok(Reply {
                    value: response.into_inner().value,
                    request_id,
                    served_by,
                })
            }
            Api::V2 => {
                let mut client =
                    v2::incrementer_client::IncrementerClient::new(self.channel.clone());
                let request = v2::IncrementRequest {
                    value,
                    step,
                    request_id,
                };
                Ok(v2_reply(client.increment(self.request(request)).await?))
            }
        }
    }

    /// All of `values` on one `IncrementStream` (v2 requests get ids 1, 2, ... and `step`),
    /// then every reply until the server ends the stream.
    pub async fn increment_stream(
        &self,
        values: &[i64],
        step: Option<i64>,
    ) -> Result<Vec<Reply>, Status> {
        match self.api {
            Api::V1 => {
                let mut client =
                    v1::incrementer_client::IncrementerClient::new(self.channel.clone());
                let requests: Vec<_> = values
                    .iter()
                    .map(|&value| v1::IncrementRequest { value })
                    .collect();
                let response = client
                    .increment_stream(self.request(tokio_stream::iter(requests)))
                    .await?;
                let served_by = header_version(response.metadata());
                let mut inbound = response.into_inner();
                let mut replies = Vec::with_capacity(values.len());
                while let Some(reply) = inbound.message().await? {
                    replies.push(Reply {
                        value: reply.value,
                        request_id: 0,
                        served_by: served_by.clone(),
                    });
                }
                Ok(replies)
            }
            Api::V2 => {
                let mut client =
                    v2::incrementer_client::IncrementerClient::new(self.channel.clone());
                let requests: Vec<_> = values
                    .iter()
                    .zip(1..)
                    .map(|(&value, request_id)| v2::IncrementRequest {
                        value,
                        step,
                        request_id,
                    })
                    .collect();
                let response = client
                    .increment_stream(self.request(tokio_stream::iter(requests)))
                    .await?;
                let header = header_version(response.metadata());
                let mut inbound = response.into_inner();
                let mut replies = Vec::with_capacity(values.len());
                while let Some(reply) = inbound.message().await? {
                    replies.push(Reply {
                        served_by: header.clone().or(non_empty(reply.served_by_version)),
                        value: reply.value,
                        request_id: reply.request_id,
                    });
                }
                Ok(replies)
            }
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(requirement) = &self.requirement {
            request
                .metadata_mut()
                .insert(router::API_VERSION_HEADER, requirement.clone());
        }
        request
    }
}

fn v2_reply(response: Response<v2::IncrementReply>) -> Reply {
    let header = header_version(response.metadata());
    let reply = response.into_inner();
    Reply {
        served_by: header.or(non_empty(reply.served_by_version)),
        value: reply.value,
        request_id: reply.request_id,
    }
}

fn header_version(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get(router::API_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|t| !t.is_empty())
}
