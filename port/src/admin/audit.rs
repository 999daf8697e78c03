//! The audit log of admin changes: who asked for what, and how it ended, in three kinds
//! (the metrics count them alike): done; refused, which changed nothing; and made but not
//! applied by the xDS fleet (an Envoy rejected it, or did not acknowledge it in time), which
//! the table holds although the call failed.

use super::auth::Caller;
use router::quote;
use tonic::Status;

/// Whether a change that failed is in the table nonetheless.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Made {
    /// The table holds the change.
    Yes,
    /// It does not.
    No,
}

/// The metrics' `result` label of a change that ended with `outcome`.
pub(super) fn result(outcome: Result<&str, &Status>, made: Made) -> &'static str {
    match (outcome, made) {
        (Ok(_), _) => "done",
        (Err(_), Made::Yes) => "not_applied",
        (Err(_), Made::No) => "refused",
    }
}

/// Logs a change with who asked for it (quoted, as every field from a caller), what it was,
/// and how it ended.
pub(super) fn log_change(
    who: &Caller,
    action: &str,
    target: &str,
    outcome: Result<&str, &Status>,
    made: Made,
) {
    match outcome {
        Ok(result) => {
            tracing::info!(who = ?who.0, action, target = %quote(target), result, "admin change")
        }
        Err(status) => {
            let what = match made {
                Made::Yes => "admin change made, but the xDS fleet did not apply it",
                Made::No => "admin change refused",
            };
            tracing::warn!(
                who = ?who.0,
                action,
                target = %quote(target),
                code = ?status.code(),
                reason = ?status.message(),
                "{what}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_made_that_the_fleet_did_not_take_is_not_counted_refused() {
        let failed = Status::deadline_exceeded("envoy-1 did not acknowledge");
        assert_eq!(result(Ok("added"), Made::Yes), "done");
        assert_eq!(result(Err(&failed), Made::Yes), "not_applied");
        assert_eq!(result(Err(&failed), Made::No), "refused");
    }
}
