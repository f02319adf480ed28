//! The `--formats` mode: raw mutations of HDF5 and zip files (the h5py and Keras fixtures of
//! tests/fixtures/formats, files kerust's writers make, a deflated archive) and of numpy's `.npz`/`.npy` files
//! (tests/fixtures/imdb_files: pickled object arrays, int arrays) fed to `kerust::formats`. The oracles: no
//! panic (the worker counts them), memory bounded (the worker's `ulimit -v`), and a file that reads writes
//! back to a file that reads as the same tree (members in name order) or the same entries (`.npy` has no
//! writer: only the first two).
use kerust::formats::hdf5::{self, Attr, Data, Dataset, Group, Limits, Node};
use kerust::formats::npy;
use kerust::formats::zip::{self, ZipLimits};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::harness::{run_cases, Outcome, Stats};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/formats/", $name)).to_vec()
    };
}

macro_rules! npz_fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../tests/fixtures/imdb_files/", $name)).to_vec()
    };
}

/// `(is a zip archive, bytes)` of every base file.
pub fn corpus() -> Vec<(bool, Vec<u8>)> {
    let mut vars = Group::default();
    for i in 0..40 {
        let d = Dataset { shape: vec![2], data: Data::F32(vec![i as f32, 0.5]), attrs: vec![] };
        vars.members.push((format!("{i}"), Node::Dataset(d)));
    }
    let kernel = Dataset {
        shape: vec![2, 2],
        data: Data::F64(vec![1.0, -2.0, 3.0, 4.0]),
        attrs: vec![("note".into(), Attr::Str("a".into()))],
    };
    let written = Group {
        attrs: vec![
            ("layer_names".into(), Attr::Strs(vec!["dense".into(), "dense_1".into()])),
            ("ints".into(), Attr::I64(vec![1, 2])),
        ],
        members: vec![
            ("vars".into(), Node::Group(vars)),
            ("kernel".into(), Node::Dataset(kernel)),
            (
                "steps".into(),
                Node::Dataset(Dataset { shape: vec![], data: Data::I64(vec![7]), attrs: vec![] }),
            ),
        ],
    };
    let written = hdf5::write(&written).expect("the writer takes the corpus tree");
    // A deflated archive, as `zip -9` or Python's ZIP_DEFLATED writes: the writer stores, so deflate it here.
    let deflated = {
        use std::io::Write;
        let text = b"{\"class_name\": \"Sequential\", \"config\": {\"layers\": []}}".repeat(20);
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&text).expect("in memory");
        let data = enc.finish().expect("in memory");
        let mut b = zip::write(&[("config.json", &data)]).expect("one entry");
        let central = b.len() - 22 - 46 - 11;
        for (at, size_at) in [(8usize, 22usize), (central + 10, central + 24)] {
            b[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
            b[size_at..size_at + 4].copy_from_slice(&(text.len() as u32).to_le_bytes());
        }
        let mut crc = flate2::Crc::new();
        crc.update(&text);
        for at in [14, central + 16] {
            b[at..at + 4].copy_from_slice(&crc.sum().to_le_bytes());
        }
        b
    };
    let npz = [
        npz_fixture!("imdb_small.npz"),
        npz_fixture!("imdb_small_p3_legacy.npz"),
        npz_fixture!("imdb_small_p5_deflated.npz"),
        npz_fixture!("reuters_small.npz"),
    ];
    // The `.npy` members themselves, so that mutations reach the pickle reader past the zip's CRC.
    let members: Vec<(bool, Vec<u8>)> = npz
        .iter()
        .flat_map(|b| zip::read(b, &npy::NPZ_LIMITS).expect("the fixtures read"))
        .map(|(_, data)| (false, data))
        .collect();
    let mut corpus = vec![
        (false, fixture!("h5py_default.h5")),
        (false, fixture!("h5py_latest.h5")),
        (false, fixture!("h5py_tracked.h5")),
        (false, fixture!("keras3_mlp.weights.h5")),
        (false, fixture!("keras2_legacy.h5")),
        (false, written.clone()),
        (true, fixture!("keras3_mlp.keras")),
        (true, fixture!("deflated.zip")),
        (true, deflated),
        (true, zip::write(&[("model.weights.h5", &written), ("metadata.json", b"{}")]).expect("two entries")),
    ];
    corpus.extend(npz.into_iter().map(|b| (true, b)));
    corpus.extend(members);
    corpus
}

/// Input `index` of the run seeded `seed`: a corpus file with 1 to 8 raw mutations.
pub fn input_case(corpus: &[(bool, Vec<u8>)], seed: u64, index: u64) -> (bool, Vec<u8>) {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_F0F0);
    let (is_zip, mut b) = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=8) {
        if b.is_empty() {
            break;
        }
        let at = rng.random_range(0..b.len());
        match rng.random_range(0..8) {
            0 => b[at] ^= 1 << rng.random_range(0..8),
            1 => b[at] = rng.random(),
            2..=4 => {
                // A number that matters as a size, a count or an address, little-endian, often aligned.
                let at = if rng.random_bool(0.5) { at & !7 } else { at };
                let v: u64 = match rng.random_range(0..9) {
                    0 => 0,
                    1 => u64::MAX,
                    2 => u64::from(u32::MAX),
                    3 => 1 << rng.random_range(0..64),
                    4 => b.len() as u64,
                    5 => rng.random_range(0..b.len() as u64),
                    6 => 65_535,
                    7 => 1 << 31,
                    _ => rng.random_range(0..256),
                };
                let width = [1, 2, 4, 8][rng.random_range(0..4)];
                for (k, byte) in v.to_le_bytes().iter().take(width).enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = *byte;
                    }
                }
            }
            5 => b.truncate(at),
            6 => {
                // Copy a block elsewhere: a header or node where another should be.
                let len = rng.random_range(1..=64.min(b.len() - at));
                let to = rng.random_range(0..b.len());
                let block = b[at..at + len].to_vec();
                for (k, x) in block.into_iter().enumerate() {
                    if let Some(y) = b.get_mut(to + k) {
                        *y = x;
                    }
                }
            }
            _ => {
                let n = rng.random_range(1..16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(at..at, bytes);
            }
        }
    }
    (is_zip, b)
}

fn sorted(mut g: Group) -> Group {
    g.members.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    for (_, m) in g.members.iter_mut() {
        if let Node::Group(sub) = m {
            *sub = sorted(std::mem::take(sub));
        }
    }
    g
}

/// Bounds low enough that no input can take much memory, high enough for every corpus file.
pub fn limits() -> (Limits, ZipLimits) {
    (
        Limits { max_bytes_read: 256 << 20, max_objects: 100_000, max_depth: 64, max_elements: 1 << 24 },
        ZipLimits { max_entries: 1000, max_entry_bytes: 64 << 20, max_total_bytes: 256 << 20 },
    )
}

/// The oracles on one input.
pub fn check(is_zip: bool, bytes: &[u8]) -> Outcome {
    let (h5_limits, zip_limits) = limits();
    if bytes.starts_with(b"\x93NUMPY") {
        return if npy::read_npy(bytes).is_ok() { Outcome::Loaded } else { Outcome::Rejected };
    }
    if is_zip {
        // The `.npz` reader on every archive: its oracle is no panic and bounded memory.
        let _ = npy::read_npz(bytes);
        let Ok(entries) = zip::read(bytes, &zip_limits) else { return Outcome::Rejected };
        let refs: Vec<(&str, &[u8])> = entries.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
        return match zip::write(&refs).map(|w| zip::read(&w, &zip_limits)) {
            Ok(Ok(back)) if back == entries => Outcome::Loaded,
            Ok(Ok(_)) => Outcome::Oracle("an archive read, written and read again differs".into()),
            Ok(Err(e)) => Outcome::Oracle(format!("an archive the writer made does not read: {e}")),
            Err(e) => Outcome::Oracle(format!("the entries of an archive read do not write: {e}")),
        };
    }
    let Ok(tree) = hdf5::read(bytes, &h5_limits) else { return Outcome::Rejected };
    // The writer may refuse what it cannot write (e.g. an attribute over 64 KiB): not a finding.
    let Ok(written) = hdf5::write(&tree) else { return Outcome::Loaded };
    match hdf5::read(&written, &h5_limits) {
        // NaN differs from itself: Debug strings (slow on big datasets, so only then) compare it as equal.
        Ok(back) if back == sorted(tree.clone()) || format!("{back:?}") == format!("{:?}", sorted(tree)) => {
            Outcome::Loaded
        }
        Ok(_) => Outcome::Oracle("a tree read, written and read again differs".into()),
        Err(e) => Outcome::Oracle(format!("a file the writer made does not read: {e}")),
    }
}

/// Runs inputs `start..end` in this process, catching panics; as [`crate::harness::run`].
pub fn run(
    seed: u64,
    start: u64,
    end: u64,
    progress: impl FnMut(u64),
    done: impl FnMut(u64, &Result<Outcome, String>),
) -> Stats {
    let corpus = corpus();
    run_cases(start..end, progress, done, |i| {
        let (is_zip, bytes) = input_case(&corpus, seed, i);
        check(is_zip, &bytes)
    })
}
