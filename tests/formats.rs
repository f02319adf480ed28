//! The pure-Rust HDF5 and zip formats (`kerust::formats`): files written by h5py and Keras
//! (tests/fixtures/hdf5_files.py) read as h5py reads them, round trips through the writers, and hostile files
//! refused with an error, never a panic or an allocation beyond the limits.
use kerust::formats::hdf5::{self, Attr, Data, Dataset, Group, Limits, Node};
use kerust::formats::zip::{self, ZipLimits};
use serde_json::Value;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/formats/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn expected() -> Value {
    serde_json::from_slice(&fixture("formats.json")).unwrap()
}

fn check_attrs(attrs: &[(String, Attr)], want: &Value, place: &str) {
    let want = want.as_object().unwrap();
    assert_eq!(attrs.len(), want.len(), "{place}: attributes {attrs:?}, h5py reads {want:?}");
    for (name, v) in want {
        let got = attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a);
        let got = got.unwrap_or_else(|| panic!("{place}: attribute {name} missing"));
        let (kind, value) = v.as_object().unwrap().iter().next().unwrap();
        let ok = match (kind.as_str(), got) {
            ("str", Attr::Str(s)) => value.as_str() == Some(s.as_str()),
            ("strs", Attr::Strs(s)) => {
                value.as_array().unwrap().iter().map(|x| x.as_str().unwrap()).eq(s.iter().map(String::as_str))
            }
            ("f64", Attr::F64(x)) => {
                value.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).eq(x.iter().copied())
            }
            ("i64", Attr::I64(x)) => {
                value.as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).eq(x.iter().copied())
            }
            _ => false,
        };
        assert!(ok, "{place}: attribute {name} is {got:?}, h5py reads {v}");
    }
}

fn values(d: &Dataset) -> Vec<f64> {
    match &d.data {
        Data::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::F64(v) => v.clone(),
        Data::I64(v) => v.iter().map(|&x| x as f64).collect(),
        Data::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        Data::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
    }
}

/// Every object h5py sees in the file, with its members, shape, data and attributes, is in the tree read.
fn check_file(name: &str) -> Group {
    let root = hdf5::read(&fixture(name), &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let want = &expected()["files"][name];
    for (path, obj) in want.as_object().unwrap() {
        let place = format!("{name}:{path}");
        if obj["kind"] == "group" {
            let g = root.group(path).unwrap_or_else(|| panic!("{place}: no group"));
            let mut names: Vec<&str> = g.members.iter().map(|(n, _)| n.as_str()).collect();
            names.sort_unstable();
            let want: Vec<&str> =
                obj["members"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let mut want_sorted = want.clone();
            want_sorted.sort_unstable();
            assert_eq!(names, want_sorted, "{place}: members");
            check_attrs(&g.attrs, &obj["attrs"], &place);
        } else {
            let d = root.dataset(path).unwrap_or_else(|| panic!("{place}: no dataset"));
            let shape: Vec<usize> =
                obj["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
            assert_eq!(d.shape, shape, "{place}: shape");
            let data: Vec<f64> =
                obj["data"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(values(d), data, "{place}: data");
            let kind = match d.data {
                Data::F32(_) => "f4",
                Data::F64(_) => "f8",
                _ => "i",
            };
            let dtype = obj["dtype"].as_str().unwrap();
            assert!(
                dtype == kind || (kind == "i" && !dtype.starts_with('f')),
                "{place}: {dtype} read as {kind}"
            );
            check_attrs(&d.attrs, &obj["attrs"], &place);
        }
    }
    root
}

#[test]
fn reads_what_h5py_writes_by_default() {
    let root = check_file("h5py_default.h5");
    // Symbol-table groups are in name order, as h5py lists them.
    let many = root.group("many").unwrap();
    assert_eq!(many.members.len(), 40);
    assert!(many.members.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(root.dataset("weights/f64_be").unwrap().shape, [2, 3]);
}

#[test]
fn reads_what_h5py_writes_with_libver_v110() {
    check_file("h5py_latest.h5");
}

#[test]
fn reads_groups_that_track_creation_order() {
    let root = check_file("h5py_tracked.h5");
    // Dense link storage (40 members in a fractal heap), listed in creation order.
    let names: Vec<&str> = root.group("many").unwrap().members.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[..3], ["vars_00", "vars_01", "vars_02"]);
    assert_eq!(names.len(), 40);
}

#[test]
fn reads_keras3_weights() {
    let root = check_file("keras3_mlp.weights.h5");
    assert!(
        root.dataset("layers/dense/vars/0").is_some(),
        "{:?}",
        root.members.iter().map(|m| &m.0).collect::<Vec<_>>()
    );
}

#[test]
fn reads_keras2_legacy_h5() {
    let root = check_file("keras2_legacy.h5");
    assert!(matches!(root.attr("model_config"), Some(Attr::Str(s)) if s.contains("Sequential")));
}

#[test]
fn reads_a_keras_archive() {
    let entries = zip::read(&fixture("keras3_mlp.keras"), &ZipLimits::default()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    let want = expected()["zip_entries"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, want);
    let weights = &entries.iter().find(|e| e.0 == "model.weights.h5").unwrap().1;
    assert_eq!(weights, &fixture("keras3_mlp.weights.h5"));
}

/// A tree with every kind of value the writer takes, and a group of more members than one B-tree node holds.
fn sample_tree() -> Group {
    let ds = |shape: Vec<usize>, data: Data| Node::Dataset(Dataset { shape, data, attrs: vec![] });
    let mut vars = Group::default();
    for i in 0..300 {
        vars.members.push((i.to_string(), ds(vec![2], Data::F32(vec![i as f32, -(i as f32)]))));
    }
    let mut layer = Group::default();
    layer
        .attrs
        .push(("weight_names".into(), Attr::Strs(vec!["dense/kernel:0".into(), "dense/bias:0".into()])));
    layer.members.push(("kernel".into(), ds(vec![2, 3], Data::F32(vec![1.0, 2.0, 3.0, 4.0, 5.5, -6.0]))));
    layer.members.push(("scalar".into(), ds(vec![], Data::F64(vec![0.25]))));
    layer.members.push(("empty".into(), ds(vec![0, 4], Data::F32(vec![]))));
    layer.members.push(("steps".into(), ds(vec![1], Data::I64(vec![i64::MIN + 1]))));
    layer.members.push(("i32".into(), ds(vec![3], Data::I32(vec![-1, 0, 7]))));
    layer.members.push(("bytes".into(), ds(vec![2, 2], Data::U8(vec![0, 1, 254, 255]))));
    let mut d = Dataset { shape: vec![1], data: Data::F32(vec![1.5]), attrs: vec![] };
    d.attrs.push(("note".into(), Attr::Str("ünïcode".into())));
    layer.members.push(("with_attr".into(), Node::Dataset(d)));
    Group {
        attrs: vec![
            ("keras_version".into(), Attr::Str("3.15.0".into())),
            ("backend".into(), Attr::Str(String::new())),
            ("floats".into(), Attr::F64(vec![0.5, f64::MAX])),
            ("ints".into(), Attr::I64(vec![-3, i64::MAX])),
        ],
        members: vec![
            ("layer".into(), Node::Group(layer)),
            ("vars".into(), Node::Group(vars)),
            ("empty_group".into(), Node::Group(Group::default())),
        ],
    }
}

/// Symbol-table groups list their members by name.
fn sorted(mut g: Group) -> Group {
    g.members.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, m) in g.members.iter_mut() {
        if let Node::Group(sub) = m {
            *sub = sorted(std::mem::take(sub));
        }
    }
    g
}

#[test]
fn writes_what_it_reads() {
    let tree = sample_tree();
    let bytes = hdf5::write(&tree).unwrap();
    let back = hdf5::read(&bytes, &Limits::default()).unwrap();
    assert_eq!(back, sorted(tree));
}

/// Writes `target/formats_written.h5` (and `.keras`) for the h5py check of tests/fixtures/hdf5_files.py.
#[test]
fn writes_files_for_the_h5py_check() {
    let dir = format!("{}/target", env!("CARGO_MANIFEST_DIR"));
    let bytes = hdf5::write(&sample_tree()).unwrap();
    std::fs::write(format!("{dir}/formats_written.h5"), &bytes).unwrap();
    let archive = zip::write(&[("config.json", b"{}"), ("model.weights.h5", &bytes)]).unwrap();
    std::fs::write(format!("{dir}/formats_written.zip"), archive).unwrap();
}

// ---- Hostile files: each an error naming what is wrong, never a panic or an unbounded allocation. ----

fn read_err(bytes: &[u8], limits: &Limits) -> String {
    match hdf5::read(bytes, limits) {
        Ok(_) => panic!("the file was read"),
        Err(e) => e.to_string(),
    }
}

fn one_dataset(shape: Vec<usize>, data: Data) -> Group {
    Group {
        attrs: vec![],
        members: vec![("w".into(), Node::Dataset(Dataset { shape, data, attrs: vec![] }))],
    }
}

/// The position of the only occurrence of `needle`.
fn find(hay: &[u8], needle: &[u8]) -> usize {
    let all: Vec<usize> =
        hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect();
    assert_eq!(all.len(), 1, "{needle:?} found {} times", all.len());
    all[0]
}

/// The dataspace message of a one-dimensional dataset of 3 elements, as the writer encodes it.
const SPACE_3: [u8; 16] = [1, 1, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0];

#[test]
fn a_huge_dataspace_is_refused_before_allocating() {
    let mut bytes = hdf5::write(&one_dataset(vec![3], Data::F32(vec![1.0, 2.0, 3.0]))).unwrap();
    let at = find(&bytes, &SPACE_3);
    bytes[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("object at /w") && e.contains("Limits::max_elements"), "{e}");
    // Past the element bound, the bytes-read bound refuses it before any allocation.
    let lax = Limits { max_elements: u64::MAX, ..Limits::default() };
    let e = read_err(&bytes, &lax);
    assert!(e.contains("Limits::max_bytes_read"), "{e}");
    // Dimensions whose product overflows u64.
    bytes[at..at + 16].copy_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255, 255, 255, 255, 255]);
    let e = read_err(&bytes, &lax);
    assert!(e.contains("object at /w"), "{e}");
}

#[test]
fn a_dataspace_rank_over_32_is_refused() {
    let mut bytes = hdf5::write(&one_dataset(vec![3], Data::F32(vec![1.0, 2.0, 3.0]))).unwrap();
    let at = find(&bytes, &SPACE_3);
    bytes[at + 1] = 40;
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("hdf5: object at /w: dataspace rank 40 (at most 32)"), "{e}");
}

#[test]
fn a_group_that_contains_itself_is_refused() {
    let b = Group::default();
    let a = Group { attrs: vec![], members: vec![("b".into(), Node::Group(b))] };
    let root = Group { attrs: vec![], members: vec![("a".into(), Node::Group(a))] };
    let mut bytes = hdf5::write(&root).unwrap();
    // The writer writes children first: the symbol nodes of `a`, then of the root.
    let snods: Vec<usize> =
        bytes.windows(4).enumerate().filter(|(_, w)| *w == b"SNOD").map(|(i, _)| i).collect();
    assert_eq!(snods.len(), 2);
    let a_addr: [u8; 8] = bytes[snods[1] + 16..snods[1] + 24].try_into().unwrap();
    bytes[snods[0] + 16..snods[0] + 24].copy_from_slice(&a_addr);
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("object at /a/b") && e.contains("cycle"), "{e}");
}

#[test]
fn nesting_deeper_than_the_limit_is_refused() {
    let mut g = Group::default();
    for _ in 0..80 {
        g = Group { attrs: vec![], members: vec![("g".into(), Node::Group(g))] };
    }
    let bytes = hdf5::write(&g).unwrap();
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("nested deeper than 64 groups"), "{e}");
    assert!(hdf5::read(&bytes, &Limits { max_depth: 80, ..Limits::default() }).is_ok());
}

#[test]
fn object_and_byte_counts_are_bounded() {
    let bytes = hdf5::write(&sample_tree()).unwrap();
    let e = read_err(&bytes, &Limits { max_objects: 100, ..Limits::default() });
    assert!(e.contains("more than 100 objects"), "{e}");
    let e = read_err(&bytes, &Limits { max_bytes_read: 2000, ..Limits::default() });
    assert!(e.contains("more than 2000 bytes read"), "{e}");
    let e = read_err(&bytes, &Limits { max_elements: 5, ..Limits::default() });
    assert!(e.contains("more than 5 elements"), "{e}");
}

#[test]
fn truncated_and_corrupted_files_are_errors_not_panics() {
    for name in ["h5py_default.h5", "h5py_latest.h5", "h5py_tracked.h5", "keras2_legacy.h5"] {
        let bytes = fixture(name);
        // The end of a file may be unused space: only the first half's cuts must be errors.
        for n in (0..bytes.len()).step_by(13) {
            let read = hdf5::read(&bytes[..n], &Limits::default());
            assert!(read.is_err() || n > bytes.len() / 2, "{name} cut at {n}");
        }
    }
    // Every byte of a written file flipped in turn: an error or a tree, never a panic.
    let bytes = hdf5::write(&one_dataset(vec![2, 2], Data::F64(vec![1.0, 2.0, 3.0, 4.0]))).unwrap();
    for i in 0..bytes.len() {
        for flip in [0xFF, 0x80, 0x01] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            let _ = hdf5::read(&b, &Limits::default());
        }
    }
}

#[test]
fn zip_bad_archives_are_refused() {
    let limits = ZipLimits::default();
    let good = zip::write(&[("aa/x", b"hello"), ("b", b"world")]).unwrap();
    // A changed byte of an entry's data: the CRC-32 differs.
    let mut b = good.clone();
    let at = find(&b, b"hello");
    b[at] = b'j';
    let e = zip::read(&b, &limits).unwrap_err().to_string();
    assert!(e.contains("zip: entry \"aa/x\": CRC-32"), "{e}");
    // A name that leaves the extraction folder, in the central directory.
    let mut b = good.clone();
    let central = b.len() - 22 - (46 + 4) - (46 + 1);
    assert_eq!(&b[central + 46..central + 50], b"aa/x");
    b[central + 46..central + 48].copy_from_slice(b"..");
    let e = zip::read(&b, &limits).unwrap_err().to_string();
    assert!(e.contains("\"../x\"") && e.contains("unsafe name"), "{e}");
    b[central + 46..central + 48].copy_from_slice(b"/a");
    assert!(zip::read(&b, &limits).unwrap_err().to_string().contains("unsafe name"));
    // Two entries of one name.
    let mut b = good.clone();
    b[central + 46..central + 50].copy_from_slice(b"b\0\0\0");
    assert!(zip::read(&b, &limits).is_err());
    // Entry count and sizes.
    let e = zip::read(&good, &ZipLimits { max_entries: 1, ..limits.clone() }).unwrap_err().to_string();
    assert!(e.contains("2 entries (at most 1"), "{e}");
    let e = zip::read(&good, &ZipLimits { max_entry_bytes: 4, ..limits.clone() }).unwrap_err().to_string();
    assert!(e.contains("5 bytes uncompressed (at most 4"), "{e}");
    let e = zip::read(&good, &ZipLimits { max_total_bytes: 8, ..limits.clone() }).unwrap_err().to_string();
    assert!(e.contains("entry \"b\"") && e.contains("more than 3 bytes"), "{e}");
    // Every prefix, and every byte flipped: errors, never panics.
    for n in 0..good.len() {
        assert!(zip::read(&good[..n], &limits).is_err(), "cut at {n}");
    }
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0xFF;
        let _ = zip::read(&b, &limits);
    }
}

/// A deflated entry whose header says 10 bytes but which inflates to 50 MB: refused after the limit's bytes.
pub fn zip_bomb() -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&vec![0u8; 50 << 20]).unwrap();
    let data = enc.finish().unwrap();
    let mut b = zip::write(&[("bomb", &data)]).unwrap();
    // Method 8 (deflate), uncompressed size 10, in the local header and the central directory.
    let central = b.len() - 22 - 46 - 4;
    for (at, size_at) in [(8usize, 22usize), (central + 10, central + 24)] {
        b[at..at + 2].copy_from_slice(&8u16.to_le_bytes());
        b[size_at..size_at + 4].copy_from_slice(&10u32.to_le_bytes());
    }
    b
}

#[test]
fn a_zip_bomb_is_refused() {
    let e = zip::read(&zip_bomb(), &ZipLimits { max_entry_bytes: 1 << 20, ..ZipLimits::default() })
        .unwrap_err()
        .to_string();
    assert!(e.contains("zip: entry \"bomb\": more than 1048576 bytes uncompressed"), "{e}");
}

#[path = "../examples/fuzz_model_files/formats.rs"]
#[allow(dead_code)]
mod fuzz_formats;
#[path = "../examples/fuzz_model_files/harness.rs"]
mod harness;

/// The short seeded run of `fuzz_model_files --formats` (raw mutations of the fixtures and written files): no
/// panic, and every file that reads writes back to the same tree or entries.
#[test]
fn fuzzed_files_do_not_panic() {
    let stats = fuzz_formats::run(7, 0, 3000, |_| {}, |_, _| {});
    assert!(stats.panics.is_empty(), "{:?}", stats.panics);
    assert!(stats.oracle_failures.is_empty(), "{:?}", stats.oracle_failures);
    assert!(
        stats.loaded > 100 && stats.rejected > 1000,
        "{} loaded, {} rejected",
        stats.loaded,
        stats.rejected
    );
}

/// Found by the fuzz run (seed 5): a global heap collection shorter than its own header made a cursor's
/// remaining length underflow.
#[test]
fn a_global_heap_shorter_than_its_header_is_an_error() {
    let mut bytes = fixture("h5py_default.h5");
    let at = find(&bytes, b"GCOL");
    bytes[at + 8..at + 16].copy_from_slice(&4u64.to_le_bytes());
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("object at / attribute \"vlen\""), "{e}");
}

#[test]
fn reads_what_pythons_zipfile_deflates() {
    let entries = zip::read(&fixture("deflated.zip"), &ZipLimits::default()).unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(names, ["config.json", "assets/bytes.bin", "empty.txt"]);
    let config: Value = serde_json::from_slice(&entries[0].1).unwrap();
    assert_eq!(config["layers"][199], 199);
    assert_eq!(entries[1].1, (0..=255u8).cycle().take(1024).collect::<Vec<_>>());
    assert!(entries[2].1.is_empty());
}

/// Found by the fuzz run (seed 5): a chunked layout of dimensionality 0 underflowed in its error message.
#[test]
fn a_chunked_layout_of_dimensionality_0_is_an_error() {
    let mut bytes = fixture("h5py_default.h5");
    // Layout messages (type 8, 24 bytes) of version 3, class 2 (chunked), dimensionality 3 (2-D datasets).
    let at = (0..bytes.len() - 11)
        .find(|&i| bytes[i..i + 4] == [8, 0, 24, 0] && bytes[i + 8..i + 11] == [3, 2, 3])
        .unwrap();
    bytes[at + 10] = 0;
    let e = read_err(&bytes, &Limits::default());
    assert!(e.contains("chunk dimensionality 0 for a dataspace of rank 2"), "{e}");
}
