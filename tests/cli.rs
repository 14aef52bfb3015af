//! The command line: every command explains itself with --help, and a
//! mistake gets a usage line and exit status 2, as the Functions host and
//! scripts expect of a well-behaved program.

use std::process::{Command, Output};

fn handler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .env_clear()
        .output()
        .expect("the handler runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_lists_every_command() {
    let out = handler(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for command in [
        "serve",
        "functions",
        "openapi",
        "stripe",
        "cosmos",
        "migrate",
        "accounts",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{help}"
        );
    }
    assert!(help.contains("Usage: handler"), "{help}");
}

#[test]
fn each_subcommand_has_its_own_help() {
    let out = handler(&["cosmos", "init", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("Usage: handler cosmos init"), "{help}");
    assert!(help.contains("partition key"), "{help}");

    let out = handler(&["serve", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(
        help.contains("--port") && help.contains("[env: PORT"),
        "{help}"
    );
}

#[test]
fn a_wrong_command_or_argument_gets_a_usage_line_and_exit_2() {
    for args in [
        &["bogus"][..],
        &["cosmos", "drop"],
        &["functions"],
        &["migrate"],
        &["accounts", "import"],
        &["serve", "--no-such-flag"],
    ] {
        let out = handler(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("Usage: handler"), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A bad value names the flag and what is wrong with it.
    for (args, flag) in [
        (&["serve", "--port", "seventy"][..], "--port"),
        (&["serve", "--bind-address", "not-an-ip"], "--bind-address"),
    ] {
        let out = handler(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.starts_with("error: invalid value") && err.contains(flag),
            "{err}"
        );
        assert!(err.contains("--help"), "{err}");
    }
}
