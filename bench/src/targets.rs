//! The server processes the rows talk to: each started once per run (pinned where asked) and
//! shared by all repeats, with the run's TLS certificates and the gateway's descriptor file.

use crate::BenchOptions;
use crate::baseline::Baseline;
use anyhow::Context;
use client::tools;
use port::Deployment;
use port::child::ChildServer;
use port::tls::{ClientTls, PkiFiles, TestPki};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A server process the rows talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// `testbed bench-target KIND`: a baseline server.
    Baseline(Baseline),
    /// `testbed serve --deployment NAME`: the testbed's own port.
    Port(Deployment),
    /// `testbed serve --deployment direct --tls-cert F --tls-key K`: the direct port over TLS,
    /// with the run's certificates ([`Targets::tls`]).
    TlsPort,
    /// The Python grpcio server, 4 worker threads.
    Python,
    /// `testbed serve --upstream` in front of [`Target::Python`], the API's descriptors given
    /// as a file ([`Targets::descriptors`]).
    GatewayToPython,
}

/// The server processes the rows need, started once and shared by all repeats, and the run's
/// TLS certificates.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    by_name: HashMap<Target, ChildServer>,
    pki: Option<RunPki>,
    descriptors: Option<tempfile::NamedTempFile>,
}

/// Certificates made once per run for the TLS rows ([`TestPki`]: a CA and a server certificate
/// for `localhost` and 127.0.0.1), written to a folder of their own that goes when the run ends.
#[derive(Debug)]
struct RunPki {
    pki: TestPki,
    files: PkiFiles,
}

impl RunPki {
    fn generate() -> anyhow::Result<Self> {
        static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("testbed-bench-tls-{}-{run}", std::process::id()));
        let pki = TestPki::generate().context("cannot make the TLS rows' certificates")?;
        let files = pki.write_to(&dir)?;
        Ok(Self { pki, files })
    }
}

impl Drop for RunPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.files.dir);
    }
}

impl Targets {
    /// The run's certificates, made the first time a TLS row asks.
    fn pki(&mut self) -> anyhow::Result<&RunPki> {
        let pki = match self.pki.take() {
            Some(pki) => pki,
            None => RunPki::generate()?,
        };
        Ok(self.pki.insert(pki))
    }

    /// How a client of [`Target::TlsPort`] reaches it: trusting the run's CA, no client
    /// certificate.
    pub(crate) fn tls(&mut self) -> anyhow::Result<ClientTls> {
        Ok(self.pki()?.pki.client(None))
    }

    /// The API's descriptors in a file of the run's own, written the first time a gateway asks.
    fn descriptors(&mut self) -> anyhow::Result<PathBuf> {
        if let Some(file) = &self.descriptors {
            return Ok(file.path().to_path_buf());
        }
        let mut file = tempfile::Builder::new()
            .prefix("testbed-bench-descriptors-")
            .suffix(".binpb")
            .tempfile()
            .context("cannot create the gateway's descriptor file")?;
        std::io::Write::write_all(&mut file, services::FILE_DESCRIPTOR_SET)
            .context("cannot write the gateway's descriptor file")?;
        let path = file.path().to_path_buf();
        self.descriptors = Some(file);
        Ok(path)
    }

    pub(crate) async fn addr(
        &mut self,
        name: Target,
        options: &BenchOptions,
    ) -> anyhow::Result<SocketAddr> {
        if let Some(target) = self.by_name.get(&name) {
            return Ok(target.addr);
        }
        let runtime = ["--runtime", options.flavor.name()];
        let exe = &options.testbed_exe;
        let target = match name {
            Target::Baseline(kind) => {
                let command = ["bench-target", kind.name(), "--addr", "127.0.0.1:0"];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::Port(deployment) => {
                let command = [
                    "serve",
                    "--deployment",
                    deployment.name(),
                    "--addr",
                    "127.0.0.1:0",
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::TlsPort => {
                let files = &self.pki()?.files;
                let cert = files.server_cert.display().to_string();
                let key = files.server_key.display().to_string();
                let command = [
                    "serve",
                    "--deployment",
                    Deployment::Direct.name(),
                    "--addr",
                    "127.0.0.1:0",
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
            Target::Python => {
                let mut command = tokio::process::Command::new(tools::python()?);
                command
                    .arg(tools::python_client("increment_server.py")?)
                    .args(["--addr", "127.0.0.1:0", "--workers", "4"]);
                ChildServer::spawn(command, "python increment_server.py").await?
            }
            Target::GatewayToPython => {
                let python = Box::pin(self.addr(Target::Python, options)).await?;
                let upstream = format!("python=1.0.0@{python}");
                let descriptors = format!("python={}", self.descriptors()?.display());
                let command = [
                    "serve",
                    "--addr",
                    "127.0.0.1:0",
                    "--upstream",
                    &upstream,
                    "--descriptors",
                    &descriptors,
                ];
                ChildServer::testbed(exe, &[&runtime[..], &command].concat()).await?
            }
        };
        if let Some(cpus) = &options.server_cpus {
            let pid = target.pid().context("the server exited as it started")?;
            cpus.pin_process(pid)?;
        }
        let addr = target.addr;
        self.by_name.insert(name, target);
        Ok(addr)
    }
}
