//! Changes the route table at runtime and keeps health statuses in step with it.

use crate::Backend;
use crate::service::VersionRouterLayer;
use crate::table::{RouteTable, TableError};
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::Mutex;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// Shared control of one router's table. Cloning it shares the same table.
///
/// Readers (the router) never lock; writers are serialized so each change builds on the last
/// and health updates are published in the order the changes happened.
#[derive(Clone)]
pub struct RouterHandle {
    table: Arc<ArcSwap<RouteTable>>,
    health: Option<HealthReporter>,
    writer: Arc<Mutex<()>>,
}

impl RouterHandle {
    /// Takes charge of `table`; with `health`, every managed service's status follows the table
    /// (SERVING while some active backend serves its package, NOT_SERVING otherwise).
    pub async fn new(table: RouteTable, health: Option<HealthReporter>) -> Self {
        let handle = Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
            health,
            writer: Arc::default(),
        };
        handle.publish_health().await;
        handle
    }

    /// The layer that routes requests with this handle's table.
    pub fn layer(&self) -> VersionRouterLayer {
        VersionRouterLayer::new(self.table.clone())
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Adds `backend`; new requests may go to it at once.
    pub async fn add(&self, backend: Backend) -> Result<(), TableError> {
        self.update(|table| table.with_backend(backend)).await
    }

    /// Puts `backend` in the place of the backend with the same name, e.g. the same v2 service now
    /// also routed `increment.v1` requests. Validated like any table change.
    pub async fn replace(&self, backend: Backend) -> Result<(), TableError> {
        self.update(|table| table.with_replaced(backend)).await
    }

    /// Stops routing new requests to backend `name` and waits until its in-flight requests and
    /// streams have finished. The backend stays in the table (as draining) until removed.
    pub async fn drain(&self, name: &str) -> Result<(), TableError> {
        self.update(|table| table.with_draining(name)).await?;
        if let Some(in_flight) = self.table().in_flight_of(name) {
            in_flight.idle().await;
        }
        Ok(())
    }

    /// Removes backend `name`. Requests already routed to it still finish.
    pub async fn remove(&self, name: &str) -> Result<(), TableError> {
        self.update(|table| table.without(name)).await
    }

    async fn update(
        &self,
        change: impl FnOnce(&RouteTable) -> Result<RouteTable, TableError>,
    ) -> Result<(), TableError> {
        let _writer = self.writer.lock().await;
        let next = change(&self.table.load())?;
        self.table.store(Arc::new(next));
        self.publish_health().await;
        Ok(())
    }

    async fn publish_health(&self) {
        let Some(health) = &self.health else { return };
        let table = self.table.load();
        for package in table.catalog().packages() {
            let status = if table.is_served(package) {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            for service in table.catalog().service_names(package) {
                health.set_service_status(service, status).await;
            }
        }
    }
}
