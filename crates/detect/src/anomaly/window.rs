//! Bounded windows the methods keep their history in.
//!
//! [`SortedWindow`] keeps the last `capacity` values both in arrival order (a ring, to know
//! which value leaves) and sorted (to read the median, quantiles and the MAD without sorting).
//! Each push is two binary searches plus two `memmove`s of at most `capacity` floats: no
//! allocation and no sort per point. A window nobody reads for a while (an ensemble
//! member its season gate weighs 0) takes points in arrival order only and sorts itself
//! again once, when next read (`push_unsorted`, `sort_again`).

use std::collections::VecDeque;

/// What [`SortedWindow::robust_scale`] never goes below besides its tiny absolute floor,
/// as the windowed methods configure it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScaleFloors {
    /// Share of the window's 5–95% spread.
    pub spread_share: f64,
    /// Multiple of the data's resolution.
    pub resolution_share: f64,
}

/// The last `capacity` finite values, in arrival order and sorted.
#[derive(Debug, Clone)]
pub struct SortedWindow {
    ring: Vec<f64>,
    head: usize,
    sorted: Vec<f64>,
    capacity: usize,
    /// Where the last MAD's selection ended: one push moves it by a step or two, so
    /// the next selection starts there instead of bisecting from scratch.
    mad_hint: std::cell::Cell<usize>,
    /// The smallest positive gap between two values that were in the window together: the
    /// data's resolution (1 for counts, 0.1 for a gauge rounded to one decimal). Never
    /// grows: a resolution seen once is the data's, even after those values leave.
    resolution: f64,
    /// `sorted` lags behind `ring` after [`SortedWindow::push_unsorted`], until
    /// [`SortedWindow::sort_again`].
    stale: bool,
}

impl SortedWindow {
    /// A window of at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: Vec::with_capacity(capacity),
            head: 0,
            sorted: Vec::with_capacity(capacity),
            capacity,
            mad_hint: std::cell::Cell::new(0),
            resolution: f64::INFINITY,
            stale: false,
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Adds `x`, evicting the oldest value when full. Non-finite values are ignored: they
    /// would poison the ordering (callers reject them before this point anyway).
    pub fn push(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        self.sort_again();
        if self.ring.len() < self.capacity {
            self.ring.push(x);
            let at = self.sorted.partition_point(|v| *v < x);
            self.sorted.insert(at, x);
            self.learn_resolution(at);
            return;
        }
        let old = std::mem::replace(&mut self.ring[self.head], x);
        self.head += 1;
        if self.head == self.capacity {
            self.head = 0;
        }
        // `old` leaves and `x` enters: only the values between their places move, by one
        // (one short `memmove` instead of a removal and an insertion over the tail).
        let (from, to) = lower_bounds(&self.sorted, old, x);
        let s = &mut self.sorted;
        if from >= s.len() {
            // `old` is in `sorted` by construction; guard anyway instead of panicking.
            s.insert(to, x);
            self.learn_resolution(to);
        } else if to > from {
            // old < x: the values in (from, to) shift down, x lands just below `to`.
            s.copy_within(from + 1..to, from);
            s[to - 1] = x;
            self.learn_resolution(to - 1);
        } else {
            // x <= old: the values in [to, from) shift up, x lands at `to`.
            s.copy_within(to..from, to + 1);
            s[to] = x;
            self.learn_resolution(to);
        }
    }

    /// Adds `x` like [`SortedWindow::push`], but to the arrival order only: for a caller
    /// that will not read the window for a while (the ensemble's gated members). The
    /// sorted values are rebuilt by [`SortedWindow::sort_again`] (or the next `push`),
    /// one sort instead of a search and a `memmove` every point. Reading the window
    /// before that is a bug (checked in debug builds).
    pub fn push_unsorted(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.ring.len() < self.capacity {
            self.ring.push(x);
        } else {
            self.ring[self.head] = x;
            self.head += 1;
            if self.head == self.capacity {
                self.head = 0;
            }
        }
        self.stale = true;
    }

    /// Brings the sorted values up to date after [`SortedWindow::push_unsorted`]; does
    /// nothing otherwise. The values are then what `push` would have given (as a
    /// multiset: equal values may sit in another order). The resolution is narrowed by
    /// every gap between neighbours in the window as it is now: the gaps that `push`
    /// would have seen between values that came and left meanwhile are not seen. On
    /// quantised data (counts, rounded gauges) whose window holds values one step apart
    /// the resolution is the same either way; on continuous data it is far below the
    /// other floors either way.
    pub fn sort_again(&mut self) {
        if !std::mem::take(&mut self.stale) {
            return;
        }
        self.sorted.clear();
        self.sorted.extend_from_slice(&self.ring);
        self.sorted.sort_unstable_by(f64::total_cmp);
        for pair in self.sorted.windows(2) {
            let gap = pair[1] - pair[0];
            if gap > 0.0 && gap < self.resolution {
                self.resolution = gap;
            }
        }
    }

    /// Narrows the resolution by the gaps between the value just placed at `at` and its
    /// sorted neighbours: two comparisons a push, where the true smallest gap of the
    /// window would need a pass over it.
    fn learn_resolution(&mut self, at: usize) {
        let s = &self.sorted;
        let x = s[at];
        let below = at.checked_sub(1).map(|i| x - s[i]);
        let above = s.get(at + 1).map(|v| v - x);
        for gap in [below, above].into_iter().flatten() {
            if gap > 0.0 && gap < self.resolution {
                self.resolution = gap;
            }
        }
    }

    /// The data's resolution learnt so far (see the field); `None` before two distinct
    /// values were seen together.
    pub fn resolution(&self) -> Option<f64> {
        self.resolution.is_finite().then_some(self.resolution)
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) by linear interpolation; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        debug_assert!(!self.stale, "read before sort_again");
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
        // `pos` is non-negative, so truncating is flooring, and it is one instruction where
        // `floor` is a libm call on baseline x86-64 (no SSE4.1 rounding).
        let lo = pos as usize;
        let hi = (lo + 1).min(n - 1);
        let frac = pos - lo as f64;
        Some(self.sorted[lo] * (1.0 - frac) + self.sorted[hi] * frac)
    }

    pub fn median(&self) -> Option<f64> {
        // quantile(0.5) without the float position arithmetic (same value: the middle one,
        // or both middles weighted ½ each).
        debug_assert!(!self.stale, "read before sort_again");
        let n = self.sorted.len();
        if n == 0 {
            return None;
        }
        let lo = (n - 1) / 2;
        Some(if n % 2 == 1 {
            self.sorted[lo]
        } else {
            self.sorted[lo] * 0.5 + self.sorted[lo + 1] * 0.5
        })
    }

    /// Median absolute deviation from `center`: the distances below and above `center`
    /// form two sorted sequences, and we select the middle element of their union —
    /// O(log n) at worst, a few probes in a sliding window (see `mad_hint`).
    pub fn mad(&self, center: f64) -> Option<f64> {
        debug_assert!(!self.stale, "read before sort_again");
        let s = &self.sorted;
        let n = s.len();
        if n == 0 {
            return None;
        }
        let split = self.split_at(center);
        // a[i] = center - s[split-1-i] (ascending), b[j] = s[split+j] - center (ascending).
        let a = |i: usize| center - s[split - 1 - i];
        let b = |j: usize| s[split + j] - center;
        let (na, nb) = (split, n - split);
        let k = (n - 1) / 2; // lower median of the deviations, 0-based
        // Take i from a and k+1-i from b: the answer is the first i (in lo..=hi) where
        // a[i] ≥ b[k-i] — "too few from a" is monotone in i.
        let want = k + 1;
        let (lo, hi) = (want.saturating_sub(nb), want.min(na));
        let more = |i: usize| a(i) < b(want - i - 1);
        let i = first_false(lo, hi, self.mad_hint.get(), more);
        self.mad_hint.set(i);
        let j = want - i;
        let from_a = if i > 0 { a(i - 1) } else { f64::NEG_INFINITY };
        let from_b = if j > 0 { b(j - 1) } else { f64::NEG_INFINITY };
        Some(from_a.max(from_b))
    }

    /// How many stored values are below `center`. Usually `center` is the median, whose
    /// place is known: checked there first, searched only when duplicates move it.
    fn split_at(&self, center: f64) -> usize {
        let s = &self.sorted;
        let n = s.len();
        let m = (n - 1) / 2;
        let guess = if s[m] < center { m + 1 } else { m };
        let fits = |g: usize| (g == 0 || s[g - 1] < center) && (g == n || s[g] >= center);
        if fits(guess) {
            guess
        } else {
            s.partition_point(|v| *v < center)
        }
    }

    /// A robust standard deviation around `center`: 1.4826 × MAD, but never below
    /// `floors.spread_share` of the 5–95% spread (quantised series, e.g. CPU in steps, have
    /// MAD 0 while plainly varying), nor `floors.resolution_share` × the data's resolution
    /// (a count that is mostly 0 has MAD 0, and a 3 is not a thousand sigmas), nor a tiny
    /// floor relative to `level` (a constant series).
    pub fn robust_scale(&self, center: f64, level: f64, floors: ScaleFloors) -> f64 {
        let ScaleFloors {
            spread_share,
            resolution_share,
        } = floors;
        let mad = self.mad(center).unwrap_or(0.0);
        let spread = if spread_share > 0.0 {
            match (self.quantile(0.05), self.quantile(0.95)) {
                (Some(lo), Some(hi)) => (hi - lo) / 3.29,
                _ => 0.0,
            }
        } else {
            0.0
        };
        let resolution = self.resolution().map_or(0.0, |r| resolution_share * r);
        (1.4826 * mad)
            .max(spread_share * spread)
            .max(resolution)
            .max(super::scale_floor(level))
    }

    /// Fraction of stored values strictly below `x` (an empirical CDF).
    pub fn rank_below(&self, x: f64) -> f64 {
        debug_assert!(!self.stale, "read before sort_again");
        if self.sorted.is_empty() {
            return 0.0;
        }
        self.sorted.partition_point(|v| *v < x) as f64 / self.sorted.len() as f64
    }

    /// The newest value pushed, if any.
    pub fn last(&self) -> Option<f64> {
        if self.ring.is_empty() {
            None
        } else if self.ring.len() < self.capacity {
            self.ring.last().copied()
        } else {
            let i = (self.head + self.capacity - 1) % self.capacity;
            Some(self.ring[i])
        }
    }

    /// Heap bytes plus the struct itself.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + 2 * self.capacity * std::mem::size_of::<f64>()
    }
}

/// Where `a` and `b` would go in the sorted `s`: `(s.partition_point(|v| *v < a),
/// s.partition_point(|v| *v < b))`. The two searches run interleaved in one loop: each
/// halving waits on a load, and two independent chains of them overlap where two
/// searches one after the other would not (most of a push's time was these waits).
fn lower_bounds(s: &[f64], a: f64, b: f64) -> (usize, usize) {
    let mut size = s.len();
    if size == 0 {
        return (0, 0);
    }
    // The answers stay in base..=base + size.
    let (mut base_a, mut base_b) = (0, 0);
    while size > 1 {
        let half = size / 2;
        let (mid_a, mid_b) = (base_a + half, base_b + half);
        // Coin flips to a branch predictor: selects, not branches.
        base_a = std::hint::select_unpredictable(s[mid_a] < a, mid_a, base_a);
        base_b = std::hint::select_unpredictable(s[mid_b] < b, mid_b, base_b);
        size -= half;
    }
    (
        base_a + usize::from(s[base_a] < a),
        base_b + usize::from(s[base_b] < b),
    )
}

/// The first `i` in `lo..=hi` where `more(i)` is false (`hi` if none), for a
/// predicate that is true then false; `more` is only called on `lo..hi`. Walks from
/// `hint` while the answer is a few steps away, and bisects beyond that.
fn first_false(lo: usize, hi: usize, hint: usize, more: impl Fn(usize) -> bool) -> usize {
    const WALK: usize = 4;
    let mut i = hint.clamp(lo, hi);
    let (mut lo, mut hi) = (lo, hi);
    if i < hi && more(i) {
        // The answer is above i.
        lo = i + 1;
        for _ in 0..WALK {
            if lo >= hi || !more(lo) {
                return lo;
            }
            lo += 1;
        }
    } else {
        // The answer is at or below i.
        hi = i;
        for _ in 0..WALK {
            if hi <= lo || more(hi - 1) {
                return hi;
            }
            hi -= 1;
        }
    }
    while lo < hi {
        i = (lo + hi) / 2;
        // Selects, not branches: the comparison is a coin flip the predictor cannot learn.
        let m = more(i);
        lo = if m { i + 1 } else { lo };
        hi = if m { hi } else { i };
    }
    lo
}

/// The lowest and highest value of each block of a sliding window (blocks of points for
/// the breach, of time for the extreme), in two monotonic queues of `(block, value)`:
/// lows increasing and highs decreasing from the front, so each front is the window's
/// extreme. Each entry enters and leaves once: O(1) amortised per push, at most one
/// entry per block.
#[derive(Debug, Clone)]
pub(crate) struct BlockExtremes {
    lows: VecDeque<(i64, f64)>,
    highs: VecDeque<(i64, f64)>,
}

impl BlockExtremes {
    /// Room for `blocks` entries each, allocated up front: a series' state does not
    /// grow as it ages.
    pub(crate) fn with_capacity(blocks: usize) -> Self {
        Self {
            lows: VecDeque::with_capacity(blocks),
            highs: VecDeque::with_capacity(blocks),
        }
    }

    /// Takes `low` and `high` for `block`, which is never before the last one pushed
    /// (pushing the same block again merges into it).
    pub(crate) fn push(&mut self, block: i64, low: f64, high: f64) {
        // A value no lower than `low` that leaves the window no later can never be the
        // minimum again; nor can `low` when its own block already holds a lower one.
        while self.lows.back().is_some_and(|&(_, v)| v >= low) {
            self.lows.pop_back();
        }
        if self.lows.back().is_none_or(|&(b, _)| b != block) {
            self.lows.push_back((block, low));
        }
        while self.highs.back().is_some_and(|&(_, v)| v <= high) {
            self.highs.pop_back();
        }
        if self.highs.back().is_none_or(|&(b, _)| b != block) {
            self.highs.push_back((block, high));
        }
    }

    /// Drops the blocks before `oldest`.
    pub(crate) fn evict(&mut self, oldest: i64) {
        while self.lows.front().is_some_and(|&(b, _)| b < oldest) {
            self.lows.pop_front();
        }
        while self.highs.front().is_some_and(|&(b, _)| b < oldest) {
            self.highs.pop_front();
        }
    }

    /// The lowest and highest of the blocks held; `None` when none is. (Both queues
    /// hold the last block pushed until it is evicted, so they are empty together.)
    pub(crate) fn min_max(&self) -> Option<(f64, f64)> {
        Some((self.lows.front()?.1, self.highs.front()?.1))
    }

    pub(crate) fn state_bytes(&self) -> usize {
        (self.lows.capacity() + self.highs.capacity()) * std::mem::size_of::<(i64, f64)>()
    }

    /// Entries in each queue (the tests' bound on the state).
    #[cfg(test)]
    pub(crate) fn lens(&self) -> (usize, usize) {
        (self.lows.len(), self.highs.len())
    }
}

/// A fixed-size ring of the last `capacity` values, for lags and recent history.
#[derive(Debug, Clone)]
pub struct Ring {
    buf: Vec<f64>,
    head: usize,
    len: usize,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0.0; capacity.max(1)],
            head: 0,
            len: 0,
        }
    }

    pub fn push(&mut self, x: f64) {
        let cap = self.buf.len();
        self.buf[self.head] = x;
        // A compare instead of `%`: a division per push is most of a push.
        self.head += 1;
        if self.head == cap {
            self.head = 0;
        }
        if self.len < cap {
            self.len += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// The value pushed `back` steps ago (0 = newest), if still held.
    pub fn get_back(&self, back: usize) -> Option<f64> {
        if back >= self.len {
            return None;
        }
        // head - 1 - back, wrapped once (back < len <= cap).
        let i = if back < self.head {
            self.head - 1 - back
        } else {
            self.head + self.buf.len() - 1 - back
        };
        Some(self.buf[i])
    }

    /// Values oldest first, into `out` (cleared first).
    pub fn copy_in_order(&self, out: &mut Vec<f64>) {
        out.clear();
        let cap = self.buf.len();
        // The oldest value sits at `head - len` (mod cap): at most two contiguous runs.
        let start = (self.head + cap - self.len) % cap;
        let first = (cap - start).min(self.len);
        out.extend_from_slice(&self.buf[start..start + first]);
        out.extend_from_slice(&self.buf[..self.len - first]);
    }

    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.buf.len() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seeded linear congruential generator: the high 31 bits of each state.
    fn lcg(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        }
    }

    fn naive_mad(v: &[f64]) -> f64 {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let pos = 0.5 * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let hi = (lo + 1).min(n - 1);
        let m = s[lo] * (1.0 - (pos - lo as f64)) + s[hi] * (pos - lo as f64);
        let mut d: Vec<f64> = s.iter().map(|x| (x - m).abs()).collect();
        d.sort_by(f64::total_cmp);
        d[(n - 1) / 2]
    }

    /// The resolution is the smallest gap between values that were in the window
    /// together, and it stays after they leave.
    #[test]
    fn the_window_learns_the_data_resolution() {
        let mut w = SortedWindow::new(4);
        w.push(3.0);
        w.push(3.0);
        assert_eq!(w.resolution(), None, "one distinct value has no resolution");
        for x in [5.0, 8.0, 6.0] {
            w.push(x);
        }
        assert_eq!(w.resolution(), Some(1.0));
        w.push(6.25);
        assert_eq!(w.resolution(), Some(0.25));
        for _ in 0..8 {
            w.push(100.0);
        }
        assert_eq!(
            w.resolution(),
            Some(0.25),
            "the resolution outlives its values"
        );
    }

    /// On a count that is mostly 0, the MAD is 0 and only the floors give a scale.
    #[test]
    fn the_resolution_floors_the_scale_of_sparse_counts() {
        let mut w = SortedWindow::new(100);
        for i in 0..100 {
            w.push(if i % 10 == 0 { 2.0 } else { 0.0 });
        }
        let floors = |resolution_share| ScaleFloors {
            spread_share: 0.0,
            resolution_share,
        };
        assert!(w.robust_scale(0.0, 0.0, floors(0.0)) < 1e-6);
        assert_eq!(w.robust_scale(0.0, 0.0, floors(1.5)), 3.0);
    }

    /// The MAD about any centre, through a sliding window whose selection starts
    /// from the last one's: the same as sorting the deviations, whatever the window
    /// size, duplicates (quantised values) or centre.
    #[test]
    fn mad_matches_sorting_for_any_centre_and_window() {
        let mut next = lcg(99);
        for capacity in [1usize, 2, 3, 4, 5, 8, 17, 64] {
            for levels in [3u64, 1000] {
                let mut w = SortedWindow::new(capacity);
                let mut hist: Vec<f64> = Vec::new();
                for step in 0..400 {
                    // A drift now and then, so the selection has to travel.
                    let x = (next() % levels) as f64 + if step % 97 < 10 { 50.0 } else { 0.0 };
                    w.push(x);
                    hist.push(x);
                    let tail = &hist[hist.len().saturating_sub(capacity)..];
                    let median = w.median().expect("values");
                    let odd_centre = (next() % (levels + 60)) as f64 - 5.0;
                    for centre in [median, odd_centre] {
                        let mut d: Vec<f64> = tail.iter().map(|v| (v - centre).abs()).collect();
                        d.sort_by(f64::total_cmp);
                        let want = d[(d.len() - 1) / 2];
                        let got = w.mad(centre).expect("values");
                        assert!(
                            (want - got).abs() < 1e-9,
                            "capacity {capacity}, step {step}, centre {centre}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn median_and_mad_match_naive_over_a_sliding_window() {
        let mut w = SortedWindow::new(7);
        let mut hist = Vec::new();
        let mut next = lcg(12345);
        for _ in 0..200 {
            let x = (next() % 100) as f64;
            w.push(x);
            hist.push(x);
            let tail = &hist[hist.len().saturating_sub(7)..];
            let mut sorted = tail.to_vec();
            sorted.sort_by(f64::total_cmp);
            assert_eq!(w.sorted, sorted);
            let m = w.median().unwrap_or(f64::NAN);
            assert!((naive_mad(tail) - w.mad(m).unwrap_or(f64::NAN)).abs() < 1e-9);
            assert_eq!(w.last(), Some(x));
        }
    }

    /// Stretches of `push_unsorted` (from the first value on, across the window filling
    /// up) leave, once sorted again, the values `push` gives, and the same resolution
    /// where the window holds values one step apart.
    #[test]
    fn pushing_unsorted_then_sorting_again_is_pushing() {
        for capacity in [1, 2, 7, 50] {
            let (mut sorted, mut lazy) = (SortedWindow::new(capacity), SortedWindow::new(capacity));
            let mut next = lcg(99 + capacity as u64);
            for i in 0..400 {
                // Half-units: a resolution of 0.5 to learn, duplicates to place.
                let x = (next() % 40) as f64 / 2.0;
                sorted.push(x);
                if (i / 13) % 2 == 0 {
                    lazy.push_unsorted(x);
                    assert_eq!(lazy.len(), sorted.len());
                    continue;
                }
                if i % 3 == 0 {
                    lazy.sort_again();
                    lazy.sort_again(); // idempotent
                }
                lazy.push(x);
                assert_eq!(lazy.sorted, sorted.sorted, "capacity {capacity}, point {i}");
                if capacity == 50 {
                    // 40 levels in 50 values: neighbours one step apart, always.
                    assert_eq!(lazy.resolution(), Some(0.5));
                    assert_eq!(sorted.resolution(), Some(0.5));
                }
                let m = sorted.median();
                assert_eq!(lazy.median(), m);
                assert_eq!(lazy.mad(m.unwrap_or(0.0)), sorted.mad(m.unwrap_or(0.0)));
                assert_eq!(lazy.last(), Some(x));
            }
        }
    }

    /// The interleaved searches find what `partition_point` finds, for any sorted
    /// slice (duplicates, every length from empty) and any two targets.
    #[test]
    fn lower_bounds_match_partition_point() {
        let mut next = lcg(7);
        for len in 0..70 {
            for levels in [2u64, 10, 1000] {
                let mut s: Vec<f64> = (0..len).map(|_| (next() % levels) as f64).collect();
                s.sort_by(f64::total_cmp);
                for _ in 0..20 {
                    let a = (next() % (levels + 2)) as f64 - 1.0;
                    let b = (next() % (levels + 2)) as f64 - 0.5;
                    let want = (s.partition_point(|v| *v < a), s.partition_point(|v| *v < b));
                    assert_eq!(lower_bounds(&s, a, b), want, "{s:?}, {a}, {b}");
                }
            }
        }
    }

    #[test]
    fn ring_returns_values_back_in_time() {
        let mut r = Ring::new(3);
        for x in 1..=5 {
            r.push(x as f64);
        }
        assert_eq!(r.get_back(0), Some(5.0));
        assert_eq!(r.get_back(2), Some(3.0));
        assert_eq!(r.get_back(3), None);
        let mut v = Vec::new();
        r.copy_in_order(&mut v);
        assert_eq!(v, vec![3.0, 4.0, 5.0]);
    }
}
