//! Package pairing: `--map OLD=NEW` and the automatic `.vN` pairing, applied to full names;
//! and file pairing, for files whose names differ only in the directory they were compiled
//! from (`shop.proto` in a proto folder, `shop/v1/shop.proto` as a server's reflection names it).

use super::*;

/// Old package → new package, applied to full names.
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    pub(super) pairs: Vec<(String, String)>,
    /// Old file name → new file name, where they differ.
    pub(super) files: BTreeMap<String, String>,
}

impl Pairing {
    /// Pairs from `--map OLD=NEW`, plus the automatic `.vN` pairing when `auto` is set: an old
    /// package that is absent on the new side pairs with the one new package (absent on the
    /// old side) that differs from it only in a trailing `.vN`.
    pub fn new(explicit: &[(String, String)], old: &Api, new: &Api, auto: bool) -> Pairing {
        let mut pairs: Vec<(String, String)> = explicit.to_vec();
        if auto {
            let old_pkgs = packages(old);
            let new_pkgs = packages(new);
            for o in &old_pkgs {
                if new_pkgs.contains(o) || pairs.iter().any(|(a, _)| a == o) {
                    continue;
                }
                let Some(stem) = version_stem(o) else {
                    continue;
                };
                let candidates: Vec<&String> = new_pkgs
                    .iter()
                    .filter(|n| !old_pkgs.contains(*n) && version_stem(n) == Some(stem))
                    .collect();
                if candidates.len() == 1 {
                    pairs.push((o.clone(), candidates[0].clone()));
                }
            }
        }
        pairs.sort_by_key(|(a, _)| std::cmp::Reverse(a.len()));
        let mut pairing = Pairing {
            pairs,
            files: BTreeMap::new(),
        };
        pairing.files = pairing.pair_files(old, new);
        pairing
    }

    /// An old file absent on the new side is the new file absent on the old side of the same
    /// (paired) package whose name is the old one under more directories, or the other way
    /// round, when exactly one is: the same file compiled from another root. Any other rename
    /// stays a deletion and an addition, as buf reports it (`FILE_NO_DELETE`).
    fn pair_files(&self, old: &Api, new: &Api) -> BTreeMap<String, String> {
        let package = |api: &Api, name: &str| {
            api.pool
                .get_file_by_name(name)
                .map(|f| f.package_name().to_string())
        };
        let under = |long: &str, short: &str| {
            long.strip_suffix(short)
                .is_some_and(|head| head.ends_with('/'))
        };
        let unmatched_new: Vec<&String> = new
            .files
            .iter()
            .filter(|n| !old.files.contains(*n))
            .collect();
        let mut out = BTreeMap::new();
        for o in old.files.iter().filter(|o| !new.files.contains(*o)) {
            let Some(pkg) = package(old, o).map(|p| self.map(&p)) else {
                continue;
            };
            let candidates: Vec<&&String> = unmatched_new
                .iter()
                .filter(|n| {
                    (under(n, o) || under(o, n)) && package(new, n).as_deref() == Some(&pkg)
                })
                .collect();
            if let [n] = candidates.as_slice()
                && !out.values().any(|v: &String| v == **n)
            {
                out.insert(o.clone(), (**n).clone());
            }
        }
        out
    }

    /// The new-side name of an old-side file.
    pub fn file<'n>(&'n self, old: &'n str) -> &'n str {
        self.files.get(old).map_or(old, String::as_str)
    }

    /// The pairs, old → new.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut p = self.pairs.clone();
        p.sort();
        p
    }

    /// The new-side full name of an old-side full name.
    pub fn map(&self, old: &str) -> String {
        for (a, b) in &self.pairs {
            if old == a {
                return b.clone();
            }
            if let Some(rest) = old.strip_prefix(a.as_str())
                && rest.starts_with('.')
            {
                return format!("{b}{rest}");
            }
        }
        old.to_string()
    }
}

pub(super) fn version_stem(pkg: &str) -> Option<&str> {
    let (stem, last) = pkg.rsplit_once('.')?;
    let digits = last.strip_prefix('v')?;
    (!digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())).then_some(stem)
}

pub(super) fn packages(api: &Api) -> BTreeSet<String> {
    api.files
        .iter()
        .filter_map(|f| api.pool.get_file_by_name(f))
        .map(|f| f.package_name().to_string())
        .collect()
}
