//! One method probed in one direction: its requests sent to the target and to the caller's own
//! server, call by call (a client-streaming method gets them all in one stream), and the
//! method's verdict from its calls'.

use super::calling::exchange;
use super::render::endings;
use super::report::{Call, MethodProbe, Verdict};
use super::samples::generated;
use super::values::Change;
use super::verdict::{Answers, Expect, judge};
use super::{Header, ReplyLimits, Side};
use crate::confirm::shape;
use crate::rules::Pairing;
use prost::Message;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use std::collections::BTreeSet;
use std::time::Duration;
use tonic::transport::Channel;

/// One direction's fixed parts.
pub(super) struct Run<'a> {
    pub(super) other: &'a Side,
    pub(super) pairing: &'a Pairing,
    pub(super) via: bool,
    pub(super) own: &'a Channel,
    pub(super) target: &'a Channel,
    pub(super) timeout: Duration,
    pub(super) limits: ReplyLimits,
    pub(super) headers: &'a [Header],
    /// Generated requests take edge values (`--edge-values`).
    pub(super) edge_values: bool,
    /// Only the user's samples are sent (`--samples-only`).
    pub(super) samples_only: bool,
}

impl Run<'_> {
    pub(super) async fn method(
        &self,
        m: &MethodDescriptor,
        seeds: Vec<(String, DynamicMessage)>,
    ) -> MethodProbe {
        let service = m.parent_service();
        let own_path = format!("/{}/{}", service.full_name(), m.name());
        let other_service = self.pairing.map(service.full_name());
        let called = if self.via {
            own_path.clone()
        } else {
            format!("/{other_service}/{}", m.name())
        };
        // The other version's reply type, to name fields the caller does not know.
        let other_output = self
            .other
            .api
            .pool
            .get_service_by_name(&other_service)
            .and_then(|s| s.methods().find(|x| x.name() == m.name()))
            .map(|x| x.output());
        let mut requests = if self.samples_only {
            Vec::new()
        } else {
            generated(&m.input(), self.edge_values)
        };
        requests.extend(seeds);
        // A client-streaming method gets every request in one stream; the others one per call.
        let batches: Vec<Vec<(String, DynamicMessage)>> = if m.is_client_streaming() {
            vec![requests]
        } else {
            requests.into_iter().map(|r| vec![r]).collect()
        };
        let mut calls = Vec::new();
        for batch in batches {
            let (labels, bytes): (Vec<String>, Vec<Vec<u8>>) = batch
                .into_iter()
                .map(|(label, msg)| (label, msg.encode_to_vec()))
                .unzip();
            let within = (self.timeout, self.limits);
            let own = exchange(self.own, &own_path, bytes.clone(), within, self.headers).await;
            let again = exchange(self.own, &own_path, bytes.clone(), within, self.headers).await;
            let target = exchange(self.target, &called, bytes, within, self.headers).await;
            let expect = Expect {
                output: &m.output(),
                other_output: other_output.as_ref(),
                stream: m.is_server_streaming(),
            };
            calls.push(judge(labels, &expect, Answers { own, again, target }));
        }
        let union = |pick: fn(&Call) -> &Vec<String>| -> Vec<String> {
            let all: BTreeSet<&String> = calls.iter().flat_map(pick).collect();
            all.into_iter().cloned().collect()
        };
        let unknown = union(|c| &c.unknown);
        let defaulted = union(|c| &c.defaulted);
        let mut changed: Vec<Change> = Vec::new();
        for c in calls.iter().flat_map(|c| &c.changed) {
            if !changed.iter().any(|x| x.path == c.path) {
                changed.push(c.clone());
            }
        }
        let verdict = calls.iter().map(|c| c.verdict).max().unwrap_or(Verdict::Ok);
        let succeeded = calls.iter().any(|c| c.own.code == "OK");
        let (verdict, reason) = if verdict < Verdict::Broken && !succeeded {
            // Equal failures on both sides say nothing about compatibility.
            (
                Verdict::Inconclusive,
                format!(
                    "no call succeeded on its own server ({})",
                    endings(calls.iter().map(|c| &c.own))
                ),
            )
        } else {
            let reason = calls
                .iter()
                .find(|c| c.verdict == verdict)
                .map(|c| c.reason.clone())
                .unwrap_or_default();
            (verdict, reason)
        };
        MethodProbe {
            method: own_path.trim_start_matches('/').to_string(),
            called: called.trim_start_matches('/').to_string(),
            shape: shape(m.is_client_streaming(), m.is_server_streaming()),
            calls,
            unknown,
            defaulted,
            changed,
            verdict,
            reason,
        }
    }
}
