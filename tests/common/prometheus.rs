//! Prometheus as the judge of the metrics: the server and promtool from Debian's `prometheus`
//! package, a Prometheus started with a generated config and queried over its HTTP API, and
//! the plain HTTP/1.0 GET and the sample reader the metrics tests use.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An HTTP/1.0 GET (the server closes the connection after the reply): head and body.
pub(crate) async fn http_get(
    addr: SocketAddr,
    target: &str,
    accept: Option<&str>,
) -> (String, String) {
    let stream = TcpStream::connect(addr).await.expect("connects");
    get_on(stream, addr, target, accept).await
}

async fn get_on(
    mut stream: TcpStream,
    addr: SocketAddr,
    target: &str,
    accept: Option<&str>,
) -> (String, String) {
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {target} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
        .await
        .expect("the reply comes within 10 s")
        .expect("the reply reads");
    let reply = String::from_utf8(reply).expect("a text reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    (head.to_string(), body.to_string())
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
pub(crate) fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

/// A Prometheus tool from Debian's `prometheus` package.
pub(crate) fn tool(name: &'static str) -> Result<PathBuf, client::tools::MissingTool> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    found.ok_or(client::tools::MissingTool {
        tool: name,
        looked: "PATH and /usr/bin".to_string(),
        fix: "apt-get install -y prometheus (scripts/setup does this when run as root)",
    })
}

/// A free loopback port (bound, then let go), for a program that wants one named.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Prometheus started with a config scraping `target` every second; stopped when dropped.
pub(crate) struct Prometheus {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    pub(crate) fn start(binary: &Path, target: SocketAddr) -> Self {
        let dir = super::temp_dir("prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: testbed\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus starts");
        Self {
            child,
            addr,
            _dir: dir,
        }
    }

    /// Where its HTTP API listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The instant query's result: (labels, value) per series.
    pub(crate) async fn query(&self, promql: &str) -> Option<Vec<(serde_json::Value, f64)>> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        // Refused until Prometheus listens.
        let stream = TcpStream::connect(self.addr).await.ok()?;
        let target = format!("/api/v1/query?query={encoded}");
        let (head, body) = get_on(stream, self.addr, &target, None).await;
        if !head.starts_with("HTTP/1.0 200") {
            return None;
        }
        let reply: serde_json::Value = serde_json::from_str(&body).ok()?;
        let result = reply["data"]["result"].as_array()?;
        Some(
            result
                .iter()
                .map(|series| {
                    let value = series["value"][1].as_str().unwrap_or("NaN");
                    (series["metric"].clone(), value.parse().unwrap_or(f64::NAN))
                })
                .collect(),
        )
    }
}
