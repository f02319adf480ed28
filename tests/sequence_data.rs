//! Sequence data against Keras: IMDB and Reuters loaded from small `.npz` files written by numpy, compared with
//! what Keras' own loaders return for them (tests/fixtures/imdb_files.py writes both); `pad_sequences` against
//! Keras' outputs; and the `.npy`/pickle reader on hostile files: errors, never panics.
use std::path::{Path, PathBuf};

use kerust::datasets::{imdb, reuters, Cache, SequenceOptions, SequenceSplit};
use kerust::formats::npy::{self, NpyArray};
use kerust::formats::zip;
use kerust::utils::{pad_sequences, PadSequences, Side};
use kerust::Error;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(fixtures().join("imdb_files.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn file(key: &str) -> PathBuf {
    fixtures().join("imdb_files").join(fixture()["files"][key].as_str().unwrap())
}

/// Keras' keyword arguments as options; `null` is Python's None, an absent key Keras' default.
fn options(args: &Value) -> (SequenceOptions, f64) {
    let mut o = SequenceOptions::default();
    let int = |v: &Value| v.as_i64().unwrap();
    if let Some(v) = args.get("num_words") {
        o.num_words = Some(int(v) as usize);
    }
    if let Some(v) = args.get("skip_top") {
        o.skip_top = int(v) as usize;
    }
    if let Some(v) = args.get("maxlen") {
        o.maxlen = Some(int(v) as usize);
    }
    if let Some(v) = args.get("seed") {
        o.seed = int(v) as u32;
    }
    if let Some(v) = args.get("start_char") {
        o.start_char = v.as_i64();
    }
    if let Some(v) = args.get("oov_char") {
        o.oov_char = v.as_i64();
    }
    if let Some(v) = args.get("index_from") {
        o.index_from = int(v);
    }
    (o, args.get("test_split").map_or(0.2, |v| v.as_f64().unwrap()))
}

fn lists(v: &Value) -> Vec<Vec<i64>> {
    v.as_array().unwrap().iter().map(ints).collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn check(case: &Value, result: kerust::Result<(SequenceSplit, SequenceSplit)>, what: &str) {
    let args = &case["args"];
    if let Some(keras_error) = case.get("error") {
        let e = result.expect_err(&format!("{what} {args}: Keras raised {keras_error}"));
        assert!(matches!(e, Error::InvalidArgument { .. }), "{what} {args}: {e}");
        return;
    }
    let ((x_train, y_train), (x_test, y_test)) = result.unwrap_or_else(|e| panic!("{what} {args}: {e}"));
    assert_eq!(x_train, lists(&case["x_train"]), "{what} {args}: x_train");
    assert_eq!(y_train.to_vec(), ints(&case["y_train"]), "{what} {args}: y_train");
    assert_eq!(x_test, lists(&case["x_test"]), "{what} {args}: x_test");
    assert_eq!(y_test.to_vec(), ints(&case["y_test"]), "{what} {args}: y_test");
}

#[test]
fn imdb_gives_keras_sequences_and_order() {
    let f = fixture();
    for case in f["imdb"].as_array().unwrap() {
        let (o, _) = options(&case["args"]);
        check(case, imdb::load_data_from_npz(file("imdb"), &o), "imdb");
    }
}

#[test]
fn imdb_reads_other_pickle_protocols_numpy_1_names_and_deflated_archives() {
    let f = fixture();
    for key in ["imdb_p3_legacy", "imdb_p5_deflated"] {
        for case in f["imdb"].as_array().unwrap() {
            let (o, _) = options(&case["args"]);
            check(case, imdb::load_data_from_npz(file(key), &o), key);
        }
    }
}

#[test]
fn reuters_gives_keras_sequences_order_and_split() {
    let f = fixture();
    for case in f["reuters"].as_array().unwrap() {
        let (o, split) = options(&case["args"]);
        check(case, reuters::load_data_from_npz(file("reuters"), &o, split), "reuters");
    }
}

#[test]
fn reuters_refuses_a_test_split_outside_0_to_1() {
    for split in [-0.1, 1.5, f64::NAN] {
        let e = reuters::load_data_from_npz(file("reuters"), &SequenceOptions::default(), split).unwrap_err();
        assert!(e.to_string().contains("test_split"), "{e}");
    }
    assert_eq!(reuters::get_label_names()[45], "lead");
}

#[test]
fn a_file_of_another_dataset_names_the_missing_member() {
    let e = imdb::load_data_from_npz(file("reuters"), &SequenceOptions::default()).unwrap_err().to_string();
    assert!(e.contains("x_train.npy") && e.contains("\"x\""), "{e}");
    let e =
        reuters::load_data_from_npz(file("imdb"), &SequenceOptions::default(), 0.2).unwrap_err().to_string();
    assert!(e.contains("member x.npy"), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// The cache: Keras' digests are checked, and nothing is downloaded for a file that is there.

fn temp_cache(tag: &str) -> (PathBuf, Cache) {
    let home = std::env::temp_dir().join(format!("kerust-seqdata-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    // A mirror nothing listens on: a download attempt fails fast with a network error.
    (home.clone(), Cache::new(home).with_mirrors(["http://127.0.0.1:9/"]).with_progress(false))
}

#[test]
fn a_cached_file_that_is_not_keras_is_a_checksum_error() {
    let (home, cache) = temp_cache("checksum");
    let dir = cache.dataset_dir("imdb");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(file("imdb"), dir.join("imdb.npz")).unwrap();
    let e = imdb::load_data_with(&cache, &SequenceOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    assert!(
        e.to_string().contains("69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
        "{e}"
    );

    std::fs::write(dir.join("imdb_word_index.json"), br#"{"the": 1}"#).unwrap();
    let e = imdb::get_word_index_with(&cache).unwrap_err();
    assert!(matches!(e, Error::Checksum { .. }), "{e}");
    assert!(e.to_string().contains("MD5 of the file bfafd718b763782e994055a2d397834f"), "{e}");
    let _ = std::fs::remove_dir_all(home);
}

#[test]
fn a_missing_file_that_cannot_be_downloaded_says_what_to_do() {
    let (home, cache) = temp_cache("offline");
    let e = reuters::load_data_with(&cache, &SequenceOptions::default(), 0.2).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Network { .. }), "{e}");
    for needle in ["reuters.npz", "KERUST_DATASETS_MIRROR", "reuters::load_data_from_npz"] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    assert!(!cache.dataset_dir("reuters").join("reuters.npz").exists());
    let _ = std::fs::remove_dir_all(home);
}

// ---------------------------------------------------------------------------------------------------
// pad_sequences against Keras

#[test]
fn pad_sequences_matches_keras() {
    let f = fixture();
    let seqs = &f["pad_sequences"]["sequences"];
    let float_seqs: Vec<Vec<f64>> = seqs["float"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let int_seqs = lists(&seqs["int"]);
    let none: Vec<Vec<i64>> = Vec::new();
    let cases = f["pad_sequences"]["cases"].as_array().unwrap();
    for case in cases {
        let side = |k: &str| case[k].as_str().unwrap().parse::<Side>().unwrap();
        let mut b = PadSequences::new().padding(side("padding")).truncating(side("truncating"));
        if let Some(m) = case["maxlen"].as_u64() {
            b = b.maxlen(m as usize);
        }
        let value = &case["value"];
        // Every output as f64 (exact for these values), with its shape.
        let got: kerust::Result<(Vec<usize>, Vec<f64>)> = match case["dtype"].as_str().unwrap() {
            "int32" => {
                let b = b.value(value.as_i64().unwrap() as i32);
                run(&b, case, &int_seqs, &float_seqs, &none, f64::from)
            }
            "int64" => {
                let b = b.value(value.as_i64().unwrap());
                run(&b, case, &int_seqs, &float_seqs, &none, |v| v as f64)
            }
            "float32" => {
                let b = b.value(value.as_f64().unwrap() as f32);
                run(&b, case, &int_seqs, &float_seqs, &none, f64::from)
            }
            other => panic!("dtype {other}"),
        };
        match case.get("error") {
            Some(keras_error) => {
                let e = got.expect_err(&format!("{case}: Keras raised {keras_error}"));
                assert!(matches!(e, Error::InvalidArgument { .. }), "{case}: {e}");
            }
            None => {
                let (shape, values) = got.unwrap_or_else(|e| panic!("{case}: {e}"));
                let expected: Vec<f64> =
                    case["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                let expected_shape: Vec<usize> =
                    case["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
                assert_eq!((shape, values), (expected_shape, expected), "{case}");
            }
        }
    }
    assert!(cases.len() > 200, "{} cases", cases.len());
}

fn run<T: kerust::utils::PadElement>(
    b: &PadSequences<T>,
    case: &Value,
    ints: &[Vec<i64>],
    floats: &[Vec<f64>],
    none: &[Vec<i64>],
    to_f64: impl Fn(T) -> f64,
) -> kerust::Result<(Vec<usize>, Vec<f64>)> {
    let out = match case["sequences"].as_str().unwrap() {
        "int" => b.pad(ints)?,
        "float" => b.pad(floats)?,
        _ => b.pad(none)?,
    };
    Ok((out.shape().to_vec(), out.iter().map(|&v| to_f64(v)).collect()))
}

#[test]
fn pad_sequences_refuses_values_the_output_cannot_hold() {
    let e = PadSequences::new().value(0u8).pad(&[vec![1i64, 300]]).unwrap_err().to_string();
    assert!(e.contains("300") && e.contains("position 1"), "{e}");
    let e = pad_sequences(&[vec![f32::NAN]], None).unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    // The truncated part is never converted, as in Keras.
    assert_eq!(
        PadSequences::new().value(0u8).maxlen(1).pad(&[vec![300i64, 1]]).unwrap(),
        ndarray::array![[1u8]]
    );
    let e = PadSequences::new().maxlen(usize::MAX).pad(&[vec![1i64], vec![2]]).unwrap_err();
    assert!(matches!(e, Error::Allocation { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// Hostile files

/// The `x_train.npy` member of the main IMDB fixture.
fn x_train_npy() -> Vec<u8> {
    let bytes = std::fs::read(file("imdb")).unwrap();
    zip::read(&bytes, &npy::NPZ_LIMITS).unwrap().into_iter().find(|(n, _)| n == "x_train.npy").unwrap().1
}

fn header_end(npy: &[u8]) -> usize {
    10 + usize::from(u16::from_le_bytes([npy[8], npy[9]]))
}

/// A valid header for a 1-D object array of `n` elements, followed by `pickle`.
fn object_npy(n: usize, pickle: &[u8]) -> Vec<u8> {
    let header = format!("{{'descr': '|O', 'fortran_order': False, 'shape': ({n},), }}");
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend((header.len() as u16 + 1).to_le_bytes());
    b.extend(header.bytes());
    b.push(b'\n');
    b.extend_from_slice(pickle);
    b
}

fn expect_format_error(bytes: &[u8], needle: &str) {
    match npy::read_npy(bytes) {
        Err(e @ Error::FileFormat { .. }) => {
            assert!(e.to_string().contains(needle), "{needle:?} not in: {e}")
        }
        other => panic!("expected a format error containing {needle:?}, got {other:?}"),
    }
}

#[test]
fn the_fixture_member_reads_as_twelve_lists() {
    let NpyArray::IntLists(rows) = npy::read_npy(&x_train_npy()).unwrap() else { panic!("not lists") };
    assert_eq!(rows.len(), 12);
}

#[test]
fn every_truncation_is_an_error() {
    let b = x_train_npy();
    for len in 0..b.len() {
        assert!(npy::read_npy(&b[..len]).is_err(), "prefix of {len} bytes was accepted");
    }
}

#[test]
fn hostile_pickles_are_errors() {
    let b = x_train_npy();
    let start = header_end(&b);
    // Another opcode: a dict where numpy writes none.
    let mut dict = b.clone();
    dict[start + 11] = b'}';
    expect_format_error(&dict, "found 0x7d");
    // A foreign global: code execution through REDUCE.
    expect_format_error(&object_npy(1, b"\x80\x02cos\nsystem\nq\x00."), "found `os.system`");
    // Lengths far beyond the stream: a 2^63-byte string, a 4 GiB string.
    expect_format_error(
        &object_npy(1, b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"),
        "remain in the stream",
    );
    expect_format_error(&object_npy(1, b"\x80\x04X\xff\xff\xff\xff"), "remain in the stream");
    // A 200-byte integer.
    expect_format_error(&object_npy(1, b"\x80\x04\x8a\xc8"), "at most 8 bytes");
    // Memo references that were never stored.
    expect_format_error(&object_npy(1, b"\x80\x04j\xff\xff\xff\xff"), "never stored");
    // A million nested lists: no recursion; and what they build is bounded.
    let mut deep = b"\x80\x04".to_vec();
    deep.extend(std::iter::repeat_n(b"](".as_slice(), 1_000_000).flatten());
    expect_format_error(&object_npy(1, &deep), "builds more");
    // Four million one-byte empty lists would take some 300 MB: refused at 16 MiB + 16 bytes a byte.
    let mut flood = b"\x80\x04".to_vec();
    flood.resize(4_000_000, b']');
    expect_format_error(&object_npy(1, &flood), "builds more");
    // A short stream of the same kind is only truncated.
    expect_format_error(&object_npy(1, b"\x80\x04]]]]"), "remain in the stream");
    // Nested lists as elements: the reader goes three levels (array, list, int) and no deeper.
    let mut nested = b.clone();
    nested.truncate(start);
    nested.extend_from_slice(&nested_pickle());
    expect_format_error(&nested, "list of ints");
}

/// numpy's pickle of `np.array([[[1]]], dtype=object)`'s shape as a 1-element object array whose element
/// is `[[1]]`, written by hand at protocol 2.
fn nested_pickle() -> Vec<u8> {
    let mut b =
        b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R".to_vec();
    b.extend_from_slice(b"(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R");
    b.extend_from_slice(b"(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?tb\x89]");
    b.extend_from_slice(b"(]]K\x01aaetb.");
    b
}

#[test]
fn wrong_headers_and_dtypes_are_errors() {
    let b = x_train_npy();
    let header = |h: &str| {
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.bytes());
        out
    };
    expect_format_error(
        &header("{'descr': '<f4', 'fortran_order': False, 'shape': (0,), }"),
        "found \"<f4\"",
    );
    expect_format_error(&header("{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }"), "32 bytes");
    expect_format_error(
        &header("{'descr': '<i8', 'fortran_order': False, 'shape': (99999999999999, 99999999999999), }"),
        "more than addressable",
    );
    expect_format_error(&header("{'descr': '<i8', 'fortran_order': False}"), "all three keys");
    expect_format_error(&header("{'descr': '<i8', 'shape': (1,), 'x': 1}"), "found \"x\"");
    expect_format_error(&header("{'descr': '<i8', 'fortran_order': False, 'shape': (1,"), "in the shape");
    expect_format_error(
        &header("{'descr': '|O', 'fortran_order': False, 'shape': (2, 6), }"),
        "one dimension",
    );
    expect_format_error(b"PK\x03\x04", "magic");
    // The header's shape disagrees with the pickle's.
    let mut wrong = object_npy(13, &b[header_end(&b)..]);
    expect_format_error(&wrong, "13 elements");
    // A plain int array where the sequences should be, through the loader.
    wrong = header("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }");
    wrong.extend(5i64.to_le_bytes());
    let npz = zip::write(&[("x.npy", &wrong), ("y.npy", &wrong)]).unwrap();
    let path = std::env::temp_dir().join(format!("kerust-seqdata-ints-{}.npz", std::process::id()));
    std::fs::write(&path, npz).unwrap();
    let e = reuters::load_data_from_npz(&path, &SequenceOptions::default(), 0.2).unwrap_err().to_string();
    let _ = std::fs::remove_file(&path);
    assert!(e.contains("object array of lists"), "{e}");
}

#[test]
fn byte_mutations_never_panic() {
    let b = x_train_npy();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for _ in 0..20_000 {
        let mut m = b.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % m.len() as u64) as usize;
            match next() % 3 {
                0 => m[at] ^= 1 << (next() % 8),
                1 => m[at] = next() as u8,
                _ => m.truncate(at.max(1)),
            }
        }
        if npy::read_npy(&m).is_ok() {
            accepted += 1;
        }
    }
    // Most mutations of the small ints inside the lists still read; the rest must be errors, not panics.
    assert!(accepted > 0 && accepted < 20_000, "{accepted}");
}
