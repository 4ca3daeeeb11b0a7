//! The configuration file: the documented example parses and sets every key to its default;
//! errors name the key at fault; the file fills only what flags and environment variables did
//! not set.

use std::path::PathBuf;

use clap::{FromArgMatches as _, Parser};
use cursorpool_core::conductor::Strategy;
use cursorpool_host::cli::{RoutingStrategy, ServeArgs};
use cursorpool_host::config::{self, Explicit, FileConfig, LogFormat};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    serve: ServeArgs,
}

/// `serve`'s options from `args` (and whatever the environment sets) with what set them.
fn parse(args: &[&str]) -> (ServeArgs, Explicit) {
    let matches = <Cli as clap::CommandFactory>::command()
        .try_get_matches_from(std::iter::once("cursorpool").chain(args.iter().copied()))
        .expect("valid command line");
    let cli = Cli::from_arg_matches(&matches).expect("valid command line");
    (cli.serve, Explicit::from_matches(&matches))
}

fn example() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config.example.yaml");
    std::fs::read_to_string(path).expect("config.example.yaml at the repository's root")
}

#[test]
fn the_example_file_sets_every_key() {
    let parsed = config::parse(&example()).expect("the example parses");
    // Destructured without `..`: a new key fails to compile here until the example has it.
    let FileConfig {
        host,
        port,
        upstream,
        upstream_ca,
        auth_dir,
        state_dir,
        memory_only,
        token_file,
        api_keys,
        management_secret,
        routing,
        request_retry,
        models,
        default_model,
        stall_timeout_secs,
        park_ttl_secs,
        max_body_bytes,
        max_header_bytes,
        header_timeout_secs,
        idle_timeout_secs,
        conversation_ttl_mins,
        max_history_bytes,
        log_level,
        log_format,
    } = parsed;
    let text = example();
    for (key, set) in [
        ("host", host.is_some()),
        ("port", port.is_some()),
        ("upstream", upstream.is_some()),
        ("upstream-ca", upstream_ca.is_none()),
        ("auth-dir", auth_dir.is_some()),
        ("state-dir", state_dir.is_some()),
        ("memory-only", memory_only.is_some()),
        ("token-file", token_file.is_none()),
        ("api-keys", api_keys.is_some()),
        ("management-secret", management_secret.is_none()),
        ("routing", routing.and_then(|r| r.strategy).is_some()),
        ("request-retry", request_retry.is_some()),
        ("models", models.is_some()),
        ("default-model", default_model.is_some()),
        ("stall-timeout-secs", stall_timeout_secs.is_some()),
        ("park-ttl-secs", park_ttl_secs.is_some()),
        ("max-body-bytes", max_body_bytes.is_some()),
        ("max-header-bytes", max_header_bytes.is_some()),
        ("header-timeout-secs", header_timeout_secs.is_some()),
        ("idle-timeout-secs", idle_timeout_secs.is_some()),
        ("conversation-ttl-mins", conversation_ttl_mins.is_some()),
        ("max-history-bytes", max_history_bytes.is_none()),
        ("log-level", log_level.is_some()),
        ("log-format", log_format == Some(LogFormat::Text)),
    ] {
        assert!(set, "config.example.yaml documents `{key}` with a value");
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{key}:"))),
            "config.example.yaml has a top-level `{key}:` line"
        );
    }
}

#[test]
fn the_example_file_changes_nothing_from_the_defaults() {
    let (defaults, explicit) = parse(&["--memory-only"]);
    let (mut from_file, _) = parse(&["--memory-only"]);
    let mut file = config::parse(&example()).expect("the example parses");
    // The example names the default state dir; with --memory-only on both sides it is unused.
    file.state_dir = None;
    file.memory_only = None;
    file.apply(&mut from_file, &explicit);
    let (a, b) = (
        defaults.app_config().expect("defaults"),
        from_file.app_config().expect("example"),
    );
    assert_eq!(defaults.listen, from_file.listen);
    assert_eq!(defaults.auth_dir(), from_file.auth_dir());
    assert_eq!(a.upstream_url, b.upstream_url);
    assert_eq!(a.api_keys, b.api_keys);
    assert_eq!(a.management_secret, b.management_secret);
    assert_eq!(a.pool.strategy, b.pool.strategy);
    assert_eq!(a.request_retry, b.request_retry);
    assert_eq!(a.models, b.models);
    assert_eq!(a.turn, b.turn);
    assert_eq!(a.park_ttl, b.park_ttl);
    assert_eq!(a.max_body_bytes, b.max_body_bytes);
    assert_eq!(a.conn_limits, b.conn_limits);
    assert_eq!(a.conversations, b.conversations);
    assert_eq!(a.max_history_bytes, b.max_history_bytes);
}

#[test]
fn errors_name_the_key_at_fault() {
    for (text, key) in [
        ("prot: 8317\n", "prot"),
        ("routing:\n  strat: fill-first\n", "strat"),
        ("routing:\n  strategy: random\n", "routing.strategy"),
        ("port: eighty\n", "port"),
        ("port: 0\n", "port"),
        ("request-retry: 0\n", "request-retry"),
        ("api-keys: secret\n", "api-keys"),
        ("log-level: \"info,[[\"\n", "log-level"),
        ("log-format: xml\n", "log-format"),
        ("memory-only: true\nstate-dir: /tmp/x\n", "memory-only"),
        ("models:\n  claude: \"\"\n", "models"),
        ("host: localhost:80\n", "host"),
    ] {
        let e = config::parse(text).expect_err(text);
        assert!(e.contains(key), "{text:?}: {e:?} names {key}");
    }
    assert_eq!(
        config::parse("# only comments\n"),
        Ok(FileConfig::default())
    );
    assert_eq!(config::parse(""), Ok(FileConfig::default()));
}

#[test]
fn a_missing_explicit_file_is_an_error_and_a_missing_default_file_is_not() {
    let missing = std::env::temp_dir().join("cursorpool-no-such-config.yaml");
    let e = config::load(Some(&missing)).expect_err("explicit file must exist");
    assert!(
        e.to_string().contains("cursorpool-no-such-config.yaml"),
        "{e}"
    );
}

#[test]
fn flags_and_environment_win_over_the_file() {
    let file = config::parse(
        "host: 127.0.0.2\nport: 9000\napi-keys: [from-file]\nrouting:\n  strategy: fill-first\n\
         default-model: gpt-5\nmodels:\n  claude-x: sonnet\nrequest-retry: 2\n",
    )
    .expect("valid");
    // Nothing explicit: the file fills everything it sets.
    let (mut args, _) = parse(&["--memory-only"]);
    file.apply(&mut args, &Explicit::default());
    assert_eq!(args.listen.to_string(), "127.0.0.2:9000");
    let c = args.app_config().expect("config");
    assert_eq!(c.api_keys, ["from-file"]);
    assert_eq!(c.pool.strategy, Strategy::FillFirst);
    assert_eq!(c.request_retry, 2);
    assert_eq!(c.models.resolve("claude-x"), "sonnet");
    assert_eq!(c.models.resolve("other"), "gpt-5");
    // A flag (or an environment variable: same mark) keeps its value.
    let (mut args, _) = parse(&[
        "--memory-only",
        "--listen",
        "127.0.0.1:7000",
        "--routing-strategy",
        "round-robin",
    ]);
    file.apply(
        &mut args,
        &Explicit::of(&["listen", "routing_strategy", "api_keys"]),
    );
    assert_eq!(args.listen.to_string(), "127.0.0.1:7000");
    assert_eq!(args.routing_strategy, RoutingStrategy::RoundRobin);
    assert!(args.api_keys.is_empty());
    assert_eq!(args.default_model, "gpt-5");
}

#[test]
fn explicit_marks_come_from_flags_not_defaults() {
    let (_, explicit) = parse(&["--memory-only", "--listen", "127.0.0.1:7000"]);
    assert!(explicit.contains("listen"));
    assert!(explicit.contains("memory_only"));
    if std::env::var_os("CURSORPOOL_DEFAULT_MODEL").is_none() {
        assert!(!explicit.contains("default_model"));
    }
}

#[test]
fn home_relative_paths_are_expanded() {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let expanded = config::expand(std::path::Path::new("~/.cursorpool/auth"));
    match home {
        Some(h) if !h.as_os_str().is_empty() => assert_eq!(expanded, h.join(".cursorpool/auth")),
        _ => assert_eq!(expanded, PathBuf::from("~/.cursorpool/auth")),
    }
    assert_eq!(
        config::expand(std::path::Path::new("/abs")),
        PathBuf::from("/abs")
    );
}
