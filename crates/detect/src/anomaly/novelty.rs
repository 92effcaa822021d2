//! Novelty: has the series ever been in this situation before?
//!
//! Values are quantised into `bins` levels over the range learnt from the first `learn`
//! points (later values outside it get levels of their own, so a new high is new); the
//! last `order` levels form a context. A context never seen before is novel. Novelty is
//! weighed by how rare novelty is on this series (an exponentially weighted novelty
//! rate), so a noisy series that keeps producing new contexts does not cry wolf while a
//! steady one that suddenly does something new scores high. Seen contexts are kept in a
//! fixed-size open-addressing table: bounded state, no allocation per point.

use serde::{Deserialize, Serialize};

use super::{AnomalyMethod, ModelConfigError, Reason, Score, require};

/// Parameters of [`Novelty`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoveltyConfig {
    /// Quantisation levels across the learnt range.
    pub bins: u32,
    /// Context length (points).
    pub order: usize,
    /// Points used to learn the value range before judging.
    pub learn: usize,
    /// Seen-context table size (rounded up to a power of two).
    pub capacity: usize,
    /// Half-life, in points, of the novelty rate.
    pub rate_half_life: f64,
}

impl Default for NoveltyConfig {
    fn default() -> Self {
        Self {
            bins: 12,
            order: 3,
            learn: 400,
            capacity: 1 << 14,
            rate_half_life: 500.0,
        }
    }
}

const MAX_ORDER: usize = 16;
const EMPTY: u64 = 0;

/// Context novelty over a quantised series.
#[derive(Debug, Clone)]
pub struct Novelty {
    cfg: NoveltyConfig,
    lo: f64,
    hi: f64,
    seen_points: usize,
    recent: [i32; MAX_ORDER],
    table: Vec<u64>,
    stored: usize,
    rate: f64,
    alpha: f64,
}

impl Novelty {
    pub fn new(cfg: NoveltyConfig) -> Result<Self, ModelConfigError> {
        require(
            (2..=1000).contains(&cfg.bins),
            "bins",
            "must be in 2..=1000",
        )?;
        require(
            (1..=MAX_ORDER).contains(&cfg.order),
            "order",
            "must be in 1..=16",
        )?;
        require(cfg.learn >= 2, "learn", "must be at least 2 points")?;
        require(
            (16..=1 << 24).contains(&cfg.capacity),
            "capacity",
            "must be in 16..=16777216",
        )?;
        require(
            cfg.rate_half_life.is_finite() && cfg.rate_half_life >= 1.0,
            "rate_half_life",
            "must be at least 1",
        )?;
        Ok(Self {
            lo: f64::INFINITY,
            hi: f64::NEG_INFINITY,
            seen_points: 0,
            recent: [0; MAX_ORDER],
            table: vec![EMPTY; cfg.capacity.next_power_of_two()],
            stored: 0,
            rate: 0.0,
            alpha: 1.0 - 0.5f64.powf(1.0 / cfg.rate_half_life),
            cfg,
        })
    }

    fn level(&self, x: f64) -> i32 {
        let width = (self.hi - self.lo).max(super::scale_floor(self.hi));
        let q = ((x - self.lo) / width * self.cfg.bins as f64).floor();
        q.clamp(-1e6, 1e6) as i32
    }

    fn context_hash(&self) -> u64 {
        // FNV-1a over the levels, then a final mix; 0 is reserved for "empty".
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for &l in &self.recent[..self.cfg.order] {
            h ^= l as u32 as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h.max(1)
    }

    /// Inserts `h`; true if it was not there. When the table is 3/4 full new contexts are
    /// still reported as novel but no longer stored (bounded state).
    fn insert(&mut self, h: u64) -> bool {
        let mask = self.table.len() - 1;
        let mut i = (h as usize) & mask;
        loop {
            let slot = self.table[i];
            if slot == h {
                return false;
            }
            if slot == EMPTY {
                if self.stored * 4 < self.table.len() * 3 {
                    self.table[i] = h;
                    self.stored += 1;
                }
                return true;
            }
            i = (i + 1) & mask;
        }
    }
}

impl AnomalyMethod for Novelty {
    fn name(&self) -> &'static str {
        "novelty"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        self.seen_points += 1;
        if self.seen_points <= self.cfg.learn {
            self.lo = self.lo.min(x);
            self.hi = self.hi.max(x);
        }
        let level = self.level(x);
        self.recent.copy_within(1..self.cfg.order, 0);
        self.recent[self.cfg.order - 1] = level;
        if self.seen_points < self.cfg.order {
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        }
        let h = self.context_hash();
        let novel = self.insert(h);
        let rarity = 1.0 - self.rate;
        self.rate += self.alpha * (f64::from(u8::from(novel)) - self.rate);
        if self.seen_points <= self.cfg.learn {
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        }
        let value = if novel { rarity.clamp(0.0, 1.0) } else { 0.0 };
        Score {
            t,
            value,
            observed: x,
            expected: None,
            band: Some((self.lo, self.hi)),
            deviation: value,
            method: self.name(),
            reason: Reason::Novel,
        }
    }

    fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.table.len() * std::mem::size_of::<u64>()
    }
}
