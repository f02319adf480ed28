//! Utilities: one-hot encoding, seeding.
