//! The 32-bit Mersenne Twister MT19937 (Matsumoto & Nishimura 1998) as seeded by torch's CPU
//! generator (`at::mt19937`, ATen/core/MT19937RNGEngine.h): the standard linear
//! initialisation from the low 32 bits of the seed, the standard twist and tempering.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// MT19937 state: 624 words and the position of the next one to temper.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    next: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("next", &self.next).finish()
    }
}

impl Mt19937 {
    /// Seeds like `std::mt19937(seed & 0xffffffff)`.
    pub fn new(seed: u64) -> Self {
        let mut state = [0u32; N];
        state[0] = seed as u32;
        for j in 1..N {
            let prev = state[j - 1];
            state[j] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(j as u32);
        }
        Mt19937 { state, next: N }
    }

    /// The 624 state words and the position of the next one (what a checkpoint stores).
    pub fn state(&self) -> (&[u32], usize) {
        (&self.state, self.next)
    }

    /// The generator [`state`](Self::state) describes; `None` unless `words` has 624 entries
    /// and `next` is at most 624.
    pub fn from_state(words: &[u32], next: usize) -> Option<Self> {
        let state: [u32; N] = words.try_into().ok()?;
        (next <= N).then_some(Mt19937 { state, next })
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.next >= N {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.state[i] & UPPER_MASK) | (self.state[(i + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            self.state[i] = self.state[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.next = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_cpp_standard_check_value() {
        // [rand.predef]: the 10000th output of a default-seeded std::mt19937 is 4123659995.
        let mut mt = Mt19937::new(5489);
        let value = (0..10_000).map(|_| mt.next_u32()).last();
        assert_eq!(value, Some(4_123_659_995));
    }

    #[test]
    fn a_restored_state_continues_the_same_stream() {
        let mut mt = Mt19937::new(33);
        for _ in 0..1000 {
            mt.next_u32();
        }
        let (words, next) = mt.state();
        let mut restored = Mt19937::from_state(words, next).unwrap();
        for _ in 0..2000 {
            assert_eq!(restored.next_u32(), mt.next_u32());
        }
        assert!(Mt19937::from_state(&[0; 623], 0).is_none());
        assert!(Mt19937::from_state(&[0; 624], 625).is_none());
    }
}
