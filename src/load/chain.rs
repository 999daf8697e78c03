//! One load client: a sequential chain of increments (closed loop, paced, or open loop on a
//! fixed schedule), each reply verified, tallied per phase and bucketed over time.

use super::series::{BUCKET, RawBucket};
use super::{CallLog, CallOutcome, ClientTallies, LoadOptions, NO_VERSION_HEADER, Tally};
use crate::matrix::{STEP, code_name};
use client::{IncrementerClient, Reply};
use semver::{Version, VersionReq};
use services::Api;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Status;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// One client's chain.
pub(super) struct ChainClient {
    client: IncrementerClient,
    requirement: Option<VersionReq>,
    limit: Option<u64>,
    pace: Option<Duration>,
    open_loop: bool,
    wait_for_health: bool,
    log: Option<CallLog>,
}

impl ChainClient {
    pub(super) fn new(api: Api, channel: tonic::transport::Channel, options: &LoadOptions) -> Self {
        let requirement = match api {
            Api::V1 => options.v1_requirement.clone(),
            Api::V2 => options.v2_requirement.clone(),
        };
        let mut client = IncrementerClient::new(api, channel);
        if let Some(requirement) = &requirement {
            client = client.with_requirement(requirement);
        }
        Self {
            client,
            requirement,
            limit: options.requests_per_client,
            pace: options
                .rate_per_client
                .map(|rate| Duration::from_secs_f64(1.0 / rate)),
            open_loop: options.open_loop && options.rate_per_client.is_some(),
            wait_for_health: api == Api::V2 && options.v2_waits_for_health,
            log: options.call_log.clone(),
        }
    }

    fn api(&self) -> Api {
        self.client.api()
    }

    /// The step this client's version applies (v1 has none: 1).
    fn step(&self) -> i64 {
        match self.api() {
            Api::V1 => 1,
            Api::V2 => STEP,
        }
    }

    /// One call as the chain's first would be, its reply not verified.
    pub(super) async fn first_call(&self) -> Result<Reply, Status> {
        self.call(0, 1).await
    }

    async fn call(&self, value: i64, request_id: u64) -> Result<Reply, Status> {
        let step = Some(self.step()).filter(|_| self.api() == Api::V2);
        self.client.increment(value, step, request_id).await
    }

    /// Why `answer` is wrong for a request of `value` with id `request_id`, if it is.
    fn verify(&self, value: i64, request_id: u64, answer: &Reply) -> Option<String> {
        let want = value + self.step();
        if answer.value != want {
            return Some(format!(
                "sent {value}, got {} instead of {want}",
                answer.value
            ));
        }
        if answer.request_id != request_id {
            return Some(format!(
                "request {request_id} answered as {}",
                answer.request_id
            ));
        }
        let (Some(requirement), Some(served_by)) = (&self.requirement, &answer.served_by) else {
            return None;
        };
        match Version::parse(served_by) {
            Ok(version) if requirement.matches(&version) => None,
            Ok(version) => Some(format!("served by {version}, outside {requirement}")),
            Err(_) => Some(format!("served by {served_by:?}, not a version")),
        }
    }

    async fn wait_until_serving(&self, stopped: &mut watch::Receiver<bool>) -> Result<(), Status> {
        let mut health = HealthClient::new(self.client.channel().clone());
        let request = HealthCheckRequest {
            service: services::V2_SERVICE.to_string(),
        };
        let mut updates = health.watch(request).await?.into_inner();
        loop {
            tokio::select! {
                update = updates.message() => match update? {
                    Some(update) if update.status() == ServingStatus::Serving => return Ok(()),
                    Some(_) => {}
                    None => return Err(Status::unavailable("health watch ended")),
                },
                _ = stopped.changed() => return Ok(()),
            }
        }
    }

    pub(super) async fn run(
        self,
        mut stopped: watch::Receiver<bool>,
        phase: Arc<AtomicUsize>,
        completed: Arc<AtomicU64>,
        load_started: Instant,
    ) -> anyhow::Result<ClientTallies> {
        let mut tallies: Vec<Tally> = Vec::new();
        let mut buckets: Vec<RawBucket> = Vec::new();
        if self.wait_for_health {
            self.wait_until_serving(&mut stopped).await?;
        }
        let mut pacing = self
            .pace
            .filter(|_| !self.open_loop)
            .map(tokio::time::interval);
        // Open loop: request k (from 0) is due at schedule_start + k × pace.
        let schedule_start = tokio::time::Instant::now();
        let (mut value, mut sent) = (0i64, 0u64);
        while !*stopped.borrow() && self.limit.is_none_or(|limit| sent < limit) {
            let mut intended = None;
            if let Some(interval) = pacing.as_mut() {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stopped.changed() => break,
                }
            } else if let Some(pace) = self.pace.filter(|_| self.open_loop) {
                let due = schedule_start + pace.mul_f64(sent as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stopped.changed() => break,
                }
                intended = Some(due.into_std());
            }
            sent += 1;
            let current = phase.load(Ordering::Acquire);
            if tallies.len() <= current {
                tallies.resize_with(current + 1, Tally::new);
            }
            let tally = &mut tallies[current];
            tally.requests += 1;
            let started = intended.unwrap_or_else(Instant::now);
            let result = self.call(value, sent).await;
            let elapsed = started.elapsed();
            completed.fetch_add(1, Ordering::Relaxed);
            let index = (load_started.elapsed().as_millis() / BUCKET.as_millis()) as usize;
            if buckets.len() <= index {
                buckets.resize_with(index + 1, RawBucket::default);
            }
            let bucket = &mut buckets[index];
            let outcome = match &result {
                Ok(answer) if self.verify(value, sent, answer).is_none() => {
                    bucket
                        .latencies_us
                        .push((elapsed.as_nanos() as f64 / 1e3) as f32);
                    None
                }
                Ok(_) => Some(CallOutcome::Wrong),
                Err(status) => Some(CallOutcome::Failed(code_name(status.code()))),
            };
            bucket.failed += u64::from(outcome.is_some());
            if let Some(log) = &self.log {
                let sent = started.saturating_duration_since(load_started);
                log.record(self.api(), sent, elapsed, outcome);
            }
            match result {
                Ok(answer) => match self.verify(value, sent, &answer) {
                    None => {
                        tally.ok += 1;
                        tally.histogram.saturating_record(elapsed.as_nanos() as u64);
                        let served_by =
                            answer.served_by.unwrap_or_else(|| NO_VERSION_HEADER.into());
                        *tally.served_by.entry(served_by).or_default() += 1;
                        value = answer.value;
                    }
                    Some(why) => {
                        tally.wrong += 1;
                        if tally.wrong_examples.len() < 5 {
                            tally
                                .wrong_examples
                                .push(format!("{} client: {why}", self.api()));
                        }
                    }
                },
                Err(status) => {
                    let entry = tally
                        .errors
                        .entry(code_name(status.code()))
                        .or_insert((0, status.message().to_string()));
                    entry.0 += 1;
                }
            }
        }
        Ok((self.api(), tallies, buckets))
    }
}
