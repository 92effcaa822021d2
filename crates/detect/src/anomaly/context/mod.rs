//! Context learning: has the series been in this *sequence of situations* before?
//!
//! A port of the Contextual Anomaly Detector, Open Source Edition (CAD OSE; M. Smirnov,
//! 2016, <https://github.com/smirmik/CAD>, MIT; scored in NAB as `contextOSE`), made
//! online: the value range used to quantise is the range seen so far, never the whole
//! file's. Each value is quantised to `bits` bits; each bit is a *fact* (position and
//! value). A *context* is a pair (left facts, right facts): what was active one step ago
//! (the previous facts plus the contexts that were fully active, as "neuron" facts) and
//! what is active now. The detector remembers contexts; per point, the anomaly is how
//! few of the contexts the past predicted came true, plus how many new contexts the point
//! forced it to create:
//!
//! ```text
//! score = (1 − predicted contexts that came true / contexts predicted
//!          + new contexts / potential new contexts) / 2
//! ```
//!
//! After a score of `rest_threshold` the detector rests for `rest_period` points (scores
//! 0): one situation, one alarm. A value beyond the range seen so far gets more bits
//! than usual, i.e. facts never seen, so a new extreme is always a new context.
//!
//! Bounded state: at most `max_contexts` contexts are remembered; once full, new
//! contexts still count as new (they score) but are not stored. At the default cap
//! (16,384, which scores on NAB as a cap 8× larger does) that is about 1.5 MB on a noisy
//! series; a smooth or repetitive one stays far below it.
//!
//! Speed: a step's prediction is a function of its facts and the memory, and a settled
//! series repeats its steps, so each step is recorded once and replayed after
//! (`Replays`): a replay counts the contexts that came true and nothing else. The
//! record is bounded (at most about 2.3 MB more; 0.2–0.6 MB on the bench series) and
//! starts over when full. A step that repeats the one just replayed (a series holding
//! its level) is not even counted at once: the whole run is counted in one pass when
//! another step comes (`ContextMemory::repeat`).
//!
//! This file holds the learner and its configuration; `memory` the contexts and their
//! index, `replay` the bounded record of steps seen before.

mod memory;
mod replay;
#[cfg(test)]
mod tests;

use memory::*;
use replay::*;

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::{AnomalyMethod, ModelConfigError, Reason, Score, require};

/// Parameters of [`ContextLearner`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextConfig {
    /// Bits a value is quantised to (2^bits levels across the range).
    pub bits: u32,
    /// A known value range `[low, high]` (e.g. `[0, 100]` for a percentage) to quantise
    /// against instead of the range seen so far.
    pub range: Option<[f64; 2]>,
    /// Score from which the detector rests.
    pub rest_threshold: f64,
    /// Points after such a score during which it scores 0.
    pub rest_period: usize,
    /// Longest left half of a context learnt from a partial match.
    pub max_left_facts: usize,
    /// Most active contexts fed back as facts to the next step.
    pub max_active: usize,
    /// Points before the first score (the range is still being learnt).
    pub min_points: usize,
    /// Contexts remembered at most (bounded state).
    pub max_contexts: usize,
}

impl Default for ContextConfig {
    /// CAD OSE's parameters, as NAB ran it (its rest period is a fifth of NAB's
    /// 750-point probation).
    fn default() -> Self {
        Self {
            bits: 3,
            range: None,
            rest_threshold: 0.75,
            rest_period: 150,
            max_left_facts: 7,
            max_active: 15,
            min_points: 150,
            max_contexts: 1 << 14,
        }
    }
}

/// Facts at or above this are "neuron" facts: an active context fed back as input.
const NEURON: u64 = 1 << 31;
/// Facts per step at most (value bits, the below-range fact, active contexts), so a
/// subset of one step's facts fits a `u64` mask.
const MAX_FACTS: usize = 64;

type Facts = Vec<u64>;

/// A small, fast hash for the memory's integer keys (std's SipHash guards against
/// adversarial keys; these keys are facts vigil derives itself).
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        for &b in chunks.remainder() {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
type FastSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// One step's prediction; kept between steps so its buffers are reused.
#[derive(Debug, Clone, Default)]
struct Prediction {
    predicted: usize,
    /// Contexts that came true.
    came_true: usize,
    /// The first `came_true` are their ids, the `strongest` strongest first (a buffer
    /// that only grows, so a step writes into it without clearing it).
    came: Vec<u32>,
    strongest: usize,
    /// (left mask over the previous facts, right mask over the current facts).
    potential: Vec<(u64, u64)>,
}

/// The facts of `facts` selected by `mask`, into `out`.
fn select(facts: &[u64], mask: u64, out: &mut Facts) {
    out.clear();
    let mut bits = mask;
    while bits != 0 {
        out.push(facts[bits.trailing_zeros() as usize]);
        bits &= bits - 1;
    }
}

/// The context-learning anomaly method.
#[derive(Debug, Clone)]
pub struct ContextLearner {
    cfg: ContextConfig,
    memory: ContextMemory,
    /// Facts of the previous step: its value's facts and its active contexts.
    previous: Facts,
    /// The facts before those, kept as the next step's buffer.
    spare: Facts,
    prediction: Prediction,
    scratch: (Facts, Facts),
    /// A learning step's right semi-contexts by mask (see [`ContextLearner::step`]).
    right_ids: Vec<(u64, Option<u32>)>,
    /// Whether a learning step looks potential contexts up by mask before remembering
    /// them (off only to test it against remembering each).
    looking_up: bool,
    lo: f64,
    hi: f64,
    seen: usize,
    /// Points since the last score at or above `rest_threshold` (saturating).
    since_rest: usize,
    /// The last step was replayed and the left side has not taken its facts yet.
    left_behind: bool,
}

impl ContextLearner {
    pub fn new(cfg: ContextConfig) -> Result<Self, ModelConfigError> {
        require((1..=16).contains(&cfg.bits), "bits", "must be in 1..=16")?;
        if let Some([lo, hi]) = cfg.range {
            require(
                lo.is_finite() && hi.is_finite() && lo < hi,
                "range",
                "must be [low, high] with finite low < high",
            )?;
        }
        require(
            cfg.rest_threshold.is_finite() && cfg.rest_threshold > 0.0,
            "rest_threshold",
            "must be a positive number",
        )?;
        require(
            (1..=32).contains(&cfg.max_active),
            "max_active",
            "must be in 1..=32",
        )?;
        require(
            cfg.max_left_facts >= 1,
            "max_left_facts",
            "must be at least 1",
        )?;
        require(
            (16..=1 << 24).contains(&cfg.max_contexts),
            "max_contexts",
            "must be in 16..=16777216",
        )?;
        let (lo, hi) = cfg
            .range
            .map_or((f64::INFINITY, f64::NEG_INFINITY), |[lo, hi]| (lo, hi));
        Ok(Self {
            memory: ContextMemory {
                max_contexts: cfg.max_contexts,
                replaying: true,
                ..ContextMemory::default()
            },
            previous: Vec::new(),
            spare: Vec::new(),
            prediction: Prediction::default(),
            scratch: Default::default(),
            right_ids: Vec::new(),
            looking_up: true,
            lo,
            hi,
            seen: 0,
            since_rest: 0,
            left_behind: false,
            cfg,
        })
    }

    #[cfg(test)]
    fn facts(&self, x: f64) -> Facts {
        let mut facts = Facts::new();
        self.facts_into(x, &mut facts);
        facts
    }

    /// The value's facts, into a buffer: bit `i` of its level is fact `2i + bit`. A level
    /// beyond the range has more bits than `bits`, hence facts never seen before; a level
    /// below it adds a fact of its own.
    fn facts_into(&self, x: f64, facts: &mut Facts) {
        let top = ((1u64 << self.cfg.bits) - 1) as f64;
        let range = self.hi - self.lo;
        let step = if range > 0.0 { range / top } else { 1.0 };
        // ±2^30 levels at most: with the below-range fact, 31 facts.
        let level = ((x - self.lo) / step).clamp(-1073741823.0, 1073741823.0) as i64;
        let (magnitude, below) = (level.unsigned_abs(), level < 0);
        let width = (64 - magnitude.leading_zeros()).max(self.cfg.bits);
        facts.clear();
        facts.extend((0..width).map(|i| 2 * u64::from(i) + ((magnitude >> i) & 1)));
        if below {
            facts.push(NEURON - 1);
        }
    }

    /// Makes the left side take the previous step's facts if a replay left them behind.
    fn catch_up_left(&mut self) {
        if std::mem::take(&mut self.left_behind) {
            self.memory.left.take(&self.previous);
        }
    }

    /// One step on the value's (sorted) facts: (share of predicted contexts that came
    /// true, share of potential new contexts that were new).
    fn step(&mut self, current: Facts) -> (f64, f64) {
        let memory = &mut self.memory;
        memory.tick += 1;
        let value = value_bits(&current);
        let replay = if memory.replaying && !self.previous.is_empty() {
            memory.replays.find(&self.previous, value)
        } else {
            None
        };
        if let Some(step) = replay {
            // Seen before, hence its zero-level context known: nothing to learn. Nor are
            // the sides crossed with its facts: only a full prediction reads a side's
            // last step, and the left side takes these facts when one comes
            // (`left_behind`).
            // `seen` counts this step too: a count is at most the steps before it.
            let steps_fit_a_count = self.seen <= u32::MAX as usize;
            if self.left_behind && memory.replays.last == Some(step as u32) && steps_fit_a_count {
                // The step just replayed, again: its facts are its own previous facts,
                // so the next step's are the same as this one's.
                let (predicted, came) = memory.repeat(step);
                debug_assert_eq!(
                    next_facts(
                        current.clone(),
                        &memory.replays.steps[step].came[..came.min(self.cfg.max_active)]
                    ),
                    self.previous,
                    "a repeat's facts are its previous facts"
                );
                self.spare = current;
                return (share(came, predicted), 0.0);
            }
            let (predicted, came, strongest) =
                memory.replay(step, self.cfg.max_active, steps_fit_a_count);
            let came_true = share(came.len(), predicted);
            let next = next_facts(current, &came[..strongest]);
            memory.replays.last = Some(step as u32);
            self.left_behind = true;
            self.spare = std::mem::replace(&mut self.previous, next);
            return (came_true, 0.0);
        }
        self.catch_up_left();
        let memory = &mut self.memory;
        memory.settle();

        let new_zero_level =
            !self.previous.is_empty() && memory.remember(&self.previous, &current, true);
        // A right semi-context is a step's value facts, and a context knows its right's
        // as a mask: the prediction pass needs this step's facts, not the full list.
        memory.right.take(&current);
        memory.left.collect_full(&self.previous);
        let prediction = &mut self.prediction;
        memory.predict(new_zero_level, &self.previous, &self.cfg, prediction);
        let came = &prediction.came[..prediction.came_true];
        let recordable = memory.replaying && !new_zero_level && !self.previous.is_empty();
        memory.replays.last = if recordable {
            memory.replays.record(
                &self.previous,
                value,
                prediction.predicted,
                came,
                memory.tick,
            )
        } else {
            None
        };
        let came_true = share(prediction.came_true, prediction.predicted);

        let mut added = 0.0;
        if new_zero_level {
            // The zero-level context itself is one of the potential new ones.
            let all = |n: usize| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            prediction
                .potential
                .push((all(self.previous.len()), all(current.len())));
            prediction
                .potential
                .sort_unstable_by_key(|&(l, r)| u128::from(l) << 64 | u128::from(r));
            prediction.potential.dedup();
            let (left, right) = &mut self.scratch;
            let mut new = 1;
            // Most potential contexts are known (on noise, with the memory full, about
            // 240 a step), and a known one is only looked up. The halves are looked up
            // once per mask: sorted, the potentials come grouped by left mask, and a
            // step has a few dozen right masks at most. An id found stays right (ids
            // never change); a half not found may be created by a `remember` below,
            // and then the next lookup of its mask misses and `remember` finds it.
            let mut left_id: Option<(u64, Option<u32>)> = None;
            let right_ids = &mut self.right_ids;
            right_ids.clear();
            for &(l, r) in &prediction.potential {
                if !self.looking_up {
                    select(&self.previous, l, left);
                    select(&current, r, right);
                    new += usize::from(memory.remember(left, right, false));
                    continue;
                }
                let lid = match left_id {
                    Some((mask, id)) if mask == l => id,
                    _ => {
                        select(&self.previous, l, left);
                        let id = memory.left.get(left);
                        left_id = Some((l, id));
                        id
                    }
                };
                let rid = match right_ids.iter().find(|(mask, _)| *mask == r) {
                    Some(&(_, id)) => id,
                    None => {
                        select(&current, r, right);
                        let id = memory.right.get(right);
                        right_ids.push((r, id));
                        id
                    }
                };
                let known = lid.zip(rid).is_some_and(|(lid, rid)| {
                    memory.left_contexts[lid as usize]
                        .by_right
                        .contains_key(&rid)
                });
                if known {
                    // What `remember` does with a known context outside zero level.
                    continue;
                }
                select(&self.previous, l, left);
                select(&current, r, right);
                new += usize::from(memory.remember(left, right, false));
            }
            added = new as f64 / prediction.potential.len() as f64;
        }

        let next = next_facts(current, &prediction.came[..prediction.strongest]);
        memory.left.take(&next);
        self.spare = std::mem::replace(&mut self.previous, next);
        (came_true, added)
    }
}

/// `part / whole`, 0 when there is no whole.
fn share(part: usize, whole: usize) -> f64 {
    if whole > 0 {
        part as f64 / whole as f64
    } else {
        0.0
    }
}

/// The next step's (sorted) facts: this step's value facts and, as neuron facts, its
/// strongest active contexts. Value facts are below every neuron fact, and the strongest
/// come in id order ([`strongest_first`]; a context learnt into a replayed step has
/// the largest id yet), so this is sorted without sorting; checked anyway.
fn next_facts(mut current: Facts, strongest: &[u32]) -> Facts {
    current.extend(strongest.iter().map(|&id| NEURON + u64::from(id)));
    if !current.is_sorted() {
        current.sort_unstable();
    }
    debug_assert!(current.len() <= MAX_FACTS);
    current
}

impl AnomalyMethod for ContextLearner {
    fn name(&self) -> &'static str {
        "context"
    }

    fn update(&mut self, t: i64, x: f64) -> Score {
        if !x.is_finite() {
            return Score::quiet(t, x, self.name(), Reason::Skipped);
        }
        self.seen += 1;
        if self.seen == 1 && self.cfg.range.is_none() {
            self.lo = x;
            self.hi = x;
        }
        // Quantised against the range before this point, so a new extreme shows.
        let mut facts = std::mem::take(&mut self.spare);
        self.facts_into(x, &mut facts);
        if self.cfg.range.is_none() {
            self.lo = self.lo.min(x);
            self.hi = self.hi.max(x);
        }
        let (came_true, added) = self.step(facts);
        let raw = ((1.0 - came_true + added) / 2.0).clamp(0.0, 1.0);
        let resting = self.since_rest < self.cfg.rest_period;
        self.since_rest = if raw >= self.cfg.rest_threshold {
            0
        } else {
            self.since_rest.saturating_add(1)
        };
        if self.seen <= self.cfg.min_points {
            return Score::quiet(t, x, self.name(), Reason::Warmup);
        }
        let value = if resting { 0.0 } else { raw };
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
        let m = &self.memory;
        std::mem::size_of::<Self>()
            + m.left.state_bytes()
            + m.right.state_bytes()
            + m.left_contexts.len()
                * (std::mem::size_of::<LeftSemi>() + std::mem::size_of::<Vec<KnownContext>>())
            + self.prediction.came.len() * std::mem::size_of::<u32>()
            + m.replays.state_bytes()
            + m.zero_level_index.state_bytes()
            + m.contexts.len()
                * (std::mem::size_of::<Context>()
                    + std::mem::size_of::<u32>()
                    + std::mem::size_of::<KnownContext>()
                    + std::mem::size_of::<(u32, u32)>()
                    + std::mem::size_of::<(u64, u32)>())
    }
}
