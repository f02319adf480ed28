//! File formats below the model: atomic file writes, checksummed safetensors tensors, exact JSON settings.
pub(crate) mod atomic;
pub(crate) mod safetensors;
pub(crate) mod settings;
