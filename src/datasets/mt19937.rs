//! numpy's legacy random generator, as far as Keras' dataset loaders use it: `np.random.RandomState(seed)`
//! (MT19937 seeded with `init_genrand`) and its `shuffle` of a one-dimensional array, so that kerust shuffles
//! IMDB and Reuters into exactly Keras' order.
//!
//! `shuffle` is numpy's `_shuffle_raw`: for `i` from `n - 1` down to 1, swap element `i` with element
//! `random_interval(i)`, which draws 32-bit outputs masked to the smallest all-ones mask covering `i` until
//! one is `<= i` (64-bit draws, two outputs high word first, only past `u32::MAX`).
//! Checked against numpy's own orders in tests/fixtures/imdb_files.json.

const N: usize = 624;
const M: usize = 397;

/// `np.random.RandomState(seed)`.
pub(crate) struct RandomState {
    mt: [u32; N],
    index: usize,
}

impl RandomState {
    pub(crate) fn new(seed: u32) -> Self {
        let mut mt = [0u32; N];
        mt[0] = seed;
        for i in 1..N {
            mt[i] = 1_812_433_253u32.wrapping_mul(mt[i - 1] ^ (mt[i - 1] >> 30)).wrapping_add(i as u32);
        }
        RandomState { mt, index: N }
    }

    fn twist(&mut self) {
        for i in 0..N {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % N] & 0x7fff_ffff);
            let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
            self.mt[i] = self.mt[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A uniform integer in `0..=max`, numpy's `random_interval`.
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mask = u64::MAX >> max.leading_zeros();
        loop {
            let v = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                ((u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())) & mask
            };
            if v <= max {
                return v;
            }
        }
    }

    /// Shuffles `items` in place as `RandomState.shuffle` shuffles a one-dimensional array.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_init_genrand_reference_output() {
        // The first output of MT19937 seeded with init_genrand(5489), the reference implementation's default.
        assert_eq!(RandomState::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    fn shuffles_as_numpy_does() {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/imdb_files.json")).unwrap();
        let as_vec = |v: &serde_json::Value| -> Vec<u64> {
            v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect()
        };
        for case in fixture["shuffles"].as_array().unwrap() {
            let seed = case["seed"].as_u64().unwrap() as u32;
            let mut rng = RandomState::new(seed);
            for order in case["orders"].as_array().unwrap() {
                let n = order["n"].as_u64().unwrap() as usize;
                let mut items: Vec<u64> = (0..n as u64).collect();
                rng.shuffle(&mut items);
                let head = as_vec(&order["head"]);
                let tail = as_vec(&order["tail"]);
                assert_eq!(items[..head.len()], head[..], "seed {seed}, n {n}: head");
                assert_eq!(items[n - tail.len()..], tail[..], "seed {seed}, n {n}: tail");
                let sum = items
                    .iter()
                    .enumerate()
                    .fold(0u128, |s, (i, &v)| (s + i as u128 * v as u128) % ((1u128 << 61) - 1));
                assert_eq!(sum as u64, order["weighted_sum"].as_u64().unwrap(), "seed {seed}, n {n}");
            }
        }
    }
}
