//! Fixed-size sketches the detector keeps per account: each is bounded in memory no matter
//! how many events it sees, and each is a pure function of the events fed to it.

/// 64-bit FNV-1a: stable across runs and platforms (std's hasher is randomly seeded), so
/// template keys and prompt hashes mean the same thing in `serve` and in `backtest`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_extend(FNV_OFFSET, bytes)
}

/// FNV-1a's starting state: `fnv1a_extend(FNV_OFFSET, a ++ b)` equals
/// `fnv1a_extend(fnv1a_extend(FNV_OFFSET, a), b)`, so joined strings hash without joining.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Continues an FNV-1a hash over more bytes.
pub fn fnv1a_extend(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A finaliser (splitmix64) that spreads FNV output over all bits, for HLL buckets and
/// SimHash bits.
pub fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// HyperLogLog with 2^P one-byte registers (P = 8: 256 bytes, ~6.5% standard error).
#[derive(Clone)]
pub struct Hll {
    regs: [u8; 256],
}

impl Default for Hll {
    fn default() -> Self {
        Hll { regs: [0; 256] }
    }
}

impl Hll {
    const P: u32 = 8;

    pub fn insert(&mut self, hash: u64) {
        let h = mix(hash);
        let idx = (h >> (64 - Self::P)) as usize;
        let rest = h << Self::P;
        let rank = (rest.leading_zeros() + 1).min(64 - Self::P + 1) as u8;
        if rank > self.regs[idx] {
            self.regs[idx] = rank;
        }
    }

    pub fn estimate(&self) -> f64 {
        let m = self.regs.len() as f64;
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let sum: f64 = self.regs.iter().map(|&r| 2f64.powi(-(r as i32))).sum();
        let raw = alpha * m * m / sum;
        let zeros = self.regs.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// Union: the sketch of both streams together.
    pub fn merge(&mut self, other: &Hll) {
        for (a, b) in self.regs.iter_mut().zip(other.regs.iter()) {
            *a = (*a).max(*b);
        }
    }
}

/// Space-Saving top-k (Metwally et al.): the K most frequent keys with counts that
/// overestimate by at most `err`. K is small (8-16); a linear scan beats a heap here.
#[derive(Clone)]
pub struct SpaceSaving<const K: usize> {
    keys: [u64; K],
    counts: [u32; K],
    errs: [u32; K],
}

impl<const K: usize> Default for SpaceSaving<K> {
    fn default() -> Self {
        SpaceSaving { keys: [0; K], counts: [0; K], errs: [0; K] }
    }
}

impl<const K: usize> SpaceSaving<K> {
    /// Counts one occurrence of `key` (0 is reserved for "empty").
    pub fn insert(&mut self, key: u64) {
        if key == 0 {
            return;
        }
        let mut min_i = 0;
        for i in 0..K {
            if self.keys[i] == key {
                self.counts[i] += 1;
                return;
            }
            if self.counts[i] < self.counts[min_i] {
                min_i = i;
            }
        }
        // Not tracked: replace the least counted entry, inheriting its count as error.
        let floor = self.counts[min_i];
        self.keys[min_i] = key;
        self.errs[min_i] = floor;
        self.counts[min_i] = floor + 1;
    }

    /// The most frequent key with its guaranteed count (count - error).
    pub fn top(&self) -> Option<(u64, u32)> {
        (0..K)
            .filter(|&i| self.keys[i] != 0)
            .map(|i| (self.keys[i], self.counts[i] - self.errs[i]))
            .max_by_key(|&(_, c)| c)
    }

    /// Entries with their guaranteed counts, most frequent first.
    pub fn entries(&self) -> Vec<(u64, u32)> {
        let mut v: Vec<(u64, u32)> =
            (0..K).filter(|&i| self.keys[i] != 0).map(|i| (self.keys[i], self.counts[i] - self.errs[i])).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    pub fn count_of(&self, key: u64) -> u32 {
        (0..K).find(|&i| self.keys[i] == key && key != 0).map(|i| self.counts[i] - self.errs[i]).unwrap_or(0)
    }

    /// Halves every count (exponential forgetting).
    pub fn halve(&mut self) {
        for i in 0..K {
            self.counts[i] /= 2;
            self.errs[i] /= 2;
            if self.counts[i] == 0 {
                self.keys[i] = 0;
            }
        }
    }
}

/// SimHash of a set of feature hashes: near-identical texts get fingerprints a few bits
/// apart (Charikar). Bit `k` is set when more than half the (mixed) features have it set.
///
/// The 64 per-bit counts are kept bit-sliced: `planes[j]` holds bit `j` of all 64 counts,
/// so adding a feature is a binary increment of 64 counters at once (a ripple of AND/XOR
/// that stops when no carry is left, a few steps on average) instead of 64 additions.
pub fn simhash(features: impl Iterator<Item = u64>) -> u64 {
    let mut planes = [0u64; 64];
    let mut n = 0u64;
    for f in features {
        n += 1;
        let mut carry = mix(f);
        for plane in planes.iter_mut() {
            if carry == 0 {
                break;
            }
            let next = *plane & carry;
            *plane ^= carry;
            carry = next;
        }
    }
    // Bit `b` of the result is set when count[b] > n / 2 (the same as 2·count > n for
    // whole counts), decided for all 64 counts at once by a bit-sliced comparison against
    // the constant `n / 2`, from the highest plane down: `gt` holds the counts already
    // known greater, `eq` those equal so far.
    let half = n / 2;
    let (mut gt, mut eq) = (0u64, u64::MAX);
    for j in (0..(64 - n.leading_zeros()) as usize).rev() {
        if half >> j & 1 == 0 {
            gt |= eq & planes[j];
            eq &= !planes[j];
        } else {
            eq &= planes[j];
        }
    }
    gt
}

/// The last N prompts of an account: exact hash and SimHash, for repeat and
/// near-duplicate shares over recent traffic.
#[derive(Clone)]
pub struct RecentRing<const N: usize> {
    exact: [u64; N],
    sim: [u64; N],
    next: usize,
    len: usize,
}

impl<const N: usize> Default for RecentRing<N> {
    fn default() -> Self {
        RecentRing { exact: [0; N], sim: [0; N], next: 0, len: 0 }
    }
}

/// How a new prompt relates to the recent ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Novelty {
    /// Same text as a recent prompt.
    Repeat,
    /// Within `NEAR_BITS` of a recent prompt's SimHash.
    NearDuplicate,
    New,
}

pub const NEAR_BITS: u32 = 3;

impl<const N: usize> RecentRing<N> {
    /// Classifies the prompt against the ring, then adds it.
    pub fn push(&mut self, exact: u64, sim: u64) -> Novelty {
        let mut novelty = Novelty::New;
        for i in 0..self.len {
            if self.exact[i] == exact {
                novelty = Novelty::Repeat;
                break;
            }
            if sim != 0 && (self.sim[i] ^ sim).count_ones() <= NEAR_BITS {
                novelty = Novelty::NearDuplicate;
            }
        }
        self.exact[self.next] = exact;
        self.sim[self.next] = sim;
        self.next = (self.next + 1) % N;
        self.len = (self.len + 1).min(N);
        novelty
    }

    /// Whether `exact` is among the recent prompts (0 never is).
    pub fn contains(&self, exact: u64) -> bool {
        exact != 0 && self.exact[..self.len].contains(&exact)
    }
}

/// Welford's running mean and variance, with halving for forgetting.
#[derive(Clone, Copy, Default, Debug)]
pub struct Welford {
    pub n: f64,
    pub mean: f64,
    m2: f64,
}

impl Welford {
    pub fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }
    pub fn sd(&self) -> f64 {
        if self.n < 2.0 {
            0.0
        } else {
            (self.m2 / (self.n - 1.0)).max(0.0).sqrt()
        }
    }
    /// Keeps mean and variance, halves the weight of the past.
    pub fn halve(&mut self) {
        self.n /= 2.0;
        self.m2 /= 2.0;
    }
}

/// Running correlation of two quantities (Welford's co-moments), halvable like
/// [`Welford`].
#[derive(Clone, Copy, Default, Debug)]
pub struct Comoment {
    pub n: f32,
    mx: f32,
    my: f32,
    sxx: f32,
    syy: f32,
    sxy: f32,
}

impl Comoment {
    pub fn push(&mut self, x: f64, y: f64) {
        let (x, y) = (x as f32, y as f32);
        self.n += 1.0;
        let dx = x - self.mx;
        self.mx += dx / self.n;
        let dy = y - self.my;
        self.my += dy / self.n;
        self.sxx += dx * (x - self.mx);
        self.syy += dy * (y - self.my);
        self.sxy += dx * (y - self.my);
    }
    /// Standard deviation of x.
    pub fn sd_x(&self) -> f64 {
        if self.n < 2.0 {
            0.0
        } else {
            (self.sxx / (self.n - 1.0)).max(0.0).sqrt() as f64
        }
    }
    /// Pearson's r (0 when either quantity does not vary).
    pub fn r(&self) -> f64 {
        let d = (self.sxx * self.syy).sqrt();
        if self.n < 3.0 || d <= 1e-9 {
            0.0
        } else {
            (self.sxy / d).clamp(-1.0, 1.0) as f64
        }
    }
    pub fn halve(&mut self) {
        self.n /= 2.0;
        self.sxx /= 2.0;
        self.syy /= 2.0;
        self.sxy /= 2.0;
    }
}

/// Counts per time bucket over the last N buckets (a sliding window of event time).
#[derive(Clone)]
pub struct BucketRing<const N: usize> {
    /// Bucket index (time / width) of each slot's count.
    idx: [u32; N],
    counts: [u16; N],
}

impl<const N: usize> Default for BucketRing<N> {
    fn default() -> Self {
        BucketRing { idx: [u32::MAX; N], counts: [0; N] }
    }
}

impl<const N: usize> BucketRing<N> {
    pub fn add(&mut self, bucket: u32) {
        let slot = bucket as usize % N;
        if self.idx[slot] != bucket {
            self.idx[slot] = bucket;
            self.counts[slot] = 0;
        }
        self.counts[slot] = self.counts[slot].saturating_add(1);
    }
    /// Sum over buckets in `(now - N, now]`.
    pub fn sum(&self, now: u32) -> u32 {
        self.live(now).map(|(_, c)| c as u32).sum()
    }
    /// Buckets in the window with at least one event.
    pub fn active(&self, now: u32) -> u32 {
        self.live(now).filter(|&(_, c)| c > 0).count() as u32
    }
    fn live(&self, now: u32) -> impl Iterator<Item = (u32, u16)> + '_ {
        (0..N)
            .filter(move |&i| self.idx[i] != u32::MAX && self.idx[i] <= now && now - self.idx[i] < N as u32)
            .map(move |i| (self.idx[i], self.counts[i]))
    }
}

/// Minutes each side of a minute over which an account's local activity density is read.
const LOCAL_WINDOW_MIN: u32 = 30;

/// Two accounts' active minutes compared ([`MinuteSet::overlap`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlap {
    /// The first set's minutes (in the common span) with one of the other's within the slack.
    pub shared: usize,
    /// The first set's minutes in the common span.
    pub compared: usize,
    /// The probability that one of them is shared by chance, were the two independent
    /// (the other's activity density in the hour about each minute, averaged).
    pub chance: f64,
}

impl Overlap {
    /// The probability of sharing at least `shared` of `compared` minutes by chance
    /// (the binomial upper tail): small when the two accounts keep one clock.
    pub fn by_chance(&self) -> f64 {
        let (n, k, p) = (self.compared, self.shared, self.chance);
        if k == 0 {
            return 1.0;
        }
        if p <= 0.0 {
            return 0.0;
        }
        if p >= 1.0 {
            return 1.0;
        }
        // Sum of C(n, i) p^i (1-p)^(n-i) for i >= k, terms built from the first by ratio.
        let ln_first = ln_choose(n, k) + k as f64 * p.ln() + (n - k) as f64 * (1.0 - p).ln();
        let mut term = ln_first.exp();
        let mut sum = term;
        for i in k..n {
            term *= (n - i) as f64 / (i + 1) as f64 * p / (1.0 - p);
            sum += term;
        }
        sum.min(1.0)
    }
}

fn ln_choose(n: usize, k: usize) -> f64 {
    (0..k).map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln()).sum()
}

/// The last N distinct active minutes, kept sorted for Jaccard comparisons between
/// accounts (synchronised activity).
#[derive(Clone, Default)]
pub struct MinuteSet {
    minutes: Vec<u32>,
}

impl MinuteSet {
    pub const CAP: usize = 64;

    pub fn add(&mut self, minute: u32) {
        if let Err(pos) = self.minutes.binary_search(&minute) {
            self.minutes.insert(pos, minute);
            if self.minutes.len() > Self::CAP {
                self.minutes.remove(0);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.minutes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.minutes.is_empty()
    }

    /// Shared minutes, counting a minute as shared when the other set has one within
    /// `slack` minutes (schedulers fire in the same minute, give or take queueing).
    /// Only minutes inside both sets' overlapping time span are compared.
    pub fn overlap(&self, other: &MinuteSet, slack: u32) -> Overlap {
        let none = Overlap { shared: 0, compared: 0, chance: 0.0 };
        if self.minutes.is_empty() || other.minutes.is_empty() {
            return none;
        }
        let lo = self.minutes[0].max(other.minutes[0]);
        let hi = self.minutes[self.minutes.len() - 1].min(other.minutes[other.minutes.len() - 1]);
        if lo > hi {
            return none;
        }
        let a: Vec<u32> = self.minutes.iter().copied().filter(|&m| m >= lo && m <= hi).collect();
        // For each of `a`'s minutes: is one of `b`'s within the slack, and how busy is `b`
        // around it (the hour about it, the slack left out)? Chance is read against that
        // local density, not the whole span's: two people who keep office hours are
        // active in the same hours, not in the same minutes, while schedulers on one
        // clock fire in the same minutes.
        // The density is read on all of `b`'s minutes (not only those in the common span),
        // over the part of the hour that `b`'s record covers.
        let all_b = &other.minutes;
        let (b_first, b_last) = (all_b[0], all_b[all_b.len() - 1]);
        let (mut shared, mut chance_sum) = (0, 0.0);
        let (mut near, mut lo_w, mut hi_w) = (0, 0, 0);
        let window = LOCAL_WINDOW_MIN.max(slack + 1);
        for &m in &a {
            while near < all_b.len() && all_b[near] + slack < m {
                near += 1;
            }
            let in_slack = all_b[near..].iter().take_while(|&&x| x <= m + slack).count();
            if in_slack > 0 {
                shared += 1;
            }
            while lo_w < all_b.len() && all_b[lo_w] + window < m {
                lo_w += 1;
            }
            while hi_w < all_b.len() && all_b[hi_w] <= m + window {
                hi_w += 1;
            }
            // Minutes of the window (the slack left out) inside `b`'s record.
            let covered = (m + window).min(b_last) as i64 - m.saturating_sub(window).max(b_first) as i64 + 1;
            let background = (covered - (2 * slack + 1) as i64).max(2 * slack as i64 + 1) as f64;
            let around = (hi_w - lo_w).saturating_sub(in_slack) as f64;
            let density = (around / background).min(1.0);
            chance_sum += 1.0 - (1.0 - density).powi(2 * slack as i32 + 1);
        }
        let chance = if a.is_empty() { 0.0 } else { chance_sum / a.len() as f64 };
        Overlap { shared, compared: a.len(), chance }
    }

    pub fn heap_bytes(&self) -> usize {
        self.minutes.capacity() * 4
    }

    /// The minutes, ascending.
    pub fn minutes(&self) -> &[u32] {
        &self.minutes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hll_estimates_within_error() {
        for n in [10u64, 100, 1000, 10_000, 100_000] {
            let mut h = Hll::default();
            for i in 0..n {
                h.insert(fnv1a(&i.to_le_bytes()));
            }
            let e = h.estimate();
            let err = (e - n as f64).abs() / n as f64;
            assert!(err < 0.2, "n={n} estimate={e}");
        }
    }

    #[test]
    fn hll_ignores_repeats() {
        let mut h = Hll::default();
        for _ in 0..10_000 {
            h.insert(42);
        }
        assert!(h.estimate() < 1.5);
    }

    #[test]
    fn space_saving_finds_heavy_hitter() {
        let mut s = SpaceSaving::<8>::default();
        for i in 0..10_000u64 {
            s.insert(if i % 3 == 0 { 7 } else { 1000 + i });
        }
        let (k, c) = s.top().unwrap();
        assert_eq!(k, 7);
        // Guaranteed count never exceeds the true count (3334) and is close to it.
        assert!(c <= 3334 && c > 2000, "count {c}");
    }

    #[test]
    fn ring_classifies_repeats_and_near_duplicates() {
        let mut r = RecentRing::<4>::default();
        assert_eq!(r.push(1, 0b1111_0000), Novelty::New);
        assert_eq!(r.push(1, 0b1111_0000), Novelty::Repeat);
        assert_eq!(r.push(2, 0b1111_0011), Novelty::NearDuplicate);
        assert_eq!(r.push(3, !0b1111_0000u64), Novelty::New);
    }

    #[test]
    fn bucket_ring_slides() {
        let mut b = BucketRing::<60>::default();
        for m in 0..120 {
            b.add(m);
        }
        assert_eq!(b.sum(119), 60);
        assert_eq!(b.sum(170), 9); // minutes 111..=119 remain in (110, 170]
        assert_eq!(b.active(119), 60);
    }

    #[test]
    fn minute_overlap_with_slack() {
        let mut a = MinuteSet::default();
        let mut b = MinuteSet::default();
        for m in [10, 20, 30, 40] {
            a.add(m);
        }
        for m in [10, 21, 35, 40] {
            b.add(m);
        }
        assert_eq!(a.overlap(&b, 0).shared, 2);
        assert_eq!(a.overlap(&b, 1).shared, 3);
        assert_eq!(a.overlap(&b, 1).compared, 4);
    }

    #[test]
    fn one_clock_is_told_from_chance() {
        // Two schedulers firing on one 10-minute grid, each in most of its waves.
        let (mut a, mut b) = (MinuteSet::default(), MinuteSet::default());
        for w in 0..60u32 {
            if w % 5 != 0 {
                a.add(w * 10);
            }
            if w % 7 != 3 {
                b.add(w * 10 + (w % 2));
            }
        }
        let o = a.overlap(&b, 1);
        assert!(o.shared >= 40, "{o:?}");
        assert!(o.by_chance() < 1e-9, "{o:?} {}", o.by_chance());
        // A person active now and then beside a busy account: a few shared minutes, as
        // expected by chance.
        let (mut busy, mut person) = (MinuteSet::default(), MinuteSet::default());
        for m in (0..600).step_by(9) {
            busy.add(m);
        }
        for m in [5, 50, 51, 120, 200, 201, 202, 333, 400, 471, 530, 531] {
            person.add(m);
        }
        let o = person.overlap(&busy, 1);
        assert!(o.shared >= 3, "{o:?}");
        assert!(o.by_chance() > 0.05, "{o:?} {}", o.by_chance());
    }

    #[test]
    fn office_hours_are_not_one_clock() {
        // Two people active in the same hours of the same days, each at their own
        // minutes: busy hours shared, minutes only by chance.
        let (mut a, mut b) = (MinuteSet::default(), MinuteSet::default());
        let mut x: u64 = 12345;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for day in 0..5u32 {
            for _ in 0..40 {
                a.add(day * 1440 + 540 + (next() % 480) as u32);
                b.add(day * 1440 + 540 + (next() % 480) as u32);
            }
        }
        let o = a.overlap(&b, 1);
        assert!(o.by_chance() > 1e-3, "{o:?} {}", o.by_chance());
        // A new account's first quarter hour beside a product busy in most minutes: the
        // common span is short, the product's density is read over its whole hour.
        let (mut fresh, mut product) = (MinuteSet::default(), MinuteSet::default());
        for m in 1000..1015 {
            fresh.add(m);
        }
        for m in (950..1015).filter(|m| m % 3 != 0) {
            product.add(m);
        }
        let o = fresh.overlap(&product, 1);
        // The product's last minute is 1013: fresh's 1000..=1013 are compared, all shared.
        assert_eq!((o.compared, o.shared), (14, 14));
        assert!(o.by_chance() > 1e-3, "{o:?} {}", o.by_chance());
    }

    #[test]
    fn binomial_tail_matches_direct_sums() {
        for (n, k, p) in [(10usize, 3usize, 0.2f64), (64, 10, 0.05), (5, 5, 0.5), (20, 1, 0.01)] {
            let direct: f64 =
                (k..=n).map(|i| ln_choose(n, i).exp() * p.powi(i as i32) * (1.0 - p).powi((n - i) as i32)).sum();
            let got = Overlap { shared: k, compared: n, chance: p }.by_chance();
            assert!((got - direct).abs() < 1e-9 * direct.max(1e-12) + 1e-15, "{n} {k} {p}: {got} vs {direct}");
        }
        assert_eq!(Overlap { shared: 0, compared: 10, chance: 0.3 }.by_chance(), 1.0);
    }

    proptest! {
        #[test]
        fn hll_merge_is_union(a in proptest::collection::vec(any::<u64>(), 0..500), b in proptest::collection::vec(any::<u64>(), 0..500)) {
            let mut ha = Hll::default();
            let mut hb = Hll::default();
            let mut hu = Hll::default();
            for x in &a { ha.insert(*x); hu.insert(*x); }
            for x in &b { hb.insert(*x); hu.insert(*x); }
            ha.merge(&hb);
            prop_assert_eq!(ha.regs, hu.regs);
        }

        #[test]
        fn space_saving_never_overcounts_guaranteed(keys in proptest::collection::vec(1u64..40, 1..2000)) {
            let mut s = SpaceSaving::<8>::default();
            for k in &keys { s.insert(*k); }
            for (k, c) in s.entries() {
                let truth = keys.iter().filter(|&&x| x == k).count() as u32;
                prop_assert!(c <= truth);
            }
            // A key holding more than 1/8 of the stream is always tracked.
            let mut freq = std::collections::HashMap::new();
            for k in &keys { *freq.entry(*k).or_insert(0u32) += 1; }
            for (k, f) in freq {
                if f as usize * 8 > keys.len() {
                    prop_assert!(s.entries().iter().any(|e| e.0 == k));
                }
            }
        }

        #[test]
        fn minute_set_stays_bounded_and_sorted(ms in proptest::collection::vec(0u32..100_000, 0..500)) {
            let mut s = MinuteSet::default();
            for m in ms { s.add(m); }
            prop_assert!(s.len() <= MinuteSet::CAP);
            prop_assert!(s.minutes.windows(2).all(|w| w[0] < w[1]));
        }

        /// The overlap's counts are bounded by the sets, its chance is a probability, the
        /// tail is one too and falls as more minutes are shared; a set against itself
        /// shares every compared minute.
        #[test]
        fn minute_overlap_bounds(a in proptest::collection::vec(0u32..5_000, 0..120),
                                 b in proptest::collection::vec(0u32..5_000, 0..120),
                                 slack in 0u32..3) {
            let (mut sa, mut sb) = (MinuteSet::default(), MinuteSet::default());
            for m in a { sa.add(m); }
            for m in b { sb.add(m); }
            let o = sa.overlap(&sb, slack);
            prop_assert!(o.shared <= o.compared && o.compared <= sa.len());
            prop_assert!((0.0..=1.0).contains(&o.chance), "{:?}", o);
            let tail = o.by_chance();
            prop_assert!((0.0..=1.0).contains(&tail), "{:?} {}", o, tail);
            if o.shared < o.compared {
                let more = Overlap { shared: o.shared + 1, ..o }.by_chance();
                prop_assert!(more <= tail + 1e-12, "{:?}: {} then {}", o, tail, more);
            }
            let own = sa.overlap(&sa, slack);
            prop_assert_eq!(own.shared, own.compared);
            prop_assert_eq!(own.compared, sa.len());
        }

        /// The bit-sliced counting gives the fingerprint of the bit-by-bit definition: on
        /// distinct features, and on thousands of features from a few values (large counts
        /// carrying into high planes, and exact ties).
        #[test]
        fn simhash_equals_the_bit_by_bit_definition(features in proptest::prop_oneof![
            proptest::collection::vec(any::<u64>(), 0..200),
            proptest::collection::vec(0u64..4, 0..5000),
        ]) {
            let mut acc = [0i32; 64];
            for f in &features {
                let h = mix(*f);
                for (bit, a) in acc.iter_mut().enumerate() {
                    *a += if h >> bit & 1 == 1 { 1 } else { -1 };
                }
            }
            let want = if features.is_empty() {
                0
            } else {
                acc.iter().enumerate().fold(0u64, |out, (bit, &a)| if a > 0 { out | 1 << bit } else { out })
            };
            prop_assert_eq!(simhash(features.into_iter()), want);
        }

        #[test]
        fn simhash_is_stable_under_small_change(words in proptest::collection::vec("[a-z]{3,8}", 40..80)) {
            let base: Vec<u64> = words.iter().map(|w| fnv1a(w.as_bytes())).collect();
            let mut changed = base.clone();
            changed[0] = fnv1a(b"zzzzzz");
            let d = (simhash(base.into_iter()) ^ simhash(changed.into_iter())).count_ones();
            prop_assert!(d <= 16, "distance {}", d);
        }
    }
}

/// Sums of an amount over the last N time buckets (e.g. tokens per hour over a day):
/// like [`BucketRing`], with 32-bit sums.
#[derive(Clone)]
pub struct SumRing<const N: usize> {
    idx: [u32; N],
    sums: [u32; N],
}

impl<const N: usize> Default for SumRing<N> {
    fn default() -> Self {
        SumRing { idx: [u32::MAX; N], sums: [0; N] }
    }
}

impl<const N: usize> SumRing<N> {
    pub fn add(&mut self, bucket: u32, amount: u64) {
        let slot = bucket as usize % N;
        if self.idx[slot] != bucket {
            self.idx[slot] = bucket;
            self.sums[slot] = 0;
        }
        self.sums[slot] = self.sums[slot].saturating_add(amount.min(u32::MAX as u64) as u32);
    }
    /// Sum over buckets in `(now - N, now]`.
    pub fn sum(&self, now: u32) -> u64 {
        (0..N)
            .filter(|&i| self.idx[i] != u32::MAX && self.idx[i] <= now && now - self.idx[i] < N as u32)
            .map(|i| self.sums[i] as u64)
            .sum()
    }
}

/// A fixed-size histogram of one quantity over a population (e.g. every active account's
/// requests per day): 64 bins between `lo` and `hi`, logarithmic or linear, values outside
/// clamped to the end bins. Bounded whatever the population, and mergeable: the detector
/// rebuilds it from the active accounts every pass and reads quantiles off it.
#[derive(Clone, Debug)]
pub struct Histogram {
    lo: f64,
    hi: f64,
    log: bool,
    bins: [u32; HIST_BINS],
    n: u64,
}

/// Bins of a [`Histogram`].
pub const HIST_BINS: usize = 64;

impl Histogram {
    /// Logarithmic bins over `[lo, hi]` (`lo > 0`); values below `lo` count in bin 0.
    pub fn log(lo: f64, hi: f64) -> Histogram {
        assert!(lo > 0.0 && hi > lo);
        Histogram { lo: lo.ln(), hi: hi.ln(), log: true, bins: [0; HIST_BINS], n: 0 }
    }

    /// Linear bins over `[lo, hi]`.
    pub fn linear(lo: f64, hi: f64) -> Histogram {
        assert!(hi > lo);
        Histogram { lo, hi, log: false, bins: [0; HIST_BINS], n: 0 }
    }

    fn bin_of(&self, v: f64) -> usize {
        let x = if self.log { v.max(f64::MIN_POSITIVE).ln() } else { v };
        if x.is_nan() {
            return 0;
        }
        let f = (x - self.lo) / (self.hi - self.lo) * HIST_BINS as f64;
        (f.floor().max(0.0) as usize).min(HIST_BINS - 1)
    }

    /// The value at the lower edge of bin `i` (and `hi` for `i == HIST_BINS`).
    fn edge(&self, i: usize) -> f64 {
        let x = self.lo + (self.hi - self.lo) * i as f64 / HIST_BINS as f64;
        if self.log {
            x.exp()
        } else {
            x
        }
    }

    pub fn add(&mut self, v: f64) {
        let b = self.bin_of(v);
        self.bins[b] = self.bins[b].saturating_add(1);
        self.n += 1;
    }

    pub fn len(&self) -> u64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn clear(&mut self) {
        self.bins = [0; HIST_BINS];
        self.n = 0;
    }

    /// Adds another histogram of the same bins (from another shard or replica).
    pub fn merge(&mut self, other: &Histogram) {
        debug_assert!(self.lo == other.lo && self.hi == other.hi && self.log == other.log);
        for (a, b) in self.bins.iter_mut().zip(other.bins.iter()) {
            *a = a.saturating_add(*b);
        }
        self.n += other.n;
    }

    /// Share of the population strictly above `v`'s bin, plus half of its own bin (a
    /// mid-rank): 0.001 means "top 0.1%". 1.0 when empty.
    pub fn share_above(&self, v: f64) -> f64 {
        if self.n == 0 {
            return 1.0;
        }
        let b = self.bin_of(v);
        let above: u64 = self.bins[b + 1..].iter().map(|&c| c as u64).sum();
        (above as f64 + self.bins[b] as f64 / 2.0) / self.n as f64
    }

    /// The value at quantile `q` in [0, 1], interpolated within its bin (None when empty).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * self.n as f64;
        let mut seen = 0.0;
        for (i, &c) in self.bins.iter().enumerate() {
            let c = c as f64;
            if c > 0.0 && seen + c >= target {
                let within = ((target - seen) / c).clamp(0.0, 1.0);
                let (a, b) = (self.edge(i), self.edge(i + 1));
                return Some(a + (b - a) * within);
            }
            seen += c;
        }
        Some(self.edge(HIST_BINS))
    }
}

#[cfg(test)]
mod population_sketch_tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn comoment_reads_correlation_and_survives_halving() {
        let mut c = Comoment::default();
        for i in 0..100 {
            let x = i as f64;
            c.push(x, 2.0 * x + 1.0);
        }
        assert!(c.r() > 0.999, "{}", c.r());
        c.halve();
        assert!(c.r() > 0.999);
        let mut u = Comoment::default();
        for i in 0..200u64 {
            // y independent of x (a fixed pseudo-random sequence).
            u.push((i % 17) as f64, (mix(i) % 1000) as f64);
        }
        assert!(u.r().abs() < 0.2, "{}", u.r());
        let mut flat = Comoment::default();
        for _ in 0..10 {
            flat.push(3.0, 5.0);
        }
        assert_eq!(flat.r(), 0.0);
    }

    #[test]
    fn sum_ring_keeps_the_window_only() {
        let mut r = SumRing::<24>::default();
        r.add(10, 100);
        r.add(11, 50);
        r.add(11, 50);
        assert_eq!(r.sum(11), 200);
        assert_eq!(r.sum(33), 200, "(33 - 24, 33] holds buckets 10 and 11");
        assert_eq!(r.sum(34), 100, "bucket 10 has left the window at 34, 11 is still in");
        assert_eq!(r.sum(35), 0);
        r.add(35, u64::MAX);
        assert_eq!(r.sum(35), u32::MAX as u64, "saturates");
    }

    #[test]
    fn histogram_quantiles_and_shares() {
        let mut h = Histogram::log(1.0, 10_000.0);
        for v in 1..=1000 {
            h.add(v as f64);
        }
        let median = h.quantile(0.5).unwrap();
        assert!((400.0..=600.0).contains(&median), "{median}");
        assert!(h.share_above(5000.0) < 0.01);
        assert!(h.share_above(0.5) > 0.99);
        assert!(Histogram::log(1.0, 2.0).quantile(0.5).is_none());
        assert_eq!(Histogram::log(1.0, 2.0).share_above(1.5), 1.0);
    }

    proptest! {
        #[test]
        fn histogram_bounds_and_merge(xs in proptest::collection::vec(0.0f64..2e6, 1..300),
                                      ys in proptest::collection::vec(0.0f64..2e6, 0..300)) {
            let mut a = Histogram::log(0.1, 1e6);
            let mut b = Histogram::log(0.1, 1e6);
            let mut all = Histogram::log(0.1, 1e6);
            for &x in &xs { a.add(x); all.add(x); }
            for &y in &ys { b.add(y); all.add(y); }
            a.merge(&b);
            prop_assert_eq!(a.len(), all.len());
            for q in [0.0, 0.1, 0.5, 0.9, 1.0] {
                prop_assert_eq!(a.quantile(q), all.quantile(q));
            }
            // Quantiles are monotone and within the histogram's range.
            let mut last = 0.0;
            for i in 0..=20 {
                let v = a.quantile(i as f64 / 20.0).unwrap();
                prop_assert!(v >= last - 1e-9);
                prop_assert!((0.1 - 1e-9..=1e6 * (1.0 + 1e-9)).contains(&v));
                last = v;
            }
            // The share above any value is a fraction, and does not grow with the value.
            for &x in xs.iter().take(20) {
                let s = a.share_above(x);
                prop_assert!((0.0..=1.0).contains(&s));
                prop_assert!(a.share_above(x * 2.0 + 1.0) <= s + 1e-12);
            }
        }
    }
}
