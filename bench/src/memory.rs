//! Per-binary figures: file size, idle RSS, and RSS with many conversations parked on a tool
//! call — measured on a fresh process so the load cells do not colour them.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cell::{Target, check, session};
use crate::children::{self, Sim};
use crate::client::Client;
use crate::procfs;
use crate::workload::Workload;

/// What was measured for one binary.
#[derive(Debug, Clone)]
pub(crate) struct MemoryResult {
    /// Binary name.
    pub(crate) name: &'static str,
    /// Size of the release binary file in bytes.
    pub(crate) file_size: Option<u64>,
    /// `VmRSS` after start-up and one request.
    pub(crate) idle_rss: Option<u64>,
    /// `VmRSS` with the conversations parked.
    pub(crate) parked_rss: Option<u64>,
    /// How many conversations were parked (asked for: `wanted`).
    pub(crate) parked: u64,
    /// How many were asked for.
    pub(crate) wanted: u64,
    /// The first failure, if any.
    pub(crate) error: Option<String>,
}

impl MemoryResult {
    /// `(parked − idle) / parked` in bytes.
    pub(crate) fn per_parked(&self) -> Option<f64> {
        let (idle, parked) = (self.idle_rss?, self.parked_rss?);
        if self.parked == 0 {
            return None;
        }
        #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
        Some((parked as f64 - idle as f64) / self.parked as f64)
    }
}

/// Starts `bin`, measures it, stops it.
pub(crate) async fn measure(
    name: &'static str,
    bin: &Path,
    sim: &Sim,
    threads: NonZeroUsize,
    scratch: &Path,
    wanted: u64,
    timeout: Duration,
) -> MemoryResult {
    let mut r = MemoryResult {
        name,
        file_size: std::fs::metadata(bin).ok().map(|m| m.len()),
        idle_rss: None,
        parked_rss: None,
        parked: 0,
        wanted,
        error: None,
    };
    let proxy = match children::start_proxy(bin, sim, threads, scratch, &format!("{name}-memory")) {
        Ok(p) => p,
        Err(e) => {
            r.error = Some(e);
            return r;
        }
    };
    let target = Target::Proxy {
        name,
        proxy: proxy.clone(),
    };
    let mut client = Client::new(proxy.addr);
    if let Err(e) = crate::cell::unit(&target, Some(&mut client), Workload::Short, timeout).await {
        r.error = Some(format!("first request: {e}"));
    }
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    r.idle_rss = procfs::mem_bytes(proxy.pid, "VmRSS");

    // Park `wanted` conversations, 64 at a time, within a bounded time (longer for big counts:
    // every parked run keeps heartbeating, which slows the next parks down).
    let next = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(120.max(wanted / 40));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let next = next.clone();
        let addr = proxy.addr;
        tasks.push(tokio::spawn(async move {
            let mut client = Client::new(addr);
            let (mut ok, mut err) = (0u64, None);
            while Instant::now() < deadline && next.fetch_add(1, Ordering::Relaxed) < wanted {
                let body = Workload::ToolRoundTrip.request(&session("park"));
                match client.post(body, timeout).await {
                    Ok(a) => match check(&a, false, Some("tool_use")) {
                        Ok(_) => ok += 1,
                        Err(e) => {
                            err.get_or_insert(e);
                        }
                    },
                    Err(e) => {
                        err.get_or_insert(e);
                    }
                }
            }
            (ok, err)
        }));
    }
    for t in tasks {
        if let Ok((ok, err)) = t.await {
            r.parked += ok;
            if r.error.is_none() {
                r.error = err;
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    r.parked_rss = procfs::mem_bytes(proxy.pid, "VmRSS");
    children::kill(proxy.pid);
    r
}
