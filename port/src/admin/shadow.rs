//! The admin API's `Shadow` and `ShadowReport` calls over the port's [`Shadow`].

use super::pb::{ShadowReply, ShadowRequest};
use crate::shadow::{Shadow, ShadowTarget};
use tonic::Status;

/// The reply both calls give: the report as JSON.
pub(super) fn reply(shadow: &Shadow) -> Result<ShadowReply, Status> {
    let report_json = serde_json::to_string(&shadow.report())
        .map_err(|e| Status::internal(format!("the shadow report has no JSON form: {e}")))?;
    Ok(ShadowReply { report_json })
}

/// The port's shadowing, or why there is none.
pub(super) fn of(shadow: Option<&Shadow>) -> Result<&Shadow, Status> {
    shadow.ok_or_else(|| {
        Status::failed_precondition(
            "this gateway does not shadow: it routes no upstreams (serve --upstream)",
        )
    })
}

/// Applies a `Shadow` request: a target, or none (an empty candidate); the text logged.
pub(super) fn set(shadow: &Shadow, request: &ShadowRequest) -> Result<String, Status> {
    if request.candidate.is_empty() {
        if !request.secondary.is_empty() || request.rate.is_some() {
            return Err(Status::invalid_argument(
                "a secondary or a rate without a candidate: name the candidate, or send neither to stop shadowing",
            ));
        }
        shadow.set(None).map_err(Status::failed_precondition)?;
        return Ok("off".to_string());
    }
    let target = ShadowTarget {
        candidate: request.candidate.clone(),
        secondary: (!request.secondary.is_empty()).then(|| request.secondary.clone()),
        rate: request.rate.unwrap_or_else(|| shadow.default_rate()),
    };
    let text = format!(
        "{} (secondary {}, rate {})",
        target.candidate,
        target.secondary.as_deref().unwrap_or("the primary"),
        target.rate
    );
    shadow.set(Some(target)).map_err(|why| {
        if why.starts_with("no backend") {
            Status::not_found(why)
        } else {
            Status::invalid_argument(why)
        }
    })?;
    Ok(text)
}
