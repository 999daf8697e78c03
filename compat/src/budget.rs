//! Untrusted descriptors, checked before any work on them: a descriptor set is read for
//! protobuf editions where they are not read (the gateway's descriptor sets and reflection;
//! prost-reflect 0.16 panics on some editions sets; `crate::editions` lowers them for `check`),
//! turned into a pool with a panic in prost-reflect caught as an error, and every message's
//! sample (what the wire confirmation and the probe build) is sized without building it, so a
//! message whose fields nest it in itself many times over is refused with its name instead of
//! allocating until the process aborts.

use prost::Message;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use std::collections::HashMap;

/// The most values (messages, scalars, list elements, map entries) one sample message may
/// hold; a message whose sample would hold more is refused. The API catalogs of real services
/// stay far below it (the shop example: under 100).
pub const MAX_SAMPLE_NODES: u64 = 20_000;

/// How deep samples fill nested messages (a recursive type ends there).
pub(crate) const MAX_DEPTH: usize = 3;

/// The fields of a `FileDescriptorProto` that say which syntax or edition it uses (prost-types
/// 0.14 drops `edition`).
#[derive(Clone, PartialEq, Message)]
struct FileSyntax {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "12")]
    syntax: Option<String>,
    #[prost(int32, optional, tag = "14")]
    edition: Option<i32>,
}

/// A `FileDescriptorSet` read for [`FileSyntax`] alone.
#[derive(Clone, PartialEq, Message)]
struct SetSyntax {
    #[prost(message, repeated, tag = "1")]
    file: Vec<FileSyntax>,
}

/// Where editions files are read (this module's paths serve descriptors as given, and a
/// lowered proto2 copy would serve other semantics).
const EDITIONS_ELSEWHERE: &str = " by this path (`testbed check` reads editions files)";

/// The refusal of an editions file, naming it and its edition.
fn editions_refusal(file: &str, edition: Option<i32>) -> String {
    let edition = match edition {
        Some(1000) => "2023".to_string(),
        Some(1001) => "2024".to_string(),
        Some(n) => format!("EDITION {n}"),
        None => "?".to_string(),
    };
    format!("protobuf editions (edition = \"{edition}\") are not supported yet: {file}")
        + EDITIONS_ELSEWHERE
}

/// Refuses a file whose `syntax` is neither proto2 nor proto3 (nor editions, refused apart):
/// prost-reflect 0.16 panics while reporting an unknown syntax (found by the `descriptor_set`
/// fuzz target), so it must never see one.
/// An absent `syntax` means proto2; a present but empty one is as unknown as any other.
fn unknown_syntax(file: &str, syntax: Option<&str>) -> Result<(), String> {
    match syntax {
        None | Some("proto2") | Some("proto3") => Ok(()),
        Some(other) => Err(format!(
            "file {file:?} declares syntax {other:?}, which is neither \"proto2\" nor \"proto3\""
        )),
    }
}

/// Longest chain of `import public` prost-reflect may follow: it follows them recursively, so a
/// longer chain (or a cycle) would overflow its stack, which no `catch_unwind` can catch.
pub const MAX_PUBLIC_IMPORT_DEPTH: usize = 64;

/// Refuses files whose imports prost-reflect cannot take safely: a `public_dependency` or
/// `weak_dependency` index outside the file's imports, a cycle of
/// imports among the files (a file importing itself included; prost-reflect overflowed its stack
/// on one, found by the `descriptor_set` fuzz target), or a chain of public imports longer than
/// [`MAX_PUBLIC_IMPORT_DEPTH`]. Imports of files not in the set are left to prost-reflect, which
/// reports them as missing.
pub fn check_imports<'a>(
    files: impl IntoIterator<Item = &'a prost_types::FileDescriptorProto>,
) -> Result<(), String> {
    let files: Vec<&prost_types::FileDescriptorProto> = files.into_iter().collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, file) in files.iter().enumerate() {
        // A file may appear twice (concatenated sets): prost-reflect takes identical copies.
        index.entry(file.name()).or_insert(i);
        for (what, list) in [
            ("public", &file.public_dependency),
            ("weak", &file.weak_dependency),
        ] {
            if let Some(bad) = list
                .iter()
                .find(|&&d| usize::try_from(d).map_or(true, |d| d >= file.dependency.len()))
            {
                return Err(format!(
                    "file {:?} names {what} import {bad}, but it has {} imports",
                    file.name(),
                    file.dependency.len()
                ));
            }
        }
    }
    // Kahn's algorithm over the imports within the set: what is left unsorted is in a cycle.
    // Iterative, so that a long chain cannot overflow this stack either.
    let imports: Vec<Vec<usize>> = files
        .iter()
        .map(|file| {
            file.dependency
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    let mut waiting: Vec<usize> = imports.iter().map(Vec::len).collect();
    let mut importers: Vec<Vec<usize>> = vec![Vec::new(); files.len()];
    for (i, deps) in imports.iter().enumerate() {
        for &d in deps {
            importers[d].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..files.len()).filter(|&i| waiting[i] == 0).collect();
    let mut public_depth = vec![0usize; files.len()];
    let mut sorted = 0;
    while let Some(done) = ready.pop() {
        sorted += 1;
        let file = files[done];
        for &p in &file.public_dependency {
            let name = usize::try_from(p).ok().and_then(|p| file.dependency.get(p));
            if let Some(&dep) = name.and_then(|n| index.get(n.as_str())) {
                public_depth[done] = public_depth[done].max(public_depth[dep] + 1);
            }
        }
        if public_depth[done] > MAX_PUBLIC_IMPORT_DEPTH {
            return Err(format!(
                "file {:?} ends a chain of more than {MAX_PUBLIC_IMPORT_DEPTH} public imports",
                file.name()
            ));
        }
        for &importer in &importers[done] {
            waiting[importer] -= 1;
            if waiting[importer] == 0 {
                ready.push(importer);
            }
        }
    }
    if sorted < files.len() {
        let stuck = (0..files.len())
            .find(|&i| waiting[i] > 0)
            .map_or("?", |i| files[i].name());
        return Err(format!(
            "the imports of file {stuck:?} form a cycle (a file may not import itself, directly \
             or through others)"
        ));
    }
    Ok(())
}

/// Refuses a serialized `FileDescriptorSet` holding a file that uses protobuf editions, or a
/// syntax that is none of proto2, proto3 and editions, or imports [`check_imports`] refuses.
pub fn refuse_editions(bytes: &[u8]) -> Result<(), String> {
    let set = SetSyntax::decode(bytes).map_err(|e| e.to_string())?;
    for f in &set.file {
        let name = f.name.as_deref().unwrap_or("?");
        if f.syntax.as_deref() == Some("editions") || f.edition.is_some() {
            return Err(editions_refusal(name, f.edition));
        }
        unknown_syntax(name, f.syntax.as_deref())?;
    }
    let set = prost_types::FileDescriptorSet::decode(bytes).map_err(|e| e.to_string())?;
    check_imports(&set.file)
}

/// Refuses a serialized `FileDescriptorSet` holding a file whose syntax is none of proto2,
/// proto3 and editions, or imports [`check_imports`] refuses (editions files are read by
/// [`crate::editions`], which lowers them before prost-reflect sees them).
pub fn check_set(bytes: &[u8]) -> Result<(), String> {
    let set = SetSyntax::decode(bytes).map_err(|e| e.to_string())?;
    for f in &set.file {
        let name = f.name.as_deref().unwrap_or("?");
        if f.syntax.as_deref() != Some("editions") {
            unknown_syntax(name, f.syntax.as_deref())?;
        }
    }
    let set = prost_types::FileDescriptorSet::decode(bytes).map_err(|e| e.to_string())?;
    check_imports(&set.file)
}

/// Refuses decoded files that use protobuf editions (the edition itself is not kept by
/// prost-types, so the refusal names the file only).
pub fn refuse_edition_files<'a>(
    files: impl IntoIterator<Item = &'a prost_types::FileDescriptorProto> + Clone,
) -> Result<(), String> {
    check_imports(files.clone())?;
    for f in files {
        if f.syntax() == "editions" {
            return Err(format!(
                "protobuf editions are not supported yet over reflection (the decoded descriptors lose the edition and its features): {}; give the server's .proto files or a descriptor set (protoc -o) instead",
                f.name()
            ));
        }
        unknown_syntax(f.name(), f.syntax.as_deref())?;
    }
    Ok(())
}

/// Runs `build` (prost-reflect building a pool) with a panic caught and turned into an error:
/// the last line of defence when validation missed a case prost-reflect cannot handle.
pub fn guarded<T, E: std::fmt::Display>(build: impl FnOnce() -> Result<T, E>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(build)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!(
                "prost-reflect failed on these descriptors (it panicked: {what})"
            ))
        }
    }
}

/// Decodes an untrusted serialized `FileDescriptorSet` into a pool: editions refused, a
/// panic caught, every message's sample within [`MAX_SAMPLE_NODES`].
pub fn decode_pool(bytes: &[u8]) -> Result<DescriptorPool, String> {
    refuse_editions(bytes)?;
    let pool = guarded(|| DescriptorPool::decode(bytes))?;
    check_samples(&pool)?;
    Ok(pool)
}

/// Refuses a pool holding a message whose sample would exceed [`MAX_SAMPLE_NODES`] values.
/// Sizes are computed per (message, depth), so this takes time linear in the pool's fields.
pub fn check_samples(pool: &DescriptorPool) -> Result<(), String> {
    // prost-reflect takes a map entry without its key or value field, then panics on asking
    // for it (found by corrupting an editions fixture byte by byte).
    if let Some(m) = pool
        .all_messages()
        .find(|m| m.is_map_entry() && (m.get_field(1).is_none() || m.get_field(2).is_none()))
    {
        return Err(format!(
            "message {} is a map entry without its key (1) or value (2) field",
            m.full_name()
        ));
    }
    let mut sizes = HashMap::new();
    for m in pool.all_messages() {
        let n = sample_size(&m, 0, &mut sizes);
        if n > MAX_SAMPLE_NODES {
            return Err(format!(
                "message {}: a sample of it would hold more than {MAX_SAMPLE_NODES} values \
                 (its message fields nest {MAX_DEPTH} levels deep and multiply; e.g. many \
                 repeated fields of its own type); the limit is compat::MAX_SAMPLE_NODES",
                m.full_name()
            ));
        }
    }
    Ok(())
}

/// How many values a sample of `m` filled from `depth` holds at most (saturating): one for
/// the message, three elements per list, two entries per map, nested messages to
/// [`MAX_DEPTH`]; every oneof member counted.
fn sample_size(
    m: &MessageDescriptor,
    depth: usize,
    sizes: &mut HashMap<(String, usize), u64>,
) -> u64 {
    if depth > MAX_DEPTH {
        return 1;
    }
    let key = (m.full_name().to_string(), depth);
    if let Some(n) = sizes.get(&key) {
        return *n;
    }
    let mut total: u64 = 1;
    for f in m.fields() {
        let one = match f.kind() {
            Kind::Message(child) if f.is_map() => {
                let value = child.map_entry_value_field();
                match value.kind() {
                    Kind::Message(v) => 2u64.saturating_add(sample_size(&v, depth + 1, sizes)),
                    _ => 3,
                }
            }
            Kind::Message(child) => sample_size(&child, depth + 1, sizes),
            _ => 1,
        };
        let count = if f.is_map() {
            2
        } else if f.is_list() {
            3
        } else {
            1
        };
        total = total.saturating_add(one.saturating_mul(count));
    }
    sizes.insert(key, total);
    total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
        field_descriptor_proto::{Label, Type},
    };

    /// A message `rec.Node` with `n` repeated fields of its own type.
    pub(crate) fn recursive_set(n: i32) -> Vec<u8> {
        let field = |i: i32| FieldDescriptorProto {
            name: Some(format!("f{i}")),
            number: Some(i),
            label: Some(Label::Repeated as i32),
            r#type: Some(Type::Message as i32),
            type_name: Some(".rec.Node".to_string()),
            ..Default::default()
        };
        FileDescriptorSet {
            file: vec![FileDescriptorProto {
                name: Some("rec.proto".to_string()),
                package: Some("rec".to_string()),
                syntax: Some("proto3".to_string()),
                message_type: vec![DescriptorProto {
                    name: Some("Node".to_string()),
                    field: (1..=n).map(field).collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn a_recursive_message_is_refused_by_name() {
        let err = decode_pool(&recursive_set(32)).unwrap_err();
        assert!(err.contains("message rec.Node"), "{err}");
        assert!(err.contains("MAX_SAMPLE_NODES"), "{err}");
        assert!(decode_pool(&recursive_set(2)).is_ok());
    }

    #[test]
    fn an_editions_set_is_refused_without_a_panic() {
        let bytes = include_bytes!("../tests/data/editions2024.binpb");
        let err = decode_pool(bytes).unwrap_err();
        assert_eq!(
            err,
            "protobuf editions (edition = \"2024\") are not supported yet: ed.proto by this path (`testbed check` reads editions files)"
        );
    }

    #[test]
    fn an_unknown_syntax_is_refused_before_prost_reflect_sees_it() {
        // The `descriptor_set` fuzz target's first crash: one file, syntax "u", which made
        // prost-reflect panic (index out of bounds in descriptor/error.rs).
        let crash = [0x0a, 0x03, 0x62, 0x01, 0x75, 0x35, 0xb6, 0xb6, 0xb6, 0xb6];
        let err = decode_pool(&crash).unwrap_err();
        assert!(err.contains("syntax \"u\""), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        // Its second: the syntax field present and empty.
        let crash = [0x0a, 0x02, 0x62, 0x00];
        let err = decode_pool(&crash).unwrap_err();
        assert!(err.contains("syntax \"\""), "{err}");
    }

    #[test]
    fn import_cycles_and_bad_import_indexes_are_refused() {
        // The fuzz target's third crash: a file importing "" (itself, being nameless) publicly;
        // prost-reflect overflowed its stack following it.
        let crash = [
            0x0a, 0x0a, 0x50, 0x00, 0x58, 0x58, 0x1a, 0x00, 0x1a, 0x00, 0x3a, 0x00,
        ];
        let err = decode_pool(&crash).unwrap_err();
        assert!(err.contains("import"), "{err}");
        let file = |name: &str, deps: &[&str], public: &[i32]| prost_types::FileDescriptorProto {
            name: Some(name.into()),
            dependency: deps.iter().map(|d| d.to_string()).collect(),
            public_dependency: public.to_vec(),
            ..Default::default()
        };
        let cycle = [file("a", &["b"], &[]), file("b", &["a"], &[])];
        assert!(check_imports(&cycle).unwrap_err().contains("cycle"));
        let out_of_range = [file("a", &[], &[3])];
        assert!(
            check_imports(&out_of_range)
                .unwrap_err()
                .contains("public import 3")
        );
        let chain: Vec<_> = (0..100)
            .map(|i| match i {
                0 => file("f0", &[], &[]),
                _ => file(&format!("f{i}"), &[&format!("f{}", i - 1)], &[0]),
            })
            .collect();
        assert!(
            check_imports(&chain)
                .unwrap_err()
                .contains("public imports")
        );
        assert!(check_imports(&chain[..60]).is_ok());
    }

    #[test]
    fn a_panic_becomes_an_error() {
        let err = guarded::<(), String>(|| panic!("boom")).unwrap_err();
        assert!(err.contains("boom"), "{err}");
    }
}
