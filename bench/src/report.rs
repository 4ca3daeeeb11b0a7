//! The report: Markdown tables (README.md and stdout) and a hand-written SVG of the added
//! time to first byte against concurrency.

use std::fmt::Write as _;
use std::time::Duration;

use crate::cell::CellResult;
use crate::memory::MemoryResult;
use crate::stats::{Quantiles, diff_ms, ms};
use crate::workload::Workload;

/// The proxies, in report order, and their plot colours.
const PROXIES: [(&str, &str); 2] = [("cursorpool", "#1f77b4"), ("cursorpool-lite", "#ff7f0e")];

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".to_owned(), |d| format!("{:.2}", ms(d)))
}

fn opt_f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
}

/// Bytes as MiB.
pub(crate) fn mib(b: Option<u64>) -> String {
    #[expect(clippy::cast_precision_loss, reason = "byte counts far below 2^52")]
    b.map_or_else(
        || "—".to_owned(),
        |b| format!("{:.1} MiB", b as f64 / 1_048_576.0),
    )
}

/// A cell's concurrency as the tables show it: `64`, or `64 @ 1000/s` when paced.
fn conc_label(c: &CellResult) -> String {
    match c.rate {
        Some(r) => format!(
            "{} @ {:.0}/s",
            c.concurrency,
            r * f64::from(c.workload.requests_per_unit())
        ),
        None => c.concurrency.to_string(),
    }
}

/// Per-cell figures derived for the tables and the plot.
#[derive(Debug, Clone)]
struct Row<'a> {
    cell: &'a CellResult,
    ttfb: Quantiles,
    ttlb: Quantiles,
    added_ttfb: (Option<f64>, Option<f64>),
    added_ttlb: (Option<f64>, Option<f64>),
}

fn rows(cells: &[CellResult]) -> Vec<Row<'_>> {
    cells
        .iter()
        .map(|c| {
            let ttfb = Quantiles::of(&c.ttfb);
            let ttlb = Quantiles::of(&c.ttlb);
            let base = cells.iter().find(|b| {
                b.target == "baseline"
                    && b.workload == c.workload
                    && b.concurrency == c.concurrency
                    && b.rate == c.rate
            });
            let (added_ttfb, added_ttlb) = match base {
                Some(b) if c.target != "baseline" => {
                    let (bf, bl) = (Quantiles::of(&b.ttfb), Quantiles::of(&b.ttlb));
                    (
                        (diff_ms(ttfb.p50, bf.p50), diff_ms(ttfb.p99, bf.p99)),
                        (diff_ms(ttlb.p50, bl.p50), diff_ms(ttlb.p99, bl.p99)),
                    )
                }
                _ => ((None, None), (None, None)),
            };
            Row {
                cell: c,
                ttfb,
                ttlb,
                added_ttfb,
                added_ttlb,
            }
        })
        .collect()
}

/// The load tables, one per workload.
pub(crate) fn load_tables(cells: &[CellResult]) -> String {
    let rows = rows(cells);
    let mut s = String::new();
    for w in Workload::ALL {
        let mine: Vec<&Row<'_>> = rows.iter().filter(|r| r.cell.workload == w).collect();
        if mine.is_empty() {
            continue;
        }
        let _ = writeln!(s, "### {}\n", w.name());
        let _ = writeln!(
            s,
            "| conc | target | ok | err | req/s | TTFB p50 | TTFB p99 | TTLB p50 | TTLB p99 | +TTFB p50 | +TTFB p99 | +TTLB p50 | +TTLB p99 | CPU s / 1k req | CPU µs / frame | CPU proxy / sim / loadgen | peak RSS |"
        );
        let _ = writeln!(
            s,
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in mine {
            let c = r.cell;
            #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
            let rps = c.ok as f64 / c.elapsed.as_secs_f64().max(1e-9);
            #[expect(clippy::cast_precision_loss, reason = "request counts far below 2^52")]
            let cpu_k = c
                .cpu_secs
                .filter(|_| c.ok > 0)
                .map(|cpu| cpu / c.ok as f64 * 1000.0);
            #[expect(clippy::cast_precision_loss, reason = "frame counts far below 2^52")]
            let cpu_frame = c
                .cpu_secs
                .zip(c.frames.filter(|f| *f > 0))
                .map(|(cpu, f)| cpu * 1e6 / f as f64);
            let wall = c.elapsed.as_secs_f64().max(1e-9);
            let share = |v: Option<f64>| {
                v.map_or_else(|| "—".to_owned(), |v| format!("{:.0}%", v / wall * 100.0))
            };
            let split = format!(
                "{} / {} / {}",
                share(c.cpu_secs),
                share(c.sim_cpu_secs),
                share(c.loadgen_cpu_secs)
            );
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                conc_label(c),
                c.target,
                c.ok,
                c.errors,
                rps,
                opt_ms(r.ttfb.p50),
                opt_ms(r.ttfb.p99),
                opt_ms(r.ttlb.p50),
                opt_ms(r.ttlb.p99),
                opt_f(r.added_ttfb.0, 2),
                opt_f(r.added_ttfb.1, 2),
                opt_f(r.added_ttlb.0, 2),
                opt_f(r.added_ttlb.1, 2),
                opt_f(cpu_k, 3),
                opt_f(cpu_frame, 2),
                split,
                if c.target == "baseline" {
                    "—".to_owned()
                } else {
                    mib(c.peak_rss)
                },
            );
        }
        let errors: Vec<String> = cells
            .iter()
            .filter(|c| c.workload == w)
            .filter_map(|c| {
                c.first_error.as_ref().map(|e| {
                    format!(
                        "- {} c={}: {}",
                        c.target,
                        conc_label(c),
                        e.replace('\n', " ")
                    )
                })
            })
            .collect();
        if !errors.is_empty() {
            let _ = writeln!(
                s,
                "\nFirst error per failing cell:\n\n{}",
                errors.join("\n")
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// The per-binary memory table.
pub(crate) fn memory_table(mem: &[MemoryResult]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| binary | file size | idle RSS (start-up + 1 request) | RSS with parked conversations | parked | RSS per parked conversation |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for m in mem {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} / {} | {} |",
            m.name,
            mib(m.file_size),
            mib(m.idle_rss),
            mib(m.parked_rss),
            m.parked,
            m.wanted,
            m.per_parked()
                .map_or_else(|| "—".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
        );
    }
    let errs: Vec<String> = mem
        .iter()
        .filter_map(|m| m.error.as_ref().map(|e| format!("- {}: {e}", m.name)))
        .collect();
    if !errs.is_empty() {
        let _ = writeln!(s, "\nErrors:\n\n{}", errs.join("\n"));
    }
    s
}

/// An SVG with one panel per workload: added TTFB p50 (solid) and p99 (dashed) in ms against
/// concurrency, one colour per proxy.
pub(crate) fn latency_svg(cells: &[CellResult], concurrencies: &[usize]) -> String {
    let rows = rows(cells);
    let (pw, ph) = (420.0_f64, 260.0_f64);
    let (ml, mr, mt, mb) = (60.0, 15.0, 34.0, 40.0);
    let width = pw * 2.0;
    let height = ph * 2.0 + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, w) in Workload::ALL.iter().enumerate() {
        #[expect(clippy::cast_precision_loss, reason = "tiny indices")]
        let (ox, oy) = ((i % 2) as f64 * pw, (i / 2) as f64 * ph);
        let (x0, x1, y0, y1) = (ox + ml, ox + pw - mr, oy + mt, oy + ph - mb);
        // Series: (proxy, colour, p99?) → points (concurrency index, ms).
        let mut series: Vec<Series<'_>> = Vec::new();
        for (name, colour) in PROXIES {
            for p99 in [false, true] {
                let pts: Vec<(usize, f64)> = concurrencies
                    .iter()
                    .enumerate()
                    .filter_map(|(ci, &c)| {
                        let r = rows.iter().find(|r| {
                            r.cell.workload == *w
                                && r.cell.concurrency == c
                                && r.cell.rate.is_none()
                                && r.cell.target == name
                        })?;
                        Some((
                            ci,
                            if p99 {
                                r.added_ttfb.1?
                            } else {
                                r.added_ttfb.0?
                            },
                        ))
                    })
                    .collect();
                if !pts.is_empty() {
                    series.push((name, colour, p99, pts));
                }
            }
        }
        let all: Vec<f64> = series
            .iter()
            .flat_map(|s| s.3.iter().map(|p| p.1))
            .collect();
        let lo = all.iter().copied().fold(0.0_f64, f64::min);
        let hi = all.iter().copied().fold(0.0_f64, f64::max).max(lo + 0.1) * 1.1;
        let ys = |v: f64| y1 - (v - lo) / (hi - lo) * (y1 - y0);
        #[expect(clippy::cast_precision_loss, reason = "tiny indices")]
        let xs = |ci: usize| {
            let n = concurrencies.len().max(2) as f64 - 1.0;
            x0 + 20.0 + ci as f64 / n * (x1 - x0 - 40.0)
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" font-size="13" font-weight="bold">{}</text>"#,
            x0,
            oy + 20.0,
            xml(w.name())
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            x1 - x0,
            y1 - y0
        );
        for k in 0..=4 {
            let v = lo + (hi - lo) * f64::from(k) / 4.0;
            let y = ys(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{v:.1}</text>"##,
                x0 - 4.0,
                y + 4.0
            );
        }
        if lo < 0.0 {
            let y = ys(0.0);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="#666"/>"##
            );
        }
        for (ci, c) in concurrencies.iter().enumerate() {
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{c}</text>"#,
                xs(ci),
                y1 + 14.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">concurrency</text>"#,
            (x0 + x1) / 2.0,
            y1 + 28.0
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate({},{:.1}) rotate(-90)" text-anchor="middle">added TTFB (ms)</text>"#,
            ox + 14.0,
            (y0 + y1) / 2.0
        );
        for (_, colour, p99, pts) in &series {
            let d: Vec<String> = pts
                .iter()
                .map(|&(ci, v)| format!("{:.1},{:.1}", xs(ci), ys(v)))
                .collect();
            let dash = if *p99 {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>"#,
                d.join(" ")
            );
            for &(ci, v) in pts {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                    xs(ci),
                    ys(v)
                );
            }
        }
    }
    // Legend.
    let ly = height - 18.0;
    let mut lx = 60.0;
    for (name, colour) in PROXIES {
        for p99 in [false, true] {
            let dash = if p99 {
                r#" stroke-dasharray="5,3""#
            } else {
                ""
            };
            let label = format!("{name} {}", if p99 { "p99" } else { "p50" });
            let _ = writeln!(
                s,
                r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                lx + 24.0,
                lx + 28.0,
                ly + 4.0,
                xml(&label)
            );
            lx += 190.0;
        }
    }
    let _ = writeln!(s, "</svg>");
    s
}

/// One plotted line: proxy, colour, whether p99, points (concurrency index, ms).
type Series<'a> = (&'a str, &'a str, bool, Vec<(usize, f64)>);

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
