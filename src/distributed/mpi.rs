//! The MPI backend (feature `mpi`): the collectives of an MPI library (Open MPI, MPICH) through the `mpi`
//! crate.
use std::sync::{Arc, Mutex};

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use mpi::Threading;

use super::Communicator;
use crate::{Error, Result};

/// `MPI_COMM_WORLD`: every process started by one `mpirun -np N` (or `srun`), a [`Communicator`].
///
/// Started alone (without `mpirun`), the program is a world of one rank and trains exactly as without MPI.
/// MPI is finalized when the last handle (the model holds one) is dropped.
///
/// ```no_run
/// # fn main() -> kerust::Result<()> {
/// use kerust::distributed::{Communicator, Mpi};
/// let world = Mpi::init()?;
/// println!("rank {} of {}", world.rank(), world.size());
/// # Ok(())
/// # }
/// ```
pub struct Mpi {
    world: SimpleCommunicator,
    // Calls are serialized: MPI is initialized at the `Serialized` thread level, which allows calls from any
    // thread, one at a time.
    lock: Mutex<()>,
    rank: usize,
    size: usize,
    // Dropped last: finalizes MPI.
    _universe: Universe,
}

// SAFETY: MPI was initialized at the `Serialized` level (checked in `init`), so any thread may call it, and
// every call goes through `lock`, so no two calls run at once.
unsafe impl Send for Mpi {}
// SAFETY: as above; shared references only reach MPI through `lock`.
unsafe impl Sync for Mpi {}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi").field("rank", &self.rank).field("size", &self.size).finish()
    }
}

impl Mpi {
    /// Initializes MPI and returns its world.
    ///
    /// # Errors
    /// If MPI was already initialized in this process (call `init` once and share the handle), or the
    /// library cannot serve calls from several threads one at a time.
    pub fn init() -> Result<Arc<Mpi>> {
        let Some((universe, threading)) = mpi::initialize_with_threading(Threading::Serialized) else {
            return Err(Error::NotReady(
                "MPI is already initialized in this process: call Mpi::init() once and clone the handle"
                    .into(),
            ));
        };
        if !matches!(threading, Threading::Serialized | Threading::Multiple) {
            return Err(Error::NotReady(format!(
                "the MPI library offers thread level {threading:?}; kerust needs Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Arc::new(Mpi { world, lock: Mutex::new(()), rank, size, _universe: universe }))
    }

    fn serialized<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&self.world)
    }
}

fn counts_and_displs(counts: &[usize]) -> (Vec<mpi::Count>, Vec<mpi::Count>) {
    let counts: Vec<mpi::Count> = counts.iter().map(|&c| c as mpi::Count).collect();
    let displs = counts
        .iter()
        .scan(0, |at, &c| {
            let d = *at;
            *at += c;
            Some(d)
        })
        .collect();
    (counts, displs)
}

impl Communicator for Mpi {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, send: &[f32], recv: &mut [f32]) {
        self.serialized(|w| w.all_reduce_into(send, recv, SystemOperation::sum()));
    }

    fn reduce_scatter_sum(&self, send: &[f32], recv: &mut [f32]) {
        assert_eq!(
            send.len(),
            recv.len() * self.size,
            "reduce_scatter_sum: send is not size() blocks of recv"
        );
        // As in `all_gather`: empty blocks on every rank (every rank knows the length) need no call.
        if recv.is_empty() {
            return;
        }
        self.serialized(|w| w.reduce_scatter_block_into(send, recv, SystemOperation::sum()));
    }

    fn all_gather(&self, local: &[f32], counts: &[usize], out: &mut [f32]) {
        // Open MPI refuses a gather of nothing at all (MPI_ERR_ARG); every rank knows the counts, so all skip it.
        if counts.iter().all(|&c| c == 0) {
            return;
        }
        let (counts, displs) = counts_and_displs(counts);
        self.serialized(|w| {
            let mut partition = PartitionMut::new(out, counts, displs);
            w.all_gather_varcount_into(local, &mut partition);
        });
    }

    fn all_gather_bytes(&self, local: &[u8]) -> Vec<Vec<u8>> {
        self.serialized(|w| {
            let mut lens = vec![0u64; self.size];
            w.all_gather_into(&(local.len() as u64), &mut lens[..]);
            let lens: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
            let (counts, displs) = counts_and_displs(&lens);
            let mut all = vec![0u8; lens.iter().sum()];
            // As in `all_gather`: nothing to gather anywhere (every rank sees the same lengths).
            if !all.is_empty() {
                let mut partition = PartitionMut::new(&mut all[..], counts, displs);
                w.all_gather_varcount_into(local, &mut partition);
            }
            let mut at = 0;
            lens.iter()
                .map(|&l| {
                    at += l;
                    all[at - l..at].to_vec()
                })
                .collect()
        })
    }

    fn broadcast(&self, buf: &mut [f32]) {
        self.serialized(|w| w.process_at_rank(0).broadcast_into(buf));
    }

    fn abort(&self, code: i32) -> ! {
        // No lock: another thread may hold it inside a collective that will never end.
        self.world.abort(code)
    }
}
