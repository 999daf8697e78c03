//! One side of a comparison indexed for the rules: elements by (new-side) full name, per-file
//! declarations, source lines and comments, and what the deletion and addition rules need of
//! each kind of declaration.

use super::*;

/// Where a finding points: the (new-side) file and the 1-based line.
pub(super) type Loc = (String, Option<u32>);

/// By source path: the 1-based line and the index of the location.
pub(super) type Lines = HashMap<Vec<i32>, (u32, usize)>;

/// Line numbers and comments by source path, per file.
pub(super) struct SourceIndex {
    /// Per file: the file and its lines.
    pub(super) files: HashMap<String, (FileDescriptor, Lines)>,
}

impl SourceIndex {
    pub(super) fn build(api: &Api) -> SourceIndex {
        let mut files = HashMap::new();
        for name in &api.files {
            let Some(file) = api.pool.get_file_by_name(name) else {
                continue;
            };
            let Some(info) = &file.file_descriptor_proto().source_code_info else {
                continue;
            };
            let mut map = HashMap::with_capacity(info.location.len());
            for (i, loc) in info.location.iter().enumerate() {
                let line = loc.span.first().map(|l| *l as u32 + 1).unwrap_or(1);
                map.entry(loc.path.clone()).or_insert((line, i));
            }
            files.insert(name.clone(), (file.clone(), map));
        }
        SourceIndex { files }
    }

    /// The line of `path` in `file`, walking up to the enclosing element when the exact path
    /// has no location (a synthesized map entry, an option left at its default).
    pub(super) fn line(&self, file: &str, path: &[i32]) -> Option<u32> {
        let (_, map) = self.files.get(file)?;
        let mut p = path.to_vec();
        loop {
            if let Some((line, _)) = map.get(&p) {
                return Some(*line);
            }
            if p.is_empty() {
                return Some(1);
            }
            let cut = if p.len() >= 2 { p.len() - 2 } else { 0 };
            p.truncate(cut);
        }
    }

    /// Whether `file` carries source info (reflection and `protoc -o` without
    /// `--include_source_info` drop it, and with it every comment).
    pub(super) fn has_source(&self, file: &str) -> bool {
        self.files.get(file).is_some_and(|(_, map)| !map.is_empty())
    }

    /// The leading and trailing comments at `path` (empty when none).
    pub(super) fn comments(&self, file: &str, path: &[i32]) -> (&str, &str) {
        let Some((fd, map)) = self.files.get(file) else {
            return ("", "");
        };
        match (map.get(path), &fd.file_descriptor_proto().source_code_info) {
            (Some((_, i)), Some(info)) => {
                let loc = &info.location[*i];
                (loc.leading_comments(), loc.trailing_comments())
            }
            _ => ("", ""),
        }
    }
}

/// What the deletion and addition rules need of a message, enum, service or extension.
pub(super) trait Declaration {
    fn full_name(&self) -> &str;
    fn package_name(&self) -> &str;
    /// The message it is nested in (a service is never nested).
    fn parent_message(&self) -> Option<MessageDescriptor>;
    fn parent_file(&self) -> FileDescriptor;
    fn path(&self) -> &[i32];
    /// A synthesized map entry (never reported as added).
    fn is_map_entry(&self) -> bool {
        false
    }
}

macro_rules! declaration {
    ($t:ty, |$d:ident| parent: $parent:expr $(, map_entry: $map_entry:expr)?) => {
        impl Declaration for $t {
            fn full_name(&self) -> &str {
                <$t>::full_name(self)
            }
            fn package_name(&self) -> &str {
                <$t>::package_name(self)
            }
            fn parent_message(&self) -> Option<MessageDescriptor> {
                let $d = self;
                $parent
            }
            fn parent_file(&self) -> FileDescriptor {
                <$t>::parent_file(self)
            }
            fn path(&self) -> &[i32] {
                <$t>::path(self)
            }
            $(fn is_map_entry(&self) -> bool {
                let $d = self;
                $map_entry
            })?
        }
    };
}

declaration!(MessageDescriptor, |d| parent: d.parent_message(), map_entry: d.is_map_entry());
declaration!(EnumDescriptor, |d| parent: d.parent_message());
declaration!(ServiceDescriptor, |_d| parent: None);
declaration!(ExtensionDescriptor, |d| parent: d.parent_message());

/// One side's declarations of one kind, by key, whatever their descriptor type.
pub(super) trait Declarations {
    fn declaration(&self, key: &str) -> Option<&dyn Declaration>;
    fn has(&self, key: &str) -> bool;
    fn all(&self) -> Box<dyn Iterator<Item = (&String, &dyn Declaration)> + '_>;
}

impl<T: Declaration> Declarations for BTreeMap<String, T> {
    fn declaration(&self, key: &str) -> Option<&dyn Declaration> {
        self.get(key).map(|d| d as &dyn Declaration)
    }
    fn has(&self, key: &str) -> bool {
        self.contains_key(key)
    }
    fn all(&self) -> Box<dyn Iterator<Item = (&String, &dyn Declaration)> + '_> {
        Box::new(self.iter().map(|(k, d)| (k, d as &dyn Declaration)))
    }
}

/// Indexes of the kinds of declaration in [`DECLARATIONS`] and in `Side::by_file`.
pub(super) const MESSAGES: usize = 0;
pub(super) const ENUMS: usize = 1;
pub(super) const SERVICES: usize = 2;
pub(super) const EXTENSIONS: usize = 3;

/// The rules about one kind of declaration being deleted or added.
pub(super) struct DeclarationRules {
    /// The kind in messages: `message`.
    pub(super) noun: &'static str,
    /// Deleted from a file (FILE category).
    pub(super) file_rule: &'static str,
    /// Deleted from a package (PACKAGE category).
    pub(super) package_rule: &'static str,
    /// Why a deletion alone has no wire effect.
    pub(super) deleted: &'static str,
    /// The CHANGE entry of an addition, and the kind as the message's first word.
    pub(super) added: Option<(&'static str, &'static str)>,
}

pub(super) const EXTENSION_DELETED: &str =
    "extension bytes are kept as unknown fields by readers without it";
pub(super) const SERVICE_DELETED: &str = "see GRPC_SERVICE_NO_DELETE for what callers get";

/// By kind: [`MESSAGES`], [`ENUMS`], [`SERVICES`], [`EXTENSIONS`].
pub(super) static DECLARATIONS: [DeclarationRules; 4] = [
    DeclarationRules {
        noun: "message",
        file_rule: "MESSAGE_NO_DELETE",
        package_rule: "PACKAGE_MESSAGE_NO_DELETE",
        deleted: TYPE_DELETED,
        added: Some(("MESSAGE_ADDED", "Message")),
    },
    DeclarationRules {
        noun: "enum",
        file_rule: "ENUM_NO_DELETE",
        package_rule: "PACKAGE_ENUM_NO_DELETE",
        deleted: TYPE_DELETED,
        added: Some(("ENUM_ADDED", "Enum")),
    },
    DeclarationRules {
        noun: "service",
        file_rule: "SERVICE_NO_DELETE",
        package_rule: "PACKAGE_SERVICE_NO_DELETE",
        deleted: SERVICE_DELETED,
        added: Some(("SERVICE_ADDED", "Service")),
    },
    DeclarationRules {
        noun: "extension",
        file_rule: "EXTENSION_NO_DELETE",
        package_rule: "PACKAGE_EXTENSION_NO_DELETE",
        deleted: EXTENSION_DELETED,
        added: None,
    },
];

/// One side's elements by (new-side) full name.
pub(super) struct Side<'a> {
    /// The resolved features of the side's editions files.
    pub(super) editions: &'a crate::editions::Editions,
    pub(super) messages: BTreeMap<String, MessageDescriptor>,
    pub(super) enums: BTreeMap<String, EnumDescriptor>,
    pub(super) services: BTreeMap<String, ServiceDescriptor>,
    pub(super) extensions: BTreeMap<String, ExtensionDescriptor>,
    pub(super) packages: BTreeSet<String>,
    pub(super) files: BTreeMap<String, FileDescriptor>,
    /// Per file: (name relative to the file's package, key) of its messages, enums,
    /// services and extensions.
    pub(super) by_file: HashMap<String, [Vec<(String, String)>; 4]>,
    pub(super) src: SourceIndex,
}

impl<'a> Side<'a> {
    pub(super) fn build(api: &'a Api, pairing: Option<&Pairing>) -> Side<'a> {
        let key = |n: &str| match pairing {
            Some(p) => p.map(n),
            None => n.to_string(),
        };
        let mut side = Side {
            editions: &api.editions,
            messages: BTreeMap::new(),
            enums: BTreeMap::new(),
            services: BTreeMap::new(),
            extensions: BTreeMap::new(),
            packages: BTreeSet::new(),
            files: BTreeMap::new(),
            by_file: HashMap::new(),
            src: SourceIndex::build(api),
        };
        for name in &api.files {
            let Some(file) = api.pool.get_file_by_name(name) else {
                continue;
            };
            side.packages.insert(key(file.package_name()));
            let pkg = file.package_name().to_string();
            let mut groups: [Vec<(String, String)>; 4] = Default::default();
            let mut add = |group: usize, full: &str| -> String {
                let k = key(full);
                groups[group].push((short(full, &pkg).to_string(), k.clone()));
                k
            };
            let mut stack: Vec<MessageDescriptor> = file.messages().collect();
            for e in file.enums() {
                side.enums.insert(add(ENUMS, e.full_name()), e);
            }
            for x in file.extensions() {
                side.extensions.insert(add(EXTENSIONS, x.full_name()), x);
            }
            while let Some(m) = stack.pop() {
                stack.extend(m.child_messages());
                for e in m.child_enums() {
                    side.enums.insert(add(ENUMS, e.full_name()), e);
                }
                for x in m.child_extensions() {
                    side.extensions.insert(add(EXTENSIONS, x.full_name()), x);
                }
                side.messages.insert(add(MESSAGES, m.full_name()), m);
            }
            for s in file.services() {
                side.services.insert(add(SERVICES, s.full_name()), s);
            }
            side.by_file.insert(name.clone(), groups);
            let file_key = pairing.map_or(name.as_str(), |p| p.file(name));
            side.files.insert(file_key.to_string(), file);
        }
        side
    }

    /// The declarations of one kind ([`MESSAGES`], [`ENUMS`], [`SERVICES`], [`EXTENSIONS`]).
    pub(super) fn declared(&self, kind: usize) -> &dyn Declarations {
        match kind {
            MESSAGES => &self.messages,
            ENUMS => &self.enums,
            SERVICES => &self.services,
            _ => &self.extensions,
        }
    }

    pub(super) fn loc(&self, file: &FileDescriptor, path: &[i32]) -> Loc {
        (file.name().to_string(), self.src.line(file.name(), path))
    }

    /// Where an element of message `m` is declared: a synthesized map entry has no source of
    /// its own, so its fields point at the map field that declared it (as buf does).
    pub(super) fn loc_in(&self, m: &MessageDescriptor, path: &[i32]) -> Loc {
        if m.is_map_entry()
            && let Some(parent) = m.parent_message()
            && let Some(f) = parent
                .fields()
                .find(|f| matches!(f.kind(), Kind::Message(e) if e.full_name() == m.full_name()))
        {
            return self.loc(&m.parent_file(), f.path());
        }
        self.loc(&m.parent_file(), path)
    }
}
