//! `testbed xds-bootstrap`: the bootstrap of an Envoy pointed at the control plane
//! ([`proxy::xds_node`] writes it and starts such Envoys).

use std::net::SocketAddr;
use std::path::PathBuf;

/// `testbed xds-bootstrap`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BootstrapArgs {
    /// The node's id (each Envoy of a fleet its own).
    #[arg(long, value_name = "ID")]
    pub node_id: String,
    /// The node's cluster.
    #[arg(long, value_name = "NAME", default_value = "testbed")]
    pub cluster: String,
    /// The control plane (`serve --xds-addr`).
    #[arg(long, value_name = "ADDR")]
    pub xds: SocketAddr,
    /// Where this Envoy's listener (served over xDS) listens.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The Unix socket of Envoy's admin interface (no port to collide with another Envoy's).
    #[arg(long, value_name = "PATH")]
    pub admin_socket: PathBuf,
}

/// The bootstrap YAML of `args`.
pub fn bootstrap(args: &BootstrapArgs) -> String {
    proxy::xds_node::bootstrap(&proxy::xds_node::XdsBootstrap {
        node_id: args.node_id.clone(),
        cluster: args.cluster.clone(),
        xds: args.xds,
        listen: args.listen,
        admin_socket: args.admin_socket.clone(),
    })
}
