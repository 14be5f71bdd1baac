//! Counter-based random numbers keyed by (seed, stream, index).
//!
//! Every draw is a pure function of its key, so any element can be drawn independently and in
//! any order: on the CPU in parallel, or on the GPU by one thread per element. The same integer
//! operations are written in `kernels/common.cuh` (`rl_hash`, `rl_uniform`), so both backends
//! draw identical numbers. Streams separate independent uses (crop offsets, flips, PGD starts,
//! shuffling) so that adding one use never shifts the numbers of another.

/// Named streams, so two uses of the same seed never collide.
pub mod stream {
    pub const SHUFFLE: u64 = 1;
    pub const CROP: u64 = 2;
    pub const FLIP: u64 = 3;
    pub const PGD_START: u64 = 4;
    pub const INIT: u64 = 5;
    pub const SYNTHETIC: u64 = 6;
    pub const MASK_INIT: u64 = 7;
    pub const CORRUPT: u64 = 8;
    pub const AUGMIX: u64 = 9;
    pub const APGD_START: u64 = 10;
    pub const SQUARE: u64 = 11;
}

/// SplitMix64 finaliser: a bijective avalanche mix of 64 bits.
#[inline]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The 64-bit hash of a key. Mixing the seed and the stream first keeps nearby seeds apart.
#[inline]
pub fn hash(seed: u64, stream: u64, index: u64) -> u64 {
    let k = mix64(seed ^ 0x9E37_79B9_7F4A_7C15);
    let k = mix64(k ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03));
    mix64(k ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A uniform f32 in [0, 1) with 24 random bits (exactly representable).
#[inline]
pub fn uniform(seed: u64, stream: u64, index: u64) -> f32 {
    (hash(seed, stream, index) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// A uniform f64 in [0, 1) with 53 random bits.
#[inline]
pub fn uniform_f64(seed: u64, stream: u64, index: u64) -> f64 {
    (hash(seed, stream, index) >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

/// A standard normal draw (Box-Muller on indices 2i and 2i+1 of the stream).
pub fn normal(seed: u64, stream: u64, index: u64) -> f64 {
    let u1 = 1.0 - uniform_f64(seed, stream, 2 * index); // (0, 1]: ln is finite
    let u2 = uniform_f64(seed, stream, 2 * index + 1);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A uniform integer in [0, n) (n > 0), by 128-bit multiply (no modulo bias worth noting).
#[inline]
pub fn below(seed: u64, stream: u64, index: u64, n: u64) -> u64 {
    ((hash(seed, stream, index) as u128 * n as u128) >> 64) as u64
}

/// A sequential generator for host-side work that wants a plain `next()` (initialisation,
/// synthetic data): a counter walking one stream of the keyed hash.
#[derive(Clone, Debug)]
pub struct Stream {
    seed: u64,
    stream: u64,
    counter: u64,
}

impl Stream {
    pub fn new(seed: u64, stream: u64) -> Self {
        Stream {
            seed,
            stream,
            counter: 0,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let v = hash(self.seed, self.stream, self.counter);
        self.counter += 1;
        v
    }

    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// A random permutation of 0..n (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_is_in_range_and_roughly_flat() {
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = uniform(7, stream::PGD_START, i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((b as f64 - 10_000.0).abs() < 500.0, "bucket {b}");
        }
    }

    #[test]
    fn streams_and_seeds_differ() {
        assert_ne!(hash(1, 1, 0), hash(1, 2, 0));
        assert_ne!(hash(1, 1, 0), hash(2, 1, 0));
        assert_eq!(hash(3, 4, 5), hash(3, 4, 5));
    }

    #[test]
    fn normal_has_unit_moments() {
        let n = 200_000u64;
        let (mut s, mut s2) = (0.0, 0.0);
        for i in 0..n {
            let z = normal(11, 9, i);
            s += z;
            s2 += z * z;
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(
            mean.abs() < 0.01 && (var - 1.0).abs() < 0.02,
            "{mean} {var}"
        );
    }

    #[test]
    fn permutation_is_a_permutation() {
        let mut p = Stream::new(5, stream::SHUFFLE).permutation(1000);
        p.sort_unstable();
        assert!(p.iter().enumerate().all(|(i, &v)| i == v));
    }
}
