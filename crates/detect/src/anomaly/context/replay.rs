//! Replays: a bounded record of what each step seen before predicted, so a repeated
//! step is scored exactly without a full prediction.

use super::*;

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
pub(super) struct Replays {
    /// The previous step's facts followed by this step's value bits → index in `steps`.
    pub(super) by_facts: FastMap<Facts, u32>,
    /// A lookup's key, kept to build keys without allocating.
    pub(super) key: Facts,
    pub(super) steps: Vec<ReplayStep>,
    /// Context ids held by all steps' `came`.
    pub(super) slots: usize,
    /// The recorded step whose prediction gave the last step's facts, if any: where
    /// the lookup of the next starts ([`ReplayStep::next`]).
    pub(super) last: Option<u32>,
    /// Hashes of the keys of steps predicted once and not recorded yet.
    pub(super) seen_once: FastSet<u64>,
}

/// Context ids the replay record holds at most, over all its steps (4 bytes each).
pub(super) const MAX_REPLAY_SLOTS: usize = 1 << 17;
/// Steps the replay record holds at most.
pub(super) const MAX_REPLAY_STEPS: usize = 1 << 12;
/// Steps predicted once that the record remembers at most (8 bytes each).
pub(super) const MAX_SEEN_ONCE: usize = 1 << 14;
/// Steps that followed a step a [`ReplayStep`] links to at most.
pub(super) const MAX_REPLAY_NEXT: usize = 8;

#[derive(Debug, Clone)]
pub(super) struct ReplayStep {
    /// The previous step's facts (the key's), as value bits and sorted neuron ids, to
    /// test a new context's left against.
    pub(super) left_value: u64,
    pub(super) left_neurons: Vec<u32>,
    /// This step's value facts.
    pub(super) value: u64,
    pub(super) predicted: usize,
    /// Contexts that came true, the strongest (as of the last replay) first.
    pub(super) came: Vec<u32>,
    /// Steps that followed this one, by their value facts: their previous facts are this
    /// step's value facts and strongest contexts, so while those stay the same a lookup
    /// needs no hashing. Cleared when the strongest change.
    pub(super) next: Vec<(u64, u32)>,
    /// The step ([`ContextMemory::tick`]) of its last replay or repeat, and by how many
    /// counts at least its weakest strongest context then led the rest (0: unknown).
    pub(super) checked_at: u64,
    pub(super) lead: u32,
}

impl Replays {
    /// The recorded step of these previous facts and value facts.
    pub(super) fn find(&mut self, previous: &[u64], value: u64) -> Option<usize> {
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
    pub(super) fn record(
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
    pub(super) fn learn(&mut self, left: &[u64], right_value: u64, id: u32) {
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

    pub(super) fn clear(&mut self) {
        self.by_facts.clear();
        self.steps.clear();
        self.slots = 0;
        self.last = None;
    }

    pub(super) fn state_bytes(&self) -> usize {
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
