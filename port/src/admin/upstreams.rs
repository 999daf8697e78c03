//! Add and Replace: an upstream parsed as `--upstream` is, checked against reality, read (its
//! descriptors by reflection or as sent), compared with the router's catalog (`super::catalog`,
//! builds of one package included) and joined to the table under the change lock.

use super::pb::{AddRequest, ChangeReply, ReplaceRequest};
use super::service::{CHANGE_WAIT, RoutesService, UPSTREAM_EXAMPLE, required, table_status};
use crate::route_checks;
use crate::upstream::{self, DescriptorOrigin, UpstreamSpec};
use router::{ApiCatalog, Backend};
use tonic::Status;

/// An upstream read and ready to join the table.
struct Prepared<'a> {
    /// The change lock, held from re-reading the table until the new one is stored.
    _change: tokio::sync::MutexGuard<'a, ()>,
    spec: UpstreamSpec,
    backends: Vec<Backend>,
    /// The router's catalog extended with the packages the upstream brings, if any.
    catalog: Option<ApiCatalog>,
}

impl RoutesService {
    /// Parses `text` as `--upstream` does, reads what the upstream declares, and makes its
    /// backends. When it implements packages the router's catalog does not hold, also the
    /// catalog extended with them (and with its `+PACKAGE`s its descriptors declare), as the
    /// start would have built it; a file the catalog already holds must say the same.
    /// `descriptor_set` (a serialized `FileDescriptorSet`) stands in for reflection when not
    /// empty.
    async fn prepare(
        &self,
        text: &str,
        descriptor_set: &[u8],
        adding: bool,
    ) -> Result<Prepared<'_>, Status> {
        let text = required("upstream", text, UPSTREAM_EXAMPLE)?;
        let spec: UpstreamSpec = text.parse().map_err(Status::invalid_argument)?;
        spec.within_replicas(self.max_replicas)
            .map_err(Status::invalid_argument)?;
        self.check_reality(&spec, adding).await?;
        let mut discovered = match descriptor_set {
            [] => {
                upstream::discover(
                    &spec,
                    None,
                    self.upstream_ca.as_deref(),
                    upstream::Fallback::None,
                )
                .await
            }
            bytes => {
                let started = std::time::Instant::now();
                let pool = compat::budget::decode_pool(bytes).map_err(|err| {
                    Status::invalid_argument(format!(
                        "descriptor_set is not a serialized google.protobuf.FileDescriptorSet \
                         whose files link (imports included) within this router's limits: {err}"
                    ))
                })?;
                upstream::declared_in(&spec, pool, DescriptorOrigin::Sent, started)
            }
        }
        .map_err(|err| Status::failed_precondition(format!("{err:#}")))?;
        compat::budget::check_samples(&discovered.pool).map_err(|err| {
            Status::invalid_argument(format!("the descriptors of upstream {}: {err}", spec.name))
        })?;
        // The upstream was reached and read without the lock; what it is checked against is
        // read under it, so a change made meanwhile counts.
        let change = self.lock_changes().await?;
        route_checks::name_is_free(&spec, &self.handle.table(), adding)?;
        let replacing = (!adding).then_some(spec.name.as_str());
        let (catalog, build) = super::catalog::extended(
            &mut discovered,
            &self.handle.table(),
            self.max_catalog_bytes,
            replacing,
        )?;
        let backends = discovered
            .backends(self.upstream_ca.as_deref(), build)
            .map_err(|err| Status::failed_precondition(format!("{err:#}")))?;
        Ok(Prepared {
            _change: change,
            spec,
            backends,
            catalog,
        })
    }

    /// The change lock, waited for at most [`CHANGE_WAIT`]; `UNAVAILABLE` past it.
    pub(super) async fn lock_changes(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, Status> {
        tokio::time::timeout(CHANGE_WAIT, self.changes.lock())
            .await
            .map_err(|_| {
                Status::unavailable(format!(
                    "another route change has been in progress for {} s; try again",
                    CHANGE_WAIT.as_secs()
                ))
            })
    }

    /// What Add (`adding`) or Replace checks before reading the upstream (see
    /// [`route_checks::admit`]).
    async fn check_reality(&self, spec: &UpstreamSpec, adding: bool) -> Result<(), Status> {
        route_checks::admit(spec, &self.handle.table(), adding, &self.own).await
    }

    /// `RESOURCE_EXHAUSTED` when the table holds `--max-upstreams` upstreams already (each
    /// upstream counted once, whatever packages it serves).
    fn room_for_an_upstream(&self) -> Result<(), Status> {
        let held = {
            let addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
            let upstreams: std::collections::HashSet<&str> = addresses
                .keys()
                .map(|name| name.split('/').next().unwrap_or(name))
                .collect();
            upstreams.len()
        };
        if held >= self.max_upstreams {
            return Err(Status::resource_exhausted(format!(
                "the route table holds {held} upstreams, the limit of --max-upstreams {}: remove \
                 one first, or raise --max-upstreams (and --fd-reserve with it)",
                self.max_upstreams
            )));
        }
        Ok(())
    }

    fn remember(&self, names: &[String], addr: &str) {
        let mut addresses = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        for name in names {
            addresses.insert(name.clone(), addr.to_string());
        }
    }

    pub(super) async fn add_upstream(&self, request: &AddRequest) -> Result<ChangeReply, Status> {
        self.room_for_an_upstream()?;
        let Prepared {
            _change,
            spec,
            backends,
            catalog,
        } = self
            .prepare(&request.upstream, &request.descriptor_set, true)
            .await?;
        self.room_for_an_upstream()?;
        let names: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
        let warnings = route_checks::warnings(&backends);
        if let Some(catalog) = &catalog {
            tracing::info!(
                upstream = %spec.name,
                packages = %catalog.packages().join(", "),
                "the router's catalog grows"
            );
        }
        let added = self.handle.add_all(catalog, backends).await;
        // Reading the upstream's descriptors and growing the catalog made copies, now freed.
        router::release_freed_memory();
        added.map_err(|err| table_status(&err))?;
        self.remember(&names, &spec.address());
        Ok(self.change_reply(&names, warnings))
    }

    pub(super) async fn replace_upstream(
        &self,
        request: &ReplaceRequest,
    ) -> Result<ChangeReply, Status> {
        let Prepared {
            _change,
            spec,
            backends,
            catalog,
        } = self
            .prepare(&request.upstream, &request.descriptor_set, false)
            .await?;
        let table = self.handle.table();
        let new: Vec<&str> = catalog.as_ref().map_or_else(Vec::new, |catalog| {
            catalog
                .packages()
                .into_iter()
                .filter(|p| !table.catalog().manages(p))
                .collect()
        });
        if !new.is_empty() {
            return Err(Status::failed_precondition(format!(
                "upstream {} brings {} the router does not manage yet; Replace changes existing \
                 backends only: Add the upstream under a new name",
                spec.name,
                new.join(", ")
            )));
        }
        let present = table.backends();
        if let Some(missing) = backends
            .iter()
            .find(|b| !present.iter().any(|p| p.name == b.name))
        {
            return Err(Status::not_found(format!(
                "no backend named {:?} is in the route table; Replace changes an existing \
                 backend (use Add for a new one)",
                missing.name
            )));
        }
        route_checks::same_packages(&spec, &present, &backends)?;
        let warnings = route_checks::warnings(&backends);
        let replaced: Vec<String> = backends.iter().map(|b| b.name.clone()).collect();
        let done = self.handle.replace_all(catalog, backends).await;
        // Reading the upstream's descriptors made copies, now freed.
        router::release_freed_memory();
        done.map_err(|err| table_status(&err))?;
        self.remember(&replaced, &spec.address());
        Ok(self.change_reply(&replaced, warnings))
    }
}
