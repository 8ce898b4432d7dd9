//! A pseudo-random order over `0..n` that visits every index exactly once, in O(1) memory.
//!
//! The multiplicative group of integers modulo a prime `p` is cyclic: for a generator `g`,
//! `v, v·g, v·g², …, v·g^(p-2)` runs through every element `1..p` once before repeating. With
//! `p` the smallest prime above `n`, index `v - 1` covers `0..p-1 ⊇ 0..n`; the few values
//! `≥ n` are skipped. The generator and the start are derived from a seed, so an order is
//! scrambled across networks and the same for the same seed.
//!
//! Shard `i` of `k` takes the positions `j ≡ i (mod k)` of that one cycle: it starts at
//! `v·g^i` and steps by `g^k`. The shards of one seed are therefore disjoint and their union is
//! the whole cycle, whatever `k` is.
//!
//! Multiplication modulo `p` uses Montgomery reduction, one 64×64→128-bit product and one
//! reduction per step.

/// Largest index space: trial division factors `p - 1` in well under a second up to here.
pub const MAX_SPACE: u64 = 1 << 48;

/// Why a permutation cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermuteError {
    /// The space is too large.
    #[error("{0} targets: at most 2^48 can be permuted in one scan (use shards or fewer targets)")]
    TooLarge(u64),
    /// Shard numbers out of range.
    #[error("shard {shard} of {shards}: need 0 <= shard < shards")]
    BadShard {
        /// The shard asked for.
        shard: u64,
        /// The number of shards.
        shards: u64,
    },
}

/// Arithmetic modulo an odd `p < 2^63` in Montgomery form (`R = 2^64`).
#[derive(Debug, Clone, Copy)]
struct Mont {
    p: u64,
    /// `-p⁻¹ mod 2^64`.
    neg_inv: u64,
    /// `R² mod p`, to enter Montgomery form.
    r2: u64,
}

impl Mont {
    fn new(p: u64) -> Self {
        debug_assert!(p % 2 == 1 && p < 1 << 63);
        // Newton's iteration doubles the correct low bits each step: 1 → 2 → … → 64 bits.
        let mut inv: u64 = 1;
        for _ in 0..6 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(p.wrapping_mul(inv)));
        }
        let r = (1u128 << 64) % u128::from(p);
        let r2 = ((r * r) % u128::from(p)) as u64;
        Mont {
            p,
            neg_inv: inv.wrapping_neg(),
            r2,
        }
    }

    /// `t · R⁻¹ mod p` for `t < p · 2^64`.
    #[inline(always)]
    fn reduce(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.neg_inv);
        // t + m·p < 2^127 + 2^127: no overflow since p < 2^63.
        let s = ((t + u128::from(m) * u128::from(self.p)) >> 64) as u64;
        if s >= self.p { s - self.p } else { s }
    }

    /// `a · b · R⁻¹ mod p`.
    #[inline(always)]
    fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce(u128::from(a) * u128::from(b))
    }

    fn enter(&self, a: u64) -> u64 {
        self.mul(a % self.p, self.r2)
    }

    fn leave(&self, a: u64) -> u64 {
        self.reduce(u128::from(a))
    }

    /// `a^e mod p`, plain in, plain out.
    fn pow(&self, a: u64, mut e: u64) -> u64 {
        let mut base = self.enter(a);
        let mut acc = self.enter(1);
        while e > 0 {
            if e & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            e >>= 1;
        }
        self.leave(acc)
    }
}

/// `a · b mod p` without Montgomery form (setup only).
fn mulmod(a: u64, b: u64, p: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(p)) as u64
}

fn powmod(mut a: u64, mut e: u64, p: u64) -> u64 {
    let mut acc = 1 % p;
    a %= p;
    while e > 0 {
        if e & 1 == 1 {
            acc = mulmod(acc, a, p);
        }
        a = mulmod(a, a, p);
        e >>= 1;
    }
    acc
}

/// Deterministic Miller–Rabin for all 64-bit integers.
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    const SMALL: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    for p in SMALL {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    let s = (n - 1).trailing_zeros();
    let d = (n - 1) >> s;
    // These bases decide primality for every n < 2^64.
    'witness: for a in SMALL {
        let mut x = powmod(a, d, n);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = mulmod(x, x, n);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// The smallest prime strictly above `n`, at least 3 (so that it is odd).
pub fn next_prime(n: u64) -> u64 {
    let mut c = n.max(2) + 1;
    while !is_prime(c) {
        c += 1;
    }
    c
}

/// The distinct prime factors of `n` (trial division; `n < 2^49` keeps it fast).
fn prime_factors(mut n: u64) -> Vec<u64> {
    let mut out = vec![];
    let mut d = 2u64;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            out.push(d);
            while n.is_multiple_of(d) {
                n /= d;
            }
        }
        d += if d == 2 { 1 } else { 2 };
    }
    if n > 1 {
        out.push(n);
    }
    out
}

/// SplitMix64: the seed expander.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A stream from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`), without modulo bias.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64();
        }
        let zone = u64::MAX - (u64::MAX % span);
        loop {
            let r = self.next_u64();
            if r < zone {
                return lo + r % span;
            }
        }
    }
}

/// A seeded cyclic-group order over `0..n`. Cheap to copy; walk it with [`Cycle::shard`].
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    n: u64,
    mont: Mont,
    /// The generator, plain.
    g: u64,
    /// The first element, plain.
    start: u64,
}

impl Cycle {
    /// The order of `0..n` for `seed`.
    ///
    /// # Errors
    /// [`PermuteError::TooLarge`] beyond [`MAX_SPACE`].
    pub fn new(n: u64, seed: u64) -> Result<Self, PermuteError> {
        if n > MAX_SPACE {
            return Err(PermuteError::TooLarge(n));
        }
        let p = next_prime(n);
        let mont = Mont::new(p);
        let factors = prime_factors(p - 1);
        let mut rng = SplitMix::new(seed);
        // About φ(p-1)/(p-1) ≥ 1/5 of the candidates are generators for p this size; the
        // group of p = 3 has the single generator 2.
        let g = loop {
            let c = if p == 3 { 2 } else { rng.range(2, p - 2) };
            if factors.iter().all(|&q| mont.pow(c, (p - 1) / q) != 1) {
                break c;
            }
        };
        let start = rng.range(1, p - 1);
        Ok(Cycle { n, mont, g, start })
    }

    /// Size of the index space.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Whether the space is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The prime modulus (`p - 1` cycle positions, of which `n` are indices).
    pub fn prime(&self) -> u64 {
        self.mont.p
    }

    /// The generator.
    pub fn generator(&self) -> u64 {
        self.g
    }

    /// The first element of the cycle.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The walk over shard `shard` of `shards`.
    ///
    /// # Errors
    /// [`PermuteError::BadShard`] unless `shard < shards`.
    pub fn shard(&self, shard: u64, shards: u64) -> Result<Walk, PermuteError> {
        if shards == 0 || shard >= shards {
            return Err(PermuteError::BadShard { shard, shards });
        }
        let p = self.mont.p;
        let positions = p - 1;
        let steps = if shard < positions {
            (positions - shard).div_ceil(shards)
        } else {
            0
        };
        // Element at position `shard` is start·g^shard; the step multiplies by g^shards.
        let first = mulmod(self.start, self.mont.pow(self.g, shard), p);
        let step = self.mont.pow(self.g, shards % positions);
        // Walking in Montgomery form: mul(x, step·R) = x·step, so x stays a plain value.
        Ok(Walk {
            n: self.n,
            mont: self.mont,
            step_m: self.mont.enter(step),
            x: first,
            left: steps,
        })
    }
}

/// An iterator over one shard's indices, in cycle order.
#[derive(Debug, Clone)]
pub struct Walk {
    n: u64,
    mont: Mont,
    step_m: u64,
    x: u64,
    /// Cycle positions not yet visited.
    left: u64,
}

impl Walk {
    /// Cycle positions this walk has still to visit (an upper bound on indices to come).
    pub fn positions_left(&self) -> u64 {
        self.left
    }
}

impl Iterator for Walk {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        while self.left > 0 {
            let v = self.x;
            self.x = self.mont.mul(v, self.step_m);
            self.left -= 1;
            if v <= self.n {
                return Some(v - 1);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, usize::try_from(self.left).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        let want: Vec<u64> = (0..60).filter(|&x| is_prime(x)).collect();
        assert_eq!(
            want,
            [
                2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59
            ]
        );
        assert_eq!(next_prime(1 << 32), (1 << 32) + 15);
        assert_eq!(next_prime(1 << 16), 65_537);
        assert_eq!(next_prime(0), 3);
        assert!(is_prime(18_446_744_073_709_551_557)); // largest 64-bit prime
        assert!(!is_prime(3_215_031_751)); // strong pseudoprime to bases 2, 3, 5, 7
        assert!(!is_prime(1 << 40));
    }

    #[test]
    fn montgomery_matches_plain() {
        for p in [3, 65_537, (1 << 32) + 15, next_prime(1 << 48)] {
            let m = Mont::new(p);
            let mut rng = SplitMix::new(p);
            for _ in 0..1000 {
                let (a, b) = (rng.range(0, p - 1), rng.range(0, p - 1));
                let prod = m.leave(m.mul(m.enter(a), m.enter(b)));
                assert_eq!(prod, mulmod(a, b, p));
                let e = rng.next_u64() % 1000;
                assert_eq!(m.pow(a, e), powmod(a, e, p));
            }
        }
    }

    fn visit(n: u64, seed: u64, shard: u64, shards: u64) -> Vec<u64> {
        Cycle::new(n, seed)
            .unwrap()
            .shard(shard, shards)
            .unwrap()
            .collect()
    }

    #[test]
    fn every_index_exactly_once() {
        for n in [0, 1, 2, 3, 4, 5, 17, 100, 256, 1000, 65_536, 100_003] {
            for seed in [0, 1, 0xdead_beef] {
                let mut v = visit(n, seed, 0, 1);
                assert_eq!(v.len() as u64, n, "n={n} seed={seed}");
                v.sort_unstable();
                assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
            }
        }
    }

    #[test]
    fn shards_partition_the_space() {
        for n in [1, 10, 1000, 65_536] {
            for shards in [1, 2, 3, 7, 16] {
                let mut all: Vec<u64> = (0..shards).flat_map(|i| visit(n, 42, i, shards)).collect();
                assert_eq!(all.len() as u64, n, "n={n} shards={shards}");
                all.sort_unstable();
                all.dedup();
                assert_eq!(all.len() as u64, n, "overlap: n={n} shards={shards}");
                // Each shard is the same cycle's positions i, i+k, …: interleaving the
                // shards gives back the unsharded order.
                let whole = visit(n, 42, 0, 1);
                let parts: Vec<Vec<u64>> = (0..shards).map(|i| visit(n, 42, i, shards)).collect();
                let mut cursors = vec![0usize; shards as usize];
                let mut merged = vec![];
                // Positions hold an index or a skipped value; replay the walk to interleave.
                let cycle = Cycle::new(n, 42).unwrap();
                let p = cycle.prime();
                let mut x = cycle.start;
                for pos in 0..p - 1 {
                    let s = (pos % shards) as usize;
                    if x <= n {
                        merged.push(parts[s][cursors[s]]);
                        cursors[s] += 1;
                    }
                    x = mulmod(x, cycle.g, p);
                }
                assert_eq!(merged, whole);
            }
        }
    }

    #[test]
    fn seeds_scramble_and_repeat() {
        let a = visit(65_536, 1, 0, 1);
        assert_eq!(a, visit(65_536, 1, 0, 1));
        let b = visit(65_536, 2, 0, 1);
        assert_ne!(a, b);
        // Scrambled: consecutive indices are rarely adjacent.
        let adjacent = a.windows(2).filter(|w| w[0].abs_diff(w[1]) == 1).count();
        assert!(adjacent < 100, "{adjacent} adjacent pairs");
        // The first 256 indices of a /16 fall in many different /24s.
        let nets: std::collections::HashSet<u64> = a[..256].iter().map(|x| x >> 8).collect();
        assert!(nets.len() > 100, "{} /24s", nets.len());
    }

    #[test]
    fn whole_ipv4_space_setup_and_limits() {
        let c = Cycle::new(1 << 32, 7).unwrap();
        assert_eq!(c.prime(), (1 << 32) + 15);
        let mut w = c.shard(3, 4).unwrap();
        assert_eq!(w.positions_left(), ((1u64 << 32) + 14 - 3).div_ceil(4));
        assert!(w.by_ref().take(1000).all(|x| x < 1 << 32));
        assert!(Cycle::new(MAX_SPACE, 1).is_ok());
        assert_eq!(
            Cycle::new(MAX_SPACE + 1, 1).unwrap_err(),
            PermuteError::TooLarge(MAX_SPACE + 1)
        );
        assert!(c.shard(4, 4).is_err());
        assert!(c.shard(0, 0).is_err());
    }
}
