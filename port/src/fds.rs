//! The process's file-descriptor budget.
//!
//! Every connection a listener accepts is a file descriptor, and so is every upstream
//! connection, reachability probe, file read and the runtime's own (epoll, eventfd, signal
//! pipes, stdio, the listeners). The usual soft `RLIMIT_NOFILE` is 1024, exactly the default
//! `--max-connections`: before this budget, 1,100 idle clients made accept fail with "Too many
//! open files" and left the upstream probe unable to open sockets. So at start the soft limit
//! is raised to the hard limit, at most [`RAISE_CAP`] ([`raise`], once per process), and the connection caps are
//! clamped ([`Plan`]) to what the limit leaves after a reserve ([`DEFAULT_FD_RESERVE`],
//! `--fd-reserve`) kept for everything that is not a client connection.

use anyhow::bail;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use std::sync::OnceLock;

/// Descriptors kept out of the connection caps unless `--fd-reserve` says otherwise: 64 for
/// the process itself (runtime, stdio, listeners, certificate, token and descriptor files,
/// the reflection client of an admin Add) and 192 for upstream connections and their probes
/// (say 48 upstreams with 4 connections each).
pub const DEFAULT_FD_RESERVE: usize = 256;

/// The file-descriptor flags of `testbed serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct FdOptions {
    /// File descriptors kept for upstream connections, probes, files and the runtime: the
    /// port's --max-connections (and the admin API's cap) are clamped to what the open-files
    /// limit (raised to its hard limit at start) leaves after these.
    #[arg(long, default_value_t = DEFAULT_FD_RESERVE)]
    pub fd_reserve: usize,
}

impl Default for FdOptions {
    fn default() -> Self {
        Self {
            fd_reserve: DEFAULT_FD_RESERVE,
        }
    }
}

/// The soft open-files limit (`RLIMIT_NOFILE`) before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now.
    pub after: u64,
}

/// The highest soft open-files limit [`raise`] sets: a hard limit of "unlimited" (about 1e9 on
/// some systems) would otherwise hand that to the process and the children it spawns, and
/// some programs allocate or loop per possible descriptor.
pub const RAISE_CAP: u64 = 1 << 20;

/// Raises the soft open-files limit to the hard limit, at most [`RAISE_CAP`], once per process
/// (later calls return what the first did). A limit that cannot be read or raised is left as
/// it is, with a warning: the caps are then clamped to it.
pub fn raise() -> OpenFiles {
    static RAISED: OnceLock<OpenFiles> = OnceLock::new();
    *RAISED.get_or_init(|| {
        let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
            Ok(limits) => limits,
            Err(err) => {
                tracing::warn!(%err, "cannot read the open-files limit (RLIMIT_NOFILE)");
                // Unknown: assume the usual soft limit, so that the caps stay modest.
                return OpenFiles {
                    before: 1024,
                    after: 1024,
                };
            }
        };
        let target = hard.min(RAISE_CAP);
        if soft >= target {
            return OpenFiles {
                before: soft,
                after: soft,
            };
        }
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => OpenFiles {
                before: soft,
                after: target,
            },
            Err(err) => {
                tracing::warn!(
                    %err,
                    soft,
                    hard,
                    target,
                    "cannot raise the open-files limit; keeping the soft one"
                );
                OpenFiles {
                    before: soft,
                    after: soft,
                }
            }
        }
    })
}

/// What the open-files limit allows each listener: the caps asked for, clamped so that the
/// connections of both listeners and the reserve fit in the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The limit before and after it was raised.
    pub open_files: OpenFiles,
    /// Descriptors kept for everything but client connections.
    pub reserve: usize,
    /// The port's cap asked for (`--max-connections`).
    pub asked: usize,
    /// The port's cap in force.
    pub max_connections: usize,
    /// The admin listener's cap asked for and in force, when it is served.
    pub admin: Option<(usize, usize)>,
}

impl Plan {
    /// Raises the limit ([`raise`]) and clamps the port's `max_connections` and the admin
    /// listener's `admin_max` (when it is served) to it. Fails when the limit leaves no room
    /// for connections after the reserve.
    pub fn new(
        options: &FdOptions,
        max_connections: usize,
        admin_max: Option<usize>,
    ) -> anyhow::Result<Self> {
        let open_files = raise();
        let (port, admin) = split(
            open_files.after,
            options.fd_reserve,
            max_connections,
            admin_max,
        )?;
        Ok(Self {
            open_files,
            reserve: options.fd_reserve,
            asked: max_connections,
            max_connections: port,
            admin: admin_max.zip(admin),
        })
    }

    /// Logs the numbers, once at start: the limit before and after, the reserve and each cap,
    /// in words that say what happened (raised or not, clamped or not).
    pub fn log(&self) {
        let limit = if self.open_files.after > self.open_files.before {
            "open-files limit raised"
        } else {
            "open-files limit kept"
        };
        let clamped =
            self.max_connections < self.asked || self.admin.is_some_and(|(asked, cap)| cap < asked);
        let caps = if clamped {
            "connection caps clamped to what it leaves after the reserve"
        } else {
            "connection caps fit in what it leaves after the reserve"
        };
        tracing::info!(
            limit_before = self.open_files.before,
            limit_after = self.open_files.after,
            reserve = self.reserve,
            max_connections = self.max_connections,
            asked = self.asked,
            admin_max_connections = ?self.admin.map(|(_, cap)| cap),
            "file descriptors: {limit}; {caps}"
        );
    }
}

/// The port's and the admin listener's caps within `limit` descriptors after `reserve`: the
/// admin listener keeps its cap unless that would take more than half of what is left, and
/// the port gets the rest, at most what it asked for.
fn split(
    limit: u64,
    reserve: usize,
    port: usize,
    admin: Option<usize>,
) -> anyhow::Result<(usize, Option<usize>)> {
    let room = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_sub(reserve);
    let needed = if admin.is_some() { 2 } else { 1 };
    if room < needed {
        bail!(
            "the open-files limit of {limit} leaves no file descriptors for connections after \
             the {reserve} kept by --fd-reserve: raise the hard limit (`ulimit -Hn`, \
             LimitNOFILE=) or lower --fd-reserve"
        );
    }
    let admin = admin.map(|asked| asked.min(room / 2).max(1));
    let port = port.min(room - admin.unwrap_or(0));
    Ok((port, admin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_fit_in_the_limit_after_the_reserve() {
        // A big limit changes nothing.
        assert_eq!(
            split(1 << 20, 256, 1024, Some(64)).unwrap(),
            (1024, Some(64))
        );
        // The usual soft limit, unraised: the port gets what the reserve and the admin leave.
        assert_eq!(split(1024, 256, 1024, Some(64)).unwrap(), (704, Some(64)));
        assert_eq!(split(1024, 256, 1024, None).unwrap(), (768, None));
        // Little room: the admin listener takes at most half of it.
        assert_eq!(split(300, 256, 1024, Some(64)).unwrap(), (22, Some(22)));
        let err = split(256, 256, 1024, None).unwrap_err().to_string();
        assert!(err.contains("--fd-reserve"), "{err}");
        assert!(split(257, 256, 1024, Some(64)).is_err());
    }

    #[test]
    fn raising_is_done_once_and_never_lowers_the_limit() {
        let first = raise();
        assert!(first.after >= first.before);
        assert_eq!(raise(), first);
        let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(soft, first.after);
        assert!(first.after <= RAISE_CAP.max(first.before));
    }
}
