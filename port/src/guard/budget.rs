//! The body budgets: how many bytes request messages still arriving may declare at once, over
//! the whole port and on each connection. A message is charged its declared length from its
//! frame header until its last byte has passed, because whatever reads it (tonic's decoder
//! reserves the declared length at once; a unary call waits for the whole message) may hold
//! that much until then. A message that would go over a budget is refused with
//! `RESOURCE_EXHAUSTED` naming the budget and its flag; nothing waits for room, so a client
//! that keeps messages half-sent cannot make others hang.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tonic::Status;

/// Default of `--body-budget-bytes`: 256 MiB, 64 messages of the default 4 MiB limit.
pub const DEFAULT_BODY_BUDGET_BYTES: u64 = 256 * 1024 * 1024;
/// Default of `--connection-body-budget-bytes`: 16 MiB, four messages of the default limit.
pub const DEFAULT_CONNECTION_BODY_BUDGET_BYTES: u64 = 16 * 1024 * 1024;

/// The body budgets, as `testbed serve` takes them on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct BodyLimits {
    /// Bytes that request messages still arriving may declare at once on the whole port; a
    /// message that would go over it gets RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_BODY_BUDGET_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_budget_bytes: u64,
    /// Bytes that request messages still arriving may declare at once on one connection; a
    /// message that would go over it gets RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = DEFAULT_CONNECTION_BODY_BUDGET_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    pub connection_body_budget_bytes: u64,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self {
            body_budget_bytes: DEFAULT_BODY_BUDGET_BYTES,
            connection_body_budget_bytes: DEFAULT_CONNECTION_BODY_BUDGET_BYTES,
        }
    }
}

/// The bytes charged now, in total and by connection (its peer address; `None` when the
/// request carries no connection info, as in a service called directly).
#[derive(Debug)]
pub(crate) struct BodyBudget {
    limits: BodyLimits,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: u64,
    by_connection: HashMap<Option<SocketAddr>, u64>,
}

impl BodyBudget {
    pub(crate) fn new(limits: BodyLimits) -> Self {
        Self {
            limits,
            held: Mutex::default(),
        }
    }

    /// Charges `bytes` to `connection`, or refuses them when a budget would be exceeded.
    pub(crate) fn charge(
        self: &Arc<Self>,
        connection: Option<SocketAddr>,
        bytes: u64,
    ) -> Result<Charge, Status> {
        self.add(connection, bytes)?;
        Ok(Charge {
            budget: self.clone(),
            connection,
            bytes,
        })
    }

    /// Adds `bytes` to the counts, or refuses them (changing nothing) when a budget would be
    /// exceeded.
    fn add(&self, connection: Option<SocketAddr>, bytes: u64) -> Result<(), Status> {
        // Nothing here can panic while the lock is held; a poisoned lock still holds true counts.
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let on_connection = held.by_connection.get(&connection).copied().unwrap_or(0) + bytes;
        if on_connection > self.limits.connection_body_budget_bytes {
            return Err(refused(
                "this connection",
                on_connection,
                self.limits.connection_body_budget_bytes,
                "--connection-body-budget-bytes",
            ));
        }
        let total = held.total + bytes;
        if total > self.limits.body_budget_bytes {
            return Err(refused(
                "this server",
                total,
                self.limits.body_budget_bytes,
                "--body-budget-bytes",
            ));
        }
        held.total = total;
        held.by_connection.insert(connection, on_connection);
        Ok(())
    }

    fn release(&self, connection: Option<SocketAddr>, bytes: u64) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(bytes);
        if let Some(count) = held.by_connection.get_mut(&connection) {
            *count = count.saturating_sub(bytes);
            if *count == 0 {
                // A closed connection leaves no entry behind.
                held.by_connection.remove(&connection);
            }
        }
    }

    /// Bytes charged now on the whole port.
    #[cfg(test)]
    fn total(&self) -> u64 {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

fn refused(scope: &str, would: u64, limit: u64, flag: &str) -> Status {
    Status::resource_exhausted(format!(
        "request messages still arriving on {scope} would declare {would} bytes, over its body budget of {limit} bytes ({flag}); finish or cancel other calls first"
    ))
}

/// Bytes charged to one message, released when it is dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    budget: Arc<BodyBudget>,
    connection: Option<SocketAddr>,
    bytes: u64,
}

impl Charge {
    /// Adds `bytes` more to this charge (a body whose size is known only as it arrives, as a
    /// JSON request's), or refuses them, the charge unchanged, when a budget would be exceeded.
    pub(crate) fn grow(&mut self, bytes: u64) -> Result<(), Status> {
        self.budget.add(self.connection, bytes)?;
        self.bytes += bytes;
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.connection, self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_bounded_per_connection_and_in_total_and_released_on_drop() {
        let budget = Arc::new(BodyBudget::new(BodyLimits {
            body_budget_bytes: 100,
            connection_body_budget_bytes: 60,
        }));
        let a = Some("127.0.0.1:1".parse().unwrap());
        let b = Some("127.0.0.1:2".parse().unwrap());
        let first = budget.charge(a, 50).unwrap();
        let status = budget.charge(a, 20).unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(status.message().contains("--connection-body-budget-bytes"));
        let second = budget.charge(b, 50).unwrap();
        let status = budget.charge(None, 1).unwrap_err();
        assert!(status.message().contains("--body-budget-bytes"), "{status}");
        drop(first);
        assert_eq!(budget.total(), 50);
        let mut third = budget.charge(a, 0).unwrap();
        third.grow(50).unwrap();
        let status = third.grow(11).unwrap_err();
        assert!(status.message().contains("--connection-body-budget-bytes"));
        assert_eq!(budget.total(), 100);
        drop((second, third));
        assert_eq!(budget.total(), 0);
        assert!(budget.held.lock().unwrap().by_connection.is_empty());
    }
}
