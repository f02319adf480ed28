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
