//! Deterministic numbers: every generated id, name and figure is drawn from a key that
//! folds the seed with what it describes ([`key`], [`hash_str`]), so the same
//! configuration always serves the same data and nothing has to be stored.

/// SplitMix64's finaliser: a cheap, well-mixed bijection on u64.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One well-mixed key from several parts (seed, account, index, date, ...).
pub(crate) fn key(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x243F_6A88_85A3_08D3, |acc, part| mix64(acc ^ part))
}

/// FNV-1a, to fold strings (account ids, shop names, salts) into keys.
pub(crate) fn hash_str(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |acc, byte| {
        (acc ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A stream of draws from one key. Only `+ - * /` on f64 are used downstream (no
/// transcendental functions), so the numbers are the same on every platform.
pub(crate) struct Draw(u64);

impl Draw {
    pub(crate) fn new(key: u64) -> Self {
        Draw(key)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub(crate) fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
