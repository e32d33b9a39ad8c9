//! `damon serve`: the monitoring agent (see [`crate::serve`]).
use std::{net::SocketAddr, path::PathBuf};

use anyhow::Result;
use clap::Args as ClapArgs;

use crate::serve::{ServeOptions, config::parse_listen};

#[derive(Debug, ClapArgs)]
#[command(
    about = "Monitor configured target groups and export them to Prometheus",
    long_about = "Monitor configured target groups (cgroups, executable names, pids) and export \
their working sets, idle memory and access frequencies at /metrics (OpenMetrics), with /healthz. \
Processes that join or leave a group are followed once per update interval. SIGHUP reloads the \
config, keeping the state of the targets that stay; SIGTERM or SIGINT stops every kdamond and \
unloads its programs.",
    after_help = "The config is TOML:\n\n  listen = \"127.0.0.1:9639\"\n  [[group]]\n  name = \"web\"\n  \
cgroup = \"/system.slice/nginx.service\"\n  comm = [\"nginx\"]\n  pids = [1234]\n  \
sample = \"5ms\"\n  aggr = \"100ms\"\n  update = \"1s\"\n\n\
EXAMPLES:\n  damon serve --config /etc/damon/serve.toml\n  damon serve --config serve.toml --listen 127.0.0.1:0\n  \
kill -HUP $(pidof damon)   # reload"
)]
pub struct Args {
    /// The config file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/damon/serve.toml"
    )]
    pub config: PathBuf,
    /// Address and port of /metrics and /healthz (overrides the config's `listen`; port 0
    /// takes a free port, printed as `LISTENING ADDR` on stdout).
    #[arg(long, value_name = "ADDR", value_parser = listen_addr)]
    pub listen: Option<SocketAddr>,
}

fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    parse_listen(s).map_err(|e| e.to_string())
}

pub fn run(args: Args) -> Result<()> {
    crate::serve::run(ServeOptions {
        config: args.config,
        listen: args.listen,
    })
}
