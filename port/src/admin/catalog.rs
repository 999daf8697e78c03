//! How the descriptors of an upstream added at runtime join the router's catalog: a file the
//! catalog holds already must say the same, the catalog may not grow past
//! `--max-catalog-bytes` (RESOURCE_EXHAUSTED naming the flag and the sizes), and a new catalog
//! is built only when the upstream brings packages the router does not manage yet (building
//! one copies every descriptor the router holds, so an Add of known packages copies none).

use crate::upstream::{self, Discovered};
use prost::Message;
use router::ApiCatalog;
use tonic::Status;

/// What `discovered` adds to `catalog`, refused when a file it shares with the catalog says
/// something else or when the catalog would pass `max_bytes` of encoded descriptors. `Some`:
/// the catalog grown with the packages it brings (and its `+PACKAGE`s its descriptors
/// declare), built from `discovered`'s pool, which is taken (left empty); `None` when it
/// brings none.
pub(super) fn extended(
    discovered: &mut Discovered,
    catalog: &ApiCatalog,
    max_bytes: usize,
) -> Result<Option<ApiCatalog>, Status> {
    let spec = &discovered.spec;
    let mut bringing = 0usize;
    for file in discovered.pool.file_descriptor_protos() {
        match catalog.pool().get_file_by_name(file.name()) {
            Some(known)
                if upstream::meaning(known.file_descriptor_proto()) != upstream::meaning(file) =>
            {
                return Err(Status::failed_precondition(format!(
                    "upstream {} declares {} differently from this router's catalog; one \
                     router routes one meaning of each file (version the package, e.g. \
                     shop.v2, instead of changing it in place)",
                    spec.name,
                    file.name()
                )));
            }
            Some(_) => {}
            None => bringing += file.encoded_len(),
        }
    }
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
    if new.is_empty() {
        return Ok(None);
    }
    // The upstream's pool grows into the catalog's (the catalog's files added to it), so that
    // its descriptors are not copied once more: the old catalog serves until the swap anyway.
    let mut pool = std::mem::take(&mut discovered.pool);
    pool.add_file_descriptor_protos(
        catalog
            .pool()
            .file_descriptor_protos()
            .filter(|file| pool.get_file_by_name(file.name()).is_none())
            .cloned()
            .collect::<Vec<_>>(),
    )
    .map_err(|err| {
        Status::failed_precondition(format!(
            "the descriptors of upstream {} do not link with this router's catalog: {err}",
            spec.name
        ))
    })?;
    let mut packages: Vec<&str> = catalog.packages();
    packages.extend(new.iter().map(|p| p.as_str()));
    // Guarded: a panic in prost-reflect or the checks refuses this Add only.
    compat::budget::guarded(|| catalog.grown(pool, &packages))
        .map(Some)
        .map_err(|err| {
            Status::failed_precondition(format!(
                "cannot extend this router's catalog with upstream {}: {err}",
                spec.name
            ))
        })
}
