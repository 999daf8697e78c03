//! Who still calls what: per caller (address, user agent, and an identity from a header the
//! operator names) and per method, backend and version, the calls made and when the last one
//! came. The admin API's `Usage` answers from it, and a drain or removal of a backend whose
//! callers have nowhere else to go is refused with their names (`--quiet-period-secs`).
//! One call in `--usage-sample-every` has its first message decoded for the deprecated fields
//! it sets, counted per caller too. Bounded: past `--usage-max-entries` rows (in each table),
//! new ones are counted but not kept.

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

/// One call in this many is decoded for deprecated fields, by default
/// (`--usage-sample-every`).
pub const DEFAULT_SAMPLE_EVERY: u64 = 100;

/// The longest user agent or identity kept; longer ones are cut (a caller chooses them).
const MAX_TEXT: usize = 128;

/// One row's key: who called which method, and where it went.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UsageKey {
    /// The caller's address (its port left out: each connection has another).
    pub peer: Option<IpAddr>,
    /// Its `user-agent`, cut to 128 bytes.
    pub user_agent: Arc<str>,
    /// The name of the client certificate (mutual TLS), else the value of the identity header
    /// (`--usage-identity-header`); cut to 128 bytes.
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

/// A row of the deprecated-fields table: a call's key and a deprecated field it set.
pub type FieldKey = (UsageKey, Arc<str>);

/// The usage table.
#[derive(Debug)]
pub struct Usage {
    rows: Mutex<HashMap<UsageKey, UsageCount>>,
    fields: Mutex<HashMap<FieldKey, UsageCount>>,
    max_entries: usize,
    identity_header: Option<HeaderName>,
    sample_every: u64,
    calls: AtomicU64,
    /// Calls whose row could not be kept (the table was full).
    overflowed: AtomicU64,
    /// Sampled calls decoded, and those whose first message could not be (compressed, too
    /// long, not the method's input).
    decoded: AtomicU64,
    not_decoded: AtomicU64,
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
    /// One call in `sample_every` (0: none) is sampled for deprecated fields.
    pub fn new(max_entries: usize, identity_header: Option<HeaderName>, sample_every: u64) -> Self {
        Self {
            rows: Mutex::default(),
            fields: Mutex::default(),
            max_entries,
            identity_header,
            sample_every,
            calls: AtomicU64::new(0),
            overflowed: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
            not_decoded: AtomicU64::new(0),
            empty: "".into(),
        }
    }

    /// Whether the call arriving now is sampled (its first message decoded).
    pub(crate) fn sampled(&self) -> bool {
        self.sample_every > 0
            && self
                .calls
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(self.sample_every)
    }

    /// One call in how many is sampled (0: none).
    pub fn sample_every(&self) -> u64 {
        self.sample_every
    }

    /// Sampled calls decoded, and those that could not be.
    pub fn decoded(&self) -> (u64, u64) {
        (
            self.decoded.load(Ordering::Relaxed),
            self.not_decoded.load(Ordering::Relaxed),
        )
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

    /// The key of a call from this caller to this method, served by `routed`.
    pub(crate) fn key(
        &self,
        peer: Option<IpAddr>,
        user_agent: Option<&HeaderValue>,
        identity: Option<&HeaderValue>,
        service: &Arc<str>,
        method: &Arc<str>,
        routed: Option<&Routed>,
    ) -> UsageKey {
        UsageKey {
            peer,
            user_agent: cut(user_agent, &self.empty),
            identity: cut(identity, &self.empty),
            service: service.clone(),
            method: method.clone(),
            backend: routed.map_or(self.empty.clone(), |r| r.backend.clone()),
            version: routed.map_or(self.empty.clone(), |r| r.version.clone()),
        }
    }

    /// Counts one call.
    pub(crate) fn record(&self, key: &UsageKey, deprecated: bool, at: SystemTime) {
        if !count_in(&self.rows, key, self.max_entries, at, deprecated) {
            self.overflowed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the deprecated fields a sampled call set (`None`: its message could not be
    /// decoded).
    pub(crate) fn record_fields(
        &self,
        key: &UsageKey,
        fields: Option<impl IntoIterator<Item = String>>,
        at: SystemTime,
    ) {
        let Some(fields) = fields else {
            self.not_decoded.fetch_add(1, Ordering::Relaxed);
            return;
        };
        self.decoded.fetch_add(1, Ordering::Relaxed);
        for field in fields {
            let row = (key.clone(), Arc::<str>::from(field));
            if !count_in(&self.fields, &row, self.max_entries, at, true) {
                self.overflowed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The deprecated fields set by sampled calls, the most recently seen first.
    pub fn fields(&self) -> Vec<(FieldKey, UsageCount)> {
        sorted(&self.fields)
    }

    /// Every row, the most recently seen first.
    pub fn rows(&self) -> Vec<(UsageKey, UsageCount)> {
        sorted(&self.rows)
    }
}

/// Counts one more for `key` in `table` (a new row only while it has fewer than `max`):
/// whether it was counted.
fn count_in<K: Clone + Eq + std::hash::Hash>(
    table: &Mutex<HashMap<K, UsageCount>>,
    key: &K,
    max: usize,
    at: SystemTime,
    deprecated: bool,
) -> bool {
    let mut rows = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(count) = rows.get_mut(key) {
        count.calls += 1;
        count.last_seen = count.last_seen.max(at);
        return true;
    }
    if rows.len() >= max {
        return false;
    }
    let count = UsageCount {
        calls: 1,
        first_seen: at,
        last_seen: at,
        deprecated,
    };
    rows.insert(key.clone(), count);
    true
}

/// A table's rows, the most recently seen first.
fn sorted<K: Clone>(table: &Mutex<HashMap<K, UsageCount>>) -> Vec<(K, UsageCount)> {
    let rows = table.lock().unwrap_or_else(|e| e.into_inner());
    let mut all: Vec<(K, UsageCount)> = rows.iter().map(|(k, v)| (k.clone(), *v)).collect();
    drop(rows);
    all.sort_by_key(|row| std::cmp::Reverse(row.1.last_seen));
    all
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
        let usage = Usage::new(2, None, 0);
        let (service, method): (Arc<str>, Arc<str>) = ("a.v1.S".into(), "M".into());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let agent = HeaderValue::from_static("grpc-python/1.0");
        let peer = Some(IpAddr::from([127, 0, 0, 1]));
        let v1 = routed("v1");
        let key = usage.key(peer, Some(&agent), None, &service, &method, Some(&v1));
        for i in 0..3 {
            usage.record(&key, true, t0 + Duration::from_secs(i));
        }
        let other = HeaderValue::from_static("grpc-go/1.0");
        let second = usage.key(peer, Some(&other), None, &service, &method, Some(&v1));
        usage.record(&second, true, t0);
        // A third row finds the table full.
        let third = usage.key(None, None, None, &service, &method, None);
        usage.record(&third, false, t0);
        let rows = usage.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(&*rows[0].0.user_agent, "grpc-python/1.0");
        assert_eq!(rows[0].1.calls, 3);
        assert_eq!(rows[0].1.first_seen, t0);
        assert_eq!(rows[0].1.last_seen, t0 + Duration::from_secs(2));
        assert!(rows[0].1.deprecated);
        assert_eq!(usage.overflowed(), 1);
        usage.record_fields(&key, Some(["a.v1.M.old".to_string()]), t0);
        usage.record_fields(&key, None::<Vec<String>>, t0);
        assert_eq!(usage.fields().len(), 1);
        assert_eq!(&*usage.fields()[0].0.1, "a.v1.M.old");
        assert_eq!(usage.decoded(), (1, 1));
    }

    #[test]
    fn one_call_in_n_is_sampled() {
        let usage = Usage::new(10, None, 3);
        let sampled: Vec<bool> = (0..7).map(|_| usage.sampled()).collect();
        assert_eq!(sampled, [true, false, false, true, false, false, true]);
        let never = Usage::new(10, None, 0);
        assert!(!(0..5).any(|_| never.sampled()));
    }

    #[test]
    fn a_long_or_binary_user_agent_is_cut_and_kept_as_text() {
        let long = HeaderValue::from_bytes(&[b'x'; 300]).unwrap();
        assert_eq!(cut(Some(&long), &"".into()).len(), MAX_TEXT);
        let binary = HeaderValue::from_bytes(b"ok\xff").unwrap();
        assert_eq!(&*cut(Some(&binary), &"".into()), "ok\u{fffd}");
    }
}
