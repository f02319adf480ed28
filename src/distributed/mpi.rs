//! The MPI backend (feature `mpi`): the collectives of an MPI library (Open MPI, MPICH) through the `mpi`
//! crate.
use std::sync::{Arc, Mutex};

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::point_to_point::send_receive_into;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator as _, CommunicatorCollectives, Root};
use mpi::Threading;

use super::ring::{self, RingExchange};
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
    // kerust's own point-to-point messages (the ring collectives) travel on a duplicate of the world, so that
    // they never match a message the program sends on the world itself.
    ring: SimpleCommunicator,
    // Calls are serialized: MPI is initialized at the `Serialized` thread level, which allows calls from any
    // thread, one at a time. The lock also guards the ring collectives' running sums, kept between calls.
    lock: Mutex<Vec<f32>>,
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
        let ring = world.duplicate();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        Ok(Arc::new(Mpi { world, ring, lock: Mutex::new(Vec::new()), rank, size, _universe: universe }))
    }

    fn serialized<R>(&self, f: impl FnOnce(&SimpleCommunicator) -> R) -> R {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&self.world)
    }

    /// Runs `f` on the ring over this world's duplicate, with the running-sum scratch, under the lock.
    fn on_ring<R>(&self, f: impl FnOnce(&MpiRing<'_>, &mut Vec<f32>) -> R) -> R {
        let mut scratch = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        f(&MpiRing { comm: &self.ring, rank: self.rank, size: self.size }, &mut scratch)
    }

    /// Whether a buffer of `len` values goes through the ring collectives rather than the library's own: the
    /// large ones (where the bytes moved decide the time; a small one is a few messages' latency either way)
    /// between two ranks, where Open MPI's choices move the whole buffer. With more ranks its own algorithms
    /// (ring or recursive halving, segmented) move as few bytes, and they were as fast or faster than this
    /// unsegmented ring in the runs we could make (more ranks than cores, over TCP between namespaces).
    fn rides_ring(&self, len: usize) -> bool {
        self.size == 2 && len >= RING_MIN_LEN * self.size
    }
}

/// The smallest block, in values, worth a ring step (64 KiB).
const RING_MIN_LEN: usize = 16 * 1024;

/// A ring over an MPI communicator: rank `r` sends to `r + 1` and receives from `r - 1`.
struct MpiRing<'a> {
    comm: &'a SimpleCommunicator,
    rank: usize,
    size: usize,
}

impl RingExchange for MpiRing<'_> {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn shift(&self, send: &[f32], recv: &mut [f32]) {
        let next = self.comm.process_at_rank(((self.rank + 1) % self.size) as mpi::Rank);
        let previous = self.comm.process_at_rank(((self.rank + self.size - 1) % self.size) as mpi::Rank);
        send_receive_into(send, &next, recv, &previous);
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
        if !self.rides_ring(send.len()) {
            return self.serialized(|w| w.all_reduce_into(send, recv, SystemOperation::sum()));
        }
        self.on_ring(|ring, scratch| {
            let mine = ring::block(send.len(), self.rank, self.size);
            ring::reduce_scatter(ring, send, &mut recv[mine], scratch);
            ring::all_gather_in_place(ring, recv);
        });
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
        if self.rides_ring(send.len()) {
            // Equal blocks: the ring's blocks of `send` are `recv`'s length each.
            return self.on_ring(|ring, scratch| ring::reduce_scatter(ring, send, recv, scratch));
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
