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
