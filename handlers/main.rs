//! `handler`: the one binary of KRAFTD billing.
//!
//! handler                    serve (under the Functions host, or locally)
//! handler serve              serve locally on 127.0.0.1:7071 (PORT overrides)
//! handler functions write    regenerate functions/*/function.json from the route table
//! handler functions check    fail if functions/ differs from the route table

use std::path::PathBuf;
use std::process::ExitCode;

use kraftd_billing::config::Config;
use kraftd_billing::functions::manifest;
use kraftd_billing::server;

const USAGE: &str = "usage: handler [serve | functions write [DIR] | functions check [DIR]]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => serve(),
        ["functions", "write", rest @ ..] => functions(rest, true),
        ["functions", "check", rest @ ..] => functions(rest, false),
        ["help" | "--help" | "-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(78);
        }
    };
    server::init_logging(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match runtime.block_on(server::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "start-up failed");
            eprintln!("{e}");
            ExitCode::from(78)
        }
    }
}

fn functions(rest: &[&str], write: bool) -> ExitCode {
    let dir = PathBuf::from(rest.first().copied().unwrap_or("functions"));
    let result = if write {
        manifest::write(&dir).map(|names| {
            println!("wrote {} functions under {}", names.len(), dir.display());
            true
        })
    } else {
        manifest::drift(&dir).map(|drift| {
            for line in &drift {
                eprintln!("{line}");
            }
            if !drift.is_empty() {
                eprintln!(
                    "functions/ is out of date: run `cargo run --bin handler -- functions write`"
                );
            }
            drift.is_empty()
        })
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}
