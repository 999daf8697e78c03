//! File rules: files deleted, packages and syntax changed, file options (code-generation
//! options, JSON format), and the patch-level "file changed" entry; where deletions point.

use super::*;

impl Engine<'_, '_> {
    pub(super) fn file_loc(&self, name: &str) -> Loc {
        (name.to_string(), self.n.src.line(name, &[]).or(Some(1)))
    }

    /// Where buf points a deletion: the nearest enclosing message still present on the new
    /// side, else the new file with the old file's path, else the first new file of the package.
    pub(super) fn deleted_loc(
        &self,
        old_parent: Option<MessageDescriptor>,
        old_file: &FileDescriptor,
    ) -> Loc {
        let mut parent = old_parent;
        while let Some(p) = parent {
            if let Some(m) = self.n.messages.get(&self.pairing.map(p.full_name())) {
                return self.n.loc(&m.parent_file(), m.path());
            }
            parent = p.parent_message();
        }
        let new_name = self.pairing.file(old_file.name());
        if self.n.files.contains_key(new_name) {
            return self.file_loc(new_name);
        }
        let pkg = self.pairing.map(old_file.package_name());
        if let Some(f) = self.n.files.values().find(|f| f.package_name() == pkg) {
            return self.file_loc(f.name());
        }
        (String::new(), Some(1))
    }

    pub(super) fn files(&mut self) {
        let o = self.o;
        let n = self.n;
        for (name, of) in &o.files {
            let Some(nf) = n.files.get(name) else {
                self.push(
                    "FILE_NO_DELETE",
                    name.clone(),
                    (String::new(), Some(1)),
                    format!("Previously present file \"{name}\" was deleted."),
                    Subject::NoWire("a file has no wire form; deleted types and services are reported on their own"),
                );
                continue;
            };
            let op = self.pairing.map(of.package_name());
            if op != nf.package_name() {
                self.push(
                    "FILE_SAME_PACKAGE",
                    name.clone(),
                    n.loc(nf, &[2]),
                    format!("File package changed from \"{}\" to \"{}\".", of.package_name(), nf.package_name()),
                    Subject::NoWire("every method path and type name of this file changes; see the service and method findings"),
                );
            }
            let (os, ns) = (self.o.syntax(of), n.syntax(nf));
            if os != ns {
                // An editions file's statement is `edition = ...` (field 14), not `syntax`.
                let at = if n.editions.files.contains_key(nf.name()) {
                    14
                } else {
                    12
                };
                self.push(
                    "FILE_SAME_SYNTAX",
                    name.clone(),
                    n.loc(nf, &[at]),
                    format!("File syntax changed from \"{os}\" to \"{ns}\"."),
                    Subject::NoWire("syntax alone changes no encoding; field-level effects are reported per field"),
                );
            }
            self.file_options(name, of, nf);
            // Per-file deletions (FILE category), by names relative to each file's package
            // (a package rename is FILE_SAME_PACKAGE, not a deletion of everything).
            for (group, kind) in DECLARATIONS.iter().enumerate() {
                let names = |s: &Side, f: &FileDescriptor| -> BTreeMap<String, String> {
                    s.by_file
                        .get(f.name())
                        .map(|g| g[group].iter().cloned().collect())
                        .unwrap_or_default()
                };
                let new_names = names(n, nf);
                for (_, k) in names(o, of)
                    .into_iter()
                    .filter(|(r, _)| !new_names.contains_key(r))
                {
                    let d = o.declared(group).declaration(&k).expect("indexed by key");
                    let loc = self.deleted_loc(d.parent_message(), of);
                    self.push(
                        kind.file_rule,
                        d.full_name(),
                        loc,
                        format!(
                            "Previously present {} \"{}\" was deleted from file.",
                            kind.noun,
                            short(d.full_name(), d.package_name())
                        ),
                        Subject::NoWire(kind.deleted),
                    );
                }
            }
        }
        for name in n.files.keys() {
            if !o.files.contains_key(name) {
                let loc = self.file_loc(name);
                self.change(
                    "FILE_ADDED",
                    name.clone(),
                    loc,
                    format!("File \"{name}\" was added."),
                    Bump::Minor,
                );
            }
        }
    }

    /// A paired file whose descriptor changed in a way no rule or change entry describes
    /// (reserved ranges added, options outside the rules): a patch-level change.
    pub(super) fn other_changes(&mut self) {
        let touched: BTreeSet<String> = self.out.iter().map(|r| r.path.clone()).collect();
        // Compared under the new side's file names: a file paired across roots keeps its
        // descriptor, only its name and its imports' names differ.
        let pairing = self.pairing;
        let strip = |f: &FileDescriptor| {
            let mut p = f.file_descriptor_proto().clone();
            p.source_code_info = None;
            p.name = Some(pairing.file(f.name()).to_string());
            for d in &mut p.dependency {
                *d = pairing.file(d).to_string();
            }
            p
        };
        let pairs: Vec<(String, FileDescriptor, FileDescriptor)> = self
            .o
            .files
            .iter()
            .filter_map(|(name, of)| {
                self.n
                    .files
                    .get(name)
                    .map(|nf| (name.clone(), of.clone(), nf.clone()))
            })
            .collect();
        for (name, of, nf) in pairs {
            if touched.contains(&name) || of.package_name() != nf.package_name() {
                continue;
            }
            if strip(&of) != strip(&nf) {
                let loc = self.file_loc(&name);
                self.change(
                    "FILE_CHANGED",
                    name.clone(),
                    loc,
                    format!(
                        "File \"{name}\" changed in a way no rule reports (reservations, options)."
                    ),
                    Bump::Patch,
                );
            }
        }
    }

    pub(super) fn file_options(&mut self, name: &str, of: &FileDescriptor, nf: &FileDescriptor) {
        let d = prost_types::FileOptions::default();
        let oo = of.file_descriptor_proto().options.as_ref().unwrap_or(&d);
        let no = nf.file_descriptor_proto().options.as_ref().unwrap_or(&d);
        let checks: [(&'static str, &str, i32, String, String); 16] = [
            (
                "FILE_SAME_CC_ENABLE_ARENAS",
                "cc_enable_arenas",
                31,
                oo.cc_enable_arenas().to_string(),
                no.cc_enable_arenas().to_string(),
            ),
            (
                "FILE_SAME_CC_GENERIC_SERVICES",
                "cc_generic_services",
                16,
                oo.cc_generic_services().to_string(),
                no.cc_generic_services().to_string(),
            ),
            (
                "FILE_SAME_CSHARP_NAMESPACE",
                "csharp_namespace",
                37,
                oo.csharp_namespace().to_string(),
                no.csharp_namespace().to_string(),
            ),
            (
                "FILE_SAME_GO_PACKAGE",
                "go_package",
                11,
                oo.go_package().to_string(),
                no.go_package().to_string(),
            ),
            (
                "FILE_SAME_JAVA_GENERIC_SERVICES",
                "java_generic_services",
                17,
                oo.java_generic_services().to_string(),
                no.java_generic_services().to_string(),
            ),
            (
                "FILE_SAME_JAVA_MULTIPLE_FILES",
                "java_multiple_files",
                10,
                oo.java_multiple_files().to_string(),
                no.java_multiple_files().to_string(),
            ),
            (
                "FILE_SAME_JAVA_OUTER_CLASSNAME",
                "java_outer_classname",
                8,
                oo.java_outer_classname().to_string(),
                no.java_outer_classname().to_string(),
            ),
            (
                "FILE_SAME_JAVA_PACKAGE",
                "java_package",
                1,
                oo.java_package().to_string(),
                no.java_package().to_string(),
            ),
            (
                "FILE_SAME_OBJC_CLASS_PREFIX",
                "objc_class_prefix",
                36,
                oo.objc_class_prefix().to_string(),
                no.objc_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_OPTIMIZE_FOR",
                "optimize_for",
                9,
                oo.optimize_for().as_str_name().to_string(),
                no.optimize_for().as_str_name().to_string(),
            ),
            (
                "FILE_SAME_PHP_CLASS_PREFIX",
                "php_class_prefix",
                40,
                oo.php_class_prefix().to_string(),
                no.php_class_prefix().to_string(),
            ),
            (
                "FILE_SAME_PHP_METADATA_NAMESPACE",
                "php_metadata_namespace",
                44,
                oo.php_metadata_namespace().to_string(),
                no.php_metadata_namespace().to_string(),
            ),
            (
                "FILE_SAME_PHP_NAMESPACE",
                "php_namespace",
                41,
                oo.php_namespace().to_string(),
                no.php_namespace().to_string(),
            ),
            (
                "FILE_SAME_PY_GENERIC_SERVICES",
                "py_generic_services",
                18,
                oo.py_generic_services().to_string(),
                no.py_generic_services().to_string(),
            ),
            (
                "FILE_SAME_RUBY_PACKAGE",
                "ruby_package",
                45,
                oo.ruby_package().to_string(),
                no.ruby_package().to_string(),
            ),
            (
                "FILE_SAME_SWIFT_PREFIX",
                "swift_prefix",
                39,
                oo.swift_prefix().to_string(),
                no.swift_prefix().to_string(),
            ),
        ];
        for (rule, opt, num, a, b) in checks {
            if a != b {
                let loc = self.n.loc(nf, &[8, num]);
                self.push(
                    rule,
                    name.to_string(),
                    loc,
                    format!("File option \"{opt}\" changed from \"{a}\" to \"{b}\"."),
                    Subject::NoWire(CODEGEN_OPTION),
                );
            }
        }
    }
}

pub(super) fn json_format(f: &FileDescriptor) -> &'static str {
    match f.syntax() {
        Syntax::Proto3 => "ALLOW",
        Syntax::Proto2 => "LEGACY_BEST_EFFORT",
    }
}
