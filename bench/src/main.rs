//! `loadgen`: an end-to-end load generator for cursorpool and cursorpool-lite.
//!
//! It starts cursor-sim (`--token-interval-ms 0`) and each proxy binary as child processes on
//! loopback, then measures in one run, for the same workloads, a direct Cursor-protocol client
//! (the baseline) and each proxy: throughput, time to first and last byte, the latency the
//! proxy adds, its CPU per request and its memory. Results go to `README.md` and
//! `latency.svg` in the output directory and the tables to stdout. Every child is killed at
//! exit, on Ctrl-C and on panic; every cell is bounded in time and count.
#![forbid(unsafe_code)]

/// The proxy's allocator: the load generator shares the 2 cores with the sim and the proxy, so it
/// should cost as little as it can.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod baseline;
mod cell;
mod children;
mod client;
mod memory;
mod procfs;
mod report;
mod stats;
mod workload;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::baseline::Direct;
use crate::cell::{Bounds, CellResult, Target};
use crate::memory::MemoryResult;
use crate::workload::Workload;

/// Load generator: baseline (direct Cursor protocol) vs cursorpool vs cursorpool-lite, all on
/// cursor-sim.
#[derive(Debug, Parser)]
#[command(name = "loadgen", about, long_about = None)]
struct Cli {
    /// Directory with the release binaries (cursor-sim, cursorpool, cursorpool-lite).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/release"))]
    bin_dir: PathBuf,

    /// Where README.md and latency.svg are written.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    out: PathBuf,

    /// Also run concurrency 1000, and park 10,000 conversations (unless --parked is given).
    #[arg(long)]
    full: bool,

    /// Concurrency levels (comma-separated); default 1,64 (plus 1000 with --full).
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,

    /// Seconds per cell (no new request starts after this).
    #[arg(long, default_value_t = 3.0)]
    cell_secs: f64,

    /// Most units per cell (a unit is a request, or a tool round trip of two requests).
    #[arg(long, default_value_t = 20_000)]
    max_units: u64,

    /// Also run paced cells: units start on a fixed schedule at this fraction (0–1) of the
    /// slowest target's saturated rate at --paced-concurrency in the same run (e.g. 0.5), so
    /// every target carries the load. They show the latency the proxy adds with that many
    /// conversations in flight, where the saturated cells show mostly queueing.
    #[arg(long)]
    paced_load: Option<f64>,

    /// Clients of the paced cells (a concurrency the saturated cells also ran).
    #[arg(long, default_value_t = 64)]
    paced_concurrency: usize,

    /// A paced cell runs in this many rounds, each target in turn for its share of
    /// --cell-secs and --max-units, and each target's rounds are pooled: a hiccup of the
    /// shared machine then falls on every target alike instead of on whichever ran during it.
    #[arg(long, default_value_t = 4)]
    paced_rounds: u32,

    /// Writes every request's sample (unit start, time to first and last byte, in µs) to
    /// one CSV file per cell in this directory, to see whether slow requests bunch in time
    /// (a stall) or spread out (queueing, noise).
    #[arg(long)]
    samples_dir: Option<PathBuf>,

    /// Conversations parked on a tool call for the memory figures.
    #[arg(long, default_value_t = 1000)]
    parked: u64,

    /// Bound on each request, in seconds.
    #[arg(long, default_value_t = 30)]
    request_timeout_secs: u64,

    /// Bound on the whole run, in seconds (children are killed and the run fails after it).
    #[arg(long, default_value_t = 900)]
    max_total_secs: u64,

    /// Do not measure cursorpool-lite (e.g. it does not build yet).
    #[arg(long)]
    skip_lite: bool,

    /// Do not measure the per-binary memory figures.
    #[arg(long)]
    skip_memory: bool,

    /// Keep the children's logs (in the temporary directory printed at the end).
    #[arg(long)]
    keep_logs: bool,

    /// Worker threads of the load generator's own runtime. One by default: the sim, the load
    /// generator and the proxy share this machine's 2 cores, and a second worker of a process
    /// that needs less than one core costs more in wake-ups and context switches than it gives.
    #[arg(long, default_value = "1")]
    threads: std::num::NonZeroUsize,

    /// Worker threads of cursor-sim (`cursor-sim --threads`), one by default for the same reason.
    #[arg(long, default_value = "1")]
    sim_threads: std::num::NonZeroUsize,

    /// Runtime workers of each proxy (`CURSORPOOL_THREADS`, `CURSORPOOL_LITE_THREADS`). One by
    /// default: the proxy on one core, as the reference figures of the performance targets
    /// were measured (one proxy process on one core), the sim and the load generator on the
    /// other. cursorpool's own default is one worker per core.
    #[arg(long, default_value = "1")]
    proxy_threads: std::num::NonZeroUsize,

    /// Workloads to run (comma-separated: short, stream, claude-code, tool); default all.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,

    /// The command that started this run, for the report (bench/run sets it).
    #[arg(long, env = "BENCH_COMMAND", hide = true)]
    invoked_as: Option<String>,
}

fn main() -> ExitCode {
    children::install_panic_hook();
    let _guard = children::KillOnDrop;
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.get())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let limit = Duration::from_secs(cli.max_total_secs);
    let code = rt.block_on(async {
        tokio::select! {
            r = tokio::time::timeout(limit, run(&cli)) => match r {
                Ok(Ok(())) => ExitCode::SUCCESS,
                Ok(Err(e)) => {
                    eprintln!("loadgen: {e}");
                    ExitCode::FAILURE
                }
                Err(_) => {
                    eprintln!("loadgen: the run took longer than {limit:?}; stopped");
                    ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("loadgen: interrupted");
                ExitCode::from(130)
            }
        }
    });
    children::kill_all();
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

/// Progress on stderr.
fn say(msg: &str) {
    eprintln!("[loadgen] {msg}");
}

fn workloads(cli: &Cli) -> Result<Vec<Workload>, String> {
    if cli.workloads.is_empty() {
        return Ok(Workload::ALL.to_vec());
    }
    cli.workloads
        .iter()
        .map(|w| match w.as_str() {
            "short" => Ok(Workload::Short),
            "stream" => Ok(Workload::Stream500),
            "claude-code" => Ok(Workload::ClaudeCode),
            "tool" => Ok(Workload::ToolRoundTrip),
            other => Err(format!("unknown workload {other:?}")),
        })
        .collect()
}

async fn run(cli: &Cli) -> Result<(), String> {
    let t_start = Instant::now();
    let workloads = workloads(cli)?;
    let mut concurrencies = if cli.concurrency.is_empty() {
        vec![1, 64]
    } else {
        cli.concurrency.clone()
    };
    if cli.full && !concurrencies.contains(&1000) {
        concurrencies.push(1000);
    }
    let bin = |name: &str| cli.bin_dir.join(name);
    let sim_bin = bin("cursor-sim");
    let pool_bin = bin("cursorpool");
    let lite_bin = bin("cursorpool-lite");
    for b in [&sim_bin, &pool_bin] {
        if !b.is_file() {
            return Err(format!(
                "{} is missing: build it first (bench/run does)",
                b.display()
            ));
        }
    }
    let mut notes = Vec::new();
    let lite = if cli.skip_lite {
        notes.push("cursorpool-lite was skipped (--skip-lite: it did not build).".to_owned());
        say("skipping cursorpool-lite (--skip-lite)");
        None
    } else if lite_bin.is_file() {
        Some(lite_bin.clone())
    } else {
        notes.push(format!(
            "cursorpool-lite was skipped: {} is missing.",
            lite_bin.display()
        ));
        say("skipping cursorpool-lite: binary missing");
        None
    };

    let scratch = std::env::temp_dir().join(format!("cursorpool-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| e.to_string())?;
    let result = measure(
        cli,
        &workloads,
        &concurrencies,
        &sim_bin,
        &pool_bin,
        lite.as_deref(),
        &scratch,
        &mut notes,
    )
    .await;
    children::kill_all();
    let keep_logs = result.is_err() || cli.keep_logs;
    if keep_logs {
        say(&format!("child logs kept in {}", scratch.display()));
    }
    let (cells, mem) = match result {
        Ok(r) => r,
        Err(e) => {
            return Err(format!("{e} (child logs kept in {})", scratch.display()));
        }
    };
    if !keep_logs {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    let wall = t_start.elapsed();
    write_report(cli, &cells, &mem, &concurrencies, &notes, wall)
}

#[expect(clippy::too_many_arguments, reason = "one call site")]
async fn measure(
    cli: &Cli,
    workloads: &[Workload],
    concurrencies: &[usize],
    sim_bin: &Path,
    pool_bin: &Path,
    lite_bin: Option<&Path>,
    scratch: &Path,
    notes: &mut Vec<String>,
) -> Result<(Vec<CellResult>, Vec<MemoryResult>), String> {
    let timeout = Duration::from_secs(cli.request_timeout_secs);

    // `--full` parks the 10,000 unless a count was given.
    let parked = if cli.full && cli.parked == 1000 {
        10_000
    } else {
        cli.parked
    };
    let mut mem = Vec::new();
    if !cli.skip_memory {
        say("memory: starting cursor-sim");
        let sim = children::start_sim(sim_bin, cli.sim_threads, &scratch.join("sim-memory.log"))?;
        let mut bins = vec![("cursorpool", pool_bin)];
        bins.extend(lite_bin.map(|lite| ("cursorpool-lite", lite)));
        for (name, bin) in bins {
            say(&format!(
                "memory: {name} (idle, then {parked} parked conversations)"
            ));
            let m = memory::measure(name, bin, &sim, cli.proxy_threads, scratch, parked, timeout);
            mem.push(m.await);
        }
        children::kill(sim.pid);
    }

    let bounds = Bounds {
        duration: Duration::from_secs_f64(cli.cell_secs),
        max_units: cli.max_units,
        request_timeout: timeout,
        rate: None,
    };
    let paced_load = cli.paced_load.filter(|f| *f > 0.0 && *f <= 1.0);
    if cli.paced_load.is_some() && paced_load.is_none() {
        return Err("--paced-load is a fraction in (0, 1]".to_owned());
    }
    if paced_load.is_some() && !concurrencies.contains(&cli.paced_concurrency) {
        return Err(format!(
            "--paced-concurrency {} is not among the concurrencies measured",
            cli.paced_concurrency
        ));
    }
    let mut cells = Vec::new();
    for &w in workloads {
        // Fresh processes per workload: what one workload leaves behind (the sim's stored
        // checkpoints, the proxy's conversation store, a grown heap) never weighs on the next.
        say(&format!(
            "{}: starting cursor-sim and the proxies",
            w.name()
        ));
        let sim = children::start_sim(
            sim_bin,
            cli.sim_threads,
            &scratch.join(format!("sim-{}.log", w.tag())),
        )?;
        let targets = start_targets(
            &sim,
            pool_bin,
            lite_bin,
            cli.proxy_threads,
            scratch,
            w,
            notes,
        )?;
        // Warm-up: a few sequential units per target, not recorded.
        for t in &targets {
            let mut client = match t {
                Target::Proxy { proxy, .. } => Some(client::Client::new(proxy.addr)),
                Target::Baseline(_) => None,
            };
            for _ in 0..3 {
                if let Err(e) = cell::unit(t, client.as_mut(), w, timeout).await {
                    say(&format!("warm-up {} / {}: {e}", t.name(), w.name()));
                    break;
                }
            }
        }
        let first_of_workload = cells.len();
        let mut cells_of_workload: Vec<(usize, Bounds)> =
            concurrencies.iter().map(|&c| (c, bounds)).collect();
        let mut i = 0;
        while let Some(&(c, bounds)) = cells_of_workload.get(i) {
            i += 1;
            // A paced cell runs as interleaved rounds (see --paced-rounds), pooled per target.
            let rounds = if bounds.rate.is_some() {
                cli.paced_rounds.max(1)
            } else {
                1
            };
            let round_bounds = Bounds {
                duration: bounds.duration / rounds,
                max_units: bounds.max_units.div_ceil(u64::from(rounds)),
                ..bounds
            };
            let mut pooled: Vec<Option<CellResult>> = vec![None; targets.len()];
            for _ in 0..rounds {
                for (t, slot) in targets.iter().zip(pooled.iter_mut()) {
                    let r = cell::run_cell(t, w, c, round_bounds, &sim).await;
                    match slot {
                        Some(p) => p.absorb(r),
                        None => *slot = Some(r),
                    }
                }
            }
            for r in pooled.into_iter().flatten() {
                if let Some(dir) = &cli.samples_dir {
                    write_samples(dir, &r)?;
                }
                say(&format!(
                    "{:<30} c={:<5} {:<8} {:<16} ok={:<6} err={:<4} {:.1}s",
                    w.name(),
                    c,
                    bounds
                        .rate
                        .map_or_else(String::new, |r| format!("@{r:.0}/s")),
                    r.target,
                    r.ok,
                    r.errors,
                    r.elapsed.as_secs_f64()
                ));
                cells.push(r);
            }
            // Right after the saturated cells at the paced concurrency (before a larger one
            // grows the processes' state): the paced ones, at a share of the slowest target's
            // rate.
            if bounds.rate.is_none()
                && c == cli.paced_concurrency
                && let Some(load) = paced_load
            {
                let slowest = cells[first_of_workload..]
                    .iter()
                    .filter(|r| r.concurrency == cli.paced_concurrency && r.rate.is_none())
                    .map(CellResult::units_per_sec)
                    .fold(f64::INFINITY, f64::min);
                if slowest.is_finite() && slowest > 0.0 {
                    cells_of_workload.insert(
                        i,
                        (
                            cli.paced_concurrency,
                            Bounds {
                                rate: Some((slowest * load).max(1.0)),
                                ..bounds
                            },
                        ),
                    );
                }
            }
        }
        for pid in targets_pids(&targets) {
            children::kill(pid);
        }
        children::kill(sim.pid);
    }
    Ok((cells, mem))
}

/// Writes `r`'s samples as CSV under `dir` (see `--samples-dir`): one line per request, the
/// unit's start in µs from the cell's first start, then time to first and to last byte in µs.
fn write_samples(dir: &Path, r: &CellResult) -> Result<(), String> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let paced = r
        .rate
        .map_or_else(String::new, |rate| format!("-at{rate:.0}"));
    let path = dir.join(format!(
        "{}-c{}{paced}-{}.csv",
        r.workload.tag(),
        r.concurrency,
        r.target
    ));
    let Some(&first) = r.starts.iter().min() else {
        return Ok(());
    };
    let mut csv = String::from("start_us,ttfb_us,ttlb_us\n");
    for ((start, a), b) in r.starts.iter().zip(&r.ttfb).zip(&r.ttlb) {
        let _ = writeln!(
            csv,
            "{},{},{}",
            start.duration_since(first).as_micros(),
            a.as_micros(),
            b.as_micros()
        );
    }
    std::fs::write(&path, csv).map_err(|e| format!("{}: {e}", path.display()))
}

/// The baseline and the proxies (cursorpool, and cursorpool-lite when built and it starts) on
/// `sim`, for workload `w`'s cells.
fn start_targets(
    sim: &children::Sim,
    pool_bin: &Path,
    lite_bin: Option<&Path>,
    threads: std::num::NonZeroUsize,
    scratch: &Path,
    w: Workload,
    notes: &mut Vec<String>,
) -> Result<Vec<Target>, String> {
    let mut targets = vec![Target::Baseline(Arc::new(Direct::new(
        &sim.base_url,
        &sim.access_token,
    )?))];
    let pool = children::start_proxy(
        pool_bin,
        sim,
        threads,
        scratch,
        &format!("cursorpool-{}", w.tag()),
    )?;
    targets.push(Target::Proxy {
        name: "cursorpool",
        proxy: pool,
    });
    if let Some(lite) = lite_bin {
        match children::start_proxy(
            lite,
            sim,
            threads,
            scratch,
            &format!("cursorpool-lite-{}", w.tag()),
        ) {
            Ok(p) => targets.push(Target::Proxy {
                name: "cursorpool-lite",
                proxy: p,
            }),
            Err(e) => {
                say(&format!("cursorpool-lite does not start: {e}"));
                notes.push(format!("cursorpool-lite did not start ({}): {e}", w.name()));
            }
        }
    }
    Ok(targets)
}

/// The pids of the proxies among `targets`.
fn targets_pids(targets: &[Target]) -> impl Iterator<Item = u32> + '_ {
    targets.iter().filter_map(Target::pid)
}

fn cmd_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| procfs::parse_status_kb(&m, "MemTotal"))
        .map_or_else(
            || "?".to_owned(),
            |kb| format!("{:.1} GiB", kb as f64 / 1_048_576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{nproc} CPUs (`nproc`), {model}, {mem} RAM, Linux {}",
        kernel.trim()
    )
}

fn write_report(
    cli: &Cli,
    cells: &[CellResult],
    mem: &[MemoryResult],
    concurrencies: &[usize],
    notes: &[String],
    wall: Duration,
) -> Result<(), String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root = root.to_string_lossy();
    let commit = cmd_output("git", &["-C", &root, "rev-parse", "--short", "HEAD"])
        .unwrap_or_else(|| "?".to_owned());
    let dirty =
        cmd_output("git", &["-C", &root, "status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let date =
        cmd_output("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"]).unwrap_or_else(|| "?".to_owned());
    let argv: Vec<String> = std::env::args().collect();
    let load = report::load_tables(cells);
    let memory = if mem.is_empty() {
        String::new()
    } else {
        report::memory_table(mem)
    };

    let mut md = String::new();
    let _ = writeln!(md, "# cursorpool end-to-end benchmark\n");
    let _ = writeln!(md, "- date: {date}");
    let _ = writeln!(md, "- machine: {}", machine());
    let _ = writeln!(
        md,
        "- git commit: `{commit}`{}",
        if dirty {
            " (working tree with uncommitted changes)"
        } else {
            ""
        }
    );
    let _ = writeln!(md, "- wall time of loadgen: {:.0} s", wall.as_secs_f64());
    let _ = writeln!(
        md,
        "- command: `{}`",
        cli.invoked_as
            .clone()
            .unwrap_or_else(|| "(loadgen run directly)".to_owned())
    );
    let _ = writeln!(md, "- loadgen: `{}`", argv.join(" "));
    let _ = writeln!(
        md,
        "- upstream: `cursor-sim --token-interval-ms 0 --print-json --threads {}` (release); proxies: `serve --listen 127.0.0.1:PORT --upstream SIM --token bench=TOKEN --memory-only --auth-dir EMPTY --log warn` (release) with {} runtime worker(s) each; loadgen's own runtime: {} worker(s)",
        cli.sim_threads, cli.proxy_threads, cli.threads
    );
    for n in notes {
        let _ = writeln!(md, "- note: {n}");
    }
    let _ = writeln!(md, "\n## Throughput and latency\n");
    let _ = writeln!(md, "{}", METHOD);
    let _ = writeln!(md, "{load}");
    if !memory.is_empty() {
        let _ = writeln!(md, "## Per binary\n");
        let _ = writeln!(md, "{MEMORY_METHOD}\n");
        let _ = writeln!(md, "{memory}");
    }
    let _ = writeln!(md, "## Plot\n\n![added TTFB](latency.svg)\n");
    std::fs::create_dir_all(&cli.out).map_err(|e| format!("{}: {e}", cli.out.display()))?;
    std::fs::write(cli.out.join("README.md"), &md).map_err(|e| e.to_string())?;
    std::fs::write(
        cli.out.join("latency.svg"),
        report::latency_svg(cells, concurrencies),
    )
    .map_err(|e| e.to_string())?;

    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{load}");
    if !memory.is_empty() {
        let _ = writeln!(out, "{memory}");
    }
    let _ = writeln!(
        out,
        "written: {}/README.md, {}/latency.svg",
        cli.out.display(),
        cli.out.display()
    );
    Ok(())
}

const METHOD: &str = "\
All times in milliseconds. Every cell runs its clients (one keep-alive HTTP/1.1 connection each; \
the baseline shares one HTTP/2 connection like the proxies do) for a bounded time, each unit a \
new conversation (distinct `metadata.user_id` session id). *baseline* drives cursorpool-core's \
`Turn` over cursorpool-tokio's h2 `Upstream` straight to the sim: its first byte is the reply's \
`Start` (streaming) or `Stop` (non-streaming), its last byte the `Stop`. *+TTFB/+TTLB* = proxy \
percentile − baseline percentile of the same workload and concurrency. A tool round trip counts \
two requests (tool_use answer, then the answer after the tool_result; the baseline resumes \
the parked turn at once). *CPU s / 1k req* = the proxy's utime+stime delta over the cell \
(`/proc/PID/stat`, CLK_TCK 100) per 1,000 successful requests; *CPU µs / frame* = the same \
CPU time per upstream frame relayed (server messages the sim sent during the cell, from its \
counters: text and token deltas, heartbeats, checkpoints, KV and exec messages); *CPU proxy / \
sim / loadgen* = each process's CPU time over the cell as a share of one core (200% = both \
cores of this machine), which shows where the machine's CPU went and who limited the cell. Each workload starts a fresh \
sim and fresh proxies (what one workload stored never weighs on the next), whose cells then \
run in the order of the table on the same processes. *peak RSS* = the proxy's VmHWM since its \
start (so it only grows down a workload's table: every conversation a cell made stays in the \
proxy's store, bounded by its byte budget and TTL). The sim, the load generator and the proxy share \
the same cores, so absolute figures are lower bounds of what the proxy alone could do. \
Unpaced cells saturate the machine (each client starts its next unit as soon as the last \
ended), so their latencies at 64 and 1,000 are mostly queueing: the slower target waits longer \
for the same cores. A *paced* cell (`64 @ R/s`, with `--paced-load`) starts units on a fixed \
schedule, R per second over all clients, R being a share of the slowest target's saturated \
rate at that concurrency in the same run: a load every target carries. Its added latency is \
what the proxy itself adds with that many conversations in flight. A paced cell runs as \
interleaved rounds (`--paced-rounds`, each target in turn for its share of the cell), pooled \
per target, so a hiccup of the shared machine falls on every target alike.
";

const MEMORY_METHOD: &str = "\
Measured on a fresh process of each binary: *idle RSS* is VmRSS after start-up and one short \
request; then conversations are parked (each a distinct session whose request ends with \
`stop_reason: tool_use` and gets no follow-up; the upstream run stays open), and VmRSS is read \
again. *per parked conversation* = (parked RSS − idle RSS) / parked. The file size is of the \
release binary as built (`debug = \"line-tables-only\"`, not stripped).";
