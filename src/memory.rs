//! Fallible allocation for sizes that come from a file or from a user's number.
//!
//! Rust aborts the process when an allocation fails (`memory allocation of N bytes failed`); no caller can
//! catch that. Every buffer whose length comes from outside (a layer's size, a model file, `num_classes`) is
//! therefore created here: the size is checked against what this machine can hold, then reserved with
//! [`Vec::try_reserve_exact`], and a failure is an [`Error::Allocation`] naming what was being allocated.
use std::sync::OnceLock;

use crate::{Error, Result};

/// The most bytes one buffer may take: `isize::MAX` (Rust's limit), and on Linux the machine's RAM plus swap
/// (`MemTotal + SwapTotal` of `/proc/meminfo`, within a cgroup's `memory.max`), since a larger buffer can never
/// be filled.
pub(crate) fn allocatable_bytes() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let rust_limit = isize::MAX as usize;
        machine_memory().map_or(rust_limit, |m| m.min(rust_limit))
    })
}

/// RAM + swap in bytes, where the system says (Linux), and no more than the memory limit of the process'
/// control group (cgroup v2 `memory.max`, plus swap), as in a container.
fn machine_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = info.lines().find(|l| l.starts_with(name))?;
        line[name.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok()
    };
    let swap = field("SwapTotal:").unwrap_or(0).saturating_mul(1024);
    let mut bytes = field("MemTotal:")?.saturating_mul(1024).saturating_add(swap);
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    if let Some(limit) = cgroup.and_then(|s| s.trim().parse::<u64>().ok()) {
        bytes = bytes.min(limit.saturating_add(swap));
    }
    usize::try_from(bytes).ok()
}

/// The element count of `shape`, or an [`Error::Allocation`] if it overflows.
pub(crate) fn element_count(shape: &[usize], what: impl FnOnce() -> String) -> Result<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| Error::Allocation {
        what: what(),
        shape: format!("{shape:?}"),
        reason: "the element count overflows the address space".into(),
    })
}

/// An empty `Vec` with room for exactly `len` elements, or an [`Error::Allocation`] naming `what` (a weight,
/// an array) and `shape` if `len` elements are more than this machine can hold or the allocator refuses them.
pub(crate) fn try_vec<T>(len: usize, what: impl FnOnce() -> String, shape: &[usize]) -> Result<Vec<T>> {
    let size = std::mem::size_of::<T>();
    let limit = allocatable_bytes();
    let error = |reason: String| Error::Allocation { what: what(), shape: format!("{shape:?}"), reason };
    let bytes = match len.checked_mul(size) {
        Some(b) if b <= limit => b,
        _ => {
            return Err(error(format!(
                "{len} elements of {size} bytes are more than the {limit} bytes this machine can allocate"
            )))
        }
    };
    let mut v = Vec::new();
    v.try_reserve_exact(len)
        .map_err(|e| error(format!("the allocator refused {bytes} bytes ({len} elements): {e}")))?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_beyond_the_machine_are_errors_not_aborts() {
        let e = try_vec::<f32>(1 << 60, || "weight `w`".into(), &[1 << 30, 1 << 30]).unwrap_err().to_string();
        assert!(e.contains("weight `w`") && e.contains("1152921504606846976 elements"), "{e}");
        assert!(element_count(&[usize::MAX, 2], || "x".into()).is_err());
        assert_eq!(try_vec::<f32>(10, || "x".into(), &[10]).unwrap().capacity(), 10);
    }
}
