//! The `voxgate` binary: parses the command line and hands over to the
//! gateway library. Exit codes follow sysexits: 64 for a bad command line
//! or configuration, 69 when a socket cannot be bound, 70 for other
//! failures; `voxgate call` adds 1 (rejected) and 2 (no answer).

// Tests may start a virtual clock from the real one.
#![cfg_attr(test, allow(clippy::disallowed_methods))]

mod admin;
mod ai;
mod call;
mod cli;
mod eval;
mod models;
mod policy;
mod serve;
mod ui;

use clap::Parser;
use voxgate_gateway::config::{self, GatewayConfig};

use cli::{Cli, Command, ConfigCommand};

/// Exit codes.
pub mod exit {
    pub const OK: i32 = 0;
    pub const CALL_REJECTED: i32 = 1;
    pub const CALL_TIMEOUT: i32 = 2;
    /// EX_USAGE: bad command line or configuration.
    pub const USAGE: i32 = 64;
    /// EX_UNAVAILABLE: a socket could not be bound.
    pub const UNAVAILABLE: i32 = 69;
    /// EX_SOFTWARE: anything else that failed.
    pub const SOFTWARE: i32 = 70;
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            std::process::exit(exit::USAGE);
        }
        Err(e) => e.exit(),
    };
    std::process::exit(run(cli));
}

fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Config(ConfigCommand::Defaults) => {
            print!("{}", config::DEFAULTS_TOML);
            exit::OK
        }
        Command::Config(ConfigCommand::Check {
            print,
            config,
            file,
        }) => {
            let path = file.or_else(|| config.config_file());
            match config::load_from_process_env(path.as_deref(), &config.flags()) {
                Ok(cfg) => {
                    if print {
                        print_config(&cfg);
                    }
                    println!("ok");
                    exit::OK
                }
                Err(e) => {
                    eprintln!("voxgate: bad configuration: {e}");
                    exit::USAGE
                }
            }
        }
        Command::Serve(args) => {
            // Config is read and validated before any runtime or socket.
            let cfg = match config::load_from_process_env(
                args.config.config_file().as_deref(),
                &args.config.flags(),
            ) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("voxgate: bad configuration: {e}");
                    return exit::USAGE;
                }
            };
            init_tracing();
            install_crypto_provider();
            with_runtime(serve::run(cfg))
        }
        Command::Call(args) => {
            init_tracing_with_default("warn");
            install_crypto_provider();
            with_runtime(call::run(args))
        }
        Command::Flows(cli::FlowsCommand::Validate {
            file,
            allow_hosts,
            allow_private,
        }) => admin::validate(&file, &allow_hosts, allow_private),
        Command::Flows(cmd) => with_runtime(admin::flows(cmd)),
        Command::Numbers(cmd) => with_runtime(admin::numbers(cmd)),
        Command::Tenants(cmd) => with_runtime(admin::tenants(cmd)),
        Command::Keys(cmd) => with_runtime(admin::keys(cmd)),
        Command::Policy(cmd) => with_runtime(policy::run(cmd)),
        Command::Worker(args) => {
            init_tracing();
            install_crypto_provider();
            with_runtime(ai::worker(args))
        }
        Command::Simulate(args) => {
            init_tracing();
            with_runtime(ai::simulate(args))
        }
        Command::Eval(cmd) => {
            init_tracing_with_default("warn");
            install_crypto_provider();
            eval::run(cmd)
        }
        Command::Models(cmd) => {
            init_tracing_with_default("warn");
            install_crypto_provider();
            with_runtime(models::run(cmd))
        }
    }
}

fn print_config(cfg: &GatewayConfig) {
    match toml::to_string(cfg) {
        Ok(text) => print!("{text}"),
        Err(e) => eprintln!("voxgate: cannot print the configuration: {e}"),
    }
}

fn with_runtime(fut: impl std::future::Future<Output = i32>) -> i32 {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(fut),
        Err(e) => {
            eprintln!("voxgate: cannot start the async runtime: {e}");
            exit::SOFTWARE
        }
    }
}

fn init_tracing() {
    init_tracing_with_default("info");
}

/// Logs to stderr, filtered by `RUST_LOG` (default `default`).
fn init_tracing_with_default(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(config::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// rustls needs exactly one process-wide crypto provider. rsipstack's rustls
/// is built with ring; installing it here keeps startup deterministic even
/// if another dependency later enables a second provider.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
