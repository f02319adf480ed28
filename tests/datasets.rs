//! Datasets from local files: the real MNIST and Fashion-MNIST files when present, IDX round trips,
//! corrupt inputs, and to_categorical.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::write::GzEncoder;
use kerust::datasets::idx::{self, Compression};
use kerust::datasets::{fashion_mnist, mnist, Split};
use kerust::utils::{to_categorical, to_categorical_inferred};
use kerust::Error;
use ndarray::{array, s, Array, Array1, Array3, ArrayD, Axis, Ix1, IxDyn};
use sha2::{Digest, Sha256};

const MNIST_TRAIN_COUNTS: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const MNIST_TEST_COUNTS: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];
const FASHION_DIR: &str = "/usr/share/datasets/fashion-mnist";

// ---------------------------------------------------------------------------------------------------
// Helpers

/// The shared MNIST files beside the repository (CI clones the repo with shared/ next to it).
fn mnist_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/mnist");
    let complete =
        ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"].iter().all(|f| dir.join(f).exists());
    if complete {
        Some(dir)
    } else {
        eprintln!("SKIPPED: MNIST files not found in {}", dir.display());
        None
    }
}

fn fashion_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(FASHION_DIR);
    if dir.join("train-images-idx3-ubyte.gz").exists() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: Fashion-MNIST not installed in {FASHION_DIR} (apt-get install dataset-fashion-mnist)"
        );
        None
    }
}

/// A unique temporary folder, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("kerust-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = std::env::temp_dir().join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn class_counts(labels: &Array1<u8>) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &l in labels {
        counts[usize::from(l)] += 1;
    }
    counts
}

fn check_split(split: &Split, n: usize, first: [u8; 10], counts: &[usize]) {
    let (images, labels) = split;
    assert_eq!(images.shape(), &[n, 28, 28]);
    assert_eq!(labels.shape(), &[n]);
    assert_eq!(labels.slice(s![..10]).to_vec(), first);
    assert_eq!(class_counts(labels), counts);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn idx_bytes(array: &ArrayD<u8>) -> Vec<u8> {
    let mut bytes = Vec::new();
    idx::write_to(&mut bytes, array).unwrap();
    bytes
}

/// Asserts `result` is an `Error::Format` whose message contains `needle`.
fn assert_format_error<T: std::fmt::Debug>(result: kerust::Result<T>, needle: &str) {
    match result {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            assert!(msg.to_lowercase().contains(&needle.to_lowercase()), "message {msg:?} lacks {needle:?}");
        }
        other => panic!("expected a Format error containing {needle:?}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// The real files

#[test]
fn mnist_real_files_load() {
    let Some(dir) = mnist_dir() else { return };
    let (train, test) = mnist::load_data_from(&dir).unwrap();
    check_split(&train, 60000, [5, 0, 4, 1, 9, 2, 1, 3, 1, 4], &MNIST_TRAIN_COUNTS);
    check_split(&test, 10000, [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], &MNIST_TEST_COUNTS);
    // Pixels span the full byte range, and the first image is not blank.
    assert_eq!(train.0.iter().max(), Some(&255));
    assert!(train.0.index_axis(Axis(0), 0).iter().any(|&p| p > 0));
}

/// The published checksums of the uncompressed files match what idx reads (re-serialized) and what the
/// loader accepts.
#[test]
fn mnist_real_files_match_published_checksums() {
    let Some(dir) = mnist_dir() else { return };
    let sums = fs::read_to_string(dir.join("SHA256SUMS.uncompressed")).unwrap();
    let mut checked = 0;
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hash, name) = line.split_once(char::is_whitespace).unwrap();
        let array = idx::read(dir.join(format!("{}.gz", name.trim()))).unwrap();
        let digest = Sha256::digest(idx_bytes(&array));
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, hash, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn mnist_tampered_file_fails_its_checksum() {
    let Some(dir) = mnist_dir() else { return };
    let tmp = TempDir::new("tamper");
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
        fs::copy(dir.join(name), tmp.0.join(name)).unwrap();
    }
    // A valid IDX file of the right shape with one label changed: only the checksum can tell.
    let mut labels = idx::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    labels[[0]] = 3;
    let target = tmp.0.join("t10k-labels-idx1-ubyte.gz");
    idx::write(&target, &labels, Compression::Auto).unwrap();
    match mnist::load_data_from(&tmp.0) {
        Err(Error::Checksum { path, expected, found, .. }) => {
            assert_eq!(path, target);
            assert_eq!(expected, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2");
            assert_ne!(found, expected);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn mnist_folder_may_hold_uncompressed_files() {
    let Some(dir) = mnist_dir() else { return };
    let tmp = TempDir::new("plain");
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"] {
        fs::copy(dir.join(name), tmp.0.join(name)).unwrap();
    }
    let labels = idx::read(dir.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    idx::write(tmp.0.join("t10k-labels-idx1-ubyte"), &labels, Compression::Auto).unwrap();
    let (_, (_, y_test)) = mnist::load_data_from(&tmp.0).unwrap();
    assert_eq!(y_test.len(), 10000);
}

#[test]
fn missing_folder_is_an_io_error_naming_the_file() {
    let tmp = TempDir::new("missing");
    match mnist::load_data_from(tmp.0.join("nope")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("nope"), "{e}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn fashion_mnist_real_files_load() {
    let Some(dir) = fashion_dir() else { return };
    let (train, test) = fashion_mnist::load_data_from(&dir).unwrap();
    check_split(&train, 60000, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5], &[6000; 10]);
    check_split(&test, 10000, [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], &[1000; 10]);
}

#[test]
fn mnist_files_are_not_fashion_mnist() {
    let Some(dir) = mnist_dir() else { return };
    match fashion_mnist::load_data_from(&dir) {
        Err(e @ Error::Checksum { .. }) => {
            // A folder the user gave is never fetched into: the message must not promise a download, and
            // must say the file there is not the expected one.
            let msg = e.to_string();
            assert!(!msg.contains("Delete") && !msg.contains("fetched again"), "{msg}");
            for needle in
                [&dir.display().to_string()[..], "is not the expected", "fashion_mnist", "never downloads"]
            {
                assert!(msg.contains(needle), "message {msg:?} lacks {needle:?}");
            }
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
}

#[test]
fn to_categorical_on_real_labels() {
    let Some(dir) = mnist_dir() else { return };
    let (_, (_, y_test)) = mnist::load_data_from(&dir).unwrap();
    let one_hot = to_categorical(&y_test, 10).unwrap();
    assert_eq!(one_hot.shape(), &[10000, 10]);
    let per_class: Vec<usize> = one_hot.sum_axis(Axis(0)).iter().map(|&c| c as usize).collect();
    assert_eq!(per_class, MNIST_TEST_COUNTS);
    assert!(one_hot.sum_axis(Axis(1)).iter().all(|&s| s == 1.0));
}

// ---------------------------------------------------------------------------------------------------
// IDX round trips

#[test]
fn idx_round_trip_plain_and_gzip_in_memory() {
    let images = Array::from_shape_fn((3, 4, 5), |(i, j, k)| (i * 31 + j * 7 + k) as u8).into_dyn();
    let plain = idx_bytes(&images);
    assert_eq!(&plain[..4], &[0, 0, 0x08, 3]);
    assert_eq!(&plain[4..16], &[0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 5]);
    assert_eq!(plain.len(), 16 + 60);
    assert_eq!(idx::read_from(&plain[..], Compression::Auto).unwrap(), images);
    assert_eq!(idx::read_from(&plain[..], Compression::None).unwrap(), images);
    let gz = gzip(&plain);
    assert_eq!(idx::read_from(&gz[..], Compression::Auto).unwrap(), images);
    assert_eq!(idx::read_from(&gz[..], Compression::Gzip).unwrap(), images);
}

#[test]
fn idx_round_trip_files_any_rank() {
    let tmp = TempDir::new("roundtrip");
    let arrays = [
        ArrayD::from_elem(IxDyn(&[]), 42u8),
        array![1u8, 2, 3].into_dyn(),
        ArrayD::from_shape_fn(IxDyn(&[2, 3, 4, 5]), |d| (d[0] + d[1] * 2 + d[2] * 3 + d[3] * 5) as u8),
        ArrayD::zeros(IxDyn(&[0, 28, 28])),
    ];
    for (i, array) in arrays.iter().enumerate() {
        for name in [format!("a{i}.idx"), format!("a{i}.idx.gz")] {
            let path = tmp.0.join(&name);
            idx::write(&path, array, Compression::Auto).unwrap();
            let is_gz = fs::read(&path).unwrap().starts_with(&[0x1f, 0x8b]);
            assert_eq!(is_gz, name.ends_with(".gz"), "{name}");
            assert_eq!(&idx::read(&path).unwrap(), array, "{name}");
        }
    }
}

#[test]
fn idx_writes_views_in_logical_order() {
    let a = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as u8);
    let transposed = a.view().permuted_axes([2, 0, 1]);
    let back = idx::read_from(&idx_bytes(&transposed.to_owned().into_dyn())[..], Compression::None).unwrap();
    let mut direct = Vec::new();
    idx::write_to(&mut direct, &transposed).unwrap();
    assert_eq!(idx::read_from(&direct[..], Compression::None).unwrap(), back);
    assert_eq!(back, transposed.into_dyn());
}

#[test]
fn idx_labels_into_1d() {
    let labels = array![7u8, 2, 1, 0];
    let back = idx::read_from(&gzip(&idx_bytes(&labels.clone().into_dyn()))[..], Compression::Gzip).unwrap();
    assert_eq!(back.into_dimensionality::<Ix1>().unwrap(), labels);
}

// ---------------------------------------------------------------------------------------------------
// Corrupt IDX input

fn sample() -> Vec<u8> {
    idx_bytes(&Array::from_shape_fn((2, 3, 3), |(i, j, k)| (i + j + k) as u8).into_dyn())
}

#[test]
fn idx_rejects_wrong_magic() {
    let mut bad = sample();
    bad[0] = 0x12;
    assert_format_error(idx::read_from(&bad[..], Compression::Auto), "magic");
    let mut float = sample();
    float[2] = 0x0d;
    assert_format_error(idx::read_from(&float[..], Compression::Auto), "element type 0x0d");
}

#[test]
fn idx_rejects_truncated_header() {
    let data = sample();
    assert_format_error(idx::read_from(&data[..3], Compression::None), "truncated header");
    // Magic says 3 dimensions, only one size follows.
    assert_format_error(idx::read_from(&data[..8], Compression::None), "truncated header");
    assert_format_error(idx::read_from(&gzip(&data[..10])[..], Compression::Gzip), "truncated header");
}

#[test]
fn idx_rejects_truncated_data() {
    let data = sample();
    let cut = &data[..data.len() - 1];
    assert_format_error(idx::read_from(cut, Compression::None), "truncated data");
    assert_format_error(idx::read_from(&gzip(cut)[..], Compression::Gzip), "truncated data");
}

#[test]
fn idx_rejects_sizes_that_overflow() {
    let mut header = vec![0, 0, 0x08, 3];
    for _ in 0..3 {
        header.extend_from_slice(&u32::MAX.to_be_bytes());
    }
    assert_format_error(idx::read_from(&header[..], Compression::None), "overflow");
    // Representable but absurd: refused (or found truncated) without allocating it.
    let mut huge = vec![0, 0, 0x08, 2];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3]);
    assert!(matches!(idx::read_from(&huge[..], Compression::None), Err(Error::Format { .. })));
}

#[test]
fn idx_rejects_empty_input() {
    assert_format_error(idx::read_from(&[][..], Compression::Auto), "empty");
    assert_format_error(idx::read_from(&[][..], Compression::Gzip), "gzip");
    let tmp = TempDir::new("empty");
    let path = tmp.0.join("empty.gz");
    fs::write(&path, b"").unwrap();
    match idx::read(&path) {
        Err(e @ Error::Format { .. }) => assert!(e.to_string().contains("empty.gz"), "{e}"),
        other => panic!("expected a Format error, got {other:?}"),
    }
}

#[test]
fn idx_rejects_input_that_is_not_gzip() {
    assert_format_error(idx::read_from(&sample()[..], Compression::Gzip), "not gzip");
    assert_format_error(idx::read_from(&b"<html>Not Found</html>"[..], Compression::Gzip), "1f 8b");
    // Auto detection falls back to plain IDX, whose magic number does not match.
    assert_format_error(idx::read_from(&b"<html>Not Found</html>"[..], Compression::Auto), "magic");
}

#[test]
fn idx_rejects_trailing_garbage() {
    let mut plain = sample();
    plain.extend_from_slice(b"xyz");
    assert_format_error(idx::read_from(&plain[..], Compression::None), "3 trailing bytes");
    assert_format_error(idx::read_from(&gzip(&plain)[..], Compression::Gzip), "trailing");
    // Garbage after a complete gzip stream, outside the compressed data.
    let mut gz = gzip(&sample());
    gz.extend_from_slice(b"garbage!");
    assert!(matches!(idx::read_from(&gz[..], Compression::Gzip), Err(Error::Format { .. })));
}

#[test]
fn idx_rejects_corrupt_gzip() {
    let data: Vec<u8> =
        idx_bytes(&Array::from_shape_fn((20, 28, 28), |(i, j, k)| ((i * j) ^ k) as u8).into_dyn());
    let gz = gzip(&data);
    // Cut inside the compressed stream.
    assert!(matches!(idx::read_from(&gz[..gz.len() / 2], Compression::Gzip), Err(Error::Format { .. })));
    // Missing the CRC/length trailer.
    assert!(matches!(idx::read_from(&gz[..gz.len() - 4], Compression::Gzip), Err(Error::Format { .. })));
    // A flipped byte in the CRC.
    let mut bad_crc = gz.clone();
    let n = bad_crc.len();
    bad_crc[n - 8] ^= 0xff;
    assert!(matches!(idx::read_from(&bad_crc[..], Compression::Gzip), Err(Error::Format { .. })));
    // Flipped bytes in the middle of the deflate data.
    let mut flipped = gz.clone();
    for b in &mut flipped[20..40] {
        *b ^= 0x5a;
    }
    assert!(matches!(idx::read_from(&flipped[..], Compression::Gzip), Err(Error::Format { .. })));
}

#[test]
fn idx_write_rejects_unrepresentable_arrays() {
    let too_many_dims = ArrayD::<u8>::zeros(IxDyn(&[1; 256]));
    let mut sink = Vec::new();
    assert!(matches!(idx::write_to(&mut sink, &too_many_dims), Err(Error::InvalidArgument { .. })));
}

// ---------------------------------------------------------------------------------------------------
// to_categorical

#[test]
fn to_categorical_known_input() {
    let y = array![0u8, 2, 1, 2];
    let expected =
        array![[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]];
    assert_eq!(to_categorical(&y, 4).unwrap(), expected);
    assert_eq!(to_categorical_inferred(&y).unwrap(), expected.slice(s![.., ..3]));
}

#[test]
fn to_categorical_accepts_views_and_other_integer_types() {
    let y = array![3i64, 0, 1];
    let view = y.view();
    let one_hot = to_categorical(&view, 5).unwrap();
    assert_eq!(one_hot.shape(), &[3, 5]);
    assert_eq!(one_hot.row(0).to_vec(), [0.0, 0.0, 0.0, 1.0, 0.0]);
    let y16 = array![1u16, 1];
    assert_eq!(to_categorical(&y16.slice(s![..1]), 2).unwrap(), array![[0.0, 1.0]]);
    assert_eq!(to_categorical_inferred(&array![2usize]).unwrap(), array![[0.0, 0.0, 1.0]]);
}

#[test]
fn to_categorical_rejects_out_of_range_labels() {
    match to_categorical(&array![1u8, 9, 10, 11], 10) {
        Err(e @ Error::LabelOutOfRange { label: 10, index: 2, num_classes: 10 }) => {
            let msg = e.to_string();
            assert!(msg.contains("label 10") && msg.contains("index 2"), "{msg}");
        }
        other => panic!("expected LabelOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        to_categorical(&array![0i32, -1], 3),
        Err(Error::LabelOutOfRange { label: -1, index: 1, num_classes: 3 })
    ));
    assert!(matches!(
        to_categorical_inferred(&array![-2i8]),
        Err(Error::LabelOutOfRange { label: -2, index: 0, .. })
    ));
    assert!(matches!(to_categorical(&array![0u8], 0), Err(Error::LabelOutOfRange { .. })));
}

#[test]
fn to_categorical_empty_input() {
    let empty = Array1::<u8>::zeros(0);
    assert_eq!(to_categorical(&empty, 10).unwrap().shape(), &[0, 10]);
    assert_eq!(to_categorical_inferred(&empty).unwrap().shape(), &[0, 0]);
}
