//! Changing a running HAProxy's routes through its runtime API (the stats socket at level admin,
//! `haproxy.sock` in the proxy's directory), never by a reload: no worker is replaced, so no
//! client connection is closed.
//!
//! A change is applied in three steps, each confirmed by reading it back from HAProxy:
//!
//! 1. every server slot the new plan routes to gets its address (`set server B/S addr`) and
//!    is made ready (`set server B/S state ready`); `show servers state` must show the address,
//!    no maintenance or drain flag, and the server running;
//! 2. the routes map is replaced atomically (`prepare map`, `add map @VERSION` with every
//!    entry in order, `commit map @VERSION`); `show map` must list exactly the new entries, in
//!    order;
//! 3. every slot the new plan no longer routes to is put in maintenance (`set server B/S state
//!    maint`), after the map stopped naming it; requests it is serving finish.
//!
//! What the runtime API cannot do is add a backend: the configuration holds one for every
//! upstream an arrangement can name (`config::haproxy::SLOTS`), and a plan naming another is
//! refused. The files on disk are rewritten once HAProxy has confirmed the change, so that they
//! describe what is in force.

use super::reload::{APPLY_WITHIN, POLL};
use super::{RunningProxy, unix_exchange, write_atomically};
use crate::config::{ConfigFile, haproxy};
use crate::plan::RoutePlan;
use anyhow::{Context, bail};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

/// `srv_admin_state` flags (HAProxy's `enum srv_admin`): forced, inherited and resolution
/// maintenance, forced and inherited drain.
const ADMIN_MAINT: u32 = 0x01 | 0x02 | 0x20;
const ADMIN_FORCED_MAINT: u32 = 0x01;
const ADMIN_DRAIN: u32 = 0x08 | 0x10;
/// `srv_op_state` of a running server (`SRV_ST_RUNNING`).
const OP_RUNNING: u32 = 2;

impl RunningProxy {
    /// Applies `plan` (rendered as `files`) to HAProxy through its runtime API, confirmed by
    /// reading every change back. On an error the steps before it stay in force: servers made
    /// ready for the new plan stay ready, which routes nothing to them while the old map holds.
    pub(super) async fn update_haproxy(
        &mut self,
        plan: &RoutePlan,
        files: Vec<ConfigFile>,
    ) -> anyhow::Result<&'static str> {
        let api = RuntimeApi {
            socket: self.dir.path().join(haproxy::SOCKET),
        };
        api.ready_servers(plan).await?;
        let map = self.dir.path().join(haproxy::MAP_FILE);
        api.swap_map(&map.display().to_string(), &haproxy::map_entries(plan))
            .await?;
        api.retire_servers(plan).await?;
        for file in &files {
            write_atomically(self.dir.path(), file)?;
        }
        self.files = files;
        Ok(
            "HAProxy's runtime API (set server addr|state, prepare/add/commit map), read back by show servers state and show map",
        )
    }
}

/// HAProxy's runtime API on a Unix socket: one command per connection.
struct RuntimeApi {
    socket: PathBuf,
}

/// One line of `show servers state`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServerState {
    backend: String,
    server: String,
    addr: SocketAddr,
    /// `srv_op_state`.
    op: u32,
    /// `srv_admin_state`.
    admin: u32,
}

impl ServerState {
    fn target(&self) -> String {
        format!("{}/{}", self.backend, self.server)
    }

    fn ready(&self) -> bool {
        self.admin & (ADMIN_MAINT | ADMIN_DRAIN) == 0 && self.op == OP_RUNNING
    }
}

impl RuntimeApi {
    /// Step 1: every server `plan` routes to gets its address and is made ready.
    async fn ready_servers(&self, plan: &RoutePlan) -> anyhow::Result<()> {
        let servers = self.servers().await?;
        for upstream in &plan.upstreams {
            let Some(server) = servers.iter().find(|s| s.backend == upstream.name) else {
                bail!(
                    "HAProxy has no backend {} (its configuration has {}; only a restart adds one)",
                    upstream.name,
                    servers
                        .iter()
                        .map(|s| s.backend.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            let target = server.target();
            if server.addr != upstream.addr {
                let (ip, port) = (upstream.addr.ip(), upstream.addr.port());
                self.command(
                    &format!("set server {target} addr {ip} port {port}"),
                    |reply| reply.contains("by 'stats socket command'"),
                )
                .await?;
            }
            if !server.ready() {
                self.command(&format!("set server {target} state ready"), str::is_empty)
                    .await?;
            }
        }
        self.wait_for_servers("ready", |servers| {
            plan.upstreams.iter().all(|upstream| {
                servers
                    .iter()
                    .any(|s| s.backend == upstream.name && s.addr == upstream.addr && s.ready())
            })
        })
        .await
    }

    /// Step 2: the map `file` replaced by `entries` at one instant, unless it holds them already.
    async fn swap_map(&self, file: &str, entries: &[(String, String)]) -> anyhow::Result<()> {
        if self.map(file).await? == entries {
            return Ok(());
        }
        let created = self
            .command(&format!("prepare map {file}"), |reply| {
                reply.starts_with("New version created:")
            })
            .await?;
        let version = created
            .trim_start_matches("New version created:")
            .trim()
            .parse::<u32>()
            .with_context(|| format!("HAProxy's prepare map answered {created:?}"))?;
        // HAProxy reads one CLI command into a buffer of tune.bufsize (16 KiB by default), so a
        // large map goes in several `add map` commands, all into the prepared version that the
        // commit below swaps in at once.
        for payload in chunks(entries, MAX_ADD_MAP_BYTES) {
            self.command(
                &format!("add map @{version} {file} <<\n{payload}"),
                str::is_empty,
            )
            .await?;
        }
        self.command(&format!("commit map @{version} {file}"), str::is_empty)
            .await?;
        let now = self.map(file).await?;
        if now != entries {
            bail!("HAProxy's map {file} after the commit holds {now:?}, not {entries:?}");
        }
        Ok(())
    }

    /// Step 3: every server `plan` does not route to is put in maintenance.
    async fn retire_servers(&self, plan: &RoutePlan) -> anyhow::Result<()> {
        let unused = |backend: &str| !plan.upstreams.iter().any(|u| u.name == backend);
        for server in self.servers().await? {
            if unused(&server.backend) && server.admin & ADMIN_FORCED_MAINT == 0 {
                self.command(
                    &format!("set server {} state maint", server.target()),
                    str::is_empty,
                )
                .await?;
            }
        }
        self.wait_for_servers("in maintenance", |servers| {
            servers
                .iter()
                .filter(|s| unused(&s.backend))
                .all(|s| s.admin & ADMIN_FORCED_MAINT != 0)
        })
        .await
    }

    /// Sends `command` and returns HAProxy's reply (trimmed), failing with the reply's text
    /// when `accepted` says it is not a success.
    async fn command(
        &self,
        command: &str,
        accepted: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let reply = self.ask(command).await?;
        let name = command.lines().next().unwrap_or_default();
        if !accepted(&reply) {
            bail!("HAProxy refused `{name}`: {reply}");
        }
        Ok(reply)
    }

    async fn ask(&self, command: &str) -> anyhow::Result<String> {
        let request = format!("{command}\n");
        let exchange = unix_exchange(&self.socket, request.as_bytes(), "HAProxy's runtime API");
        tokio::time::timeout(APPLY_WITHIN, exchange)
            .await
            .with_context(|| {
                format!(
                    "HAProxy's runtime API did not answer within {} s",
                    APPLY_WITHIN.as_secs()
                )
            })?
            .map(|reply| reply.trim().to_string())
    }

    /// Every server, from `show servers state`.
    async fn servers(&self) -> anyhow::Result<Vec<ServerState>> {
        parse_servers_state(&self.ask("show servers state").await?)
    }

    /// The entries of the map `file`, key and value, in order, from `show map`.
    async fn map(&self, file: &str) -> anyhow::Result<Vec<(String, String)>> {
        parse_map(&self.ask(&format!("show map {file}")).await?)
    }

    /// Polls `show servers state` until `done` holds, for at most [`APPLY_WITHIN`].
    async fn wait_for_servers(
        &self,
        what: &str,
        done: impl Fn(&[ServerState]) -> bool,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let servers = self.servers().await?;
            if done(&servers) {
                return Ok(());
            }
            if started.elapsed() > APPLY_WITHIN {
                bail!(
                    "HAProxy's servers were not {what} within {} s: {servers:?}",
                    APPLY_WITHIN.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// `show servers state`: a version line, a `# ` header naming the columns, a line per server.
fn parse_servers_state(reply: &str) -> anyhow::Result<Vec<ServerState>> {
    let mut lines = reply.lines();
    let header = lines
        .find_map(|line| line.strip_prefix("# "))
        .with_context(|| format!("HAProxy's show servers state answered: {reply}"))?;
    let columns: Vec<&str> = header.split_whitespace().collect();
    let column = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .with_context(|| format!("show servers state has no column {name}: {header}"))
    };
    let [backend, server, addr, port, op, admin] = [
        "be_name",
        "srv_name",
        "srv_addr",
        "srv_port",
        "srv_op_state",
        "srv_admin_state",
    ]
    .map(column);
    let (backend, server, addr, port, op, admin) = (backend?, server?, addr?, port?, op?, admin?);
    lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let field = |i: usize| {
                fields
                    .get(i)
                    .copied()
                    .with_context(|| format!("short show servers state line: {line}"))
            };
            let number = |i: usize| -> anyhow::Result<u32> {
                field(i)?
                    .parse()
                    .with_context(|| format!("show servers state line: {line}"))
            };
            let ip = field(addr)?
                .parse()
                .with_context(|| format!("show servers state address: {line}"))?;
            let port = u16::try_from(number(port)?)
                .with_context(|| format!("show servers state port: {line}"))?;
            Ok(ServerState {
                backend: field(backend)?.to_string(),
                server: field(server)?.to_string(),
                addr: SocketAddr::new(ip, port),
                op: number(op)?,
                admin: number(admin)?,
            })
        })
        .collect()
}

/// `show map FILE`: `0xREF KEY VALUE` per entry; anything else is an error's text.
fn parse_map(reply: &str) -> anyhow::Result<Vec<(String, String)>> {
    reply
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let entry = line
                .strip_prefix("0x")
                .and_then(|rest| rest.split_once(' '))
                .and_then(|(_, entry)| entry.split_once(' '));
            match entry {
                Some((key, value)) => Ok((key.to_string(), value.to_string())),
                None => bail!("HAProxy's show map answered: {reply}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_state_is_read_by_column_name() {
        let reply = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 v2 1 v2 127.0.0.1 2 4 1 1 0 1 0 0 8 0 0 0 - 5002 - 0 0 - - 0\n";
        let servers = parse_servers_state(reply).map_err(|e| format!("{e:#}"));
        let want = ServerState {
            backend: "v2".into(),
            server: "v2".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 5002)),
            op: 2,
            admin: 4,
        };
        assert_eq!(servers, Ok(vec![want.clone()]));
        // 4 is the `disabled` keyword's mark, not maintenance.
        assert!(want.ready());
    }

    #[test]
    fn a_map_reply_that_is_not_entries_is_an_error() {
        let reply =
            "0x5630 /increment.v2. v2|-|,2,|/increment.v2.|a message\n0x5631 / v2|-|-|/|-\n";
        let entries = parse_map(reply).map_err(|e| format!("{e:#}"));
        assert_eq!(
            entries,
            Ok(vec![
                (
                    "/increment.v2.".into(),
                    "v2|-|,2,|/increment.v2.|a message".into()
                ),
                ("/".into(), "v2|-|-|/|-".into()),
            ])
        );
        let err = parse_map("Unknown map identifier. Please use #<id> or <file>.");
        assert!(err.is_err_and(|e| e.to_string().contains("Unknown map identifier")));
    }

    /// A command HAProxy answers with an error fails with HAProxy's words (here a socket that
    /// answers as HAProxy 2.6 does to an unknown server).
    #[tokio::test]
    async fn a_refused_command_fails_with_haproxys_reply() -> anyhow::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join(haproxy::SOCKET);
        let listener = tokio::net::UnixListener::bind(&socket)?;
        let haproxy = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await?;
            let mut command = vec![0; 64];
            let n = stream.read(&mut command).await?;
            stream.write_all(b"No such server.\n\n").await?;
            anyhow::Ok(String::from_utf8_lossy(&command[..n]).to_string())
        });
        let api = RuntimeApi { socket };
        let err = api
            .command("set server v1/nope state ready", str::is_empty)
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:#}"));
        assert_eq!(
            err,
            Err("HAProxy refused `set server v1/nope state ready`: No such server.".to_string())
        );
        assert_eq!(haproxy.await??, "set server v1/nope state ready\n");
        Ok(())
    }
}

/// The largest payload of one `add map` command: well under HAProxy's default `tune.bufsize`
/// (16,384 bytes), which holds the whole command.
const MAX_ADD_MAP_BYTES: usize = 8 * 1024;

/// `entries` as `KEY VALUE` lines, in order, cut into payloads of at most `max` bytes (an entry
/// longer than `max` alone in its payload, for HAProxy to refuse in its own words).
fn chunks(entries: &[(String, String)], max: usize) -> Vec<String> {
    let mut payloads = vec![String::new()];
    for (key, value) in entries {
        let line = format!("{key} {value}\n");
        let last = payloads.last_mut().expect("never empty");
        if !last.is_empty() && last.len() + line.len() > max {
            payloads.push(line);
        } else {
            last.push_str(&line);
        }
    }
    payloads
}

#[cfg(test)]
mod chunk_tests {
    use super::chunks;

    #[test]
    fn a_large_map_goes_in_payloads_under_the_limit_in_order() {
        let entries: Vec<(String, String)> = (0..500)
            .map(|i| (format!("/pkg{i}.v1."), format!("v1|{i}|,1,|/|")))
            .collect();
        let payloads = chunks(&entries, 1024);
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() <= 1024));
        let joined: String = payloads.concat();
        let lines: Vec<String> = entries.iter().map(|(k, v)| format!("{k} {v}")).collect();
        assert_eq!(joined.lines().collect::<Vec<_>>(), lines);
        assert_eq!(chunks(&[], 1024), [""]);
    }
}
