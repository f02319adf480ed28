//! kerust's own thread pool: every parallel part of the crate (matrix products, the per-image convolution,
//! pooling and batch-normalization kernels, the optimizer update, batch assembly) runs on it, so
//! [`set_num_threads`] / `KERUST_NUM_THREADS` bound all of them, and rayon's global pool (which always has
//! every core) is never used.
//!
//! The default is the cores this process may use: [`std::thread::available_parallelism`], which on Linux
//! respects the affinity mask (`taskset`, a launcher's binding) and cgroup CPU quotas (containers). Under an
//! MPI launcher that starts several ranks on one machine without binding them to cores (`mpirun --bind-to
//! none`), every rank would otherwise count every core: when the launcher says how many ranks share the
//! machine (`OMPI_COMM_WORLD_LOCAL_SIZE`, `MPI_LOCALNRANKS`, `MV2_COMM_WORLD_LOCAL_SIZE`, `SLURM_NTASKS_PER_NODE`)
//! and this process may use every online core, each rank takes its share, `cores / ranks` (at least 1). A rank
//! the launcher bound to some cores keeps those. `KERUST_NUM_THREADS` (for example `mpirun -x
//! KERUST_NUM_THREADS=4`) and [`set_num_threads`] override both.
//!
//! Results never depend on the thread count: work is split so that each output element is computed by one
//! task in the same order as on one thread, and sums are split into fixed blocks whatever the thread count.
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use ndarray::{Dimension, NdProducer, Zip};
use rayon::prelude::*;

/// Below this many elements, element-wise work and copies stay on the calling thread: handing work to the pool
/// costs some microseconds, and memory-bound work gains little from another core until it is large (at
/// 1 << 16, a Dense layer's activations split over two threads made W2's predict slower; at 1 << 18, the
/// convnet's dropout and pooled maps stayed on one thread and its step was slower).
pub(crate) const PARALLEL_MIN_ELEMENTS: usize = 1 << 17;

/// 0 until first asked or set.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// The pool and its size, built on first use and again when the size changes.
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The threads kerust's parallel work may use: as set by [`set_num_threads`], else `KERUST_NUM_THREADS` if set
/// (a whole number, at least 1), else the cores this process may use (see the [module docs](self)).
///
/// ```
/// kerust::threads::set_num_threads(2);
/// assert_eq!(kerust::threads::num_threads(), 2);
/// kerust::threads::set_num_threads(0); // back to the default
/// assert!(kerust::threads::num_threads() >= 1);
/// ```
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = std::env::var("KERUST_NUM_THREADS")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .filter(|&n| n >= 1)
                .unwrap_or_else(default_threads);
            // A concurrent `set_num_threads` wins over the default.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(set) => set,
            }
        }
        n => n,
    }
}

/// Sets the threads kerust's parallel work may use (like `torch.set_num_threads`); 0 restores the default.
/// Results do not depend on it. The pool is rebuilt at its next use.
pub fn set_num_threads(threads: usize) {
    THREADS.store(threads, Ordering::Relaxed);
}

/// The cores this process may use, divided among the ranks an MPI launcher started on this machine when
/// they were not bound to cores.
fn default_threads() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ranks = local_ranks();
    share(available, ranks, ranks > 1 && may_use_every_core())
}

/// `available` cores, split among `ranks` when `unbound` (each rank counts every core), at least 1.
fn share(available: usize, ranks: usize, unbound: bool) -> usize {
    if unbound {
        (available / ranks.max(1)).max(1)
    } else {
        available.max(1)
    }
}

/// The ranks on this machine, as the MPI launcher (Open MPI, MPICH's Hydra, MVAPICH, Slurm) says; 1 outside one.
fn local_ranks() -> usize {
    ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse::<usize>().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// Whether the affinity mask allows every online core (then a launcher did not bind this rank). Linux only;
/// elsewhere assumed.
fn may_use_every_core() -> bool {
    let read = |path: &str, key: Option<&str>| -> Option<usize> {
        let text = std::fs::read_to_string(path).ok()?;
        let list = match key {
            Some(key) => text.lines().find_map(|l| l.strip_prefix(key))?.trim().to_string(),
            None => text.trim().to_string(),
        };
        cpu_list_len(&list)
    };
    match (
        read("/proc/self/status", Some("Cpus_allowed_list:")),
        read("/sys/devices/system/cpu/online", None),
    ) {
        (Some(allowed), Some(online)) => allowed >= online,
        _ => true,
    }
}

/// The number of CPUs in a Linux CPU list such as `0-3,8,10-11`.
fn cpu_list_len(list: &str) -> Option<usize> {
    list.split(',').filter(|p| !p.is_empty()).try_fold(0, |n, part| {
        let count = match part.split_once('-') {
            Some((a, b)) => b.trim().parse::<usize>().ok()?.checked_sub(a.trim().parse().ok()?)? + 1,
            None => part.trim().parse::<usize>().map(|_| 1).ok()?,
        };
        Some(n + count)
    })
}

/// The pool of [`num_threads`] threads, or `None` for one thread (or if the system refuses threads: then work
/// runs on the caller, with the same results).
fn pool() -> Option<Arc<rayon::ThreadPool>> {
    let n = num_threads();
    if n <= 1 {
        return None;
    }
    let mut slot = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((size, pool)) = slot.as_ref() {
        if *size == n {
            return Some(Arc::clone(pool));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("kerust-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *slot = Some((n, Arc::clone(&pool)));
    Some(pool)
}

/// Runs `f` on kerust's pool, so that rayon's `join` and parallel iterators inside it use kerust's threads (not
/// rayon's global pool); with one thread, runs it here. Inside the pool already, runs it directly.
pub(crate) fn install<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    match pool() {
        Some(pool) => pool.install(f),
        None => f(),
    }
}

/// Whether work of `elements` elements is worth splitting: more than one thread, and at least
/// [`PARALLEL_MIN_ELEMENTS`].
pub(crate) fn worth_splitting(elements: usize) -> bool {
    elements >= PARALLEL_MIN_ELEMENTS && num_threads() > 1
}

/// Runs `f(chunk_index, chunk)` for every chunk of `chunk_len` elements of `out` (the last may be shorter), over
/// the pool when `out` has at least [`PARALLEL_MIN_ELEMENTS`] elements. The chunks are fixed by `chunk_len`,
/// not by the thread count, and each is computed by one call, so results never depend on the thread count:
/// use it for rows of an output (a gathered batch, a reduction along an axis) or for fixed blocks of a sum.
pub(crate) fn for_each_chunk<T: Send>(
    out: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    for_each_chunk_of_work(out, chunk_len, out.len(), f);
}

/// [`for_each_chunk`] for work that reads more than it writes (a reduction): split over the pool when `work`,
/// the elements the whole call reads, is at least [`PARALLEL_MIN_ELEMENTS`].
pub(crate) fn for_each_chunk_of_work<T: Send>(
    out: &mut [T],
    chunk_len: usize,
    work: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let chunk_len = chunk_len.max(1);
    if worth_splitting(work) && out.len() > chunk_len {
        install(|| out.par_chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c)));
    } else {
        out.chunks_mut(chunk_len).enumerate().for_each(|(i, c)| f(i, c));
    }
}

/// The results of `f` on the fixed blocks `0..block, block..2 * block, ...` of `0..len`, in order, computed
/// over the pool when `len` is large: combine them in order for a sum whose rounding does not depend on the
/// thread count.
pub(crate) fn map_blocks<R: Send>(
    len: usize,
    block: usize,
    f: impl Fn(Range<usize>) -> R + Sync + Send,
) -> Vec<R> {
    let block = block.max(1);
    let blocks = len.div_ceil(block);
    let range = |i: usize| i * block..((i + 1) * block).min(len);
    if worth_splitting(len) && blocks > 1 {
        install(|| (0..blocks).into_par_iter().map(range).map(&f).collect())
    } else {
        (0..blocks).map(range).map(f).collect()
    }
}

/// Element-wise work over an ndarray [`Zip`], split over kerust's pool when it has at least
/// [`PARALLEL_MIN_ELEMENTS`] elements: `for_each(Zip::from(&mut out).and(&x), |o, &x| *o = x * 2.0)`. Each
/// element is computed by the same closure whatever the split, so results never depend on the thread count.
/// Implemented for zips of one to six producers.
pub(crate) trait ElementWise<F> {
    /// Runs `f` on every element, split when large.
    fn run(self, f: F);
}

macro_rules! element_wise {
    ($($p:ident),+) => {
        impl<D: Dimension, F, $($p),+> ElementWise<F> for Zip<($($p,)+), D>
        where
            $($p: NdProducer<Dim = D> + Send, $p::Item: Send,)+
            F: Fn($($p::Item),+) + Sync + Send,
        {
            fn run(self, f: F) {
                if worth_splitting(self.size()) {
                    install(|| self.par_for_each(f));
                } else {
                    self.for_each(f);
                }
            }
        }
    };
}
element_wise!(P1);
element_wise!(P1, P2);
element_wise!(P1, P2, P3);
element_wise!(P1, P2, P3, P4);
element_wise!(P1, P2, P3, P4, P5);
element_wise!(P1, P2, P3, P4, P5, P6);

/// Runs `f` on every element of `zip`, over kerust's pool when large (see [`ElementWise`]).
pub(crate) fn for_each<Z: ElementWise<F>, F>(zip: Z, f: F) {
    zip.run(f);
}

/// Runs `f` with 1, 2, 3 and 4 threads, one test at a time (the count is global), and gives its results in
/// that order: for tests that results do not depend on the thread count.
#[cfg(test)]
pub(crate) fn at_thread_counts<R>(f: impl Fn() -> R) -> Vec<R> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let results = [1, 2, 3, 4]
        .into_iter()
        .map(|n| {
            set_num_threads(n);
            f()
        })
        .collect();
    set_num_threads(0);
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(cpu_list_len("0-3,8,10-11"), Some(7));
        assert_eq!(cpu_list_len("0"), Some(1));
        assert_eq!(cpu_list_len("3-1"), None);
        assert_eq!(cpu_list_len("x"), None);
    }

    #[test]
    fn ranks_share_the_cores_only_when_unbound() {
        assert_eq!(share(16, 4, true), 4);
        assert_eq!(share(16, 4, false), 16);
        assert_eq!(share(2, 4, true), 1);
        assert_eq!(share(8, 1, true), 8);
    }

    #[test]
    fn chunks_blocks_and_zips_give_the_same_bits_for_any_thread_count() {
        let n = 3 * PARALLEL_MIN_ELEMENTS + 7;
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1013) as f32 / 97.0 - 5.0).collect();
        let runs = at_thread_counts(|| {
            let mut rows = vec![0.0f32; n];
            for_each_chunk(&mut rows, 1000, |i, c| {
                // A running sum along each row: any split inside a row would change it.
                let mut acc = 0.0f32;
                for (j, o) in c.iter_mut().enumerate() {
                    acc += x[i * 1000 + j].sin();
                    *o = acc;
                }
            });
            let sums = map_blocks(n, 4096, |r| x[r].iter().map(|v| v.exp().ln_1p()).sum::<f32>());
            let total = sums.iter().sum::<f32>();
            let mut out = ndarray::Array1::<f32>::zeros(n);
            let xa = ndarray::ArrayView1::from(&x[..]);
            for_each(Zip::from(&mut out).and(&xa), |o, &v| *o = v.tanh() * 3.0 + v);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            (bits(&rows), total.to_bits(), bits(out.as_slice().unwrap()))
        });
        assert!(runs.iter().all(|r| *r == runs[0]), "results differ between thread counts");
    }

    #[test]
    fn the_pool_has_the_threads_asked_for_and_follows_changes() {
        let counts = at_thread_counts(|| {
            (install(rayon::current_num_threads), install(|| rayon::current_thread_index().is_some()))
        });
        // One thread runs on the caller; more run on a pool of that many threads.
        assert!(!counts[0].1);
        assert_eq!(counts[1..], [(2, true), (3, true), (4, true)]);
    }
}
