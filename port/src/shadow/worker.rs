//! The shadow worker: takes the copies of ended calls off the queue, sends each to the
//! candidate and to the secondary (or the primary's backend again) through their backends'
//! own connection pools, `--shadow-concurrent` at a time, and tallies the three answers per
//! method. It runs apart from the calls it copies, so a slow or dead candidate slows only
//! shadowing: copies wait in the queue, whose length `--shadow-held` bounds.

use super::{Shadow, Shadowing, method_name};
use compat::probe::{Answer, ReplyLimits, exchange};
use compat::replay::{Answers, Tally};
use router::{BackendService, RouteTable};
use std::sync::Weak;
use std::sync::atomic::Ordering;
use tokio::sync::{Semaphore, mpsc};

/// An ended call, to copy.
#[derive(Debug)]
pub(super) struct Job {
    /// When it came (RFC 3339), for the report's examples.
    pub(super) at: String,
    /// The primary's answer, as the caller got it.
    pub(super) primary: Answer,
    /// The backend that served it.
    pub(super) primary_backend: String,
    /// Its request messages, uncompressed.
    pub(super) requests: Vec<Vec<u8>>,
    pub(super) shadowing: Shadowing,
}

/// Starts the worker on the current runtime; it ends when the shadow is dropped.
pub(super) fn start(
    shadow: Weak<Shadow>,
    mut queue: mpsc::UnboundedReceiver<Job>,
    concurrent: usize,
) {
    let permits = std::sync::Arc::new(Semaphore::new(concurrent));
    tokio::spawn(async move {
        while let Some(job) = queue.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let Some(shadow) = shadow.upgrade() else {
                return;
            };
            tokio::spawn(async move {
                run(&shadow, job).await;
                drop(permit);
            });
        }
    });
}

/// Sends one copy to both backends and tallies the answers.
async fn run(shadow: &Shadow, job: Job) {
    let Job {
        at,
        primary,
        primary_backend,
        requests,
        shadowing,
    } = job;
    // The catalog's descriptor finds the backends; the primary's own one reads the replies.
    let m = &shadowing.descriptor;
    let table = shadow.router().table();
    let session = &shadowing.session;
    let target = &session.target;
    let candidate = reach(&table, &target.candidate, m);
    let second_name = target.secondary.as_deref().unwrap_or(&primary_backend);
    let second = reach(&table, second_name, m);
    let called = match &candidate {
        Ok((_, path)) => path.trim_start_matches('/').to_string(),
        Err(_) => method_name(m),
    };
    let unsent = match (&candidate, &second) {
        (Err(why), _) => Some(format!("not sent: {why}")),
        (_, Err(why)) => Some(format!("not sent: {why}")),
        _ => None,
    };
    let answers = match (candidate, second) {
        (Ok((new, new_path)), Ok((old, old_path))) => {
            let limits = ReplyLimits {
                max_replies: shadow.options.shadow_max_messages,
                max_reply_bytes: shadow.options.shadow_max_call_bytes,
            };
            let within = (shadow.timeout(), limits);
            let headers = &shadowing.headers;
            let (second, new) = tokio::join!(
                exchange(&old, &old_path, requests.clone(), within, headers),
                exchange(&new, &new_path, requests, within, headers),
            );
            Some(Answers {
                old: primary,
                second,
                new,
            })
        }
        _ => None,
    };
    let mut tallies = session.tallies.lock().unwrap_or_else(|e| e.into_inner());
    let name = m.full_name();
    let index = match tallies.iter().position(|t| t.method() == name) {
        Some(i) => i,
        None => {
            let own = own_descriptor(&table, &primary_backend, m);
            tallies.push(Tally::new(own, called));
            tallies.len() - 1
        }
    };
    let tally = &mut tallies[index];
    match (answers, unsent) {
        (Some(answers), _) => {
            tally.add(&at, &answers);
            session.counts.compared.fetch_add(1, Ordering::Relaxed);
        }
        (None, why) => tally.unsent(&at, why.unwrap_or_default()),
    }
}

/// Backend `name` of `table` (or its `name/PACKAGE` backend) serving the package of `m`: its
/// service and the path it takes `m` at (another package's, when it serves `m`'s as a retired
/// one).
fn reach(
    table: &RouteTable,
    name: &str,
    m: &prost_reflect::MethodDescriptor,
) -> Result<(BackendService, String), String> {
    let service = m.parent_service();
    let package = service.package_name();
    let backend = table
        .backend(name)
        .filter(|b| b.serves.iter().any(|p| p == package))
        .or_else(|| table.backend(&format!("{name}/{package}")))
        .or_else(|| {
            table.backends().into_iter().find_map(|info| {
                crate::route_checks::belongs_to(&info.name, name)
                    .then(|| table.backend(&info.name))
                    .flatten()
                    .filter(|b| b.serves.iter().any(|p| p == package))
            })
        })
        .ok_or_else(|| match table.backend(name) {
            Some(_) => format!("backend {name} does not serve {package}"),
            None => format!("no backend {name} in the route table"),
        })?;
    let path = format!("/{}.{}/{}", backend.api, service.name(), m.name());
    Ok((backend.service.clone(), path))
}

/// `m` as the primary's own build declares it, so that replies are read as its callers read
/// them (fields only a newer build beside it knows are not compared); the catalog's `m` when
/// the backend keeps no build of its own.
fn own_descriptor(
    table: &RouteTable,
    backend: &str,
    m: &prost_reflect::MethodDescriptor,
) -> prost_reflect::MethodDescriptor {
    let own = table
        .backend(backend)
        .and_then(|b| b.build.as_ref())
        .and_then(|build| {
            let pool = prost_reflect::DescriptorPool::decode(&build.descriptors[..]).ok()?;
            let service = pool.get_service_by_name(m.parent_service().full_name())?;
            service.methods().find(|x| x.name() == m.name())
        });
    own.unwrap_or_else(|| m.clone())
}
