//! A backend's build: the descriptors its own process declares. Two builds of one package
//! (`payments.v1` at 1.0.0 and at 1.1.0 with a field added) share file names but not contents,
//! so the catalog holds one of them, the routed build (the highest version that is a
//! wire-compatible superset of the others); each backend keeps its own, so that reflection
//! asked for its version describes what that version serves.
//!
//! A newer build that breaks an older one of the same package is kept too, but pinned-only: it
//! gets only the requests no other backend satisfies (an `x-api-version` that names it), never
//! unpinned traffic, and its weight cannot be raised. Its `breaks` says what it breaks and how.

use std::sync::Arc;

/// The descriptors of one backend's build, and whether it breaks an older build it runs beside.
#[derive(Debug, Clone)]
pub struct Build {
    /// The backend's own files (and imports), an encoded `FileDescriptorSet`.
    pub descriptors: Arc<[u8]>,
    /// When this build breaks an older build of its package that the table routes: which one
    /// and compat's findings. Such a backend is pinned-only.
    pub breaks: Option<Arc<str>>,
}

impl Build {
    /// A build declaring `descriptors` (an encoded `FileDescriptorSet`).
    pub fn new(descriptors: impl Into<Arc<[u8]>>) -> Self {
        Self {
            descriptors: descriptors.into(),
            breaks: None,
        }
    }

    /// This build, pinned-only because of `what` (the older build it breaks and the findings).
    pub fn breaking(mut self, what: impl Into<Arc<str>>) -> Self {
        self.breaks = Some(what.into());
        self
    }
}
