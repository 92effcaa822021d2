//! `sim`: deterministic synthetic metrics with labelled anomalies.
//!
//! Every value is a pure function of (seed, series name, timestamp), so any two
//! queries over overlapping ranges agree, and a test can ask for exactly the
//! anomaly it expects. The query is a preset name (`cpu`, `memory-leak`,
//! `latency-spikes`, `traffic-shift`, `flat`) or a JSON [`Spec`]. Injected
//! anomalies are returned as events labelled `anomaly=<kind>` (ground truth).
//! A preset's metric name (`cpu_usage_percent`, `process_resident_memory_bytes`,
//! `http_request_duration_seconds`, `http_requests_per_second`) selects it too.

use serde::Deserialize;
use std::collections::BTreeMap;
use vigil_plugin_sdk::{
    Batch, Capability, Connector, Error, Event, Info, Plugin, Result, Series, TimeRange,
    export_plugin, json,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Seed of the noise and spike placement.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Default sample interval when the range gives no step.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    /// Where presets place their anomalies: `anchor_ms + offset`.
    #[serde(default = "default_anchor")]
    pub anchor_ms: i64,
    /// The caller's clock minus the sim's own: what the caller sees at `t` is the sim
    /// at `t − clock_offset_ms` (its days, noise and failure draws), stamped back on the
    /// caller's clock. `vigil demo` sets it so each run's story falls on the same
    /// simulated day and hour: the same data, run after run, whatever the wall clock.
    /// JSON specs in a query are read on the sim's clock. A multiple of the sample
    /// step keeps the sim's sample grid on the caller's.
    #[serde(default)]
    pub clock_offset_ms: i64,
    /// The fleet's supervisor (`vigil demo` runs one): the fleet asks it what was done
    /// to its services — a restart ends a leak, a database failover ends the latency
    /// cascade — so remediation shows in the metrics. Needs an `http` GET grant.
    #[serde(default)]
    pub supervisor: Option<String>,
}

/// What the supervisor reports having done to a service (times on the caller's clock,
/// i.e. vigil's).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Interventions {
    #[serde(default)]
    pub restarted_at_ms: Option<i64>,
    #[serde(default)]
    pub failed_over_at_ms: Option<i64>,
    /// The host was drained (its load moved away): a failure it was heading for
    /// does not happen.
    #[serde(default)]
    pub drained_at_ms: Option<i64>,
}

/// Asks the supervisor about every fleet service; an unreachable one changes nothing.
fn interventions(cfg: &Config) -> BTreeMap<String, Interventions> {
    let Some(base) = &cfg.supervisor else {
        return BTreeMap::new();
    };
    FLEET
        .iter()
        .filter_map(|name| {
            let resp = vigil_plugin_sdk::http::get(&format!("{base}/services/{name}")).ok()?;
            let i: Interventions = vigil_plugin_sdk::serde_json::from_str(&resp.text()).ok()?;
            Some((name.to_string(), i))
        })
        .collect()
}

/// The supervisor's times (on the caller's clock) on the sim's.
fn on_sim_clock(
    mut done: BTreeMap<String, Interventions>,
    offset: i64,
) -> BTreeMap<String, Interventions> {
    for i in done.values_mut() {
        for at in [
            &mut i.restarted_at_ms,
            &mut i.failed_over_at_ms,
            &mut i.drained_at_ms,
        ]
        .into_iter()
        .flatten()
        {
            *at = at.saturating_sub(offset);
        }
    }
    done
}

/// A batch generated on the sim's clock, stamped on the caller's.
fn on_caller_clock(mut batch: Batch, offset: i64) -> Batch {
    for s in &mut batch.series {
        for p in &mut s.samples {
            p.timestamp = p.timestamp.saturating_add(offset);
        }
    }
    for e in &mut batch.events {
        e.timestamp = e.timestamp.saturating_add(offset);
    }
    batch
}

/// Applies what was done to the fleet: a restart ends `checkout`'s leak (memory is
/// back to its base from then on); a failover of `postgres` ends the slowdown of it
/// and of its dependents.
pub fn apply(specs: &mut [Spec], done: &BTreeMap<String, Interventions>) {
    let failover = done.get("postgres").and_then(|i| i.failed_over_at_ms);
    for s in specs {
        let service = s.labels.get("service").cloned().unwrap_or_default();
        if let (Some(f), Some(at)) = (
            &mut s.failures,
            done.get(&service).and_then(|i| i.drained_at_ms),
        ) {
            f.averted_from = Some(at);
        }
        if let (Some(leak), Some(at)) = (
            &mut s.leak,
            done.get(&service).and_then(|i| i.restarted_at_ms),
        ) && at > leak.start
        {
            leak.until = Some(at);
        }
        if let Some(at) = failover
            && s.name == "http_request_duration_seconds"
        {
            // The cascade's shifts are (start, +d), (end, -d): end them at the failover;
            // a failover before a service slowed down spares it altogether.
            if s.level_shifts.len() == 2 && s.level_shifts[1].at > at {
                if at <= s.level_shifts[0].at {
                    s.level_shifts.clear();
                } else {
                    s.level_shifts[1].at = at;
                }
            }
        }
    }
}

fn default_seed() -> u64 {
    42
}
fn default_interval() -> u64 {
    60_000
}
fn default_anchor() -> i64 {
    1_700_000_000_000
}

const HOUR: f64 = 3_600_000.0;
const MAX_POINTS: u64 = 200_000;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seasonality {
    pub period_ms: u64,
    pub amplitude: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leak {
    pub start: i64,
    /// Growth per hour after `start`.
    pub per_hour: f64,
    /// The leak ends here (a restart): the value is back to its base from then on.
    #[serde(default)]
    pub until: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spikes {
    /// Probability that a given sample (on the interval grid) is a spike.
    pub rate: f64,
    pub amplitude: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    pub at: i64,
    pub delta: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bursts {
    /// One chance per slot of this length…
    pub every_ms: i64,
    /// …with this probability, at a pseudo-random offset within the slot.
    pub chance: f64,
    pub duration_ms: i64,
    pub delta: f64,
}

/// When a host fails and what its metrics do before and during: each metric of one
/// host names the same `host`, so they share the failure times. Random failures
/// happen everywhere but in `quiet` (`[from, until)`: the stage of a scripted story,
/// where only the failures at `at` happen).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failures {
    pub host: String,
    pub every_ms: i64,
    pub chance: f64,
    #[serde(default)]
    pub quiet: Option<(i64, i64)>,
    #[serde(default)]
    pub at: Vec<i64>,
    /// The precursor ramps from 0 to `precursor` over `lead_ms` before a failure.
    pub lead_ms: i64,
    pub precursor: f64,
    /// During the outage after a failure the value moves by `outage`.
    pub outage_ms: i64,
    pub outage: f64,
    /// The host was drained here: failures from then on do not happen, and their
    /// precursors stop.
    #[serde(default)]
    pub averted_from: Option<i64>,
}

impl Failures {
    /// The failure times whose precursor or outage may touch `[from, to]`, in order.
    pub fn times(&self, seed: u64, from: i64, to: i64) -> Vec<i64> {
        let mut out = Vec::new();
        if self.every_ms > 0 {
            let first = (from - self.outage_ms).div_euclid(self.every_ms);
            let last = (to + self.lead_ms).div_euclid(self.every_ms);
            for slot in first..=last {
                let h = key(seed, &self.host, 5, slot);
                if unit(h) < self.chance {
                    let offset = (unit(mix(h)) * self.every_ms as f64) as i64;
                    let t = slot * self.every_ms + offset;
                    if self.quiet.is_none_or(|(a, b)| t < a || t >= b) {
                        out.push(t);
                    }
                }
            }
        }
        out.extend(self.at.iter().copied());
        out.retain(|&f| f + self.outage_ms >= from && f - self.lead_ms <= to);
        out.sort_unstable();
        out
    }

    /// Whether the failure due at `f` happens (no drain before it).
    pub fn happens(&self, f: i64) -> bool {
        self.averted_from.is_none_or(|d| d > f)
    }

    /// What failures add to the value at `t`.
    fn effect(&self, seed: u64, t: i64) -> f64 {
        let mut v = 0.0;
        for f in self.times(seed, t, t) {
            if t < f {
                // The precursor, unless the host was drained before now.
                if self.averted_from.is_none_or(|d| t < d) && self.lead_ms > 0 {
                    let into = (t - (f - self.lead_ms)) as f64 / self.lead_ms as f64;
                    v += self.precursor * into.clamp(0.0, 1.0);
                }
            } else if self.happens(f) && t < f + self.outage_ms {
                v += self.outage;
            }
        }
        v
    }
}

/// One synthetic series.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub base: f64,
    /// Standard deviation of Gaussian noise.
    #[serde(default)]
    pub noise: f64,
    #[serde(default)]
    pub seasonality: Vec<Seasonality>,
    /// Linear trend per hour since the Unix epoch offset `trend_from`.
    #[serde(default)]
    pub trend_per_hour: f64,
    #[serde(default)]
    pub trend_from: i64,
    #[serde(default)]
    pub leak: Option<Leak>,
    #[serde(default)]
    pub spikes: Option<Spikes>,
    #[serde(default)]
    pub level_shifts: Vec<Shift>,
    /// Plateaus at pseudo-random times that are not anomalies (a nightly backup's
    /// disk I/O): what a one-metric threshold mistakes for trouble.
    #[serde(default)]
    pub bursts: Option<Bursts>,
    /// A host's failures, each announced by a precursor ramp.
    #[serde(default)]
    pub failures: Option<Failures>,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

/// The built-in scenarios, anomalies placed relative to `anchor`.
pub fn preset(name: &str, anchor: i64) -> Option<Spec> {
    let day = 86_400_000;
    let mut s = Spec {
        name: name.replace('-', "_"),
        ..Spec::default()
    };
    s.labels.insert("scenario".into(), name.into());
    match name {
        "cpu" => {
            s.name = "cpu_usage_percent".into();
            s.base = 40.0;
            s.noise = 2.0;
            s.seasonality = vec![Seasonality {
                period_ms: day,
                amplitude: 15.0,
            }];
            s.spikes = Some(Spikes {
                rate: 0.002,
                amplitude: 45.0,
            });
            s.min = Some(0.0);
            s.max = Some(100.0);
        }
        "memory-leak" => {
            s.name = "process_resident_memory_bytes".into();
            s.base = 5.0e8;
            s.noise = 5.0e6;
            s.seasonality = vec![Seasonality {
                period_ms: day,
                amplitude: 2.0e7,
            }];
            s.leak = Some(Leak {
                start: anchor + 6 * 3_600_000,
                per_hour: 1.0e8,
                until: None,
            });
            s.min = Some(0.0);
        }
        "latency-spikes" => {
            s.name = "http_request_duration_seconds".into();
            s.base = 0.12;
            s.noise = 0.01;
            s.spikes = Some(Spikes {
                rate: 0.01,
                amplitude: 1.5,
            });
            s.min = Some(0.0);
        }
        "traffic-shift" => {
            s.name = "http_requests_per_second".into();
            s.base = 800.0;
            s.noise = 20.0;
            s.seasonality = vec![
                Seasonality {
                    period_ms: day,
                    amplitude: 300.0,
                },
                Seasonality {
                    period_ms: 7 * day,
                    amplitude: 100.0,
                },
            ];
            s.trend_per_hour = 0.5;
            s.trend_from = anchor;
            s.level_shifts = vec![Shift {
                at: anchor + 12 * 3_600_000,
                delta: -500.0,
            }];
            s.min = Some(0.0);
        }
        "flat" => {
            s.name = "flat".into();
            s.base = 1.0;
        }
        _ => return None,
    }
    Some(s)
}

/// The services of the simulated shop, most upstream last: `frontend` calls
/// `checkout`, which calls `payments` and `inventory`, which share `postgres`.
pub const FLEET: &[&str] = &["frontend", "checkout", "payments", "inventory", "postgres"];

/// The fleet's series of one metric (`fleet:<metric>`): one per service, each with
/// its own level, noise and daily cycle, and the demo's story placed after `anchor`:
/// - `process_resident_memory_bytes`: `checkout` leaks from `anchor + 3 min`;
/// - `http_request_duration_seconds`: `postgres` slows down at `anchor + 14 min` (well
///   after the leak is seen and mended, so the two stay two incidents even on a slow
///   machine), and its dependents follow a minute apart (`payments`, `inventory`, then
///   `checkout`, then `frontend`), until `anchor + 45 min`;
/// - `http_requests_per_second`: daily and weekly traffic cycles, no anomaly;
/// - `node_filesystem_used_ratio`: one volume per service filling slowly.
pub fn fleet(metric: &str, anchor: i64) -> Option<Vec<Spec>> {
    let day = 86_400_000u64;
    let minute = 60_000i64;
    let known = [
        "process_resident_memory_bytes",
        "http_request_duration_seconds",
        "http_requests_per_second",
        "node_filesystem_used_ratio",
        "cpu_utilisation_percent",
        "memory_utilisation_percent",
        "disk_io_utilisation_percent",
        "http_error_ratio",
    ];
    if !known.contains(&metric) {
        return None;
    }
    let specs = FLEET
        .iter()
        .enumerate()
        .map(|(i, service)| {
            let k = i as f64;
            let mut s = Spec {
                name: metric.to_string(),
                ..Spec::default()
            };
            s.labels.insert("service".into(), (*service).into());
            s.labels.insert("instance".into(), format!("{service}-1"));
            match metric {
                "process_resident_memory_bytes" => {
                    s.base = 4.0e8 + 1.5e8 * k;
                    s.noise = 3.0e6;
                    s.seasonality = vec![Seasonality {
                        period_ms: day,
                        amplitude: 1.0e7,
                    }];
                    if *service == "checkout" {
                        s.leak = Some(Leak {
                            start: anchor + 3 * minute,
                            per_hour: 1.8e9,
                            until: None,
                        });
                    }
                    s.min = Some(0.0);
                }
                "http_request_duration_seconds" => {
                    s.base = 0.04 + 0.02 * k;
                    s.noise = 0.003;
                    let (delay, delta) = match *service {
                        "postgres" => (0, 0.40),
                        "payments" | "inventory" => (1, 0.30),
                        "checkout" => (2, 0.35),
                        _ => (3, 0.40),
                    };
                    let start = anchor + (14 + delay) * minute;
                    s.level_shifts = vec![
                        Shift { at: start, delta },
                        Shift {
                            at: anchor + 45 * minute,
                            delta: -delta,
                        },
                    ];
                    s.min = Some(0.0);
                }
                "http_requests_per_second" => {
                    s.base = 900.0 - 120.0 * k;
                    s.noise = 15.0;
                    s.seasonality = vec![
                        Seasonality {
                            period_ms: day,
                            amplitude: 250.0 - 30.0 * k,
                        },
                        Seasonality {
                            period_ms: 7 * day,
                            amplitude: 60.0,
                        },
                    ];
                    s.min = Some(0.0);
                }
                "cpu_utilisation_percent"
                | "memory_utilisation_percent"
                | "disk_io_utilisation_percent"
                | "http_error_ratio" => host_metric(&mut s, service, k, anchor),
                _ => {
                    s.labels.insert("mountpoint".into(), "/var".into());
                    s.base = 0.40 + 0.05 * k;
                    s.noise = 0.002;
                    s.trend_per_hour = 0.0005;
                    s.trend_from = anchor;
                    s.min = Some(0.0);
                    s.max = Some(1.0);
                }
            }
            s
        })
        .collect();
    Some(specs)
}

/// Fills in one of a fleet host's health metrics. Each host fails now and then
/// (every 6 h it has an even chance to), except from an hour before `anchor` to
/// three hours after — the demo's stage — where only `inventory` fails, at
/// `anchor + 40 min` (after the latency cascade). Twenty minutes before a failure its disk
/// I/O, error ratio, CPU and memory start to climb together; the failure is an outage
/// of ten minutes. Alone, each sign also comes without a failure: a nightly backup
/// saturates the disk, error bursts come and go, CPU follows the day.
fn host_metric(s: &mut Spec, service: &str, k: f64, anchor: i64) {
    let day = 86_400_000i64;
    let minute = 60_000i64;
    let mut failures = Failures {
        host: service.to_string(),
        every_ms: 6 * 3_600_000,
        chance: 0.5,
        quiet: Some((anchor - 3_600_000, anchor + 3 * 3_600_000)),
        at: if service == "inventory" {
            vec![anchor + 40 * minute]
        } else {
            Vec::new()
        },
        lead_ms: 20 * minute,
        outage_ms: 10 * minute,
        ..Failures::default()
    };
    match s.name.as_str() {
        "cpu_utilisation_percent" => {
            s.base = 35.0 + 5.0 * k;
            s.noise = 3.0;
            s.seasonality = vec![Seasonality {
                period_ms: day as u64,
                amplitude: 15.0,
            }];
            s.spikes = Some(Spikes {
                rate: 0.005,
                amplitude: 30.0,
            });
            (failures.precursor, failures.outage) = (20.0, -30.0);
            s.max = Some(100.0);
        }
        "memory_utilisation_percent" => {
            s.base = 50.0 + 4.0 * k;
            s.noise = 2.0;
            (failures.precursor, failures.outage) = (15.0, -30.0);
            s.max = Some(100.0);
        }
        "disk_io_utilisation_percent" => {
            s.base = 20.0;
            s.noise = 4.0;
            s.bursts = Some(Bursts {
                every_ms: day,
                chance: 1.0,
                duration_ms: 40 * minute,
                delta: 45.0,
            });
            (failures.precursor, failures.outage) = (50.0, -15.0);
            s.max = Some(100.0);
        }
        _ => {
            s.base = 0.004;
            s.noise = 0.001;
            s.spikes = Some(Spikes {
                rate: 0.004,
                amplitude: 0.08,
            });
            (failures.precursor, failures.outage) = (0.12, 0.6);
            s.max = Some(1.0);
        }
    }
    s.min = Some(0.0);
    s.failures = Some(failures);
}

/// SplitMix64: a tiny, well-mixed, stable hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn key(seed: u64, name: &str, salt: u64, t: i64) -> u64 {
    let mut h = mix(seed ^ salt);
    for b in name.bytes() {
        h = mix(h ^ u64::from(b));
    }
    mix(h ^ t as u64)
}

/// Uniform in (0, 1).
fn unit(h: u64) -> f64 {
    ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

fn gaussian(seed: u64, name: &str, t: i64) -> f64 {
    let u1 = unit(key(seed, name, 1, t));
    let u2 = unit(key(seed, name, 2, t));
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The spike at grid time `t`, if any.
fn spike(spec: &Spec, seed: u64, t: i64) -> Option<f64> {
    let s = spec.spikes.as_ref()?;
    (unit(key(seed, &spec.name, 3, t)) < s.rate).then_some(s.amplitude)
}

/// The seed of one series' own randomness: the seed mixed with its labels, so two
/// services reporting the same metric do not share their noise (a common noise
/// would make every service look odd at the same moment).
fn series_seed(seed: u64, spec: &Spec) -> u64 {
    let mut h = seed;
    for (k, v) in &spec.labels {
        for b in k.bytes().chain([0]).chain(v.bytes()).chain([0]) {
            h = mix(h ^ u64::from(b));
        }
    }
    h
}

/// A burst's contribution at `t`: the slot's plateau, if it has one and `t` is in it.
fn burst(b: &Bursts, seed: u64, name: &str, t: i64) -> f64 {
    if b.every_ms <= 0 {
        return 0.0;
    }
    let slot = t.div_euclid(b.every_ms);
    // A plateau may start late in the previous slot and run into this one.
    for s in [slot - 1, slot] {
        let h = key(seed, name, 6, s);
        if unit(h) < b.chance {
            let start = s * b.every_ms + (unit(mix(h)) * b.every_ms as f64) as i64;
            if t >= start && t < start + b.duration_ms {
                return b.delta;
            }
        }
    }
    0.0
}

/// The value of `spec` at `t` (a point on the interval grid).
pub fn value(spec: &Spec, seed: u64, t: i64) -> f64 {
    let mut v = spec.base;
    for s in &spec.seasonality {
        if s.period_ms > 0 {
            let phase = (t.rem_euclid(s.period_ms as i64)) as f64 / s.period_ms as f64;
            v += s.amplitude * (2.0 * std::f64::consts::PI * phase).sin();
        }
    }
    v += spec.trend_per_hour * (t - spec.trend_from) as f64 / HOUR;
    if let Some(l) = &spec.leak
        && t >= l.start
        && l.until.is_none_or(|u| t < u)
    {
        v += l.per_hour * (t - l.start) as f64 / HOUR;
    }
    for sh in &spec.level_shifts {
        if t >= sh.at {
            v += sh.delta;
        }
    }
    // A host's failures are shared by its metrics (the plain seed); noise, spikes and
    // bursts are each series' own.
    if let Some(f) = &spec.failures {
        v += f.effect(seed, t);
    }
    let own = series_seed(seed, spec);
    if let Some(b) = &spec.bursts {
        v += burst(b, own, &spec.name, t);
    }
    if spec.noise > 0.0 {
        v += spec.noise * gaussian(own, &spec.name, t);
    }
    if let Some(a) = spike(spec, own, t) {
        v += a;
    }
    if let Some(m) = spec.min {
        v = v.max(m);
    }
    if let Some(m) = spec.max {
        v = v.min(m);
    }
    v
}

fn labels_of(spec: &Spec) -> Vec<(String, String)> {
    let mut l = vec![("__name__".to_string(), spec.name.clone())];
    l.extend(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    l
}

/// Generates the series and its ground-truth events over `range`.
pub fn generate(spec: &Spec, cfg: &Config, range: TimeRange) -> Result<Batch> {
    if spec.name.is_empty() {
        return Err(Error::invalid_input("spec needs a name"));
    }
    let step = if range.step > 0 {
        range.step
    } else {
        cfg.interval_ms.max(1)
    } as i64;
    let (first, last) = if range.start == range.end {
        let t = range.end.div_euclid(step) * step;
        (t, t)
    } else {
        if range.end < range.start {
            return Err(Error::invalid_input("range end is before start"));
        }
        (
            range.start.div_euclid(step) * step
                + if range.start.rem_euclid(step) == 0 {
                    0
                } else {
                    step
                },
            range.end,
        )
    };
    let count = if last < first {
        0
    } else {
        ((last - first) / step) as u64 + 1
    };
    if count > MAX_POINTS {
        return Err(Error::invalid_input(format!(
            "{count} points requested; at most {MAX_POINTS} (use a larger step)"
        )));
    }
    let mut series = Series {
        labels: labels_of(spec),
        samples: Vec::with_capacity(count as usize),
    };
    let mut events = Vec::new();
    let ev = |t: i64, kind: &str, message: String| {
        let mut labels = labels_of(spec);
        labels.push(("anomaly".into(), kind.into()));
        Event {
            timestamp: t,
            labels,
            message,
        }
    };
    let own = series_seed(cfg.seed, spec);
    for i in 0..count {
        let t = first + i as i64 * step;
        series.push(t, value(spec, cfg.seed, t));
        if let Some(a) = spike(spec, own, t) {
            events.push(ev(t, "spike", format!("spike of {a}")));
        }
    }
    let within = |t: i64| t >= first && t <= last;
    if let Some(l) = &spec.leak
        && within(l.start)
    {
        events.push(ev(
            l.start,
            "leak",
            format!("leak starts: +{} per hour", l.per_hour),
        ));
    }
    // A shift that brings the level back to where it started is a recovery, not an
    // anomaly (evaluations count anomalies only).
    let mut shifts: Vec<&Shift> = spec.level_shifts.iter().collect();
    shifts.sort_by_key(|sh| sh.at);
    let mut level = 0.0;
    for sh in shifts {
        level += sh.delta;
        if within(sh.at) {
            let kind = if level.abs() < 1e-12 {
                "recovery"
            } else {
                "level_shift"
            };
            events.push(ev(sh.at, kind, format!("level shift of {}", sh.delta)));
        }
    }
    if let Some(f) = &spec.failures {
        for at in f.times(cfg.seed, first, last) {
            if within(at) && f.happens(at) {
                events.push(ev(at, "failure", format!("{} fails", f.host)));
            }
        }
    }
    events.sort_by_key(|e| e.timestamp);
    Ok(Batch {
        series: vec![series],
        events,
    })
}

/// Parses a query: a preset name, or a JSON spec (or a JSON list of specs).
pub fn parse_query(query: &str, anchor: i64) -> Result<Vec<Spec>> {
    let q = query.trim();
    if q.starts_with('{') {
        return Ok(vec![
            vigil_plugin_sdk::serde_json::from_str(q)
                .map_err(|e| Error::invalid_input(format!("spec: {e}")))?,
        ]);
    }
    if q.starts_with('[') {
        return vigil_plugin_sdk::serde_json::from_str(q)
            .map_err(|e| Error::invalid_input(format!("specs: {e}")));
    }
    if let Some(metric) = q.strip_prefix("fleet:") {
        return fleet(metric.trim(), anchor).ok_or_else(|| {
            Error::invalid_input(format!(
                "unknown fleet metric {metric:?}; the fleet has process_resident_memory_bytes, http_request_duration_seconds, http_requests_per_second, node_filesystem_used_ratio, cpu_utilisation_percent, memory_utilisation_percent, disk_io_utilisation_percent, http_error_ratio"
            ))
        });
    }
    if q == "all" {
        return Ok(PRESETS.iter().filter_map(|p| preset(p, anchor)).collect());
    }
    // A preset's metric name works too (`process_resident_memory_bytes`), so a
    // detector can query sim as it would query Prometheus.
    if let Some(s) = PRESETS
        .iter()
        .filter_map(|p| preset(p, anchor))
        .find(|s| s.name == q)
    {
        return Ok(vec![s]);
    }
    preset(q, anchor).map(|s| vec![s]).ok_or_else(|| {
        Error::invalid_input(format!(
            "unknown scenario {q:?}; presets: {}, all, or a JSON spec",
            PRESETS.join(", ")
        ))
    })
}

pub const PRESETS: &[&str] = &[
    "cpu",
    "memory-leak",
    "latency-spikes",
    "traffic-shift",
    "flat",
];

pub struct Sim;

impl Plugin for Sim {
    type Config = Config;
    fn info() -> Info {
        Info::new("sim", env!("CARGO_PKG_VERSION"))
            .description("Deterministic synthetic metrics with seasonality, trends, leaks, spikes and level shifts; anomalies labelled as events.")
            .capability(Capability::http("asks the fleet's supervisor what was done to its services"))
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "seed": { "type": "integer", "minimum": 0, "default": 42 },
                    "interval_ms": { "type": "integer", "minimum": 1, "default": 60000 },
                    "anchor_ms": { "type": "integer", "default": 1700000000000u64 },
                    "clock_offset_ms": { "type": "integer", "default": 0 },
                    "supervisor": { "type": "string" }
                }
            }))
    }
}

impl Connector for Sim {
    fn fetch(config: Config, query: &str, range: TimeRange) -> Result<Batch> {
        let offset = config.clock_offset_ms;
        let mut specs = parse_query(query, config.anchor_ms.saturating_sub(offset))?;
        if query.trim().starts_with("fleet:") {
            apply(&mut specs, &on_sim_clock(interventions(&config), offset));
        }
        let range = TimeRange {
            start: range.start.saturating_sub(offset),
            end: range.end.saturating_sub(offset),
            step: range.step,
        };
        let mut out = Batch::default();
        for spec in specs {
            let b = generate(&spec, &config, range)?;
            out.series.extend(b.series);
            out.events.extend(b.events);
        }
        Ok(on_caller_clock(out, offset))
    }
}

export_plugin!(Sim: connector);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            seed: 7,
            interval_ms: 60_000,
            anchor_ms: 0,
            clock_offset_ms: 0,
            supervisor: None,
        }
    }

    #[test]
    fn deterministic_and_consistent_across_windows() {
        let spec = preset("cpu", 0).expect("preset");
        let a = generate(
            &spec,
            &cfg(),
            TimeRange {
                start: 0,
                end: 3_600_000,
                step: 60_000,
            },
        )
        .expect("a");
        let b = generate(
            &spec,
            &cfg(),
            TimeRange {
                start: 1_800_000,
                end: 7_200_000,
                step: 60_000,
            },
        )
        .expect("b");
        assert_eq!(a.series[0].samples.len(), 61);
        let overlap: Vec<_> = a.series[0]
            .samples
            .iter()
            .filter(|s| s.timestamp >= 1_800_000)
            .collect();
        for s in overlap {
            let o = b.series[0]
                .samples
                .iter()
                .find(|x| x.timestamp == s.timestamp)
                .expect("same grid");
            assert_eq!(o.value.to_bits(), s.value.to_bits());
        }
        let other = generate(
            &spec,
            &Config { seed: 8, ..cfg() },
            TimeRange {
                start: 0,
                end: 3_600_000,
                step: 60_000,
            },
        )
        .expect("other seed");
        assert_ne!(other.series[0].samples, a.series[0].samples);
    }

    #[test]
    fn leak_grows_and_is_labelled() {
        let spec = preset("memory-leak", 0).expect("preset");
        let b = generate(
            &spec,
            &cfg(),
            TimeRange {
                start: 0,
                end: 12 * 3_600_000,
                step: 300_000,
            },
        )
        .expect("gen");
        let s = &b.series[0].samples;
        let before = s
            .iter()
            .filter(|x| x.timestamp < 6 * 3_600_000)
            .map(|x| x.value)
            .fold(f64::MIN, f64::max);
        let last = s.last().expect("samples").value;
        assert!(last > before + 5.0e8, "leak visible: {last} vs {before}");
        assert!(b.events.iter().any(|e| e.timestamp == 6 * 3_600_000
            && e.labels.contains(&("anomaly".into(), "leak".into()))));
    }

    #[test]
    fn spikes_and_shifts_are_labelled_where_they_are() {
        let spec = Spec {
            name: "x".into(),
            base: 10.0,
            spikes: Some(Spikes {
                rate: 0.05,
                amplitude: 100.0,
            }),
            level_shifts: vec![Shift {
                at: 600_000 * 50,
                delta: 5.0,
            }],
            ..Spec::default()
        };
        let b = generate(
            &spec,
            &cfg(),
            TimeRange {
                start: 0,
                end: 600_000 * 100,
                step: 600_000,
            },
        )
        .expect("gen");
        let spikes: Vec<_> = b
            .events
            .iter()
            .filter(|e| e.message.starts_with("spike"))
            .collect();
        assert!(!spikes.is_empty());
        for e in &spikes {
            let v = b.series[0]
                .samples
                .iter()
                .find(|s| s.timestamp == e.timestamp)
                .expect("sample")
                .value;
            assert!(v >= 100.0, "spike sample is high: {v}");
        }
        for s in &b.series[0].samples {
            if spikes.iter().all(|e| e.timestamp != s.timestamp) {
                let want = if s.timestamp >= 600_000 * 50 {
                    15.0
                } else {
                    10.0
                };
                assert_eq!(s.value, want);
            }
        }
        assert!(
            b.events
                .iter()
                .any(|e| e.message.starts_with("level shift"))
        );
    }

    #[test]
    fn instant_queries_align_to_the_grid() {
        let spec = preset("flat", 0).expect("preset");
        let b = generate(
            &spec,
            &cfg(),
            TimeRange {
                start: 90_001,
                end: 90_001,
                step: 0,
            },
        )
        .expect("gen");
        assert_eq!(b.series[0].samples.len(), 1);
        assert_eq!(b.series[0].samples[0].timestamp, 60_000);
    }

    #[test]
    fn the_fleet_tells_the_demo_story() {
        let minute = 60_000;
        let range = TimeRange {
            start: 0,
            end: 60 * minute,
            step: minute as u64,
        };
        let mem = parse_query("fleet:process_resident_memory_bytes", 0).expect("fleet");
        assert_eq!(mem.len(), FLEET.len());
        for spec in &mem {
            let b = generate(spec, &cfg(), range).expect("gen");
            let s = &b.series[0].samples;
            let growth = s[59].value - s[2].value;
            if spec.labels["service"] == "checkout" {
                assert!(growth > 1.0e9, "checkout leaks: {growth}");
            } else {
                assert!(
                    growth.abs() < 1.0e8,
                    "{} is steady: {growth}",
                    spec.labels["service"]
                );
            }
        }
        let lat = parse_query("fleet:http_request_duration_seconds", 0).expect("fleet");
        let onset = |spec: &Spec| {
            let b = generate(spec, &cfg(), range).expect("gen");
            b.events
                .iter()
                .find(|e| e.message.starts_with("level shift"))
                .map(|e| e.timestamp)
        };
        let by = |name: &str| {
            lat.iter()
                .find(|s| s.labels["service"] == name)
                .expect(name)
        };
        assert!(onset(by("postgres")) < onset(by("payments")));
        assert!(onset(by("payments")) < onset(by("checkout")));
        assert!(onset(by("checkout")) < onset(by("frontend")));
        assert!(parse_query("fleet:nope", 0).is_err());

        // What the supervisor did shows: a restart ends the leak, a failover the cascade.
        let mut mem = mem;
        let done = BTreeMap::from([
            (
                "checkout".to_string(),
                Interventions {
                    restarted_at_ms: Some(20 * minute),
                    ..Interventions::default()
                },
            ),
            (
                "postgres".to_string(),
                Interventions {
                    failed_over_at_ms: Some(12 * minute),
                    ..Interventions::default()
                },
            ),
        ]);
        apply(&mut mem, &done);
        let checkout = mem
            .iter()
            .find(|s| s.labels["service"] == "checkout")
            .expect("checkout");
        let at = |spec: &Spec, t: i64| value(spec, 7, t);
        assert!(at(checkout, 19 * minute) > at(checkout, 2 * minute) + 4.0e8);
        assert!(
            (at(checkout, 30 * minute) - at(checkout, 2 * minute)).abs() < 3.0e7,
            "back to base"
        );
        let mut lat = lat;
        apply(&mut lat, &done);
        for spec in &lat {
            assert!(
                at(spec, 13 * minute) < 0.2,
                "{} recovered after the failover",
                spec.labels["service"]
            );
        }
    }

    #[test]
    fn hosts_fail_after_their_precursors_and_a_drain_averts_it() {
        let minute = 60_000;
        let anchor = 30 * 86_400_000;
        let week = TimeRange {
            start: anchor - 7 * 86_400_000,
            end: anchor + 60 * minute,
            step: minute as u64,
        };
        let metrics = [
            "cpu_utilisation_percent",
            "memory_utilisation_percent",
            "disk_io_utilisation_percent",
            "http_error_ratio",
        ];
        let failures = |metric: &str, service: &str| -> Vec<i64> {
            let specs = parse_query(&format!("fleet:{metric}"), anchor).expect("fleet");
            let spec = specs
                .iter()
                .find(|s| s.labels["service"] == service)
                .expect("service");
            let b = generate(spec, &cfg(), week).expect("gen");
            b.events
                .iter()
                .filter(|e| e.labels.contains(&("anomaly".into(), "failure".into())))
                .map(|e| e.timestamp)
                .collect()
        };
        // Every metric of a host agrees on when it failed; the history has several.
        let inventory = failures(metrics[0], "inventory");
        for m in &metrics[1..] {
            assert_eq!(failures(m, "inventory"), inventory, "{m}");
        }
        let history = inventory.iter().filter(|&&t| t < anchor).count();
        assert!((7..=25).contains(&history), "{history} failures in a week");
        assert!(
            inventory.contains(&(anchor + 40 * minute)),
            "the scripted one"
        );
        assert!(
            failures(metrics[0], "payments")
                .iter()
                .all(|&t| t < anchor - 3_600_000),
            "on the stage only inventory fails"
        );
        // The precursor: disk I/O and errors climb in the 20 minutes before.
        let specs = parse_query("fleet:disk_io_utilisation_percent", anchor).expect("fleet");
        let mut disk = specs
            .into_iter()
            .find(|s| s.labels["service"] == "inventory")
            .expect("inventory");
        let f = anchor + 40 * minute;
        let at = |spec: &Spec, t: i64| value(spec, 7, t);
        assert!(at(&disk, f - minute) > at(&disk, f - 25 * minute) + 30.0);
        // Drained ten minutes before: no failure, and the precursor stops.
        let done = BTreeMap::from([(
            "inventory".to_string(),
            Interventions {
                drained_at_ms: Some(f - 10 * minute),
                ..Interventions::default()
            },
        )]);
        apply(std::slice::from_mut(&mut disk), &done);
        assert!(at(&disk, f - minute) < 45.0, "no precursor after the drain");
        let b = generate(&disk, &cfg(), week).expect("gen");
        assert!(
            !b.events
                .iter()
                .any(|e| e.timestamp == f && e.message.contains("fails")),
            "averted"
        );
    }

    #[test]
    fn bad_queries_are_invalid_input() {
        assert!(parse_query("nope", 0).is_err());
        assert!(parse_query("{\"nam\": 1}", 0).is_err());
        assert_eq!(parse_query("all", 0).expect("all").len(), PRESETS.len());
        let by_metric = parse_query("process_resident_memory_bytes", 0).expect("metric name");
        assert_eq!(by_metric[0].labels["scenario"], "memory-leak");
        let spec = preset("flat", 0).expect("preset");
        assert!(
            generate(
                &spec,
                &cfg(),
                TimeRange {
                    start: 0,
                    end: i64::MAX / 2,
                    step: 1
                }
            )
            .is_err()
        );
    }

    /// A story replayed later with the clock offset moved by as much is the same story:
    /// the same values and events, each stamped that much later.
    #[test]
    fn a_clock_offset_replays_the_same_story_later() {
        let at = |anchor_ms: i64, clock_offset_ms: i64| Config {
            anchor_ms,
            clock_offset_ms,
            ..cfg()
        };
        let (anchor, later) = (1_700_000_000_000, 37 * 86_400_000 + 5 * 3_600_000);
        let range = |from: i64| TimeRange {
            start: from - 3_600_000,
            end: from + 3_600_000,
            step: 15_000,
        };
        for query in [
            "fleet:process_resident_memory_bytes",
            "fleet:cpu_utilisation_percent",
        ] {
            let first = Sim::fetch(at(anchor, 0), query, range(anchor)).expect("first run");
            let replay = Sim::fetch(at(anchor + later, later), query, range(anchor + later))
                .expect("replay");
            assert!(
                !first.series.is_empty() && !first.events.is_empty(),
                "{query}"
            );
            assert_eq!(first.series.len(), replay.series.len());
            for (a, b) in first.series.iter().zip(&replay.series) {
                assert_eq!(a.labels, b.labels);
                assert_eq!(a.samples.len(), b.samples.len());
                for (p, q) in a.samples.iter().zip(&b.samples) {
                    assert_eq!((p.timestamp + later, p.value), (q.timestamp, q.value));
                }
            }
            let stamps = |b: &Batch, shift: i64| {
                b.events
                    .iter()
                    .map(|e| (e.timestamp + shift, e.message.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(stamps(&first, later), stamps(&replay, 0), "{query}");
            // Without the offset, the same story later is other data (other noise, another
            // phase of the day).
            let unshifted =
                Sim::fetch(at(anchor + later, 0), query, range(anchor + later)).expect("unshifted");
            assert_ne!(
                unshifted.series[0]
                    .samples
                    .iter()
                    .map(|p| p.value)
                    .collect::<Vec<_>>(),
                first.series[0]
                    .samples
                    .iter()
                    .map(|p| p.value)
                    .collect::<Vec<_>>()
            );
        }
    }
}
