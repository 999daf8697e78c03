//! Package rules: declarations deleted from a package, and the `*_ADDED` change entries.

use super::*;

impl Engine<'_, '_> {
    pub(super) fn packages(&mut self) {
        let o = self.o;
        let n = self.n;
        for p in o.packages.difference(&n.packages) {
            self.push(
                "PACKAGE_NO_DELETE",
                p.clone(),
                (String::new(), Some(1)),
                format!("Previously present package \"{p}\" was deleted."),
                Subject::NoWire("see the service and method findings for what callers get"),
            );
        }
        // Like buf: a package-level deletion is only reported when the new package still
        // declares at least one element of that kind.
        for (group, kind) in DECLARATIONS.iter().enumerate() {
            let (old_all, new_all) = (o.declared(group), n.declared(group));
            let new_pkgs: BTreeSet<&str> = new_all.all().map(|(_, d)| d.package_name()).collect();
            for (k, d) in old_all.all() {
                if !new_all.has(k) && new_pkgs.contains(self.pairing.map(d.package_name()).as_str())
                {
                    let loc = self.deleted_loc(d.parent_message(), &d.parent_file());
                    self.push(
                        kind.package_rule,
                        d.full_name(),
                        loc,
                        format!(
                            "Previously present {} \"{}\" was deleted from package \"{}\".",
                            kind.noun,
                            short(d.full_name(), d.package_name()),
                            d.package_name()
                        ),
                        Subject::NoWire(kind.deleted),
                    );
                }
            }
        }
    }

    /// The `*_ADDED` change entries of one kind of declaration.
    pub(super) fn added(&mut self, group: usize) {
        let kind = &DECLARATIONS[group];
        let Some((rule, title)) = kind.added else {
            return;
        };
        let (o, n) = (self.o, self.n);
        let old_all = o.declared(group);
        for (k, d) in n.declared(group).all() {
            if !old_all.has(k) && !d.is_map_entry() {
                let loc = n.loc(&d.parent_file(), d.path());
                self.change(
                    rule,
                    k.clone(),
                    loc,
                    format!("{title} \"{k}\" was added."),
                    Bump::Minor,
                );
            }
        }
    }
}
