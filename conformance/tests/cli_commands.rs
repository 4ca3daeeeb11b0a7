//! The command line around `serve`, run as a user would (the built binaries, one
//! configuration file): `login --api-key` into the configured auth directory, `accounts
//! list|disable|enable|remove`, `check` (progress per account; exit 1 while one fails),
//! `models`, `accounts status` against a running `serve`, shell completions, and `--help` on
//! every subcommand.

use cursorpool_conformance as support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cursorpool_sim::model::{AccountConfig, Quota, SimConfig};
use cursorpool_sim::server::{ServerConfig, spawn};
use support::{Process, bounded, free_port};

const SECRET: &str = "cli-management-secret";

/// Runs the binary under test with `args` and the configuration file `config` (nothing from
/// the environment), bounded.
async fn run(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(support::binary_path());
    cmd.args(args).arg("--config").arg(config);
    for var in [
        "CURSORPOOL_AUTH_DIR",
        "CURSORPOOL_UPSTREAM",
        "CURSORPOOL_MANAGEMENT_SECRET",
        "CURSORPOOL_URL",
        "CURSORPOOL_TOKENS",
        "CURSOR_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    let label = args.join(" ");
    tokio::time::timeout(
        support::PROCESS_LIMIT,
        tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs")),
    )
    .await
    .unwrap_or_else(|_| panic!("`{label}` did not finish"))
    .expect("the runner does not panic")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn accounts_check_and_models_work_on_the_configured_auth_dir() {
    bounded(async {
        let sim = spawn(ServerConfig::new(SimConfig {
            accounts: ["a", "b"]
                .iter()
                .map(|l| AccountConfig {
                    label: (*l).to_owned(),
                    api_key: format!("key-{l}"),
                    quota: Quota::default(),
                })
                .collect(),
            ..SimConfig::default()
        }))
        .await
        .expect("the sim starts");
        let dir = support::temp_dir("cli-accounts");
        let port = free_port();
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "port: {port}\nupstream: {}\nauth-dir: {}\nmemory-only: true\n\
                 management-secret: {SECRET}\n",
                sim.base_url(),
                dir.join("auth").display()
            ),
        )
        .expect("config");

        for label in ["a", "b"] {
            let key = format!("key-{label}");
            let out = run(&config, &["login", "--api-key", &key, "--label", label]).await;
            assert!(out.status.success(), "{:?}", text(&out));
        }
        assert!(dir.join("auth/cursor.a.json").exists());

        let out = run(&config, &["accounts", "list"]).await;
        let (stdout, _) = text(&out);
        assert!(out.status.success(), "{stdout}");
        assert!(
            stdout.contains("cursor.a.json") && stdout.contains("cursor.b.json"),
            "{stdout}"
        );
        assert!(!stdout.contains("disabled"), "{stdout}");

        let out = run(
            &config,
            &["accounts", "disable", "b", "--reason", "on holiday"],
        )
        .await;
        assert!(out.status.success(), "{:?}", text(&out));
        let (stdout, _) = text(&run(&config, &["accounts", "list"]).await);
        assert!(stdout.contains("disabled (on holiday)"), "{stdout}");

        let out = run(&config, &["check"]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
        assert!(stdout.contains("configuration: ok"), "{stdout}");
        assert!(stdout.contains("a: ok (5 models)"), "{stdout}");
        assert!(stdout.contains("b: FAILED: disabled"), "{stdout}");
        assert!(
            stderr.contains("[1/2]") && stderr.contains("[2/2]"),
            "progress: {stderr}"
        );

        let out = run(&config, &["accounts", "enable", "b"]).await;
        assert!(out.status.success(), "{:?}", text(&out));
        let out = run(&config, &["check"]).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
        assert!(stdout.contains("all 2 account(s) answered"), "{stdout}");

        let out = run(&config, &["models"]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("claude-sonnet-5"), "{stdout}");
        assert!(stdout.contains("Cursor's models for a"), "{stdout}");
        assert!(stdout.contains("composer-1"), "{stdout}");

        // A running serve: `accounts status` reads it; `accounts remove` reaches it.
        let mut cmd = Command::new(support::binary_path());
        cmd.args(["serve", "--config"]).arg(&config);
        let mut proxy = Process::spawn(cmd);
        proxy.wait_listening(([127, 0, 0, 1], port).into()).await;
        let out = run(&config, &["accounts", "status"]).await;
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains("2 account(s)"), "{stdout}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with("a ") && l.contains("ready")),
            "{stdout}"
        );

        let out = run(&config, &["accounts", "remove", "b"]).await;
        assert!(out.status.success(), "{:?}", text(&out));
        assert!(!dir.join("auth/cursor.b.json").exists());
        let deadline = Instant::now() + support::PROCESS_LIMIT;
        loop {
            let (stdout, _) = text(&run(&config, &["accounts", "status"]).await);
            if stdout.contains("1 account(s)") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the serve never dropped b: {stdout}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let out = run(&config, &["accounts", "remove", "nobody"]).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("no account \"nobody\"") && stderr.contains("a"),
            "{stderr}"
        );

        let (status, log) = proxy.stop().await;
        assert_eq!(status.code(), Some(0), "{log}");
        assert!(!log.contains(SECRET), "{log}");
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

async fn completions_and_help_cover_every_subcommand() {
    bounded(async {
        let dir = support::temp_dir("cli-help");
        let config = dir.join("config.yaml");
        std::fs::write(&config, "# defaults\n").expect("config");
        let binary = support::Target::current().binary();
        for shell in ["bash", "zsh", "fish"] {
            let out = run(&config, &["completions", shell]).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{stderr}");
            for sub in [
                "serve",
                "login",
                "accounts",
                "models",
                "check",
                "completions",
            ] {
                assert!(stdout.contains(sub), "{shell} completes {sub}");
            }
            assert!(stdout.contains(binary), "{shell}");
        }
        let mut subcommands = vec![
            vec!["serve"],
            vec!["login"],
            vec!["accounts"],
            vec!["accounts", "list"],
            vec!["accounts", "status"],
            vec!["accounts", "enable"],
            vec!["accounts", "disable"],
            vec!["accounts", "remove"],
            vec!["models"],
            vec!["check"],
            vec!["completions"],
        ];
        if support::Target::current() == support::Target::Cursorpool {
            subcommands.push(vec!["demo"]);
        }
        for sub in subcommands {
            let mut args = sub.clone();
            args.push("--help");
            let out = run(&config, &args).await;
            let (stdout, stderr) = text(&out);
            assert!(out.status.success(), "{args:?}: {stderr}");
            assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await;
}

support::both_binaries!(
    accounts_check_and_models_work_on_the_configured_auth_dir,
    completions_and_help_cover_every_subcommand,
);
