//! The admin token file (`serve --admin-token-file`), read only once it is found fit to hold
//! tokens: before these checks, `/dev/zero` was read until memory ran out and a FIFO blocked
//! the start for ever, and the permissions were checked after the read, on the path rather
//! than on the file read.

use anyhow::{Context, bail};
use std::path::Path;

/// The largest admin token file read, in bytes: thousands of `NAME TOKEN` lines.
pub const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;

/// The text of the admin token file `path`, once the opened file is found fit to hold tokens:
/// a regular file (not a FIFO, which would block the start, nor a device such as /dev/zero,
/// which would be read without end, nor a directory), owned by this user or root, that its
/// group and others may neither read nor write (as ssh refuses such a key: anyone who can read
/// it can change the routes), of at most [`MAX_TOKEN_FILE_BYTES`]. Each check is made on the
/// opened descriptor, so the file checked is the file read; it is opened non-blocking, so that
/// opening a FIFO returns at once. A symbolic link is followed (secrets are often mounted so):
/// what it points to must pass the same checks.
pub fn read_token_file(path: &Path) -> anyhow::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .with_context(|| format!("cannot read the admin tokens from {shown}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read the admin tokens from {shown}"))?;
    let kind = meta.file_type();
    let not_regular = if kind.is_dir() {
        Some("a directory")
    } else if kind.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if kind.is_char_device() {
        Some("a character device")
    } else if kind.is_block_device() {
        Some("a block device")
    } else if kind.is_socket() {
        Some("a socket")
    } else {
        None
    };
    if let Some(what) = not_regular {
        bail!(
            "the admin token file {shown} is {what}, not a regular file: give a file holding \
            `NAME TOKEN` lines"
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        bail!(
            "the admin token file {shown} is owned by uid {}, neither this user (uid {me}) nor \
            root: anyone who owns it can change the routes; chown it",
            meta.uid()
        );
    }
    let mode = meta.mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the admin token file {shown} is open to its group or others (mode {mode:o}): chmod \
            600 it"
        );
    }
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        bail!(
            "the admin token file {shown} is {} bytes, over the {MAX_TOKEN_FILE_BYTES} an admin \
            token file may hold",
            meta.len()
        );
    }
    // At most one byte past the cap: a file that grew since fstat is refused too.
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the admin tokens from {shown}"))?;
    if bytes.len() as u64 > MAX_TOKEN_FILE_BYTES {
        bail!(
            "the admin token file {shown} grew past the {MAX_TOKEN_FILE_BYTES} bytes an admin \
            token file may hold while it was read"
        );
    }
    String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the admin token file {shown} is not UTF-8 text"))
}
