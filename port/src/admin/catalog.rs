//! How the descriptors of an upstream added at runtime join the router's catalog: a file the
//! catalog holds already must say the same, or be another build of a package it shares with
//! the catalog (see `upstream::builds`: a newer superset becomes the routed build, an older one
//! joins beside it, a newer one that breaks joins pinned-only); the catalog may not grow past
//! `--max-catalog-bytes` (RESOURCE_EXHAUSTED naming the flag and the sizes); and a new catalog
//! is built only when the upstream brings packages the router does not manage yet or becomes
//! the routed build (building one copies every descriptor the router holds, so an Add of known
//! packages copies none).

use crate::upstream::{self, Discovered, Joining};
use prost::Message;
use router::{ApiCatalog, Build, RouteTable};
use tonic::Status;

/// What `discovered` adds to `table`'s catalog (`replacing`: the upstream a Replace swaps),
/// refused when a file it shares with the catalog says something else and is not another build
/// of a shared package, or when the catalog would pass `max_bytes` of encoded descriptors.
/// Returns the catalog grown with the packages it brings (and its `+PACKAGE`s its descriptors
/// declare) or holding its build's files, built from `discovered`'s pool, which is taken (left
/// empty), or `None` when the catalog stays as it is; and the upstream's build.
pub(super) fn extended(
    discovered: &mut Discovered,
    table: &RouteTable,
    max_bytes: usize,
    replacing: Option<&str>,
) -> Result<(Option<ApiCatalog>, Build), Status> {
    let catalog = table.catalog();
    let spec = &discovered.spec;
    let joining = upstream::joining(discovered, table, replacing)?;
    let build = match &joining {
        Some(Joining::PinnedOnly(what)) => {
            tracing::warn!(
                upstream = %spec.name,
                version = %spec.version,
                "two builds of one package: this newer one breaks {what}; it is pinned-only"
            );
            discovered.build().breaking(what.as_str())
        }
        _ => discovered.build(),
    };
    let routed = joining == Some(Joining::Routed);
    let bringing: usize = discovered
        .pool
        .file_descriptor_protos()
        .filter(|file| routed || catalog.pool().get_file_by_name(file.name()).is_none())
        .map(Message::encoded_len)
        .sum();
    let held = catalog.encoded_len();
    if held.saturating_add(bringing) > max_bytes {
        return Err(Status::resource_exhausted(format!(
            "upstream {} brings {bringing} bytes of descriptors (encoded) the catalog does not \
             hold; with the {held} it holds that is past --max-catalog-bytes {max_bytes}: \
             remove a backend whose packages nothing else needs first, or raise \
             --max-catalog-bytes",
            spec.name
        )));
    }
    let declared = |package: &String| discovered.pool.files().any(|f| f.package_name() == package);
    let new: Vec<&String> = discovered
        .packages
        .iter()
        .chain(spec.also_serving.iter().filter(|p| declared(p)))
        .filter(|package| !catalog.manages(package))
        .collect();
    if new.is_empty() && !routed {
        return Ok((None, build));
    }
    let mut packages: Vec<&str> = catalog.packages();
    packages.extend(new.iter().map(|p| p.as_str()));
    let packages: Vec<String> = packages.into_iter().map(str::to_string).collect();
    let name = spec.name.clone();
    let pool = upstream::combined(std::mem::take(&mut discovered.pool), catalog, routed, &name)?;
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    // Guarded: a panic in prost-reflect or the checks refuses this Add only.
    let grown = compat::budget::guarded(|| catalog.grown(pool, &packages)).map_err(|err| {
        Status::failed_precondition(format!(
            "cannot extend this router's catalog with upstream {name}: {err}"
        ))
    })?;
    Ok((Some(grown), build))
}
