//! The process-wide seed behind [`crate::utils::set_random_seed`].
use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeds drawn in order from here make a program that seeds once reproducible, model after model.
static GLOBAL: Mutex<Option<StdRng>> = Mutex::new(None);

/// Seeds every random choice kerust makes from now on (weight initialization, dropout, shuffling) in the order
/// models are created, like Keras' `keras.utils.set_random_seed`.
pub fn set_random_seed(seed: u64) {
    *GLOBAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(StdRng::seed_from_u64(seed));
}

/// A generator for a new model: from the global seed if one was set, else from the operating system.
pub(crate) fn model_rng() -> StdRng {
    match GLOBAL.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(global) => StdRng::seed_from_u64(global.random()),
        None => StdRng::from_os_rng(),
    }
}
