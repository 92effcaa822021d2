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

/// A semi-context's facts, split for fast set tests: the value facts as bits of `value`
/// (see [`value_bit`]), the neuron facts as sorted context ids in its side's pool.
#[derive(Debug, Clone, Copy)]
struct SemiFacts {
    value: u64,
    neurons_at: u32,
    neurons_len: u32,
}

/// The bit of a value fact in [`SemiFacts::value`], or `None` for a neuron fact. Value
/// facts are `2i + bit` for i < 31 (at most 61) and the below-range fact `NEURON − 1`
/// (bit 62): bit order is fact order, so a bit's rank among a step's value bits is the
/// fact's position in the step's sorted facts.
fn value_bit(fact: u64) -> Option<u32> {
    match fact {
        f if f < 62 => Some(f as u32),
        f if f == NEURON - 1 => Some(62),
        _ => None,
    }
}

/// A context as a neuron fact, seen from one side.
#[derive(Debug, Clone, Copy, Default)]
struct NeuronSlot {
    /// Steps predicted in full (not replayed) that held it, for anchoring: those are
    /// the steps that look semi-contexts up by anchor.
    seen: u32,
    /// Equal to the side's stamp when the last step held it, at `position` among the
    /// step's neuron facts.
    stamp: u32,
    position: u32,
}

/// One step's facts, as a side was crossed with them: the value facts as bits; the
/// neuron facts are marked in the side's [`NeuronSlot`]s, and counted here.
#[derive(Debug, Clone, Copy, Default)]
struct Query {
    value: u64,
    neurons: u32,
}

/// Which of a semi-context's facts a step has: a mask over the positions of that step's
/// (sorted) facts, so the mask also gives the facts in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Crossing {
    mask: u64,
    hits: u32,
    full: bool,
}

/// A left semi-context's contexts, as learning looks them up.
#[derive(Debug, Clone, Default)]
struct LeftSemi {
    /// Its zero-level contexts (the only ones that spawn new contexts), as (their right
    /// semi-context's facts as [`value_bit`]s, id): a right semi-context holds value
    /// facts only, so crossing it with a step is a mask test, with no lookup.
    zero_level: Vec<(u64, u32)>,
    by_right: FastMap<u32, u32>,
}

/// A context, as its left semi-context lists it: what the prediction pass reads, kept
/// together so that pass walks memory in order.
#[derive(Debug, Clone, Copy)]
struct KnownContext {
    /// The right semi-context's facts, as [`value_bit`]s: a right semi-context is a
    /// step's own value facts (never neurons), so whether it came true is one mask test.
    right_value: u64,
    id: u32,
}

/// A context's halves. How often it came true is kept apart, in
/// [`ContextMemory::counts`]: replays touch nothing else, and a dense array of counts
/// spans a quarter of the cache lines.
#[derive(Debug, Clone, Copy)]
struct Context {
    left: u32,
    right: u32,
    /// Learnt directly from two consecutive inputs (not from a partial crossing).
    zero_level: bool,
}

/// A context's rank among the contexts that came true at a step: ordered as (times
/// active, left, id) and ending in its id, so the strongest are the largest keys and no
/// two contexts tie.
fn strength(counts: &[u32], contexts: &[Context], id: u32) -> u128 {
    let i = id as usize;
    u128::from(counts[i]) << 64 | u128::from(contexts[i].left) << 32 | u128::from(id)
}

/// One half of the contexts (left or right): its semi-contexts, and which of them the
/// last step's facts hold in full.
///
/// CAD OSE crosses every semi-context sharing a fact with the step, and a step's few
/// value facts are in nearly all of them. Here each semi-context is filed under one
/// *anchor*, the one of its facts that steps have held least often so far (steps
/// predicted in full: replayed ones never look anchors up), and only those filed under
/// the step's facts are tested: a fraction of the memory, and the same answer (a
/// semi-context whose facts are all present has its anchor present). Partial crossings,
/// needed only on the rare steps that learn, are computed on demand.
#[derive(Debug, Clone, Default)]
struct Side {
    ids: FastMap<Facts, u32>,
    /// Per semi-context, in id order.
    semis: Vec<SemiFacts>,
    neuron_pool: Vec<u32>,
    /// Anchor fact → the semi-contexts filed under it, as (value facts, id): the value
    /// test needs no lookup.
    anchored: FastMap<u64, Vec<(u64, u32)>>,
    /// Steps predicted in full that held each value bit, for anchoring.
    value_seen: Vec<u32>,
    /// By context id.
    neurons: Vec<NeuronSlot>,
    /// The last step's facts.
    query: Query,
    /// Semi-contexts the last step held in full, once [`Side::collect_full`] found them.
    full: Vec<u32>,
    /// Step counter marking which [`NeuronSlot`]s the last step held.
    stamp: u32,
    /// Facts held in the keys (for `state_bytes`).
    fact_slots: usize,
}

impl Side {
    fn get(&self, facts: &[u64]) -> Option<u32> {
        self.ids.get(facts).copied()
    }

    /// Steps so far that held this fact.
    fn seen(&self, fact: u64) -> u32 {
        match value_bit(fact) {
            Some(b) => self.value_seen.get(b as usize).copied().unwrap_or(0),
            None => {
                let id = (fact - NEURON) as usize;
                self.neurons.get(id).map_or(0, |slot| slot.seen)
            }
        }
    }

    /// The semi-context of these (sorted) facts, and whether it was created now.
    fn id(&mut self, facts: &[u64]) -> (u32, bool) {
        if let Some(id) = self.get(facts) {
            return (id, false);
        }
        let id = self.semis.len() as u32;
        self.ids.insert(facts.to_vec(), id);
        let (value, neurons) = split_facts(facts);
        let semi = SemiFacts {
            value,
            neurons_at: self.neuron_pool.len() as u32,
            neurons_len: neurons.len() as u32,
        };
        self.neuron_pool.extend(neurons);
        self.semis.push(semi);
        // The rarest fact; among equals the last, as a newer context is a rarer one.
        let anchor = facts
            .iter()
            .copied()
            .min_by_key(|&f| (self.seen(f), std::cmp::Reverse(f)))
            .expect("a semi-context has facts");
        self.anchored
            .entry(anchor)
            .or_default()
            .push((semi.value, id));
        self.fact_slots += facts.len();
        (id, true)
    }

    fn neurons(&self, semi: &SemiFacts) -> &[u32] {
        let at = semi.neurons_at as usize;
        &self.neuron_pool[at..at + semi.neurons_len as usize]
    }

    /// Takes a step's (sorted) facts as the side's last: what [`Side::crossing`] and
    /// the anchoring counts need, but not which semi-contexts it holds in full.
    fn take(&mut self, facts: &[u64]) {
        if self.stamp == u32::MAX {
            self.neurons.iter_mut().for_each(|slot| slot.stamp = 0);
            self.stamp = 0;
        }
        self.stamp += 1;
        self.query = Query::default();
        if self.value_seen.is_empty() {
            self.value_seen = vec![0; 64];
        }
        // Sorted: the last fact is the largest neuron id, if any.
        if let Some(&last) = facts.last().filter(|&&f| value_bit(f).is_none()) {
            let slots = (last - NEURON) as usize + 1;
            if self.neurons.len() < slots {
                self.neurons.resize(slots, NeuronSlot::default());
            }
        }
        for &f in facts {
            match value_bit(f) {
                Some(b) => {
                    self.query.value |= 1 << b;
                    let seen = &mut self.value_seen[b as usize];
                    *seen = seen.saturating_add(1);
                }
                None => {
                    let id = (f - NEURON) as u32;
                    let slot = &mut self.neurons[id as usize];
                    slot.seen = slot.seen.saturating_add(1);
                    slot.stamp = self.stamp;
                    slot.position = self.query.neurons;
                    self.query.neurons += 1;
                }
            }
        }
    }

    /// Notes which semi-contexts the last step taken holds in full; `facts` are that
    /// step's (sorted) facts.
    fn collect_full(&mut self, facts: &[u64]) {
        self.full.clear();
        for f in facts {
            for &(value, id) in self.anchored.get(f).map_or(&[][..], Vec::as_slice) {
                if value & !self.query.value != 0 {
                    continue;
                }
                let semi = self.semis[id as usize];
                let held = self
                    .neurons(&semi)
                    .iter()
                    .all(|&n| self.holds_neuron(n).is_some());
                if held {
                    self.full.push(id);
                }
            }
        }
    }

    /// The position among the last step's neuron facts of this context's, if it held it.
    fn holds_neuron(&self, id: u32) -> Option<u32> {
        self.neurons
            .get(id as usize)
            .filter(|slot| slot.stamp == self.stamp)
            .map(|slot| slot.position)
    }

    /// Which of the semi-context's facts the last step held.
    fn crossing(&self, id: u32) -> Crossing {
        let semi = &self.semis[id as usize];
        let values = self.query.value.count_ones();
        let mut neurons = 0u64;
        for n in self.neurons(semi) {
            if let Some(i) = self.holds_neuron(*n) {
                neurons |= 1 << (values + i);
            }
        }
        self.crossing_given(id, neurons)
    }

    /// [`Side::crossing`], given the neuron part of its mask (as a neuron index finds
    /// it, see [`ZeroLevelIndex`]).
    fn crossing_given(&self, id: u32, neurons: u64) -> Crossing {
        let semi = &self.semis[id as usize];
        let mask = positions(semi.value & self.query.value, self.query.value) | neurons;
        let hits = mask.count_ones();
        Crossing {
            mask,
            hits,
            full: hits == semi.value.count_ones() + semi.neurons_len,
        }
    }

    fn state_bytes(&self) -> usize {
        let map_entry = 16; // control byte and padding per hash-map slot, roughly
        self.fact_slots * std::mem::size_of::<u64>()
            + self.semis.len()
                * (std::mem::size_of::<SemiFacts>()
                    + std::mem::size_of::<Facts>()
                    + map_entry
                    + std::mem::size_of::<(u64, u32)>())
            + self.neuron_pool.len() * std::mem::size_of::<u32>()
            + self.value_seen.len() * std::mem::size_of::<u32>()
            + self.neurons.len() * std::mem::size_of::<NeuronSlot>()
            + self.anchored.len() * (std::mem::size_of::<(u64, Vec<(u64, u32)>)>() + map_entry)
    }
}

/// The left semi-contexts that have zero-level contexts, by neuron fact.
///
/// A learning step crosses every such left (about 470 on noise, each a previous step's
/// facts: 3 value facts and 15 neurons), but the step's 15 neurons are in a sixth of
/// their neuron facts: walking the lefts of each of the step's neurons finds those
/// parts of the crossings, instead of testing every neuron of every left. A left is
/// known here by its place in [`ContextMemory::zero_level_lefts`], so its marks are a
/// dense array.
#[derive(Debug, Clone, Default)]
struct ZeroLevelIndex {
    by_neuron: FastMap<u32, Vec<u32>>,
    /// By place: the neuron part of the left's crossing with the step being crossed,
    /// cleared as it is taken.
    hits: Vec<u64>,
    /// Places listed in `by_neuron`, all lists together (for `state_bytes`).
    entries: usize,
}

impl ZeroLevelIndex {
    /// The next left (at the next place) and its neuron facts.
    fn add(&mut self, neurons: &[u32]) {
        let place = self.hits.len() as u32;
        for &n in neurons {
            self.by_neuron.entry(n).or_default().push(place);
        }
        self.entries += neurons.len();
        self.hits.push(0);
    }

    /// Marks, for each left, which of the step's (sorted) facts' neurons it holds: the
    /// neuron at position `i` among them is bit `values + i` of a crossing's mask.
    fn cross(&mut self, facts: &[u64], values: u32) {
        let neurons = facts.iter().filter(|&&f| value_bit(f).is_none());
        for (i, &f) in neurons.enumerate() {
            let Some(lefts) = self.by_neuron.get(&((f - NEURON) as u32)) else {
                continue;
            };
            for &place in lefts {
                self.hits[place as usize] |= 1 << (values + i as u32);
            }
        }
    }

    /// The neuron part of the crossing of the left at this place, as
    /// [`ZeroLevelIndex::cross`] marked it.
    fn take_hits(&mut self, place: usize) -> u64 {
        std::mem::take(&mut self.hits[place])
    }

    fn state_bytes(&self) -> usize {
        self.entries * std::mem::size_of::<u32>()
            + self.by_neuron.len() * (std::mem::size_of::<(u32, Vec<u32>)>() + 16)
            + self.hits.len() * std::mem::size_of::<u64>()
    }
}

/// The context memory: the two halves, and contexts joining a left and a right one.
#[derive(Debug, Clone, Default)]
struct ContextMemory {
    left: Side,
    right: Side,
    /// Each left semi-context's contexts in creation order, by left id: the prediction
    /// pass's data, apart from the learning indexes in `left_contexts`.
    known: Vec<Vec<KnownContext>>,
    /// The left semi-contexts' learning indexes, by left id.
    left_contexts: Vec<LeftSemi>,
    /// Left semi-contexts with zero-level contexts, in the order they got their first.
    zero_level_lefts: Vec<u32>,
    /// Those lefts by their neuron facts, for crossing them on a learning step.
    zero_level_index: ZeroLevelIndex,
    /// A buffer for [`strongest_first`].
    keys: Vec<u128>,
    contexts: Vec<Context>,
    /// By context id: times it came true (saturating).
    counts: Vec<u32>,
    /// The zero-level context created at this step (excluded from its own prediction).
    new_context: Option<u32>,
    max_contexts: usize,
    /// Steps already predicted, replayed when the same step comes again.
    replays: Replays,
    /// Whether [`Replays`] are recorded and used (off only to test them against the
    /// full prediction).
    replaying: bool,
    /// Steps so far (replayed, repeated or predicted in full).
    tick: u64,
    /// A recorded step repeated right after its own replay, and how many times since:
    /// its contexts that came true are that many counts behind (see
    /// [`ContextMemory::repeat`]).
    pending: Option<(u32, u32)>,
}

impl ContextMemory {
    /// Looks the context up, creating it if new and there is room. Returns whether it
    /// was new; a zero-level lookup of an existing context marks it zero-level. Once
    /// the memory is full a new context still counts as new but is not stored.
    fn remember(&mut self, left: &[u64], right: &[u64], zero_level: bool) -> bool {
        let known = self
            .left
            .get(left)
            .zip(self.right.get(right))
            .and_then(|(l, r)| self.left_contexts[l as usize].by_right.get(&r).copied());
        if let Some(c) = known {
            if zero_level {
                self.mark_zero_level(c);
            }
            return false;
        }
        if self.contexts.len() >= self.max_contexts {
            return true;
        }
        let (l, new_left) = self.left.id(left);
        if new_left {
            self.left_contexts.push(LeftSemi::default());
            self.known.push(Vec::new());
        }
        let (r, _) = self.right.id(right);
        let id = self.contexts.len() as u32;
        self.left_contexts[l as usize].by_right.insert(r, id);
        let right_value = self.right.semis[r as usize].value;
        debug_assert_eq!(
            self.right.semis[r as usize].neurons_len, 0,
            "a right semi-context holds no neuron facts"
        );
        self.known[l as usize].push(KnownContext { right_value, id });
        self.counts.push(0);
        self.contexts.push(Context {
            left: l,
            right: r,
            zero_level: false,
        });
        self.replays.learn(left, right_value, id);
        if zero_level {
            self.mark_zero_level(id);
            self.new_context = Some(id);
        }
        true
    }

    fn mark_zero_level(&mut self, c: u32) {
        let ctx = &mut self.contexts[c as usize];
        if !ctx.zero_level {
            ctx.zero_level = true;
            let semi = &mut self.left_contexts[ctx.left as usize];
            if semi.zero_level.is_empty() {
                self.zero_level_lefts.push(ctx.left);
                let facts = &self.left.semis[ctx.left as usize];
                self.zero_level_index.add(self.left.neurons(facts));
            }
            semi.zero_level
                .push((self.right.semis[ctx.right as usize].value, c));
        }
    }

    /// With the left side's held semi-contexts collected for the previous step and the
    /// right side given this one: the contexts predicted (left fully present), those
    /// that came true (right fully present too), and, when `learning`, the partial
    /// crossings of zero-level contexts worth learning as new contexts (as masks over
    /// the two steps' facts).
    ///
    /// The same verdicts as CAD OSE's single pass over every crossed context, in two
    /// passes that skip what cannot matter: only a fully present left predicts, and only
    /// zero-level contexts spawn new ones.
    fn predict(
        &mut self,
        learning: bool,
        previous: &[u64],
        cfg: &ContextConfig,
        out: &mut Prediction,
    ) {
        debug_assert!(self.pending.is_none(), "counts settled before a prediction");
        out.predicted = 0;
        out.came_true = 0;
        out.potential.clear();
        // The context created at this step is the last of its left's: it does not
        // predict itself.
        let new_left = self.new_context.map(|c| self.contexts[c as usize].left);
        let now = self.right.query.value;
        for &lid in &self.left.full {
            let mut known = &self.known[lid as usize][..];
            if new_left == Some(lid) {
                debug_assert_eq!(known.last().map(|k| k.id), self.new_context);
                known = &known[..known.len() - 1];
            }
            out.predicted += known.len();
            // About half the predicted contexts come true, at random: a branch on it
            // would mispredict half the time, so the count and the list of those that
            // came true are updated without one (every entry is written, and kept by
            // advancing the end only if it came true).
            let mut end = out.came_true;
            if out.came.len() < end + known.len() {
                out.came.resize(end + known.len(), 0);
            }
            for known in known {
                let hit = known.right_value & !now == 0;
                let count = &mut self.counts[known.id as usize];
                *count = count.saturating_add(u32::from(hit));
                out.came[end] = known.id;
                end += usize::from(hit);
            }
            out.came_true = end;
        }
        out.strongest = strongest_first(
            &mut out.came[..out.came_true],
            &self.counts,
            &self.contexts,
            cfg.max_active,
            &mut self.keys,
        );
        if learning {
            self.zero_level_index
                .cross(previous, self.left.query.value.count_ones());
            for (place, &lid) in self.zero_level_lefts.iter().enumerate() {
                let neurons = self.zero_level_index.take_hits(place);
                let left = self.left.crossing_given(lid, neurons);
                debug_assert_eq!(left, self.left.crossing(lid), "left {lid}");
                if left.hits == 0 || left.hits as usize > cfg.max_left_facts {
                    continue;
                }
                // A left's potentials differ only by their right masks, a few at most
                // (subsets of this step's value facts) however many zero-level contexts
                // it has: each is listed once here, not once per context.
                let from = out.potential.len();
                for &(right_value, cid) in &self.left_contexts[lid as usize].zero_level {
                    let held = right_value & now;
                    let right_full = held == right_value;
                    if held == 0 || (left.full && right_full) || self.new_context == Some(cid) {
                        continue;
                    }
                    let right = positions(held, now);
                    if !out.potential[from..].iter().any(|&(_, r)| r == right) {
                        out.potential.push((left.mask, right));
                    }
                }
            }
        }
        self.new_context = None;
    }

    /// The replay of the step just replayed, again: a series holding its level (on the
    /// bench series, 49% of replays; 44% of their counting passes go). Between the two only that
    /// step's contexts that came true were counted, each once, so their order is the
    /// same and the strongest are the same: counting them is all a repeat would do, and
    /// it is deferred until another step reads counts ([`ContextMemory::settle`]), one
    /// pass for the whole run. Returns (contexts predicted, contexts that came true).
    ///
    /// Only when no count can saturate (`steps_fit_a_count` in [`ContextMemory::replay`]):
    /// a saturated count would stop moving with the others.
    fn repeat(&mut self, step: usize) -> (usize, usize) {
        let times = match self.pending {
            Some((pending, times)) => {
                debug_assert_eq!(pending as usize, step, "another step settles first");
                times
            }
            None => 0,
        };
        self.pending = Some((step as u32, times.saturating_add(1)));
        let step = &mut self.replays.steps[step];
        // A repeat counts all its contexts alike: the lead stays.
        step.checked_at = self.tick;
        (step.predicted, step.came.len())
    }

    /// Counts the repeats [`ContextMemory::repeat`] deferred; called before anything
    /// reads or changes counts or the recorded steps.
    fn settle(&mut self) {
        if let Some((step, times)) = self.pending.take() {
            count_again(
                &self.replays.steps[step as usize].came,
                &mut self.counts,
                times,
            );
        }
    }

    /// The prediction of a step seen before, replayed: its contexts that came true are
    /// counted again, and the strongest found again where the counts moved them.
    /// Returns (contexts predicted, the contexts that came true, strongest first, and how
    /// many are the strongest).
    ///
    /// `steps_fit_a_count`: fewer steps so far than a count can hold, so no count can
    /// saturate (a context is counted at most once a step).
    fn replay(
        &mut self,
        step: usize,
        max_active: usize,
        steps_fit_a_count: bool,
    ) -> (usize, &[u32], usize) {
        self.settle();
        let step = &mut self.replays.steps[step];
        let (counts, contexts) = (&mut self.counts, &self.contexts);
        let strongest = step.came.len().min(max_active);
        // Steps since this one's last replay or repeat, none of them this one: each
        // counted any context at most once, so the rest have gained at most that many
        // counts on the strongest. While that is less than the lead the strongest had
        // then, they are still the strongest, and counting is all there is to do.
        let others = (self.tick - step.checked_at).saturating_sub(1);
        step.checked_at = self.tick;
        if steps_fit_a_count && u64::from(step.lead) > others {
            count_again(&step.came, counts, 1);
            step.lead -= others as u32;
            return (step.predicted, &step.came, strongest);
        }
        let (top, rest) = step.came.split_at(strongest);
        // The strongest are ranked by count alone too: their full keys matter only on
        // a tie with the rest (below).
        let mut weakest_count = u32::MAX;
        for &id in top {
            let count = &mut counts[id as usize];
            *count = count.saturating_add(1);
            weakest_count = weakest_count.min(*count);
        }
        // The rest are many: counted, and ranked by count alone; the full key only
        // matters when a count ties with the weakest of the strongest.
        let most_rest = if steps_fit_a_count {
            count_rest::<false>(rest, counts)
        } else {
            count_rest::<true>(rest, counts)
        };
        // Usually the same contexts stay the strongest; only when one of the rest has
        // overtaken them is the selection redone.
        let overtaken = match most_rest.cmp(&weakest_count) {
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Greater => true,
            // A tie (11% of replays on the bench series): ranked by the rest of the key,
            // (left, id), among the contexts at that count (those above it are stronger).
            std::cmp::Ordering::Equal => {
                let tied = |id: u32| {
                    (counts[id as usize] == weakest_count)
                        .then(|| u64::from(contexts[id as usize].left) << 32 | u64::from(id))
                };
                let strongest_rest = rest.iter().map(|&id| tied(id).unwrap_or(0)).max();
                let weakest_top = top.iter().map(|&id| tied(id).unwrap_or(u64::MAX)).min();
                strongest_rest > weakest_top
            }
        };
        if overtaken {
            strongest_first(&mut step.came, counts, contexts, max_active, &mut self.keys);
            // Other strongest, so other next facts: the steps that followed may not.
            step.next.clear();
        }
        step.lead = if most_rest < weakest_count && steps_fit_a_count {
            weakest_count - most_rest
        } else {
            0
        };
        (step.predicted, &step.came, strongest)
    }
}

/// Counts these contexts `times` more, where no count can saturate (fewer steps so far
/// than a count holds, and a context is counted at most once a step): the deferred
/// repeats of [`ContextMemory::settle`] and the replays within their lead.
fn count_again(ids: &[u32], counts: &mut [u32], times: u32) {
    for &id in ids {
        counts[id as usize] += times;
    }
}

/// Counts these contexts once more and returns their largest count. Four running
/// maxima, not one: a single one is a chain of dependent compares through the whole
/// loop, four let consecutive contexts be counted side by side. `SATURATE` off (when no
/// count can reach `u32::MAX`, see [`ContextMemory::replay`]) drops an instruction of
/// the few each context costs.
fn count_rest<const SATURATE: bool>(rest: &[u32], counts: &mut [u32]) -> u32 {
    let bump = |count: u32| {
        if SATURATE {
            count.saturating_add(1)
        } else {
            count.wrapping_add(1)
        }
    };
    let mut most = [0u32; 4];
    let mut quads = rest.chunks_exact(4);
    for ids in &mut quads {
        for (most, &id) in most.iter_mut().zip(ids) {
            let count = &mut counts[id as usize];
            *count = bump(*count);
            *most = (*most).max(*count);
        }
    }
    for &id in quads.remainder() {
        let count = &mut counts[id as usize];
        *count = bump(*count);
        most[0] = most[0].max(*count);
    }
    most.into_iter().max().unwrap_or(0)
}

/// Reorders the ids of contexts that came true so the `max_active` strongest come first,
/// in id order (so they are the next step's neuron facts in order); returns how many
/// that is. The keys are distinct, so it is the same set whatever the order they came in.
/// The keys are computed once into `keys` (a buffer), not at every comparison: the
/// select compares each several times, and a key is two loads from large arrays.
fn strongest_first(
    came: &mut [u32],
    counts: &[u32],
    contexts: &[Context],
    max_active: usize,
    keys: &mut Vec<u128>,
) -> usize {
    if came.len() > max_active {
        keys.clear();
        keys.extend(came.iter().map(|&id| strength(counts, contexts, id)));
        let weaker = keys.len() - max_active;
        keys.select_nth_unstable(weaker);
        let (rest, strongest) = keys.split_at(weaker);
        for (id, key) in came.iter_mut().zip(strongest.iter().chain(rest)) {
            // A key ends in its context's id.
            *id = *key as u32;
        }
    }
    let strongest = came.len().min(max_active);
    came[..strongest].sort_unstable();
    strongest
}

/// Steps already predicted, by (previous step's facts, this step's value facts), for
/// replay.
///
/// A step's prediction depends only on those facts and the memory: which contexts it
/// predicts and which came true. On a series that has settled nearly every step has
/// been seen before (99% on a noisy daily cycle), and replaying one touches only the
/// contexts that came true. A recorded step stays exact as the memory grows: each new
/// context is added to the steps whose facts hold its left ([`Replays::learn`]). Steps
/// that learn a new zero-level context are never recorded or replayed (they exclude
/// that context from their own prediction, and learn); a step is recorded the second
/// time it is predicted. Bounded: past [`MAX_REPLAY_STEPS`] steps or
/// [`MAX_REPLAY_SLOTS`] ids the record starts over.
#[derive(Debug, Clone, Default)]
struct Replays {
    /// The previous step's facts followed by this step's value bits → index in `steps`.
    by_facts: FastMap<Facts, u32>,
    /// A lookup's key, kept to build keys without allocating.
    key: Facts,
    steps: Vec<ReplayStep>,
    /// Context ids held by all steps' `came`.
    slots: usize,
    /// The recorded step whose prediction gave the last step's facts, if any: where
    /// the lookup of the next starts ([`ReplayStep::next`]).
    last: Option<u32>,
    /// Hashes of the keys of steps predicted once and not recorded yet.
    seen_once: FastSet<u64>,
}

/// Context ids the replay record holds at most, over all its steps (4 bytes each).
const MAX_REPLAY_SLOTS: usize = 1 << 17;
/// Steps the replay record holds at most.
const MAX_REPLAY_STEPS: usize = 1 << 12;
/// Steps predicted once that the record remembers at most (8 bytes each).
const MAX_SEEN_ONCE: usize = 1 << 14;
/// Steps that followed a step a [`ReplayStep`] links to at most.
const MAX_REPLAY_NEXT: usize = 8;

#[derive(Debug, Clone)]
struct ReplayStep {
    /// The previous step's facts (the key's), as value bits and sorted neuron ids, to
    /// test a new context's left against.
    left_value: u64,
    left_neurons: Vec<u32>,
    /// This step's value facts.
    value: u64,
    predicted: usize,
    /// Contexts that came true, the strongest (as of the last replay) first.
    came: Vec<u32>,
    /// Steps that followed this one, by their value facts: their previous facts are this
    /// step's value facts and strongest contexts, so while those stay the same a lookup
    /// needs no hashing. Cleared when the strongest change.
    next: Vec<(u64, u32)>,
    /// The step ([`ContextMemory::tick`]) of its last replay or repeat, and by how many
    /// counts at least its weakest strongest context then led the rest (0: unknown).
    checked_at: u64,
    lead: u32,
}

impl Replays {
    /// The recorded step of these previous facts and value facts.
    fn find(&mut self, previous: &[u64], value: u64) -> Option<usize> {
        let last = self.last.map(|i| i as usize);
        if let Some(last) = last {
            let next = &self.steps[last].next;
            if let Some(&(_, i)) = next.iter().find(|(v, _)| *v == value) {
                debug_assert_eq!(self.steps[i as usize].value, value);
                return Some(i as usize);
            }
        }
        self.key.clear();
        self.key.extend_from_slice(previous);
        self.key.push(value);
        let found = self.by_facts.get(&self.key[..]).copied()?;
        if let Some(last) = last {
            let next = &mut self.steps[last].next;
            if next.len() < MAX_REPLAY_NEXT {
                next.push((value, found));
            }
        }
        Some(found as usize)
    }

    /// Records a step (`came` strongest first) the second time it is predicted, and
    /// returns its index then: a step seen once may never come again (on white noise
    /// almost none do), and noting it costs a hash where recording it costs a copy.
    fn record(
        &mut self,
        previous: &[u64],
        value: u64,
        predicted: usize,
        came: &[u32],
        tick: u64,
    ) -> Option<u32> {
        let hash = BuildHasherDefault::<FxHasher>::default().hash_one((previous, value));
        if self.seen_once.len() >= MAX_SEEN_ONCE {
            self.seen_once.clear();
        }
        if self.seen_once.insert(hash) {
            return None;
        }
        if self.slots + came.len() > MAX_REPLAY_SLOTS || self.steps.len() >= MAX_REPLAY_STEPS {
            self.clear();
        }
        let (left_value, left_neurons) = split_facts(previous);
        let id = self.steps.len() as u32;
        self.steps.push(ReplayStep {
            left_value,
            left_neurons,
            value,
            predicted,
            came: came.to_vec(),
            next: Vec::new(),
            checked_at: tick,
            lead: 0,
        });
        self.slots += came.len();
        let mut key = previous.to_vec();
        key.push(value);
        self.by_facts.insert(key, id);
        Some(id)
    }

    /// A new context: every recorded step whose previous facts hold its left predicts
    /// it, and those whose value facts hold its right saw it come true.
    fn learn(&mut self, left: &[u64], right_value: u64, id: u32) {
        if self.steps.is_empty() {
            return;
        }
        let (value, neurons) = split_facts(left);
        let mut added = 0;
        for step in &mut self.steps {
            if value & !step.left_value != 0 || !is_sorted_subset(&neurons, &step.left_neurons) {
                continue;
            }
            step.predicted += 1;
            if right_value & !step.value == 0 {
                // It may be among the strongest at once (if fewer than `max_active`).
                step.came.push(id);
                step.next.clear();
                // It may lead or trail: the lead is known again at the next replay.
                step.lead = 0;
                added += 1;
            }
        }
        self.slots += added;
        if self.slots > MAX_REPLAY_SLOTS {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.by_facts.clear();
        self.steps.clear();
        self.slots = 0;
        self.last = None;
    }

    fn state_bytes(&self) -> usize {
        let map_entry = 16;
        let neurons: usize = self.steps.iter().map(|s| s.left_neurons.len()).sum();
        let next: usize = self.steps.iter().map(|s| s.next.len()).sum();
        let key_facts: usize = self.by_facts.keys().map(Vec::len).sum();
        self.steps.len()
            * (std::mem::size_of::<ReplayStep>() + std::mem::size_of::<(Facts, u32)>() + map_entry)
            + neurons * std::mem::size_of::<u32>()
            + key_facts * std::mem::size_of::<u64>()
            + next * std::mem::size_of::<(u64, u32)>()
            + self.slots * std::mem::size_of::<u32>()
            + self.seen_once.len() * (std::mem::size_of::<u64>() + 8)
    }
}

/// The positions among a step's value facts (`step`, as [`value_bit`]s, which keep
/// fact order) of those in `held` (a subset), as a mask.
///
/// Without a loop over the bits: a step has one fact per bit of its level, `2i + bit`
/// for bits `i` = 0, 1, …, so the fact of level bit `i` is at position `i` — each pair
/// of value bits folds into one, and the pairs are packed together — and the
/// below-range fact (bit 62) comes after them all.
fn positions(held: u64, step: u64) -> u64 {
    const LEVELS: u64 = (1 << 62) - 1;
    let pairs = held & LEVELS;
    let mut x = (pairs | pairs >> 1) & 0x5555_5555_5555_5555;
    x = (x | x >> 1) & 0x3333_3333_3333_3333;
    x = (x | x >> 2) & 0x0f0f_0f0f_0f0f_0f0f;
    x = (x | x >> 4) & 0x00ff_00ff_00ff_00ff;
    x = (x | x >> 8) & 0x0000_ffff_0000_ffff;
    x = (x | x >> 16) & 0x0000_0000_ffff_ffff;
    let below = held >> 62 & 1;
    let mask = x | below << (step & LEVELS).count_ones();
    debug_assert_eq!(
        mask,
        positions_by_rank(held, step),
        "{held:#x} in {step:#x}"
    );
    mask
}

/// [`positions`], bit by bit: each bit's rank among the step's.
fn positions_by_rank(held: u64, step: u64) -> u64 {
    let mut mask = 0u64;
    let mut bits = held;
    while bits != 0 {
        let b = bits.trailing_zeros();
        mask |= 1 << (step & ((1u64 << b) - 1)).count_ones();
        bits &= bits - 1;
    }
    mask
}

/// Sorted facts as (value bits, sorted neuron ids).
fn split_facts(facts: &[u64]) -> (u64, Vec<u32>) {
    let neurons = facts
        .iter()
        .filter(|&&f| value_bit(f).is_none())
        .map(|&f| (f - NEURON) as u32)
        .collect();
    (value_bits(facts), neurons)
}

/// The value facts of these facts, as [`value_bit`]s.
fn value_bits(facts: &[u64]) -> u64 {
    facts
        .iter()
        .filter_map(|&f| value_bit(f))
        .fold(0, |bits, b| bits | 1 << b)
}

/// Whether every element of the sorted `small` is in the sorted `large`.
fn is_sorted_subset(small: &[u32], large: &[u32]) -> bool {
    let mut large = large.iter();
    small.iter().all(|x| large.any(|y| y == x))
}

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

#[cfg(test)]
mod tests {
    use super::super::noise;
    use super::*;

    /// Every context's count, the repeats still deferred included.
    fn settled_counts(m: &ContextLearner) -> Vec<u32> {
        let mut memory = m.memory.clone();
        memory.settle();
        memory.counts
    }

    fn run(m: &mut ContextLearner, xs: &[f64], from: usize) -> Vec<f64> {
        xs.iter()
            .enumerate()
            .map(|(i, &x)| m.update(((from + i) * 300) as i64, x).value)
            .collect()
    }

    #[test]
    fn a_new_sequence_inside_the_usual_range_is_news() {
        // A sawtooth 0..7 learnt for 3000 points, then the same values in another order:
        // nothing is out of range, every value has been seen thousands of times, only
        // the sequence is new. A value-deviation method sees nothing; context learning does.
        let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
        let saw: Vec<f64> = (0..3000).map(|i| (i % 8) as f64).collect();
        let learnt = run(&mut m, &saw, 0);
        let settled = learnt[2000..].iter().cloned().fold(0.0, f64::max);
        assert!(settled < 0.3, "a learnt sawtooth still scores {settled}");
        let shuffled: Vec<f64> = (0..40).map(|i| ((i * 5 + 3) % 8) as f64).collect();
        let scores = run(&mut m, &shuffled, 3000);
        let peak = scores.iter().cloned().fold(0.0, f64::max);
        assert!(peak >= 0.75, "the new sequence scored only {peak}");
        let s = m.update(3040 * 300, 1.0);
        assert!(s.explanation().contains("never seen before"), "{s}");
    }

    #[test]
    fn a_new_extreme_is_new_facts() {
        let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
        let mut r = noise(5);
        let xs: Vec<f64> = (0..2000).map(|i| 10.0 + (i % 24) as f64 + r()).collect();
        run(&mut m, &xs, 0);
        let before = m.facts(20.0);
        let beyond = m.facts(500.0);
        assert_eq!(before.len(), 3);
        assert!(beyond.len() > 3 && beyond.iter().any(|f| !before.contains(f) && *f >= 6));
        assert!(m.facts(-500.0).contains(&(NEURON - 1)));
    }

    #[test]
    fn a_known_range_is_used_as_given() {
        let cfg = ContextConfig {
            range: Some([0.0, 100.0]),
            ..ContextConfig::default()
        };
        let mut m = ContextLearner::new(cfg).expect("valid");
        m.update(0, 50.0);
        assert_eq!((m.lo, m.hi), (0.0, 100.0));
        // 3 bits over 0..100: 100 is level 7, 50 level 3.
        assert_eq!(m.facts(100.0), vec![1, 3, 5]);
        assert_eq!(m.facts(50.0), vec![1, 3, 4]);
        for bad in [[1.0, 1.0], [2.0, 1.0], [0.0, f64::INFINITY]] {
            let cfg = ContextConfig {
                range: Some(bad),
                ..ContextConfig::default()
            };
            assert!(ContextLearner::new(cfg).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn memory_stops_at_its_cap_and_state_stops_growing() {
        // White noise makes new contexts all the time: the worst case for memory.
        let cfg = ContextConfig {
            max_contexts: 2048,
            ..ContextConfig::default()
        };
        let mut m = ContextLearner::new(cfg).expect("valid");
        let mut r = noise(11);
        let xs: Vec<f64> = (0..6000).map(|_| r() * 100.0).collect();
        run(&mut m, &xs[..3000], 0);
        assert_eq!(m.memory.contexts.len(), 2048);
        let memory = |m: &ContextLearner| m.state_bytes() - m.memory.replays.state_bytes();
        let full = memory(&m);
        let scores = run(&mut m, &xs[3000..], 3000);
        assert_eq!(memory(&m), full, "state grew past the cap");
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)));
        // The replay record has its own bound: its steps, their keys (the previous
        // step's facts and a value) and neuron ids, the context ids they hold, and the
        // hashes of steps seen once.
        let per_step = std::mem::size_of::<ReplayStep>()
            + std::mem::size_of::<(Facts, u32)>()
            + 16
            + (MAX_FACTS + 1) * std::mem::size_of::<u64>()
            + MAX_FACTS * std::mem::size_of::<u32>();
        let bound = MAX_REPLAY_STEPS * per_step
            + MAX_REPLAY_SLOTS * std::mem::size_of::<u32>()
            + MAX_SEEN_ONCE * 16;
        assert!(m.memory.replays.state_bytes() <= bound);
    }

    #[test]
    fn rests_after_an_alarm() {
        let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
        let saw: Vec<f64> = (0..3000).map(|i| (i % 8) as f64).collect();
        run(&mut m, &saw, 0);
        let odd: Vec<f64> = (0..200).map(|i| ((i * 5 + 3) % 8) as f64).collect();
        let scores = run(&mut m, &odd, 3000);
        let first = scores.iter().position(|&s| s >= 0.75).expect("an alarm");
        let rest = &scores[first + 1..(first + 1 + 150).min(scores.len())];
        assert!(rest.iter().all(|&s| s == 0.0), "no rest after the alarm");
    }

    #[test]
    fn non_finite_values_are_skipped_and_not_learnt() {
        let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
        for x in [1.0, f64::NAN, f64::INFINITY, 2.0] {
            let s = m.update(0, x);
            assert!(s.value.is_finite());
        }
        assert_eq!(m.seen, 2);
        assert_eq!((m.lo, m.hi), (1.0, 2.0));
    }

    #[test]
    fn a_replayed_step_scores_as_the_full_prediction_does() {
        // Series that settle (nearly every step replayed; the daily one also fills the
        // record's bound on context ids, so the record starts over once), that keep
        // learning (new contexts added to recorded steps), that fill the memory, and
        // that change their sequence after settling: every score and every context's
        // count must be the same as without replays.
        let mut r = noise(3);
        let daily: Vec<f64> = (0..20_000)
            .map(|i| 50.0 + 20.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + 5.0 * r())
            .collect();
        let mut walk = vec![0.0];
        for _ in 0..6000 {
            walk.push(walk[walk.len() - 1] + r() - 0.5);
        }
        let white: Vec<f64> = (0..6000).map(|_| r() * 100.0).collect();
        let saw: Vec<f64> = (0..8000)
            .map(|i| if i < 5000 { i % 8 } else { (i * 5 + 3) % 8 } as f64)
            .collect();
        let small = ContextConfig {
            max_contexts: 2048,
            ..ContextConfig::default()
        };
        let cases = [
            ("daily", ContextConfig::default(), daily),
            ("walk", ContextConfig::default(), walk),
            ("white, memory full", small, white),
            (
                "sawtooth, then another order",
                ContextConfig::default(),
                saw,
            ),
        ];
        for (name, cfg, xs) in cases {
            let mut replaying = ContextLearner::new(cfg.clone()).expect("valid");
            let mut full = ContextLearner::new(cfg).expect("valid");
            full.memory.replaying = false;
            for (i, &x) in xs.iter().enumerate() {
                let (a, b) = (replaying.update(i as i64, x), full.update(i as i64, x));
                assert_eq!(a.value.to_bits(), b.value.to_bits(), "{name}: point {i}");
            }
            assert_eq!(settled_counts(&replaying), settled_counts(&full), "{name}");
            assert!(full.memory.replays.steps.is_empty());
            if name == "daily" {
                // Each step neither replayed nor learning is recorded: few were not replays.
                let recorded = replaying.memory.replays.steps.len();
                assert!(recorded < xs.len() / 10, "{recorded} steps recorded");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 48,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any series (a few levels, so steps repeat; a motif repeated, so they settle;
        /// rare jumps beyond the range), any cap and strongest count: replays change
        /// nothing.
        #[test]
        fn replays_are_exact_on_any_series(
            motif in proptest::collection::vec(0u8..6, 2..24),
            noise in proptest::collection::vec(0u8..6, 600..1200),
            jumps in proptest::collection::vec(0usize..1200, 0..4),
            max_contexts in 16usize..700,
            max_active in 1usize..20,
        ) {
            let xs: Vec<f64> = noise
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let level = if i % 3 == 0 { n } else { motif[i % motif.len()] };
                    if jumps.contains(&i) { 40.0 } else { f64::from(level) }
                })
                .collect();
            let cfg = ContextConfig { max_contexts, max_active, min_points: 0, ..ContextConfig::default() };
            let mut replaying = ContextLearner::new(cfg.clone()).expect("valid");
            let mut full = ContextLearner::new(cfg).expect("valid");
            full.memory.replaying = false;
            for (i, &x) in xs.iter().enumerate() {
                let (a, b) = (replaying.update(i as i64, x), full.update(i as i64, x));
                proptest::prop_assert_eq!(a.value.to_bits(), b.value.to_bits(), "point {}", i);
            }
            proptest::prop_assert_eq!(settled_counts(&replaying), settled_counts(&full));
        }

        /// Any series, any cap (full memories and growing ones): looking a learning
        /// step's potential contexts up by mask gives what remembering each gives.
        #[test]
        fn looking_potential_contexts_up_is_remembering_them(
            noise in proptest::collection::vec(0u8..8, 300..900),
            jumps in proptest::collection::vec(0usize..900, 0..4),
            max_contexts in 16usize..3000,
        ) {
            let xs: Vec<f64> = noise
                .iter()
                .enumerate()
                .map(|(i, &n)| if jumps.contains(&i) { 40.0 } else { f64::from(n) })
                .collect();
            let cfg = ContextConfig { max_contexts, min_points: 0, ..ContextConfig::default() };
            let mut looking = ContextLearner::new(cfg.clone()).expect("valid");
            let mut plain = ContextLearner::new(cfg).expect("valid");
            plain.looking_up = false;
            for (i, &x) in xs.iter().enumerate() {
                let (a, b) = (looking.update(i as i64, x), plain.update(i as i64, x));
                proptest::prop_assert_eq!(a.value.to_bits(), b.value.to_bits(), "point {}", i);
            }
            proptest::prop_assert_eq!(looking.memory.contexts.len(), plain.memory.contexts.len());
            proptest::prop_assert_eq!(settled_counts(&looking), settled_counts(&plain));
        }
    }

    #[test]
    fn positions_by_folding_are_positions_by_rank() {
        // Steps of every width (up to the 31 facts of a huge level) and below the range:
        // for subsets of their facts, folding value bits gives each one's rank.
        for bits in [1, 3, 8, 16] {
            let cfg = ContextConfig {
                bits,
                range: Some([0.0, 100.0]),
                ..ContextConfig::default()
            };
            let m = ContextLearner::new(cfg).expect("valid");
            for x in [
                -5e12, -250.0, -1.0, 0.0, 3.3, 50.0, 99.9, 100.0, 250.0, 7e8, 1e15,
            ] {
                let step = value_bits(&m.facts(x));
                for k in 0..4096u64 {
                    let held = step & k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    assert_eq!(
                        positions(held, step),
                        positions_by_rank(held, step),
                        "{held:#x} of {step:#x} ({x})"
                    );
                }
            }
        }
    }

    #[test]
    fn the_anchor_index_finds_exactly_the_fully_held_semi_contexts() {
        // A noisy seasonal series builds semi-contexts with value and neuron facts; at
        // every step, the anchor lookup must agree with testing every semi-context.
        let mut m = ContextLearner::new(ContextConfig::default()).expect("valid");
        let mut r = noise(7);
        for i in 0..4000 {
            let x = 50.0 + 20.0 * (i as f64 / 40.0).sin() + 8.0 * r();
            m.update(i * 60, x);
            if i % 8 != 0 {
                continue;
            }
            m.catch_up_left();
            let side = &mut m.memory.left;
            side.collect_full(&m.previous);
            let side = &m.memory.left;
            let held: std::collections::BTreeSet<u32> = side
                .ids
                .iter()
                .filter(|(facts, _)| facts.iter().all(|f| m.previous.contains(f)))
                .map(|(_, &id)| id)
                .collect();
            let found: std::collections::BTreeSet<u32> = side.full.iter().copied().collect();
            assert_eq!(found, held, "step {i}");
            assert_eq!(found.len(), side.full.len(), "a semi-context found twice");
            for (facts, &id) in &side.ids {
                let c = side.crossing(id);
                let expected = facts.iter().filter(|f| m.previous.contains(f)).count();
                assert_eq!(c.hits as usize, expected, "step {i}");
                assert_eq!(c.full, expected == facts.len());
            }
        }
        assert!(
            m.memory.left.neuron_pool.len() > 100,
            "few neuron facts learnt"
        );
    }
}
