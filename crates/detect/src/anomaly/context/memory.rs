//! The context memory: semi-contexts filed under an anchor fact, their two sides,
//! the zero-level index of lefts by neuron fact, and counting contexts by strength.

use super::*;

/// A semi-context's facts, split for fast set tests: the value facts as bits of `value`
/// (see [`value_bit`]), the neuron facts as sorted context ids in its side's pool.
#[derive(Debug, Clone, Copy)]
pub(super) struct SemiFacts {
    pub(super) value: u64,
    pub(super) neurons_at: u32,
    pub(super) neurons_len: u32,
}

/// The bit of a value fact in [`SemiFacts::value`], or `None` for a neuron fact. Value
/// facts are `2i + bit` for i < 31 (at most 61) and the below-range fact `NEURON − 1`
/// (bit 62): bit order is fact order, so a bit's rank among a step's value bits is the
/// fact's position in the step's sorted facts.
pub(super) fn value_bit(fact: u64) -> Option<u32> {
    match fact {
        f if f < 62 => Some(f as u32),
        f if f == NEURON - 1 => Some(62),
        _ => None,
    }
}

/// A context as a neuron fact, seen from one side.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct NeuronSlot {
    /// Steps predicted in full (not replayed) that held it, for anchoring: those are
    /// the steps that look semi-contexts up by anchor.
    pub(super) seen: u32,
    /// Equal to the side's stamp when the last step held it, at `position` among the
    /// step's neuron facts.
    pub(super) stamp: u32,
    pub(super) position: u32,
}

/// One step's facts, as a side was crossed with them: the value facts as bits; the
/// neuron facts are marked in the side's [`NeuronSlot`]s, and counted here.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Query {
    pub(super) value: u64,
    pub(super) neurons: u32,
}

/// Which of a semi-context's facts a step has: a mask over the positions of that step's
/// (sorted) facts, so the mask also gives the facts in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Crossing {
    pub(super) mask: u64,
    pub(super) hits: u32,
    pub(super) full: bool,
}

/// A left semi-context's contexts, as learning looks them up.
#[derive(Debug, Clone, Default)]
pub(super) struct LeftSemi {
    /// Its zero-level contexts (the only ones that spawn new contexts), as (their right
    /// semi-context's facts as [`value_bit`]s, id): a right semi-context holds value
    /// facts only, so crossing it with a step is a mask test, with no lookup.
    pub(super) zero_level: Vec<(u64, u32)>,
    pub(super) by_right: FastMap<u32, u32>,
}

/// A context, as its left semi-context lists it: what the prediction pass reads, kept
/// together so that pass walks memory in order.
#[derive(Debug, Clone, Copy)]
pub(super) struct KnownContext {
    /// The right semi-context's facts, as [`value_bit`]s: a right semi-context is a
    /// step's own value facts (never neurons), so whether it came true is one mask test.
    pub(super) right_value: u64,
    pub(super) id: u32,
}

/// A context's halves. How often it came true is kept apart, in
/// [`ContextMemory::counts`]: replays touch nothing else, and a dense array of counts
/// spans a quarter of the cache lines.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    pub(super) left: u32,
    pub(super) right: u32,
    /// Learnt directly from two consecutive inputs (not from a partial crossing).
    pub(super) zero_level: bool,
}

/// A context's rank among the contexts that came true at a step: ordered as (times
/// active, left, id) and ending in its id, so the strongest are the largest keys and no
/// two contexts tie.
pub(super) fn strength(counts: &[u32], contexts: &[Context], id: u32) -> u128 {
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
pub(super) struct Side {
    pub(super) ids: FastMap<Facts, u32>,
    /// Per semi-context, in id order.
    pub(super) semis: Vec<SemiFacts>,
    pub(super) neuron_pool: Vec<u32>,
    /// Anchor fact → the semi-contexts filed under it, as (value facts, id): the value
    /// test needs no lookup.
    pub(super) anchored: FastMap<u64, Vec<(u64, u32)>>,
    /// Steps predicted in full that held each value bit, for anchoring.
    pub(super) value_seen: Vec<u32>,
    /// By context id.
    pub(super) neurons: Vec<NeuronSlot>,
    /// The last step's facts.
    pub(super) query: Query,
    /// Semi-contexts the last step held in full, once [`Side::collect_full`] found them.
    pub(super) full: Vec<u32>,
    /// Step counter marking which [`NeuronSlot`]s the last step held.
    pub(super) stamp: u32,
    /// Facts held in the keys (for `state_bytes`).
    pub(super) fact_slots: usize,
}

impl Side {
    pub(super) fn get(&self, facts: &[u64]) -> Option<u32> {
        self.ids.get(facts).copied()
    }

    /// Steps so far that held this fact.
    pub(super) fn seen(&self, fact: u64) -> u32 {
        match value_bit(fact) {
            Some(b) => self.value_seen.get(b as usize).copied().unwrap_or(0),
            None => {
                let id = (fact - NEURON) as usize;
                self.neurons.get(id).map_or(0, |slot| slot.seen)
            }
        }
    }

    /// The semi-context of these (sorted) facts, and whether it was created now.
    pub(super) fn id(&mut self, facts: &[u64]) -> (u32, bool) {
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

    pub(super) fn neurons(&self, semi: &SemiFacts) -> &[u32] {
        let at = semi.neurons_at as usize;
        &self.neuron_pool[at..at + semi.neurons_len as usize]
    }

    /// Takes a step's (sorted) facts as the side's last: what [`Side::crossing`] and
    /// the anchoring counts need, but not which semi-contexts it holds in full.
    pub(super) fn take(&mut self, facts: &[u64]) {
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
    pub(super) fn collect_full(&mut self, facts: &[u64]) {
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
    pub(super) fn holds_neuron(&self, id: u32) -> Option<u32> {
        self.neurons
            .get(id as usize)
            .filter(|slot| slot.stamp == self.stamp)
            .map(|slot| slot.position)
    }

    /// Which of the semi-context's facts the last step held.
    pub(super) fn crossing(&self, id: u32) -> Crossing {
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
    pub(super) fn crossing_given(&self, id: u32, neurons: u64) -> Crossing {
        let semi = &self.semis[id as usize];
        let mask = positions(semi.value & self.query.value, self.query.value) | neurons;
        let hits = mask.count_ones();
        Crossing {
            mask,
            hits,
            full: hits == semi.value.count_ones() + semi.neurons_len,
        }
    }

    pub(super) fn state_bytes(&self) -> usize {
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
pub(super) struct ZeroLevelIndex {
    pub(super) by_neuron: FastMap<u32, Vec<u32>>,
    /// By place: the neuron part of the left's crossing with the step being crossed,
    /// cleared as it is taken.
    pub(super) hits: Vec<u64>,
    /// Places listed in `by_neuron`, all lists together (for `state_bytes`).
    pub(super) entries: usize,
}

impl ZeroLevelIndex {
    /// The next left (at the next place) and its neuron facts.
    pub(super) fn add(&mut self, neurons: &[u32]) {
        let place = self.hits.len() as u32;
        for &n in neurons {
            self.by_neuron.entry(n).or_default().push(place);
        }
        self.entries += neurons.len();
        self.hits.push(0);
    }

    /// Marks, for each left, which of the step's (sorted) facts' neurons it holds: the
    /// neuron at position `i` among them is bit `values + i` of a crossing's mask.
    pub(super) fn cross(&mut self, facts: &[u64], values: u32) {
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
    pub(super) fn take_hits(&mut self, place: usize) -> u64 {
        std::mem::take(&mut self.hits[place])
    }

    pub(super) fn state_bytes(&self) -> usize {
        self.entries * std::mem::size_of::<u32>()
            + self.by_neuron.len() * (std::mem::size_of::<(u32, Vec<u32>)>() + 16)
            + self.hits.len() * std::mem::size_of::<u64>()
    }
}

/// The context memory: the two halves, and contexts joining a left and a right one.
#[derive(Debug, Clone, Default)]
pub(super) struct ContextMemory {
    pub(super) left: Side,
    pub(super) right: Side,
    /// Each left semi-context's contexts in creation order, by left id: the prediction
    /// pass's data, apart from the learning indexes in `left_contexts`.
    pub(super) known: Vec<Vec<KnownContext>>,
    /// The left semi-contexts' learning indexes, by left id.
    pub(super) left_contexts: Vec<LeftSemi>,
    /// Left semi-contexts with zero-level contexts, in the order they got their first.
    pub(super) zero_level_lefts: Vec<u32>,
    /// Those lefts by their neuron facts, for crossing them on a learning step.
    pub(super) zero_level_index: ZeroLevelIndex,
    /// A buffer for [`strongest_first`].
    pub(super) keys: Vec<u128>,
    pub(super) contexts: Vec<Context>,
    /// By context id: times it came true (saturating).
    pub(super) counts: Vec<u32>,
    /// The zero-level context created at this step (excluded from its own prediction).
    pub(super) new_context: Option<u32>,
    pub(super) max_contexts: usize,
    /// Steps already predicted, replayed when the same step comes again.
    pub(super) replays: Replays,
    /// Whether [`Replays`] are recorded and used (off only to test them against the
    /// full prediction).
    pub(super) replaying: bool,
    /// Steps so far (replayed, repeated or predicted in full).
    pub(super) tick: u64,
    /// A recorded step repeated right after its own replay, and how many times since:
    /// its contexts that came true are that many counts behind (see
    /// [`ContextMemory::repeat`]).
    pub(super) pending: Option<(u32, u32)>,
}

impl ContextMemory {
    /// Looks the context up, creating it if new and there is room. Returns whether it
    /// was new; a zero-level lookup of an existing context marks it zero-level. Once
    /// the memory is full a new context still counts as new but is not stored.
    pub(super) fn remember(&mut self, left: &[u64], right: &[u64], zero_level: bool) -> bool {
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

    pub(super) fn mark_zero_level(&mut self, c: u32) {
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
    pub(super) fn predict(
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
    pub(super) fn repeat(&mut self, step: usize) -> (usize, usize) {
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
    pub(super) fn settle(&mut self) {
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
    pub(super) fn replay(
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
pub(super) fn count_again(ids: &[u32], counts: &mut [u32], times: u32) {
    for &id in ids {
        counts[id as usize] += times;
    }
}

/// Counts these contexts once more and returns their largest count. Four running
/// maxima, not one: a single one is a chain of dependent compares through the whole
/// loop, four let consecutive contexts be counted side by side. `SATURATE` off (when no
/// count can reach `u32::MAX`, see [`ContextMemory::replay`]) drops an instruction of
/// the few each context costs.
pub(super) fn count_rest<const SATURATE: bool>(rest: &[u32], counts: &mut [u32]) -> u32 {
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
pub(super) fn strongest_first(
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

/// The positions among a step's value facts (`step`, as [`value_bit`]s, which keep
/// fact order) of those in `held` (a subset), as a mask.
///
/// Without a loop over the bits: a step has one fact per bit of its level, `2i + bit`
/// for bits `i` = 0, 1, …, so the fact of level bit `i` is at position `i` — each pair
/// of value bits folds into one, and the pairs are packed together — and the
/// below-range fact (bit 62) comes after them all.
pub(super) fn positions(held: u64, step: u64) -> u64 {
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
pub(super) fn positions_by_rank(held: u64, step: u64) -> u64 {
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
pub(super) fn split_facts(facts: &[u64]) -> (u64, Vec<u32>) {
    let neurons = facts
        .iter()
        .filter(|&&f| value_bit(f).is_none())
        .map(|&f| (f - NEURON) as u32)
        .collect();
    (value_bits(facts), neurons)
}

/// The value facts of these facts, as [`value_bit`]s.
pub(super) fn value_bits(facts: &[u64]) -> u64 {
    facts
        .iter()
        .filter_map(|&f| value_bit(f))
        .fold(0, |bits, b| bits | 1 << b)
}

/// Whether every element of the sorted `small` is in the sorted `large`.
pub(super) fn is_sorted_subset(small: &[u32], large: &[u32]) -> bool {
    let mut large = large.iter();
    small.iter().all(|x| large.any(|y| y == x))
}
