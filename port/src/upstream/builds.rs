//! Builds of one package side by side: which copy of a file the catalog holds when two
//! upstreams declare it differently (`payments.v1` at 1.0.0, and at 1.1.0 with a field added).
//!
//! The catalog routes one meaning of each file: the newest build's, when compat finds it a
//! wire-compatible superset (`WIRE` and `GRPC`) of the older one, so that every method and
//! message of either is routed with the shape the newer declares and the older still serves.
//! A newer build that breaks the older joins as pinned-only ([`router::Build::breaking`]): it
//! takes only the calls whose `x-api-version` no other backend satisfies, and the catalog keeps
//! the older build's files. Two builds at one version, or two upstreams that share a file but
//! no package, are refused. Every backend keeps its own build's descriptors, so reflection asked
//! for a version describes that version (see `crate::reflection`).

use super::{Discovered, meaning};
use anyhow::bail;
use prost_reflect::DescriptorPool;
use prost_types::FileDescriptorProto;
use router::{ApiCatalog, BackendInfo, RouteTable};
use semver::Version;
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use tonic::Status;

/// The union of the upstreams' files, and the upstreams whose build breaks an older one.
#[derive(Debug)]
pub(super) struct Merged {
    /// One pool of every upstream's files, each in the routed build's version.
    pub(super) pool: DescriptorPool,
    /// Upstream name → what its build breaks (the older build and compat's findings).
    pub(super) breaks: BTreeMap<String, String>,
}

/// One descriptor pool holding every upstream's files; where two declare a file differently,
/// the routed build's (see the module's documentation).
pub(super) fn merged(upstreams: &[Discovered]) -> anyhow::Result<Merged> {
    let mut order: Vec<&Discovered> = upstreams.iter().collect();
    // Oldest first, so that each newer build is compared with the one it would replace.
    order.sort_by(|a, b| a.spec.version.cmp_precedence(&b.spec.version));
    let mut files: BTreeMap<String, (FileDescriptorProto, usize)> = BTreeMap::new();
    let mut breaks: BTreeMap<String, String> = BTreeMap::new();
    let mut compared: HashMap<(usize, usize), bool> = HashMap::new();
    for (i, upstream) in order.iter().enumerate() {
        for file in upstream.pool.file_descriptor_protos() {
            let Some((known, owner)) = files.get(file.name()) else {
                files.insert(file.name().to_string(), (file.clone(), i));
                continue;
            };
            let owner = *owner;
            if meaning(known) == meaning(file) || breaks.contains_key(&upstream.spec.name) {
                continue;
            }
            let compatible = match compared.get(&(owner, i)) {
                Some(compatible) => *compatible,
                None => {
                    let older = order[owner];
                    let verdict = compare(older, upstream, file.name())?;
                    if let Err(findings) = &verdict {
                        let what = format!(
                            "the build of {} ({}): {findings}",
                            older.spec.name, older.spec.version
                        );
                        tracing::warn!(
                            upstream = %upstream.spec.name,
                            version = %upstream.spec.version,
                            "two builds of one package: this newer one breaks {what}; it is \
                             pinned-only (calls whose x-api-version only it satisfies)"
                        );
                        breaks.insert(upstream.spec.name.clone(), what);
                    } else {
                        tracing::info!(
                            older = %older.spec.name,
                            newer = %upstream.spec.name,
                            "two builds of one package side by side: the newer is a \
                             wire-compatible superset of the older and its files are routed"
                        );
                    }
                    compared.insert((owner, i), verdict.is_ok());
                    verdict.is_ok()
                }
            };
            if compatible {
                files.insert(file.name().to_string(), (file.clone(), i));
            }
        }
    }
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files.into_values().map(|(file, _)| file))
        .map_err(|err| anyhow::anyhow!("the upstreams' descriptors do not link together: {err}"))?;
    Ok(Merged { pool, breaks })
}

/// Whether `newer` (a later version) can serve the calls written for `older`'s build of every
/// package both implement (`file` is one they declare differently): `Ok(Err(findings))` when it
/// cannot; an error when the two cannot be two builds of one package at all.
fn compare(
    older: &Discovered,
    newer: &Discovered,
    file: &str,
) -> anyhow::Result<Result<(), String>> {
    let (a, b) = (&older.spec, &newer.spec);
    if a.version.cmp_precedence(&b.version) == Ordering::Equal {
        bail!(
            "upstreams {} and {} declare {file} differently at one version, {}: two builds of \
             one package side by side need two versions (1.0.0 and 1.1.0, say), the newer a \
             wire-compatible superset of the older",
            a.name,
            b.name,
            a.version
        );
    }
    let shared: Vec<&String> = older
        .packages
        .iter()
        .filter(|p| newer.packages.contains(p))
        .collect();
    if shared.is_empty() {
        bail!(
            "upstreams {} and {} declare {file} differently but implement no package in common; \
             one gateway routes one meaning of each file that packages share (version the \
             package, e.g. shop.v2, instead of changing it in place)",
            a.name,
            b.name
        );
    }
    for package in shared {
        if let Err(findings) = superset(&older.pool, &newer.pool, package)? {
            return Ok(Err(findings));
        }
    }
    Ok(Ok(()))
}

/// compat's verdict on `newer`'s build of `package` serving calls written for `older`'s, its
/// findings as one line; a panic in a dependency is an error, not a verdict.
pub(crate) fn superset(
    older: &DescriptorPool,
    newer: &DescriptorPool,
    package: &str,
) -> anyhow::Result<Result<(), String>> {
    let verdict = compat::budget::guarded(|| {
        Ok::<_, String>(compat::build_compatible(older, newer, package))
    })
    .map_err(|err| anyhow::anyhow!("cannot compare two builds of {package}: {err}"))?;
    Ok(verdict.map_err(|findings| compat::refusal_text(&findings)))
}

/// How an upstream added (or replacing backends) at runtime joins a table whose catalog
/// declares some of its files differently.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Joining {
    /// It is newer than the routed build and a superset of it: its files become the catalog's.
    Routed,
    /// It is older than the routed build, which is a superset of it: the catalog stays.
    Beside,
    /// It is newer and breaks the routed build: pinned-only, the catalog stays. What it breaks.
    PinnedOnly(String),
}

/// How `discovered` joins `table` (`Ok(None)`: every file it shares with the catalog says the
/// same). The routed build is the highest version among the active, not pinned-only backends
/// implementing a package it shares with the catalog, leaving out the backends of `replacing`
/// (the upstream Replace swaps); with none, its build simply becomes the routed one. Refused
/// (`FAILED_PRECONDITION`) at the routed build's version, when it shares no package, or when it
/// is older and the routed build breaks it.
pub(crate) fn joining(
    discovered: &Discovered,
    table: &RouteTable,
    replacing: Option<&str>,
) -> Result<Option<Joining>, Status> {
    let catalog = table.catalog();
    let Some(file) = differing(discovered, catalog) else {
        return Ok(None);
    };
    let spec = &discovered.spec;
    let shared: Vec<&String> = discovered
        .packages
        .iter()
        .filter(|p| catalog.manages(p))
        .collect();
    if shared.is_empty() {
        return Err(Status::failed_precondition(format!(
            "upstream {} declares {file} differently from this router's catalog but implements \
             none of its packages; one router routes one meaning of each file that packages \
             share (version the package, e.g. shop.v2, instead of changing it in place)",
            spec.name
        )));
    }
    let of_replaced = |name: &str| {
        replacing
            .is_some_and(|r| name == r || name.strip_prefix(r).is_some_and(|s| s.starts_with('/')))
    };
    let Some(routed) = routed_build(table, &shared, of_replaced) else {
        return Ok(Some(Joining::Routed));
    };
    let refuse =
        |why: String| Status::failed_precondition(format!("upstream {}: {why}", spec.name));
    let (older, newer) = match spec.version.cmp_precedence(&routed.version) {
        Ordering::Equal => {
            return Err(refuse(format!(
                "it declares {file} differently from backend {} at the same version, {}: two \
                 builds of one package side by side need two versions, the newer a \
                 wire-compatible superset of the older",
                routed.name, routed.version
            )));
        }
        Ordering::Greater => (catalog.pool(), &discovered.pool),
        Ordering::Less => (&discovered.pool, catalog.pool()),
    };
    let newer_is_it = newer_is(&spec.version, &routed.version);
    for package in shared {
        let verdict = superset(older, newer, package).map_err(|err| refuse(format!("{err:#}")))?;
        if let Err(findings) = verdict {
            return match newer_is_it {
                true => Ok(Some(Joining::PinnedOnly(format!(
                    "the build of {} ({}): {findings}",
                    routed.name, routed.version
                )))),
                false => Err(refuse(format!(
                    "its build ({}) is older than the routed build of {package} (backend {}, {}), \
                     which breaks it: {findings}; add the older build first, so that the newer \
                     joins as pinned-only, or give the older its own package",
                    spec.version, routed.name, routed.version
                ))),
            };
        }
    }
    Ok(Some(if newer_is_it {
        Joining::Routed
    } else {
        Joining::Beside
    }))
}

/// The routed build of `packages` in `table`: of the active backends implementing one of them,
/// leaving out those `left_out` names, the highest version that is not pinned-only.
pub(crate) fn routed_build(
    table: &RouteTable,
    packages: &[&String],
    left_out: impl Fn(&str) -> bool,
) -> Option<BackendInfo> {
    table
        .backends()
        .into_iter()
        .filter(|b| packages.contains(&&b.api) && !b.draining && b.breaks.is_none())
        .filter(|b| !left_out(&b.name))
        .max_by(|a, b| a.version.cmp_precedence(&b.version))
}

fn newer_is(it: &Version, than: &Version) -> bool {
    it.cmp_precedence(than) == Ordering::Greater
}

/// The name of a file `discovered` declares otherwise than `catalog` does, if any.
fn differing(discovered: &Discovered, catalog: &ApiCatalog) -> Option<String> {
    discovered
        .pool
        .file_descriptor_protos()
        .find(|file| {
            catalog
                .pool()
                .get_file_by_name(file.name())
                .is_some_and(|known| meaning(known.file_descriptor_proto()) != meaning(file))
        })
        .map(|file| file.name().to_string())
}

/// One pool of `theirs` (an upstream's files) and `catalog`'s: where both hold a file, theirs
/// when `theirs_win` (the upstream is the routed build now), else the catalog's.
pub(crate) fn combined(
    theirs: DescriptorPool,
    catalog: &ApiCatalog,
    theirs_win: bool,
    name: &str,
) -> Result<DescriptorPool, Status> {
    let unlinked = |err: prost_reflect::DescriptorError| {
        Status::failed_precondition(format!(
            "the descriptors of upstream {name} do not link with this router's catalog: {err}"
        ))
    };
    let (mut pool, other) = match theirs_win {
        // The upstream's pool grows into the catalog's (the catalog's files added to it), so
        // that its descriptors are not copied once more: the old catalog serves until the swap.
        true => (theirs, catalog.pool().clone()),
        false => (catalog.pool().clone(), theirs),
    };
    let missing: Vec<_> = other
        .file_descriptor_protos()
        .filter(|file| pool.get_file_by_name(file.name()).is_none())
        .cloned()
        .collect();
    pool.add_file_descriptor_protos(missing).map_err(unlinked)?;
    Ok(pool)
}
