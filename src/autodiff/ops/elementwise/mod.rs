//! Element-wise ops on the tape: the node of any registered one-input function ([`Unary`], defined with its
//! derivative under `device/unary/`), the `Var` methods that record it (`functions.rs`), and numpy-broadcasting
//! binary arithmetic (`add`, `mul`, `maximum`, ...).
mod binary;
mod functions;
mod unary;

pub(crate) use crate::device::Unary;
