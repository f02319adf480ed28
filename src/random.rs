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

/// The seed of a new model: drawn from the global seed if one was set, else from the operating system.
pub(crate) fn model_seed() -> u64 {
    match GLOBAL.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(global) => global.random(),
        None => StdRng::from_os_rng().random(),
    }
}

/// The generator of training epoch number `epoch` (counted over the model's life) of a model seeded with `seed`:
/// a ChaCha key made of both, so every epoch has its own stream, a function of `(seed, epoch)` only. This is what
/// makes training resumable from a saved model: see [`crate::models::Model::seed`].
pub(crate) fn epoch_rng(seed: u64, epoch: u64) -> StdRng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    key[8..16].copy_from_slice(&epoch.to_le_bytes());
    key[16..24].copy_from_slice(b"kerust/e");
    StdRng::from_seed(key)
}
