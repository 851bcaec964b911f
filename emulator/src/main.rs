//! `wif-emulator [--config FILE] [--port N]`: starts the emulated world,
//! prints one JSON line describing it (URLs, audiences, env settings) and
//! serves until SIGINT/SIGTERM.

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use wif_emulator::{Emulator, EmulatorConfig};

/// Local emulator of the AWS and Google endpoints used by workload identity federation.
#[derive(Parser)]
#[command(name = "wif-emulator", version)]
struct Args {
    /// JSON config file (missing fields keep the built-in world).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Port on 127.0.0.1 (overrides the config; 0 = any free port).
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = match &args.config {
        Some(path) => match EmulatorConfig::from_file(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wif-emulator: {e}");
                return ExitCode::from(2);
            }
        },
        None => EmulatorConfig::default(),
    };
    if let Some(port) = args.port {
        config.port = port;
    }
    // Signal handlers are installed before the JSON line is printed, so a
    // SIGTERM sent as soon as the line is read always shuts down cleanly.
    let shutdown = match Shutdown::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("wif-emulator: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let emulator = match Emulator::start(config) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("wif-emulator: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{}", emulator.info())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::from(1);
    }
    drop(stdout);
    shutdown.wait();
    drop(emulator);
    ExitCode::SUCCESS
}

/// SIGINT/SIGTERM listeners on a small runtime of their own.
struct Shutdown {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    signals: (tokio::signal::unix::Signal, tokio::signal::unix::Signal),
}

impl Shutdown {
    fn install() -> std::io::Result<Shutdown> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        #[cfg(unix)]
        let signals = {
            use tokio::signal::unix::{SignalKind, signal};
            let _guard = runtime.enter();
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            )
        };
        Ok(Shutdown {
            runtime,
            #[cfg(unix)]
            signals,
        })
    }

    /// Blocks until Ctrl-C (SIGINT) or SIGTERM.
    fn wait(self) {
        #[cfg(unix)]
        {
            let (mut int, mut term) = self.signals;
            self.runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
        }
        #[cfg(not(unix))]
        {
            let _ = self.runtime.block_on(tokio::signal::ctrl_c());
        }
    }
}
