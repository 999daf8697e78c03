//! Git inputs in buf's syntax: `PATH.git#branch=main,subdir=proto` (also `tag=`, `ref=` for a
//! commit or any ref, `depth=`), where PATH is a repository's `.git` directory (`.git`,
//! `../other/.git`), a bare repository, or a remote one (`https://`, `ssh://`, `git://`,
//! `file://`, `git@HOST:PATH`). The `.proto` files are read at that revision with the git CLI
//! (`ls-tree` and `cat-file --batch`) into memory: the work tree, the index and the checked-out
//! branch are never touched, so uncommitted edits play no part. A remote revision is first
//! fetched (`--depth` as given, else 50) into a bare cache repository of its own under
//! `$XDG_CACHE_HOME/testbed/git/`, reused by the next run.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A parsed git input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInput {
    /// The repository: its `.git` directory or a bare repository.
    pub repo: PathBuf,
    /// What to read, as given: `refs/heads/NAME` for `branch=`, `refs/tags/NAME` for `tag=`,
    /// the text of `ref=`, or `HEAD`.
    pub revision: String,
    /// How the revision was named, for messages (`branch=main`).
    pub named: String,
    /// The directory inside the repository that is the input root (`subdir=`), `/`-separated.
    pub subdir: Option<String>,
    /// `depth=`: how many commits a remote fetch takes (buf's default, 50, without it); a
    /// local repository is read whole.
    pub depth: Option<u32>,
    /// The remote repository's URL, when it is one (`repo` is then its cache, once fetched).
    pub remote: Option<String>,
}

/// Commits a remote fetch takes without `depth=`, as buf's default.
const DEFAULT_DEPTH: u32 = 50;

/// The keys buf's git input takes that this reader supports.
const KEYS: &str = "branch, tag, ref, subdir, depth";

impl GitInput {
    /// Whether `input` names a git input: a path ending in `.git`, or with `.git#` options.
    pub fn looks_like(input: &str) -> bool {
        let path = input.split_once('#').map_or(input, |(p, _)| p);
        path.trim_end_matches('/').ends_with(".git")
    }

    /// Parses `PATH.git` or `PATH.git#key=value,...`; the error says which part is wrong.
    pub fn parse(input: &str) -> Result<GitInput, String> {
        let (path, options) = input.split_once('#').unwrap_or((input, ""));
        let remote = (path.contains("://") || path.starts_with("git@")).then(|| path.to_string());
        let mut named: Option<(String, String)> = None;
        let (mut subdir, mut depth) = (None, None);
        for part in options.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected KEY=VALUE after '#' (keys: {KEYS})"))?;
            if value.is_empty() {
                return Err(format!("{key}=: the value is empty"));
            }
            match key {
                "branch" | "tag" | "ref" => {
                    if let Some((k, _)) = &named {
                        return Err(format!(
                            "{key}={value}: give one of branch=, tag= and ref=, not {k}= and {key}= together"
                        ));
                    }
                    let revision = match key {
                        "branch" => format!("refs/heads/{value}"),
                        "tag" => format!("refs/tags/{value}"),
                        _ => value.to_string(),
                    };
                    if value.starts_with('-') {
                        return Err(format!("{key}={value}: not a git revision"));
                    }
                    named = Some((key.to_string(), revision));
                    if key == "ref" && value.contains("..") {
                        return Err(format!("ref={value}: one revision, not a range"));
                    }
                }
                "subdir" => {
                    let dir = value.trim_matches('/');
                    if dir.split('/').any(|c| c == ".." || c == ".") || dir.is_empty() {
                        return Err(format!(
                            "subdir={value}: a directory inside the repository, without . or .."
                        ));
                    }
                    subdir = Some(dir.to_string());
                }
                "depth" => {
                    depth = Some(value.parse::<u32>().ok().filter(|d| *d > 0).ok_or_else(
                        || format!("depth={value}: expected a whole number above 0"),
                    )?);
                }
                _ => return Err(format!("unknown key {key:?} in {input:?} (keys: {KEYS})")),
            }
        }
        let (named, revision) = match named {
            Some((key, revision)) => {
                let shown = revision
                    .strip_prefix("refs/heads/")
                    .or_else(|| revision.strip_prefix("refs/tags/"))
                    .unwrap_or(&revision)
                    .to_string();
                (format!("{key}={shown}"), revision)
            }
            None => ("HEAD".to_string(), "HEAD".to_string()),
        };
        Ok(GitInput {
            repo: PathBuf::from(path),
            revision,
            named,
            subdir,
            depth,
            remote,
        })
    }

    /// [`parse`](Self::parse), and for a remote repository the revision fetched into its
    /// cache: the input, ready to read.
    pub fn open(input: &str) -> Result<GitInput, String> {
        let mut git = GitInput::parse(input)?;
        if let Some(url) = git.remote.clone() {
            git.fetch(&url)?;
        }
        Ok(git)
    }

    /// Fetches the revision from `url` into the cache repository and points `repo` and
    /// `revision` at what was fetched.
    fn fetch(&mut self, url: &str) -> Result<(), String> {
        let cache = cache_for(url);
        if !cache.join("HEAD").exists() {
            std::fs::create_dir_all(&cache)
                .map_err(|e| format!("cannot make the git cache {}: {e}", cache.display()))?;
            git(&cache, &["init", "--bare", "--quiet"], None)
                .map_err(|e| format!("cannot make the git cache {}: {e}", cache.display()))?;
        }
        let depth = format!("--depth={}", self.depth.unwrap_or(DEFAULT_DEPTH));
        let wanted = format!("+{}:refs/testbed/fetched", self.revision);
        let fetched = git(
            &cache,
            &["fetch", "--quiet", "--no-tags", &depth, "--", url, &wanted],
            None,
        );
        if let Err(why) = fetched {
            // A commit id (ref=) need not be fetchable by name: take the branches and tags,
            // whole, and look for it among them.
            if !self.named.starts_with("ref=") {
                return Err(format!(
                    "{url}: cannot fetch {}: {}",
                    self.named,
                    why.trim()
                ));
            }
            git(
                &cache,
                &[
                    "fetch",
                    "--quiet",
                    "--",
                    url,
                    "+refs/heads/*:refs/testbed/heads/*",
                    "+refs/tags/*:refs/testbed/tags/*",
                ],
                None,
            )
            .map_err(|e| format!("{url}: cannot fetch: {}", e.trim()))?;
        } else {
            self.revision = "refs/testbed/fetched".to_string();
        }
        self.repo = cache;
        Ok(())
    }

    /// The commit id the revision names; the error says what is missing.
    fn commit(&self) -> Result<String, String> {
        let repo = self.repo.display().to_string();
        if !self.repo.exists() {
            return Err(format!("{repo}: no such repository"));
        }
        let commit = git(
            &self.repo,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                "--end-of-options",
                &format!("{}^{{commit}}", self.revision),
            ],
            None,
        )
        .map_err(|e| {
            if e.contains("not a git repository") {
                format!("{repo}: not a git repository ({e})")
            } else {
                format!(
                    "{repo}: {} not found (no such {} in this repository)",
                    self.named,
                    kind(&self.named)
                )
            }
        })?;
        Ok(String::from_utf8_lossy(&commit).trim().to_string())
    }

    /// The text of `name` (relative to `subdir=`) at the revision, `None` when it is absent:
    /// how the input's own `buf.yaml` is found.
    pub fn read_file(&self, name: &str) -> Result<Option<String>, String> {
        let commit = self.commit()?;
        let path = match &self.subdir {
            Some(dir) => format!("{dir}/{name}"),
            None => name.to_string(),
        };
        match git(
            &self.repo,
            &["cat-file", "blob", &format!("{commit}:{path}")],
            None,
        ) {
            Ok(bytes) => String::from_utf8(bytes).map(Some).map_err(|_| {
                format!(
                    "{}: {path} at {} is not UTF-8 text",
                    self.repo.display(),
                    self.named
                )
            }),
            Err(_) => Ok(None),
        }
    }

    /// The `.proto` files at the revision, under `subdir=` when given, by name relative to it.
    pub fn read_protos(&self) -> Result<BTreeMap<String, String>, String> {
        let repo = self.repo.display().to_string();
        let commit = self.commit()?;
        let tree = match &self.subdir {
            Some(dir) => format!("{commit}:{dir}"),
            None => commit.clone(),
        };
        let listing = git(&self.repo, &["ls-tree", "-r", "-z", &tree], None).map_err(|_| {
            format!(
                "{repo}: subdir={} is not a directory at {} ({})",
                self.subdir.as_deref().unwrap_or(""),
                self.named,
                short(&commit)
            )
        })?;
        let mut blobs: Vec<(String, String)> = Vec::new();
        for entry in listing.split(|b| *b == 0).filter(|e| !e.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            let Some((meta, name)) = entry.split_once('\t') else {
                continue;
            };
            let mut meta = meta.split(' ');
            let (_mode, kind, id) = (meta.next(), meta.next(), meta.next());
            if let (Some("blob"), Some(id)) = (kind, id)
                && name.ends_with(".proto")
            {
                blobs.push((name.to_string(), id.to_string()));
            }
        }
        if blobs.is_empty() {
            return Err(format!(
                "{repo}: no .proto files at {}{}",
                self.named,
                self.subdir
                    .as_ref()
                    .map(|d| format!(" under subdir={d}"))
                    .unwrap_or_default()
            ));
        }
        let ids: String = blobs.iter().map(|(_, id)| format!("{id}\n")).collect();
        let out = git(&self.repo, &["cat-file", "--batch"], Some(ids.as_bytes()))?;
        let mut files = BTreeMap::new();
        let mut rest = out.as_slice();
        for (name, _) in blobs {
            let header_end = rest
                .iter()
                .position(|b| *b == b'\n')
                .ok_or_else(|| format!("{repo}: git cat-file ended early at {name}"))?;
            let header = String::from_utf8_lossy(&rest[..header_end]).to_string();
            let size: usize = header
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("{repo}: unexpected git cat-file answer {header:?}"))?;
            let body = rest
                .get(header_end + 1..header_end + 1 + size)
                .ok_or_else(|| format!("{repo}: git cat-file ended early at {name}"))?;
            let text = String::from_utf8(body.to_vec())
                .map_err(|_| format!("{repo}: {name} at {} is not UTF-8 text", self.named))?;
            files.insert(name, text);
            rest = rest.get(header_end + 2 + size..).unwrap_or_default();
        }
        Ok(files)
    }
}

/// Where remote repositories are fetched to: `$XDG_CACHE_HOME/testbed/git` (or
/// `~/.cache/testbed/git`, or under the temp folder).
fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("testbed")
        .join("git")
}

/// The bare repository a remote `url` is fetched into.
pub fn cache_for(url: &str) -> PathBuf {
    cache_dir().join(format!("{:016x}.git", fnv(url)))
}

/// FNV-1a of `text`: a stable cache name for a URL.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3)
    })
}

fn kind(named: &str) -> &'static str {
    match named.split_once('=').map(|(k, _)| k) {
        Some("branch") => "branch",
        Some("tag") => "tag",
        _ => "commit or ref",
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Runs `git --git-dir=REPO ARGS` (stdin from `input`), returning stdout or stderr's text.
fn git(repo: &Path, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new("git");
    cmd.arg("--git-dir")
        .arg(repo)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run git ({e}); git inputs need the git command on PATH"))?;
    if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
        // Written on its own thread: git answers while it reads, and both pipes are bounded.
        let bytes = bytes.to_vec();
        std::thread::spawn(move || stdin.write_all(&bytes));
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("git {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_inputs_parse_as_buf_writes_them() {
        let g = GitInput::parse("../other/.git#branch=main,subdir=proto/,depth=1").unwrap();
        assert_eq!(g.repo, PathBuf::from("../other/.git"));
        assert_eq!(g.revision, "refs/heads/main");
        assert_eq!(g.named, "branch=main");
        assert_eq!(g.subdir.as_deref(), Some("proto"));
        assert_eq!(g.depth, Some(1));
        assert_eq!(GitInput::parse(".git").unwrap().revision, "HEAD");
        assert_eq!(
            GitInput::parse(".git#tag=v1").unwrap().revision,
            "refs/tags/v1"
        );
        assert!(GitInput::looks_like(".git#ref=abc"));
        assert!(GitInput::looks_like("/srv/api.git"));
        assert!(!GitInput::looks_like("proto/v1"));
        for (bad, says) in [
            (".git#brnach=main", "unknown key \"brnach\""),
            (".git#branch=a,tag=b", "not branch= and tag= together"),
            (".git#subdir=../x", "without . or .."),
            (".git#depth=0", "above 0"),
            (".git#branch", "expected KEY=VALUE"),
            (".git#tag=", "the value is empty"),
        ] {
            let e = GitInput::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
