//! The simulator's random numbers: SplitMix64, identical on every platform, and streams
//! derived from a seed and names so that one concern (a smoker's traits, a cook's pit, its
//! probe noise) never shifts the numbers another concern draws.

/// SplitMix64: small, fast, and identical on every platform.
#[derive(Clone, Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// A stream of its own for `seed` and the parts that name it.
    pub(crate) fn derived(seed: u64, parts: &[u64]) -> Self {
        let mut rng = Rng(seed ^ 0x5151_e7a1_d0c5_7e11);
        for &part in parts {
            rng.0 ^= part.wrapping_mul(0x2545_f491_4f6c_dd1d);
            rng.next_u64();
        }
        rng
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Roughly normal (sum of uniforms), mean 0, standard deviation 1.
    pub(crate) fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.unit()).sum::<f64>() * 3f64.sqrt() - 2.0 * 3f64.sqrt()
    }
}

/// FNV-1a of a name (a device id), to derive its streams.
pub(crate) fn hash_name(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Names of the streams a cook draws from.
pub(crate) mod stream {
    pub(crate) const SMOKER: u64 = 1;
    pub(crate) const MEAT: u64 = 2;
    pub(crate) const PIT: u64 = 3;
    pub(crate) const PROBES: u64 = 4;
    pub(crate) const SCENARIO: u64 = 5;
}
