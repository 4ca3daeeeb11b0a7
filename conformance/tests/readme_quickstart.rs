//! README.md's quick start, followed literally with the built binary: its configuration block
//! is written where it says (`~/.cursorpool/config.yaml`, with `HOME` a fresh directory), an
//! account is added with `login --api-key` (the README's alternative to the browser), `serve`
//! runs with no argument, and the official `anthropic` and `openai` Python clients talk to it
//! with exactly the environment the README exports. Two changes only, both through documented
//! channels: the port is a free one instead of 8317, and `CURSORPOOL_UPSTREAM` (environment
//! overrides the file) points at the simulated backend instead of Cursor.

use cursorpool_conformance as support;

use std::path::PathBuf;
use std::process::Command;

use cursorpool_sim::model::{AccountConfig, Quota, SimConfig};
use cursorpool_sim::server::{ServerConfig, spawn};
use support::{Process, bounded, free_port};

/// What the README's quick start says.
struct QuickStart {
    /// The commands of the first shell block (`cursorpool …` lines, comments cut).
    commands: Vec<String>,
    /// Where the configuration goes, and its text.
    config_path: String,
    config: String,
    /// Every `export NAME=VALUE`.
    exports: Vec<(String, String)>,
}

fn quick_start() -> QuickStart {
    let readme =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Quick start"))
        .expect("README has a `## Quick start` section");
    let blocks: Vec<(&str, &str)> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .map(|b| b.split_once('\n').unwrap_or((b, "")))
        .collect();
    let commands = blocks
        .iter()
        .find(|(lang, _)| *lang == "sh")
        .expect("a shell block")
        .1
        .lines()
        .map(|l| l.split(" #").next().unwrap_or(l).trim().to_owned())
        .filter(|l| l.starts_with("cursorpool "))
        .collect();
    let yaml = blocks
        .iter()
        .find(|(lang, _)| *lang == "yaml")
        .expect("a yaml block")
        .1;
    let config_path = yaml
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# "))
        .expect("the yaml block starts with `# <path>`")
        .to_owned();
    let exports = blocks
        .iter()
        .filter(|(lang, _)| *lang == "sh")
        .flat_map(|(_, body)| body.lines())
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=VALUE");
            let v = v.split(" #").next().unwrap_or(v).trim();
            (k.to_owned(), v.to_owned())
        })
        .collect();
    QuickStart {
        commands,
        config_path,
        config: yaml.to_owned(),
        exports,
    }
}

async fn the_readme_quick_start_works_with_the_official_clients() {
    let Some(python) = support::sdk_python("readme_quickstart") else {
        return;
    };
    bounded(async {
        let qs = quick_start();
        assert_eq!(
            qs.commands,
            ["cursorpool login --label work", "cursorpool serve"],
            "the quick start's commands"
        );
        let names: Vec<&str> = qs.exports.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY"
            ]
        );

        let sim = spawn(ServerConfig::new(SimConfig {
            accounts: vec![AccountConfig {
                label: "work".to_owned(),
                api_key: "cursor-api-key-work".to_owned(),
                quota: Quota::default(),
            }],
            ..SimConfig::default()
        }))
        .await
        .expect("the sim starts");
        let home = support::temp_dir("readme-home");
        let port = free_port().to_string();
        let config_path = home.join(
            qs.config_path
                .strip_prefix("~/")
                .expect("a path under the home directory"),
        );
        std::fs::create_dir_all(config_path.parent().expect("a directory")).expect("mkdir");
        std::fs::write(&config_path, qs.config.replace("8317", &port)).expect("config written");
        let env = |cmd: &mut Command| {
            cmd.env("HOME", &home)
                .env("CURSORPOOL_UPSTREAM", sim.base_url())
                .env("NO_PROXY", "127.0.0.1,localhost");
            for var in [
                "CURSORPOOL_CONFIG",
                "CURSORPOOL_LISTEN",
                "CURSORPOOL_API_KEYS",
                "CURSORPOOL_AUTH_DIR",
                "CURSORPOOL_STATE_DIR",
                "CURSORPOOL_TOKENS",
                "CURSORPOOL_MANAGEMENT_SECRET",
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "ALL_PROXY",
            ] {
                cmd.env_remove(var);
            }
        };

        // `cursorpool login --label work`, by API key (no browser in a test).
        let mut login = Command::new(support::binary_path());
        login.args([
            "login",
            "--label",
            "work",
            "--api-key",
            "cursor-api-key-work",
        ]);
        env(&mut login);
        let (status, log) = Process::spawn(login).wait().await;
        assert!(status.success(), "{log}");
        assert!(home.join(".cursorpool/auth/cursor.work.json").exists());

        // `cursorpool serve`, as written.
        let mut serve = Command::new(support::binary_path());
        serve.arg("serve");
        env(&mut serve);
        let mut proxy = Process::spawn(serve);
        proxy
            .wait_listening(([127, 0, 0, 1], port.parse::<u16>().expect("port")).into())
            .await;

        let clients = [
            ("anthropic_scenarios.py", "stream", "ANTHROPIC_"),
            ("anthropic_scenarios.py", "tool_loop", "ANTHROPIC_"),
            ("openai_scenarios.py", "text", "OPENAI_"),
        ];
        let mut results = Vec::new();
        for (script, scenario, prefix) in clients {
            let mut cmd = Command::new(&python);
            cmd.arg(support::e2e_dir().join(script))
                .arg(scenario)
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            for var in [
                "ANTHROPIC_BASE_URL",
                "ANTHROPIC_API_KEY",
                "OPENAI_BASE_URL",
                "OPENAI_API_KEY",
            ] {
                cmd.env_remove(var);
            }
            for (k, v) in qs.exports.iter().filter(|(k, _)| k.starts_with(prefix)) {
                cmd.env(k, v.replace("8317", &port));
            }
            env(&mut cmd);
            let label = format!("{script} {scenario}");
            results.push(support::run_json(cmd, &label, support::SCRIPT_LIMIT).await);
        }
        let stream = &results[0];
        assert_eq!(stream["stop_reason"], "end_turn", "{stream}");
        assert!(
            stream["text"]
                .as_str()
                .is_some_and(|t| t.contains("hello from the anthropic sdk, streaming")),
            "{stream}"
        );
        let tools = &results[1];
        assert_eq!(tools["first"]["stop_reason"], "tool_use", "{tools}");
        assert!(
            tools["second"]["text"]
                .as_str()
                .is_some_and(|t| t.contains("18 degrees, light rain")),
            "the tool result reached the model: {tools}"
        );
        let openai = &results[2];
        assert_eq!(openai["finish_reason"], "stop", "{openai}");

        // The README's key is required: without it the proxy refuses.
        let refused =
            support::Client::connect(([127, 0, 0, 1], port.parse::<u16>().expect("port")).into())
                .await
                .send(
                    "GET",
                    "/v1/models",
                    &[("x-api-key", "not-the-readme-key")],
                    bytes::Bytes::new(),
                )
                .await;
        assert_eq!(refused.status, 401);

        let (status, log) = proxy.stop().await;
        assert_eq!(status.code(), Some(0), "{log}");
        assert_eq!(
            log.matches("cursorpool::request: request").count(),
            5,
            "one readable line per request (three clients, the tool loop twice, the 401): {log}"
        );
        sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&home);
    })
    .await;
}

support::both_binaries!(the_readme_quick_start_works_with_the_official_clients);
