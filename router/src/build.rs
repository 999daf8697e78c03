//! A backend's build: the descriptors its own process declares. Two builds of one package
//! (`payments.v1` at 1.0.0 and at 1.1.0 with a field added) share file names but not contents,
//! so the catalog holds one of them, the routed build (the highest version that is a
//! wire-compatible superset of the others); each backend keeps its own, so that reflection
//! asked for its version describes what that version serves, and health reports a service
//! only while some reachable backend's build declares it.
//!
//! A newer build that breaks an older one of the same package is kept too, but pinned-only: it
//! gets only the requests no other backend satisfies (an `x-api-version` that names it), never
//! unpinned traffic, and its weight cannot be raised. So is a build that *drifted*: its
//! upstream now declares something that breaks what it declared when it joined (restarted with
//! another build, say).

use prost_reflect::DescriptorPool;
use std::collections::BTreeSet;
use std::sync::Arc;

/// The descriptors of one backend's build, and whether it breaks an older build it runs beside.
#[derive(Debug, Clone)]
pub struct Build {
    /// The backend's own files (and imports), an encoded `FileDescriptorSet`: what it declares
    /// now.
    pub descriptors: Arc<[u8]>,
    /// The full names (`package.Service`) of the services those files declare.
    pub services: Arc<BTreeSet<String>>,
    /// When this build breaks an older build of its package that the table routes: which one
    /// and compat's findings. Such a backend is pinned-only.
    pub breaks: Option<Arc<str>>,
    /// When the upstream's descriptors, read again, break what it declared when it joined:
    /// compat's findings, and the descriptors it joined with. Pinned-only too.
    pub drift: Option<(Arc<str>, Arc<[u8]>)>,
    /// Whether the descriptors were read from the upstream by reflection, so reading them
    /// again can find a drift (a file or a descriptor set sent with an Add does not change).
    pub refreshable: bool,
}

impl Build {
    /// The build whose files (and imports) are `pool`'s.
    pub fn of(pool: &DescriptorPool) -> Self {
        Self {
            descriptors: pool.encode_to_vec().into(),
            services: Arc::new(pool.services().map(|s| s.full_name().to_string()).collect()),
            breaks: None,
            drift: None,
            refreshable: false,
        }
    }

    /// This build, pinned-only because of `what` (the older build it breaks and the findings).
    pub fn breaking(mut self, what: impl Into<Arc<str>>) -> Self {
        self.breaks = Some(what.into());
        self
    }

    /// This build, read by reflection: reading it again can find a drift.
    pub fn refreshable(mut self) -> Self {
        self.refreshable = true;
        self
    }

    /// This build as the upstream declares it now (`pool`), drifted from `joined` (what it
    /// declared when it joined) as `findings` say; pinned-only.
    pub fn drifted(
        pool: &DescriptorPool,
        findings: impl Into<Arc<str>>,
        joined: Arc<[u8]>,
        breaks: Option<Arc<str>>,
    ) -> Self {
        Self {
            breaks,
            drift: Some((findings.into(), joined)),
            ..Self::of(pool).refreshable()
        }
    }

    /// What makes this build pinned-only, if anything: the drift's findings, or the older
    /// build it breaks.
    pub fn pinned_only_because(&self) -> Option<String> {
        match (&self.drift, &self.breaks) {
            (Some((findings, _)), _) => Some(format!(
                "what it declared when it joined (it drifted: its descriptors, read again, \
                 differ): {findings}"
            )),
            (None, Some(breaks)) => Some(breaks.to_string()),
            (None, None) => None,
        }
    }

    /// The descriptors a drift is judged against: those it joined with.
    pub fn baseline(&self) -> &Arc<[u8]> {
        self.drift
            .as_ref()
            .map_or(&self.descriptors, |(_, joined)| joined)
    }
}
