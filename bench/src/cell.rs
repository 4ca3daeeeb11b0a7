//! One measured cell: a target × workload × concurrency, bounded by a duration and a count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::baseline::Direct;
use crate::children::Proxy;
use crate::client::{Answer, Client};
use crate::procfs;
use crate::workload::{Workload, tool_followup};

/// Where requests go.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// Straight to the sim with Cursor's protocol.
    Baseline(Arc<Direct>),
    /// Through a proxy binary.
    Proxy {
        /// Its name in the report.
        name: &'static str,
        /// The running process.
        proxy: Proxy,
    },
}

impl Target {
    /// The name in the report.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Target::Baseline(_) => "baseline",
            Target::Proxy { name, .. } => name,
        }
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Target::Baseline(_) => None,
            Target::Proxy { proxy, .. } => Some(proxy.pid),
        }
    }
}

/// Bounds of one cell.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    /// No unit starts after this long.
    pub(crate) duration: Duration,
    /// No more units than this (a unit is a request, or a tool round trip).
    pub(crate) max_units: u64,
    /// Bound on each request.
    pub(crate) request_timeout: Duration,
    /// Units started per second over all clients (`None`: each client starts its next unit
    /// as soon as the last one ended, which saturates the machine).
    pub(crate) rate: Option<f64>,
}

/// What a cell measured.
#[derive(Debug, Clone)]
pub(crate) struct CellResult {
    /// Target name.
    pub(crate) target: &'static str,
    /// Workload.
    pub(crate) workload: Workload,
    /// Concurrent clients.
    pub(crate) concurrency: usize,
    /// The paced rate of units per second, if the cell was paced.
    pub(crate) rate: Option<f64>,
    /// Successful requests (a tool round trip counts two).
    pub(crate) ok: u64,
    /// Failed requests (or round trips).
    pub(crate) errors: u64,
    /// The first failure, for the report.
    pub(crate) first_error: Option<String>,
    /// Wall time from the first start to the last answer.
    pub(crate) elapsed: Duration,
    /// Time to first byte of every successful request.
    pub(crate) ttfb: Vec<Duration>,
    /// Time to last byte of every successful request.
    pub(crate) ttlb: Vec<Duration>,
    /// When the unit of every successful request started (for `--samples-dir`: stalls show
    /// as slow requests bunched in time).
    pub(crate) starts: Vec<Instant>,
    /// CPU seconds the proxy process used during the cell.
    pub(crate) cpu_secs: Option<f64>,
    /// The proxy process's peak RSS (`VmHWM`, since its start) after the cell, in bytes.
    pub(crate) peak_rss: Option<u64>,
    /// Server messages the sim sent during the cell (every upstream frame the target relayed).
    pub(crate) frames: Option<u64>,
    /// CPU seconds the sim used during the cell.
    pub(crate) sim_cpu_secs: Option<f64>,
    /// CPU seconds the load generator (this process: clients, and the baseline's own turn
    /// machine) used during the cell.
    pub(crate) loadgen_cpu_secs: Option<f64>,
}

impl CellResult {
    /// Units completed per second over the cell (`ok` counts requests: a tool round trip
    /// is two).
    pub(crate) fn units_per_sec(&self) -> f64 {
        #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
        let ok = self.ok as f64;
        ok / f64::from(self.workload.requests_per_unit()) / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Adds `other`, a later round of the same target, workload and concurrency: counts,
    /// samples, elapsed and CPU times add up; the peak RSS is the later one (it only grows).
    pub(crate) fn absorb(&mut self, other: CellResult) {
        fn add(a: Option<f64>, b: Option<f64>) -> Option<f64> {
            a.zip(b).map(|(a, b)| a + b)
        }
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed += other.elapsed;
        self.ttfb.extend(other.ttfb);
        self.ttlb.extend(other.ttlb);
        self.starts.extend(other.starts);
        self.cpu_secs = add(self.cpu_secs, other.cpu_secs);
        self.peak_rss = other.peak_rss.or(self.peak_rss);
        self.frames = self.frames.zip(other.frames).map(|(a, b)| a + b);
        self.sim_cpu_secs = add(self.sim_cpu_secs, other.sim_cpu_secs);
        self.loadgen_cpu_secs = add(self.loadgen_cpu_secs, other.loadgen_cpu_secs);
    }
}

/// Server messages the sim at `sim` has sent so far (`total.messages_out` of its counters).
async fn sim_frames(sim: std::net::SocketAddr) -> Option<u64> {
    let v = crate::client::get_json(sim, "/__sim/counters").await.ok()?;
    v["total"]["messages_out"].as_u64()
}

/// Session ids: unique in the whole run, so every unit is a new conversation.
static SESSIONS: AtomicU64 = AtomicU64::new(1);

/// A fresh session id.
pub(crate) fn session(tag: &str) -> String {
    format!("bench-{tag}-{}", SESSIONS.fetch_add(1, Ordering::Relaxed))
}

/// Samples of one unit: `(ttfb, ttlb)` per successful request.
type Samples = Vec<(Duration, Duration)>;
/// Samples of one client: `(unit start, ttfb, ttlb)` per successful request.
type Timed = Vec<(Instant, Duration, Duration)>;

/// Runs one cell.
pub(crate) async fn run_cell(
    target: &Target,
    workload: Workload,
    concurrency: usize,
    bounds: Bounds,
    sim: &crate::children::Sim,
) -> CellResult {
    let pid = target.pid();
    let frames0 = sim_frames(sim.addr).await;
    let cpu0 = pid.and_then(procfs::cpu_secs);
    let sim0 = procfs::cpu_secs(sim.pid);
    let me0 = procfs::cpu_secs(std::process::id());
    let started = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let deadline = t0 + bounds.duration;
    let mut tasks = Vec::with_capacity(concurrency);
    for i in 0..concurrency {
        let target = target.clone();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = match &target {
                Target::Proxy { proxy, .. } => Some(Client::new(proxy.addr)),
                Target::Baseline(_) => None,
            };
            let mut samples: Timed = Vec::new();
            let mut errors = 0u64;
            let mut first_error = None;
            let mut k = 0u32;
            while Instant::now() < deadline
                && started.fetch_add(1, Ordering::Relaxed) < bounds.max_units
            {
                // Paced: this client's k-th unit has its slot in the cell's schedule (a late
                // unit starts at once: the backlog shows in its latency, as for a real user).
                if let Some(rate) = bounds.rate {
                    let slot = (f64::from(k) * concurrency as f64 + i as f64) / rate;
                    tokio::time::sleep_until((t0 + Duration::from_secs_f64(slot)).into()).await;
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                k += 1;
                let start = Instant::now();
                match unit(&target, client.as_mut(), workload, bounds.request_timeout).await {
                    Ok(s) => samples.extend(s.into_iter().map(|(a, b)| (start, a, b))),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (samples, errors, first_error)
        }));
    }
    let mut result = CellResult {
        target: target.name(),
        workload,
        concurrency,
        rate: bounds.rate,
        ok: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        ttfb: Vec::new(),
        ttlb: Vec::new(),
        starts: Vec::new(),
        cpu_secs: None,
        peak_rss: None,
        frames: None,
        sim_cpu_secs: None,
        loadgen_cpu_secs: None,
    };
    for t in tasks {
        match t.await {
            Ok((samples, errors, first_error)) => {
                result.ok += samples.len() as u64;
                result.errors += errors;
                if result.first_error.is_none() {
                    result.first_error = first_error;
                }
                for (start, a, b) in samples {
                    result.starts.push(start);
                    result.ttfb.push(a);
                    result.ttlb.push(b);
                }
            }
            Err(e) => {
                result.errors += 1;
                result.first_error.get_or_insert(format!("worker: {e}"));
            }
        }
    }
    result.elapsed = t0.elapsed();
    let cpu1 = pid.and_then(procfs::cpu_secs);
    result.cpu_secs = cpu0.zip(cpu1).map(|(a, b)| b - a);
    result.peak_rss = pid.and_then(|p| procfs::mem_bytes(p, "VmHWM"));
    let (sim1, me1) = (
        procfs::cpu_secs(sim.pid),
        procfs::cpu_secs(std::process::id()),
    );
    result.sim_cpu_secs = sim0.zip(sim1).map(|(a, b)| b - a);
    result.loadgen_cpu_secs = me0.zip(me1).map(|(a, b)| b - a);
    let frames1 = sim_frames(sim.addr).await;
    result.frames = frames0.zip(frames1).map(|(a, b)| b.saturating_sub(a));
    result
}

/// One unit of `workload` against `target`.
pub(crate) async fn unit(
    target: &Target,
    client: Option<&mut Client>,
    workload: Workload,
    timeout: Duration,
) -> Result<Samples, String> {
    let session = session(target.name());
    let body = workload.request(&session);
    match (target, client) {
        (Target::Baseline(direct), _) => {
            let replies = direct.run(&body, timeout).await?;
            let want = workload.requests_per_unit() as usize;
            if replies.len() != want {
                return Err(format!("{} replies, expected {want}", replies.len()));
            }
            Ok(replies.iter().map(|r| (r.ttfb, r.ttlb)).collect())
        }
        (Target::Proxy { .. }, Some(client)) => {
            let a = client.post(body, timeout).await?;
            if workload != Workload::ToolRoundTrip {
                check(&a, workload.streams(), None)?;
                return Ok(vec![(a.ttfb, a.ttlb)]);
            }
            let first = check(&a, false, Some("tool_use"))?;
            let follow = tool_followup(&session, &first["content"]);
            let b = client.post(follow, timeout).await?;
            check(&b, false, Some("end_turn"))?;
            Ok(vec![(a.ttfb, a.ttlb), (b.ttfb, b.ttlb)])
        }
        (Target::Proxy { .. }, None) => Err("no client".to_owned()),
    }
}

/// Checks an answer: 200, a complete SSE stream or a message JSON with the expected
/// `stop_reason`. Returns the JSON of a non-streaming answer.
pub(crate) fn check(a: &Answer, streams: bool, stop: Option<&str>) -> Result<Value, String> {
    let snippet = || String::from_utf8_lossy(&a.body[..a.body.len().min(300)]).into_owned();
    if a.status != 200 {
        return Err(format!("HTTP {}: {}", a.status, snippet()));
    }
    if streams {
        let text = String::from_utf8_lossy(&a.body);
        if !text.contains("event: message_stop") {
            // The end says why (an `error` event after the first byte).
            let tail = &a.body[a.body.len().saturating_sub(300)..];
            return Err(format!(
                "stream without message_stop, ending: {}",
                String::from_utf8_lossy(tail)
            ));
        }
        return Ok(Value::Null);
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("{e}: {}", snippet()))?;
    if v["type"] != "message" {
        return Err(format!("not a message: {}", snippet()));
    }
    if let Some(stop) = stop
        && v["stop_reason"] != stop
    {
        return Err(format!(
            "stop_reason {} (expected {stop})",
            v["stop_reason"]
        ));
    }
    Ok(v)
}
