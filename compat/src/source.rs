//! Inputs: a directory of `.proto` files, one `.proto` file, a `FileDescriptorSet` file (a buf
//! image too), a git revision (`.git#branch=main`), or a running server read by reflection
//! (`grpc://`, `https://`). Each side of a comparison is loaded on its own into an [`Api`].

use crate::reflection::ReflectOptions;
use prost::Message;
use prost_reflect::DescriptorPool;
use protox::file::{ChainFileResolver, FileResolver, GoogleFileResolver, IncludeFileResolver};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Why an input could not be loaded. Every variant names the input and, where there is one,
/// the fix.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A `.proto` file does not compile; the message is protox's, with file and line.
    #[error("{input}: {location}: {message}")]
    Compile {
        /// The directory given.
        input: String,
        /// `file.proto:LINE:COLUMN`, or the file alone when protox gives no position.
        location: String,
        /// protox's message.
        message: String,
    },
    /// The path does not exist or cannot be read.
    #[error("{input}: {message}")]
    Io {
        /// The path given.
        input: String,
        /// What went wrong.
        message: String,
    },
    /// The file is not a `FileDescriptorSet` (or its descriptors do not link).
    #[error(
        "{input}: not a FileDescriptorSet ({message}); give a directory of .proto files, a binary FileDescriptorSet (protoc -o, buf build -o x.binpb) or grpc://HOST:PORT"
    )]
    Descriptor {
        /// The path given.
        input: String,
        /// The decoder's message.
        message: String,
    },
    /// The descriptors are well formed but refused: protobuf editions (not supported yet), or
    /// a message whose sample exceeds [`crate::MAX_SAMPLE_NODES`].
    #[error("{input}: {message}")]
    Untrusted {
        /// The input given.
        input: String,
        /// What was refused, naming the file or message and the limit.
        message: String,
    },
    /// A `grpc://` input could not be read by reflection.
    #[error("{address}: {message}")]
    Reflection {
        /// `grpc://HOST:PORT`.
        address: String,
        /// What failed and how to fix it.
        message: String,
    },
}

/// Where one API version comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A directory of `.proto` files, compiled with protox; the directory is the first import path.
    Dir(PathBuf),
    /// One `.proto` file, compiled with its directory as the first import path; the version is
    /// that file alone.
    ProtoFile(PathBuf),
    /// A binary `FileDescriptorSet` (`protoc -o`, `buf build -o x.binpb`).
    DescriptorSet(PathBuf),
    /// A running server, read by gRPC reflection (`grpc.reflection.v1`, then `v1alpha`).
    Grpc(String),
    /// A running server over TLS (`https://HOST:PORT`, as given), read by reflection.
    Https(String),
    /// A git revision in buf's syntax (`PATH.git#branch=main,subdir=proto`), as given; it is
    /// parsed when loaded, so a wrong key is a load error naming it.
    Git(String),
}

/// How `grpc://` and `https://` inputs are reached: metadata and the `grpc.*` choice
/// ([`ReflectOptions`]), and TLS for `https://`.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// Metadata and which services count.
    pub reflect: ReflectOptions,
    /// The CA (and client certificate) for `https://` servers.
    pub tls: Option<crate::connect::ClientTls>,
}

impl Source {
    /// `grpc://HOST:PORT` and `https://HOST:PORT` are servers; a path ending in `.git` (with
    /// `#options`) a git revision; an existing directory a proto tree; a `.proto` path one
    /// file; anything else a descriptor-set file.
    pub fn parse(input: &str) -> Source {
        if let Some(rest) = input.strip_prefix("grpc://") {
            return Source::Grpc(rest.to_string());
        }
        if crate::git::GitInput::looks_like(input) {
            return Source::Git(input.to_string());
        }
        if input.starts_with("https://") {
            return Source::Https(input.to_string());
        }
        Source::from_path(Path::new(input))
    }

    /// A file path: an existing directory is a proto tree, a `.proto` path one file, anything
    /// else a descriptor-set file.
    pub fn from_path(path: &Path) -> Source {
        if path.is_dir() {
            Source::Dir(path.to_path_buf())
        } else if path.extension().is_some_and(|e| e == "proto") {
            Source::ProtoFile(path.to_path_buf())
        } else {
            Source::DescriptorSet(path.to_path_buf())
        }
    }

    /// How the input was spelled.
    pub fn label(&self) -> String {
        match self {
            Source::Dir(p) | Source::ProtoFile(p) | Source::DescriptorSet(p) => {
                p.display().to_string()
            }
            Source::Grpc(a) => format!("grpc://{a}"),
            Source::Https(a) | Source::Git(a) => a.clone(),
        }
    }

    /// Whether the input is a running server.
    pub fn is_server(&self) -> bool {
        matches!(self, Source::Grpc(_) | Source::Https(_))
    }

    /// Loads the input. `includes` are extra import paths for `.proto` inputs.
    pub async fn load(&self, includes: &[PathBuf]) -> Result<Api, LoadError> {
        self.load_with(includes, &Remote::default()).await
    }

    /// Loads the input, reaching servers as `remote` says.
    pub async fn load_with(&self, includes: &[PathBuf], remote: &Remote) -> Result<Api, LoadError> {
        match self {
            Source::Dir(dir) => load_dir(dir, includes),
            Source::ProtoFile(file) => load_file(file, includes),
            Source::DescriptorSet(path) => {
                let bytes = std::fs::read(path).map_err(|e| LoadError::Io {
                    input: path.display().to_string(),
                    message: e.to_string(),
                })?;
                Api::from_descriptor_set_bytes(&bytes, &path.display().to_string())
            }
            Source::Grpc(addr) => crate::reflection::load(addr, &remote.reflect).await,
            Source::Https(server) => {
                crate::connect::reflect_with(server, remote.tls.as_ref(), &remote.reflect)
                    .await
                    .map_err(|e| LoadError::Reflection {
                        address: server.clone(),
                        message: format!("{e:#}"),
                    })
            }
            Source::Git(input) => load_git(input, includes),
        }
    }
}

/// One loaded API version: the descriptor pool and which of its files belong to the version
/// (the rest are imports, compared only through the types the version's files use).
#[derive(Debug, Clone)]
pub struct Api {
    /// Every file, imports included.
    pub pool: DescriptorPool,
    /// The names of the files that make up this version.
    pub files: BTreeSet<String>,
    /// How the input was given (for messages).
    pub label: String,
    /// The server address when the version was read from a running server.
    pub live: Option<String>,
    /// The resolved features of the elements of editions files (empty without any).
    pub editions: std::sync::Arc<crate::editions::Editions>,
}

impl Api {
    /// Every file of `pool` is part of the version.
    pub fn from_pool(pool: DescriptorPool, label: &str) -> Api {
        let files = pool.files().map(|f| f.name().to_string()).collect();
        Api {
            pool,
            files,
            label: label.to_string(),
            live: None,
            editions: Default::default(),
        }
    }

    /// The files of `pool` that declare `package` (or a sub-package of it).
    pub fn package_view(pool: &DescriptorPool, package: &str) -> Api {
        let files = pool
            .files()
            .filter(|f| {
                let p = f.package_name();
                p == package || p.starts_with(&format!("{package}."))
            })
            .map(|f| f.name().to_string())
            .collect();
        Api {
            pool: pool.clone(),
            files,
            label: package.to_string(),
            live: None,
            editions: Default::default(),
        }
    }

    /// Decodes a binary `FileDescriptorSet` (a buf image decodes as one too); editions files
    /// are lowered for prost-reflect, their features kept in [`Api::editions`].
    pub fn from_descriptor_set_bytes(bytes: &[u8], label: &str) -> Result<Api, LoadError> {
        let (pool, editions) = decode_set(bytes, label)?;
        Ok(Api {
            editions: std::sync::Arc::new(editions),
            ..Api::from_pool(pool, label)
        })
    }
}

/// An encoded `FileDescriptorSet` as a pool (editions files lowered) and the editions
/// features, its samples within the budget.
fn decode_set(
    bytes: &[u8],
    label: &str,
) -> Result<(DescriptorPool, crate::editions::Editions), LoadError> {
    {
        let mut fds =
            prost_types::FileDescriptorSet::decode(bytes).map_err(|e| LoadError::Descriptor {
                input: label.to_string(),
                message: e.to_string(),
            })?;
        if fds.file.is_empty() {
            return Err(LoadError::Descriptor {
                input: label.to_string(),
                message: "it holds no files".to_string(),
            });
        }
        let refused = |message: String| LoadError::Untrusted {
            input: label.to_string(),
            message,
        };
        crate::budget::check_set(bytes).map_err(refused)?;
        let editions = crate::editions::resolve(bytes).map_err(refused)?;
        // Decoded from the bytes when nothing is lowered: prost-types' messages would drop the
        // options' extensions (`google.api.http`, which `serve --json` reads).
        let pool = if editions.files.is_empty() {
            crate::budget::guarded(|| DescriptorPool::decode(bytes))
        } else {
            crate::editions::lower(&mut fds, &editions);
            crate::budget::guarded(|| DescriptorPool::from_file_descriptor_set(fds))
        }
        .map_err(|message| LoadError::Descriptor {
            input: label.to_string(),
            message,
        })?;
        crate::budget::check_samples(&pool).map_err(refused)?;
        Ok((pool, editions))
    }
}

/// Every `.proto` file under `dir`, as names relative to it with `/` separators, sorted.
pub fn proto_files(dir: &Path) -> std::io::Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else if path.extension().is_some_and(|e| e == "proto") {
                let rel = path.strip_prefix(root).unwrap_or(&path);
                let name: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(name.join("/"));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// Compiles every `.proto` file under `dir` with protox (source info kept, imports included);
/// proto2 and proto3 only ([`load_dir`] reads editions files too).
pub fn compile_dir(
    dir: &Path,
    includes: &[PathBuf],
) -> Result<(DescriptorPool, Vec<String>), LoadError> {
    let names = dir_names(dir)?;
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(dir.to_path_buf()));
    let pool = compile(resolver, includes, &names, &dir.display().to_string())?;
    Ok((pool, names))
}

/// The `.proto` files under `dir`, at least one.
fn dir_names(dir: &Path) -> Result<Vec<String>, LoadError> {
    let input = dir.display().to_string();
    let names = proto_files(dir).map_err(|e| LoadError::Io {
        input: input.clone(),
        message: e.to_string(),
    })?;
    if names.is_empty() {
        return Err(LoadError::Io {
            input,
            message: "no .proto files in this directory".to_string(),
        });
    }
    Ok(names)
}

/// Compiles `names` with protox, looking them up in `first`, then in `includes`, then among
/// the well-known types (source info kept, imports included).
fn compile(
    mut resolver: ChainFileResolver,
    includes: &[PathBuf],
    names: &[String],
    input: &str,
) -> Result<DescriptorPool, LoadError> {
    for include in includes {
        resolver.add(IncludeFileResolver::new(include.clone()));
    }
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_source_info(true).include_imports(true);
    compiler
        .open_files(names)
        .map_err(|e| compile_error(input, &e))?;
    Ok(compiler.descriptor_pool())
}

/// One `.proto` file, its directory the first import path.
fn load_file(file: &Path, includes: &[PathBuf]) -> Result<Api, LoadError> {
    let input = file.display().to_string();
    let (Some(dir), Some(name)) = (file.parent(), file.file_name()) else {
        return Err(LoadError::Io {
            input,
            message: "not a file path".to_string(),
        });
    };
    if !file.is_file() {
        return Err(LoadError::Io {
            input,
            message: "no such .proto file".to_string(),
        });
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let names = vec![name.to_string_lossy().into_owned()];
    compile_on_disk(dir, includes, names, &input)
}

/// Compiles `names` under `root` with protox, or, when one of them is an editions file (which
/// protox 0.10 cannot parse), with protoc.
fn compile_on_disk(
    root: &Path,
    includes: &[PathBuf],
    names: Vec<String>,
    input: &str,
) -> Result<Api, LoadError> {
    if names.iter().any(|n| declares_edition(&root.join(n))) {
        return compile_with_protoc(root, includes, names, input);
    }
    let mut resolver = ChainFileResolver::new();
    resolver.add(IncludeFileResolver::new(root.to_path_buf()));
    let pool = compile(resolver, includes, &names, input)?;
    finish(pool, names, input)
}

/// Whether a `.proto` file on disk is an editions file (see [`source_declares_edition`]).
fn declares_edition(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| source_declares_edition(&text))
}

/// Whether `.proto` source starts with `edition = "..."` (after comments and blank lines).
fn source_declares_edition(text: &str) -> bool {
    let mut in_block = false;
    for line in text.lines() {
        let mut line = line.trim();
        if in_block {
            match line.find("*/") {
                Some(end) => {
                    in_block = false;
                    line = line[end + 2..].trim();
                }
                None => continue,
            }
        }
        if let Some(rest) = line.strip_prefix("/*") {
            in_block = !rest.contains("*/");
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        return line
            .strip_prefix("edition")
            .is_some_and(|rest| rest.trim_start().starts_with('='));
    }
    false
}

/// Compiles `names` with protoc (see [`crate::protoc`]), keeping the editions features.
fn compile_with_protoc(
    root: &Path,
    includes: &[PathBuf],
    names: Vec<String>,
    input: &str,
) -> Result<Api, LoadError> {
    let protoc = crate::protoc::find().map_err(|message| LoadError::Compile {
        input: input.to_string(),
        location: names.first().cloned().unwrap_or_default(),
        message,
    })?;
    let mut dirs = vec![root.to_path_buf()];
    dirs.extend(includes.iter().cloned());
    let bytes = protoc
        .compile(&dirs, &names)
        .map_err(|message| LoadError::Compile {
            input: input.to_string(),
            location: format!(
                "{} (editions, compiled by {})",
                names.join(" "),
                protoc.label
            ),
            message,
        })?;
    let (pool, editions) = decode_set(&bytes, input)?;
    Ok(Api {
        files: names.into_iter().collect(),
        editions: std::sync::Arc::new(editions),
        ..Api::from_pool(pool, input)
    })
}

/// `.proto` files held in memory (a git revision's), looked up by name.
struct MemoryResolver(std::collections::BTreeMap<String, String>);

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.get(name) {
            Some(source) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// The `.proto` files of a git revision (`.git#branch=main,subdir=proto`), read into memory.
fn load_git(input: &str, includes: &[PathBuf]) -> Result<Api, LoadError> {
    let io = |message: String| LoadError::Io {
        input: input.to_string(),
        message,
    };
    let git = crate::git::GitInput::open(input).map_err(io)?;
    let files = git.read_protos().map_err(io)?;
    if files.values().any(|text| source_declares_edition(text)) {
        return git_with_protoc(&files, includes, input);
    }
    let names: Vec<String> = files.keys().cloned().collect();
    let mut resolver = ChainFileResolver::new();
    resolver.add(MemoryResolver(files));
    let pool = compile(resolver, includes, &names, input)?;
    finish(pool, names, input)
}

/// A git revision holding editions files: its `.proto` files written to a fresh temporary
/// directory for protoc (which reads files only), removed afterwards.
fn git_with_protoc(
    files: &std::collections::BTreeMap<String, String>,
    includes: &[PathBuf],
    input: &str,
) -> Result<Api, LoadError> {
    let io = |message: String| LoadError::Io {
        input: input.to_string(),
        message,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("testbed-check-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
    let write = || -> Result<(), LoadError> {
        for (name, text) in files {
            let rel = Path::new(name);
            // Only plain names inside the revision: nothing may land outside `dir`.
            if !rel
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
            {
                return Err(io(format!("{name}: not a path inside the repository")));
            }
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io(e.to_string()))?;
            }
            std::fs::write(&path, text).map_err(|e| io(format!("{}: {e}", path.display())))?;
        }
        Ok(())
    };
    let result = write().and_then(|()| {
        let names = files.keys().cloned().collect();
        compile_with_protoc(&dir, includes, names, input)
    });
    // Best effort: a temporary directory left behind is no reason to fail the check.
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Every `.proto` file under `dir`, compiled with protox, or with protoc when one of them is an
/// editions file.
pub fn load_dir(dir: &Path, includes: &[PathBuf]) -> Result<Api, LoadError> {
    let names = dir_names(dir)?;
    compile_on_disk(dir, includes, names, &dir.display().to_string())
}

/// The version of compiled `names`, once its samples fit the budget.
fn finish(pool: DescriptorPool, names: Vec<String>, input: &str) -> Result<Api, LoadError> {
    crate::budget::check_samples(&pool).map_err(|message| LoadError::Untrusted {
        input: input.to_string(),
        message,
    })?;
    Ok(Api {
        pool,
        files: names.into_iter().collect(),
        label: input.to_string(),
        live: None,
        editions: Default::default(),
    })
}

/// protox's message with `file:line:column` taken from its diagnostic label.
fn compile_error(input: &str, err: &protox::Error) -> LoadError {
    use miette::Diagnostic;
    let file = err.file().unwrap_or("").to_string();
    let mut location = file.clone();
    if let (Some(mut labels), Some(src)) = (err.labels(), err.source_code())
        && let Some(label) = labels.next()
        && let Ok(contents) = src.read_span(label.inner(), 0, 0)
    {
        location = format!("{file}:{}:{}", contents.line() + 1, contents.column() + 1);
    }
    if location.is_empty() {
        location = "compile".to_string();
    }
    LoadError::Compile {
        input: input.to_string(),
        location,
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn editions_files_are_detected() {
        use super::source_declares_edition as ed;
        assert!(ed("edition = \"2023\";\npackage a;"));
        assert!(ed("// c\n/* block\n edition = x */\n\n  edition=\"2024\";"));
        assert!(!ed("syntax = \"proto3\";\n// edition = \"2023\";"));
        assert!(!ed("editions_are_not = 1;"));
    }
}
