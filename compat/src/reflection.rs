//! `grpc://HOST:PORT` inputs: the server's descriptors read by gRPC reflection
//! (`grpc.reflection.v1`, falling back to `v1alpha`), and live calls that confirm
//! method-level findings.

use crate::probe::Header;
use crate::source::{Api, LoadError};
use prost::Message;
use prost_reflect::DescriptorPool;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

const TIMEOUT: Duration = Duration::from_secs(5);

/// A reflection failure at `label` (how the server was named: `grpc://HOST:PORT`).
fn err(label: &str, message: String) -> LoadError {
    LoadError::Reflection {
        address: label.to_string(),
        message,
    }
}

/// A plaintext HTTP/2 channel to `addr`, connected now; every call on it ends after `timeout`.
pub(crate) async fn connect(addr: &str, timeout: Duration) -> Result<Channel, LoadError> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| {
            err(
                &format!("grpc://{addr}"),
                format!("not a HOST:PORT address ({e}); write grpc://127.0.0.1:50051"),
            )
        })?
        .connect_timeout(TIMEOUT)
        .timeout(timeout)
        .tcp_nodelay(true);
    endpoint.connect().await.map_err(|e| {
        err(
            &format!("grpc://{addr}"),
            format!("cannot connect ({e}); is the server running and listening on plaintext HTTP/2 at {addr}?"),
        )
    })
}

/// What one reflection round trip asks.
enum Ask {
    List,
    Symbol(String),
    File(String),
}

/// What the server answered.
enum Answer {
    Services(Vec<String>),
    Files(Vec<Vec<u8>>),
    Error(String),
}

macro_rules! reflection_client {
    ($name:ident, $pb:path) => {
        async fn $name(
            channel: Channel,
            asks: Vec<Ask>,
            headers: &[Header],
        ) -> Result<Vec<Answer>, tonic::Status> {
            use pb::server_reflection_client::ServerReflectionClient;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;
            use $pb as pb;
            let n = asks.len();
            let requests: Vec<pb::ServerReflectionRequest> = asks
                .into_iter()
                .map(|a| pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(match a {
                        Ask::List => MessageRequest::ListServices(String::new()),
                        Ask::Symbol(s) => MessageRequest::FileContainingSymbol(s),
                        Ask::File(f) => MessageRequest::FileByFilename(f),
                    }),
                })
                .collect();
            let mut request = tonic::Request::new(tokio_stream::iter(requests));
            for h in headers {
                h.add_to(request.metadata_mut());
            }
            // A server may compress its replies (grpcio with `compression=gzip` does whatever
            // the client announces); unread, they would pass for a missing reflection service.
            let mut client = crate::accept_compressed!(ServerReflectionClient::new(channel));
            let mut stream = client.server_reflection_info(request).await?.into_inner();
            let mut out = Vec::with_capacity(n);
            while let Some(resp) = stream.message().await? {
                out.push(match resp.message_response {
                    Some(MessageResponse::ListServicesResponse(l)) => {
                        Answer::Services(l.service.into_iter().map(|s| s.name).collect())
                    }
                    Some(MessageResponse::FileDescriptorResponse(f)) => {
                        Answer::Files(f.file_descriptor_proto)
                    }
                    Some(MessageResponse::ErrorResponse(e)) => Answer::Error(e.error_message),
                    _ => Answer::Error("unexpected reflection response".to_string()),
                });
                if out.len() == n {
                    break;
                }
            }
            Ok(out)
        }
    };
}

reflection_client!(ask_v1, tonic_reflection::pb::v1);
reflection_client!(ask_v1alpha, tonic_reflection::pb::v1alpha);

async fn ask(
    channel: &Channel,
    v1: &mut bool,
    label: &str,
    asks: Vec<Ask>,
    headers: &[Header],
) -> Result<Vec<Answer>, LoadError> {
    let retry: Vec<Ask> = asks
        .iter()
        .map(|a| match a {
            Ask::List => Ask::List,
            Ask::Symbol(s) => Ask::Symbol(s.clone()),
            Ask::File(f) => Ask::File(f.clone()),
        })
        .collect();
    if *v1 {
        match ask_v1(channel.clone(), asks, headers).await {
            Ok(a) => return Ok(a),
            Err(s) if s.code() == tonic::Code::Unimplemented => *v1 = false,
            Err(s) => return Err(err(label, format!("reflection call failed: {s}"))),
        }
    }
    ask_v1alpha(channel.clone(), retry, headers).await.map_err(|s| {
        if s.code() == tonic::Code::Unimplemented {
            err(
                label,
                "the server does not offer gRPC reflection (grpc.reflection.v1 or v1alpha); register it (tonic: tonic_reflection::server::Builder, grpc-go: reflection.Register) or check a descriptor set built with `buf build -o api.binpb` instead".to_string(),
            )
        } else {
            err(label, format!("reflection call failed: {s}"))
        }
    })
}

/// How a server's descriptors are read by reflection.
#[derive(Debug, Clone)]
pub struct ReflectOptions {
    /// Metadata sent with the reflection calls (and the calls that confirm findings).
    pub headers: Vec<Header>,
    /// Keep the services of gRPC's own `grpc.*` packages (health, channelz, ...): they are
    /// the server's plumbing, not its API. Reflection itself is always left out.
    pub grpc_services: bool,
}

impl Default for ReflectOptions {
    /// No metadata; `grpc.*` services kept (what the probe and the gateway's upstreams read).
    fn default() -> Self {
        ReflectOptions {
            headers: Vec::new(),
            grpc_services: true,
        }
    }
}

/// Reads every service's files (and their imports) from the server at `addr` (plaintext).
pub(crate) async fn load(addr: &str, options: &ReflectOptions) -> Result<Api, LoadError> {
    let channel = connect(addr, TIMEOUT).await?;
    let mut api = load_over_with(
        &channel,
        &format!("grpc://{addr}"),
        crate::REFLECTION_TIMEOUT,
        options,
    )
    .await?;
    api.live = Some(addr.to_string());
    Ok(api)
}

/// Reads every service's files (and their imports) by reflection over `channel`, a channel
/// the caller made (over TLS, for instance), all of it within `timeout` (a server that stops
/// answering midway is an error, not a hang); `label` names the server in messages and in the
/// [`Api`]. The result has no `live` address: findings are not confirmed by calls over it.
pub async fn load_over(
    channel: &Channel,
    label: &str,
    timeout: Duration,
) -> Result<Api, LoadError> {
    load_over_with(channel, label, timeout, &ReflectOptions::default()).await
}

/// [`load_over`] with metadata on the reflection calls, and `grpc.*` services left out
/// unless `options.grpc_services`.
pub async fn load_over_with(
    channel: &Channel,
    label: &str,
    timeout: Duration,
    options: &ReflectOptions,
) -> Result<Api, LoadError> {
    tokio::time::timeout(timeout, read_over(channel, label, options))
        .await
        .unwrap_or_else(|_| {
            Err(err(
                label,
                format!(
                    "reflection did not answer within {:.1} s",
                    timeout.as_secs_f64()
                ),
            ))
        })
}

async fn read_over(
    channel: &Channel,
    label: &str,
    options: &ReflectOptions,
) -> Result<Api, LoadError> {
    let headers = options.headers.as_slice();
    let mut v1 = true;
    let answers = ask(channel, &mut v1, label, vec![Ask::List], headers).await?;
    let services = match answers.into_iter().next() {
        Some(Answer::Services(s)) => s,
        Some(Answer::Error(e)) => return Err(err(label, format!("listing services failed: {e}"))),
        _ => return Err(err(label, "listing services returned nothing".to_string())),
    };
    let listed = services.len();
    let services: Vec<String> = services
        .into_iter()
        .filter(|s| {
            !s.starts_with("grpc.reflection.") && (options.grpc_services || !s.starts_with("grpc."))
        })
        .collect();
    if services.is_empty() {
        let message = if options.grpc_services || listed == 0 {
            "the server lists no services besides reflection".to_string()
        } else {
            "the server lists no services besides gRPC's own (grpc.*: reflection, health, ...); give --include-grpc-services to compare those".to_string()
        };
        return Err(err(label, message));
    }
    let mut files: BTreeMap<String, prost_types::FileDescriptorProto> = BTreeMap::new();
    // Each file as the server sent it, which the pool is read from: prost-types' messages drop
    // the options' extensions (`google.api.http`, which `serve --json` reads).
    let mut sent: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut asks: Vec<Ask> = services.iter().map(|s| Ask::Symbol(s.clone())).collect();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    while !asks.is_empty() {
        for answer in ask(channel, &mut v1, label, asks, headers).await? {
            match answer {
                Answer::Files(list) => {
                    for bytes in list {
                        let fd = prost_types::FileDescriptorProto::decode(bytes.as_slice())
                            .map_err(|e| {
                                err(
                                    label,
                                    format!("the server sent an undecodable descriptor: {e}"),
                                )
                            })?;
                        sent.entry(fd.name().to_string()).or_insert(bytes);
                        files.entry(fd.name().to_string()).or_insert(fd);
                    }
                }
                Answer::Error(e) => return Err(err(label, format!("reflection error: {e}"))),
                Answer::Services(_) => {}
            }
        }
        asks = Vec::new();
        let missing: BTreeSet<String> = files
            .values()
            .flat_map(|f| f.dependency.iter().cloned())
            .filter(|d| !files.contains_key(d) && !asked.contains(d))
            .collect();
        for d in missing {
            asked.insert(d.clone());
            asks.push(Ask::File(d));
        }
    }
    // The version is every file in a package that declares one of the listed services
    // (imports from other packages, such as google.protobuf, stay imports).
    let service_packages: BTreeSet<String> = files
        .values()
        .filter(|f| {
            f.service.iter().any(|s| {
                let full = if f.package().is_empty() {
                    s.name().to_string()
                } else {
                    format!("{}.{}", f.package(), s.name())
                };
                services.contains(&full)
            })
        })
        .map(|f| f.package().to_string())
        .collect();
    let service_files: BTreeSet<String> = files
        .values()
        .filter(|f| service_packages.contains(f.package()))
        .map(|f| f.name().to_string())
        .collect();
    crate::budget::refuse_edition_files(files.values()).map_err(|e| err(label, e))?;
    let set = SentFiles {
        file: sent.into_values().collect(),
    }
    .encode_to_vec();
    let pool = crate::budget::guarded(|| DescriptorPool::decode(set.as_slice()))
        .map_err(|e| err(label, format!("the server's descriptors do not link: {e}")))?;
    crate::budget::check_samples(&pool).map_err(|e| err(label, e))?;
    Ok(Api {
        pool,
        files: service_files,
        label: label.to_string(),
        live: None,
        editions: Default::default(),
    })
}

/// A `FileDescriptorSet` of files as encoded by the server.
#[derive(Clone, PartialEq, prost::Message)]
struct SentFiles {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// A codec that passes encoded messages through untouched.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

/// [`RawCodec`]'s encoder and decoder.
#[derive(Debug, Clone, Default)]
pub struct RawCoder;

impl tonic::codec::Encoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut v = vec![0; src.remaining()];
        src.copy_to_slice(&mut v);
        Ok(Some(v))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCoder;
    type Decoder = RawCoder;
    fn encoder(&mut self) -> RawCoder {
        RawCoder
    }
    fn decoder(&mut self) -> RawCoder {
        RawCoder
    }
}

/// Calls `path` on the server with `request` (already encoded) as an old client would and
/// describes what came back.
pub(crate) async fn call(
    addr: &str,
    path: &str,
    request: Vec<u8>,
    headers: &[Header],
) -> Result<String, String> {
    let channel = connect(addr, TIMEOUT).await.map_err(|e| e.to_string())?;
    let mut grpc = crate::accept_compressed!(tonic::client::Grpc::new(channel));
    grpc.ready().await.map_err(|e| format!("not ready: {e}"))?;
    let path: http::uri::PathAndQuery = path.parse().map_err(|e| format!("bad path: {e}"))?;
    let mut request = tonic::Request::new(request);
    for h in headers {
        h.add_to(request.metadata_mut());
    }
    let resp = grpc.unary(request, path.clone(), RawCodec).await;
    Ok(match resp {
        Ok(r) => format!("{path} answered OK with {} bytes", r.get_ref().len()),
        Err(s) => format!("{path} answered {:?}: {}", s.code(), s.message()),
    })
}
