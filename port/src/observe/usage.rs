//! Who still calls what: per caller (address, user agent, and an identity from a header the
//! operator names) and per method, backend and version, the calls made and when the last one
//! came. The admin API's `Usage` answers from it, and a drain or removal of a backend whose
//! callers have nowhere else to go is refused with their names (`--quiet-period-secs`).
//! Bounded: past `--usage-max-entries` rows, new ones are counted but not kept.

use http::{HeaderName, HeaderValue};
use router::Routed;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Rows kept at most, by default (`--usage-max-entries`).
pub const DEFAULT_MAX_ENTRIES: usize = 10_000;

/// The longest user agent or identity kept; longer ones are cut (a caller chooses them).
const MAX_TEXT: usize = 128;

/// One row's key: who called which method, and where it went.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    /// The caller's address (its port left out: each connection has another).
    pub peer: Option<IpAddr>,
    /// Its `user-agent`, cut to 128 bytes.
    pub user_agent: Arc<str>,
    /// The value of the identity header (`--usage-identity-header`), cut to 128 bytes.
    pub identity: Arc<str>,
    /// `package.Service`, or `unknown` for a path that names no known method.
    pub service: Arc<str>,
    /// The method's name.
    pub method: Arc<str>,
    /// The backend that served it (empty: none did).
    pub backend: Arc<str>,
    /// Its version.
    pub version: Arc<str>,
}

/// One row's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageCount {
    /// Calls made.
    pub calls: u64,
    /// When the first one came.
    pub first_seen: SystemTime,
    /// When the last one came.
    pub last_seen: SystemTime,
    /// Whether the method is declared `deprecated = true`.
    pub deprecated: bool,
}

/// The usage table.
#[derive(Debug)]
pub struct Usage {
    rows: Mutex<HashMap<UsageKey, UsageCount>>,
    max_entries: usize,
    identity_header: Option<HeaderName>,
    /// Calls whose row could not be kept (the table was full).
    overflowed: AtomicU64,
    empty: Arc<str>,
}

/// `value` as text of at most [`MAX_TEXT`] bytes (invalid UTF-8 replaced).
fn cut(value: Option<&HeaderValue>, empty: &Arc<str>) -> Arc<str> {
    let Some(value) = value else {
        return empty.clone();
    };
    let bytes = value.as_bytes();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_TEXT)]);
    text.into()
}

impl Usage {
    /// An empty table of at most `max_entries` rows, reading callers' identities from
    /// `identity_header` when given.
    pub fn new(max_entries: usize, identity_header: Option<HeaderName>) -> Self {
        Self {
            rows: Mutex::default(),
            max_entries,
            identity_header,
            overflowed: AtomicU64::new(0),
            empty: "".into(),
        }
    }

    /// The header naming callers, if one was configured.
    pub fn identity_header(&self) -> Option<&HeaderName> {
        self.identity_header.as_ref()
    }

    /// Rows kept at most.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Calls not kept because the table was full.
    pub fn overflowed(&self) -> u64 {
        self.overflowed.load(Ordering::Relaxed)
    }

    /// Counts one call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn record(
        &self,
        peer: Option<IpAddr>,
        user_agent: Option<&HeaderValue>,
        identity: Option<&HeaderValue>,
        service: &Arc<str>,
        method: &Arc<str>,
        routed: Option<&Routed>,
        deprecated: bool,
        at: SystemTime,
    ) {
        let key = UsageKey {
            peer,
            user_agent: cut(user_agent, &self.empty),
            identity: cut(identity, &self.empty),
            service: service.clone(),
            method: method.clone(),
            backend: routed.map_or(self.empty.clone(), |r| r.backend.clone()),
            version: routed.map_or(self.empty.clone(), |r| r.version.clone()),
        };
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = rows.get_mut(&key) {
            count.calls += 1;
            count.last_seen = count.last_seen.max(at);
            return;
        }
        if rows.len() >= self.max_entries {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        rows.insert(
            key,
            UsageCount {
                calls: 1,
                first_seen: at,
                last_seen: at,
                deprecated,
            },
        );
    }

    /// Every row, the most recently seen first.
    pub fn rows(&self) -> Vec<(UsageKey, UsageCount)> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        let mut all: Vec<(UsageKey, UsageCount)> =
            rows.iter().map(|(k, v)| (k.clone(), *v)).collect();
        drop(rows);
        all.sort_by_key(|row| std::cmp::Reverse(row.1.last_seen));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn routed(backend: &str) -> Routed {
        Routed {
            backend: backend.into(),
            version: "1.0.0".into(),
            answered: true,
        }
    }

    #[test]
    fn calls_are_counted_per_caller_and_method_and_the_table_is_bounded() {
        let usage = Usage::new(2, None);
        let (service, method): (Arc<str>, Arc<str>) = ("a.v1.S".into(), "M".into());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let agent = HeaderValue::from_static("grpc-python/1.0");
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let v1 = routed("v1");
        for i in 0..3 {
            let at = t0 + Duration::from_secs(i);
            usage.record(
                peer,
                Some(&agent),
                None,
                &service,
                &method,
                Some(&v1),
                true,
                at,
            );
        }
        let other = HeaderValue::from_static("grpc-go/1.0");
        usage.record(
            peer,
            Some(&other),
            None,
            &service,
            &method,
            Some(&v1),
            true,
            t0,
        );
        // A third row finds the table full.
        usage.record(None, None, None, &service, &method, None, false, t0);
        let rows = usage.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(&*rows[0].0.user_agent, "grpc-python/1.0");
        assert_eq!(rows[0].1.calls, 3);
        assert_eq!(rows[0].1.first_seen, t0);
        assert_eq!(rows[0].1.last_seen, t0 + Duration::from_secs(2));
        assert!(rows[0].1.deprecated);
        assert_eq!(usage.overflowed(), 1);
    }

    #[test]
    fn a_long_or_binary_user_agent_is_cut_and_kept_as_text() {
        let long = HeaderValue::from_bytes(&[b'x'; 300]).unwrap();
        assert_eq!(cut(Some(&long), &"".into()).len(), MAX_TEXT);
        let binary = HeaderValue::from_bytes(b"ok\xff").unwrap();
        assert_eq!(&*cut(Some(&binary), &"".into()), "ok\u{fffd}");
    }
}
