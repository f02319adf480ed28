//! Hostile HDF5 and zip files are refused within bounded memory: this binary counts every allocation (its own
//! global allocator), so that a reader that allocates what a header claims, or inflates a zip bomb to its end,
//! fails here even though it would return an error in the end.
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use kerust::formats::hdf5::{self, Data, Dataset, Group, Limits, Node};
use kerust::formats::zip::{self, ZipLimits};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
        PEAK.fetch_max(now, Ordering::SeqCst);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CURRENT.fetch_sub(layout.size(), Ordering::SeqCst);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The most bytes allocated at once, beyond those allocated before, while `f` runs.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let before = CURRENT.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = f();
    (out, PEAK.load(Ordering::SeqCst) - before)
}

/// One test, so that no other test's allocations run at the same time.
#[test]
fn hostile_files_are_refused_within_bounded_memory() {
    // A zip bomb: the header says 10 bytes, the data inflates to 50 MB; the limit is 1 MB.
    let bomb = {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; 50 << 20]).unwrap();
        let mut b = zip::write(&[("bomb", &enc.finish().unwrap())]).unwrap();
        let central = b.len() - 22 - 46 - 4;
        for (at, size_at) in [(8usize, 22usize), (central + 10, central + 24)] {
            b[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
            b[size_at..size_at + 4].copy_from_slice(&10u32.to_le_bytes());
        }
        b
    };
    let limits = ZipLimits { max_entry_bytes: 1 << 20, ..ZipLimits::default() };
    let (res, peak) = peak_during(|| zip::read(&bomb, &limits));
    assert!(res.is_err());
    assert!(peak < 4 << 20, "a zip bomb took {peak} bytes with a limit of 1 MiB");

    // An end record claiming 65,535 entries in a tiny archive.
    let mut b = zip::write(&[("a", b"x")]).unwrap();
    let n = b.len();
    b[n - 12..n - 8].copy_from_slice(&[0xFF, 0xFE, 0xFF, 0xFE]);
    let (res, peak) =
        peak_during(|| zip::read(&b, &ZipLimits { max_entries: usize::MAX, ..ZipLimits::default() }));
    assert!(res.is_err());
    assert!(peak < 1 << 16, "{peak} bytes for an archive of {n}");

    // An HDF5 dataset whose dataspace claims 2^33 float32s (32 GiB) in a file of a few hundred bytes, read
    // with no element bound: the bytes-read bound refuses it first.
    let tree = Group {
        attrs: vec![],
        members: vec![(
            "w".into(),
            Node::Dataset(Dataset { shape: vec![3], data: Data::F32(vec![1.0, 2.0, 3.0]), attrs: vec![] }),
        )],
    };
    let mut bytes = hdf5::write(&tree).unwrap();
    let space = [1u8, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];
    let at = bytes.windows(16).position(|w| w == space).unwrap();
    bytes[at + 8..at + 16].copy_from_slice(&(1u64 << 33).to_le_bytes());
    let lax = Limits { max_elements: u64::MAX, max_bytes_read: 1 << 20, ..Limits::default() };
    let (res, peak) = peak_during(|| hdf5::read(&bytes, &lax));
    assert!(res.is_err());
    assert!(peak < 1 << 20, "a 32 GiB claim took {peak} bytes");
}
