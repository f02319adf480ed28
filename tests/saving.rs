//! Saving and loading: round trips bit for bit, resumed training, a fresh process, corrupt files, interrupted
//! saves, and ModelCheckpoint.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use kerust::callbacks::{History, ModelCheckpoint};
use kerust::layers::{Dense, Dropout, Flatten};
use kerust::models::{load_model, load_model_from_bytes, Model, Sequential};
use kerust::optimizers::{Adam, SGD};
use ndarray::{Array2, Array3};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use sha2::{Digest, Sha256};

/// A fresh folder under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("kerust-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data() -> (Array3<f32>, Array2<f32>) {
    let x = Array3::from_shape_fn((48, 2, 3), |(i, j, k)| ((i * 7 + j * 5 + k * 3) % 13) as f32 / 13.0 - 0.4);
    let y = Array2::from_shape_fn((48, 3), |(i, j)| f32::from((i + i / 5) % 3 == j));
    (x, y)
}

/// Flatten, Dense, Dropout (so the RNG matters), Dense; Adam (so optimizer state matters).
fn model(seed: u64) -> Sequential {
    let mut m = Sequential::new();
    m.set_seed(seed);
    m.add(Flatten::new().input_shape([2, 3])).unwrap();
    m.add(Dense::new(8).activation("relu")).unwrap();
    m.add(Dropout::new(0.3)).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", Adam::new().learning_rate(0.01).amsgrad(true), ["accuracy"])
        .unwrap();
    m
}

fn bits(t: &ndarray::ArrayD<f32>) -> Vec<u32> {
    t.iter().map(|v| v.to_bits()).collect()
}

fn history_bits(h: &History) -> Vec<(String, Vec<u32>)> {
    h.history.iter().map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn fit(m: &mut Model, from: usize, to: usize) -> History {
    let (x, y) = data();
    let (vx, vy) = (x.slice(ndarray::s![..10, .., ..]).to_owned(), y.slice(ndarray::s![..10, ..]).to_owned());
    m.fit(&x, &y)
        .batch_size(8)
        .epochs(to)
        .initial_epoch(from)
        .verbose(0)
        .validation_data(&vx, &vy)
        .run()
        .unwrap()
}

#[test]
fn save_load_predicts_bit_for_bit_with_everything_restored() {
    let dir = TempDir::new("roundtrip");
    let mut m = model(3);
    fit(&mut m, 0, 2);
    let path = dir.path("model.safetensors");
    m.save(&path).unwrap();
    let back = load_model(&path).unwrap();
    let (x, _) = data();
    assert_eq!(bits(&back.predict(&x).unwrap()), bits(&m.predict(&x).unwrap()));
    assert_eq!(back.name(), m.name());
    assert_eq!(back.summary_string(), m.summary_string());
    assert_eq!(back.seed(), 3);
    assert_eq!(back.epochs_run(), 2);
    let (o, p) = (back.optimizer().unwrap(), m.optimizer().unwrap());
    assert_eq!((o.name(), o.config(), o.iterations()), (p.name(), p.config(), p.iterations()));
    assert_eq!(o.state(), p.state());
    assert_eq!(back.loss().unwrap().name(), "categorical_crossentropy");
    // Human-readable names, readable by any safetensors reader.
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = st.names();
    names.sort();
    assert!(names.contains(&"dense/kernel") && names.contains(&"dense_1/bias"), "{names:?}");
    assert!(names.contains(&"optimizer/dense/kernel/m") && names.contains(&"optimizer/dense_1/bias/v_hat"));
}

#[test]
fn resumed_training_gives_the_uninterrupted_history() {
    let dir = TempDir::new("resume");
    let mut straight = model(11);
    let full = fit(&mut straight, 0, 4);

    let mut first = model(11);
    let h1 = fit(&mut first, 0, 2);
    let path = dir.path("ckpt.safetensors");
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = load_model(&path).unwrap();
    let h2 = fit(&mut resumed, 2, 4);

    for (name, values) in &full.history {
        let joined: Vec<u32> =
            h1.history[name].iter().chain(&h2.history[name]).map(|v| v.to_bits()).collect();
        let want: Vec<u32> = values.iter().map(|v| v.to_bits()).collect();
        assert_eq!(joined, want, "{name}");
    }
    assert_eq!(h2.epoch, vec![2, 3]);
    for (a, b) in straight.get_weights().iter().zip(resumed.get_weights().iter()) {
        assert_eq!(bits(a), bits(b));
    }
    // Two fits in a row do not replay the same shuffles and dropout masks.
    let mut again = model(11);
    let a = fit(&mut again, 0, 1);
    let b = fit(&mut again, 0, 1);
    assert_ne!(history_bits(&a), history_bits(&b));
}

#[test]
fn weights_alone_round_trip_and_are_checked() {
    let dir = TempDir::new("weights");
    let mut m = model(5);
    fit(&mut m, 0, 1);
    let path = dir.path("w.safetensors");
    m.save_weights(&path).unwrap();
    let mut other = model(6);
    assert_ne!(other.get_weights(), m.get_weights());
    other.load_weights(&path).unwrap();
    assert_eq!(other.get_weights(), m.get_weights());
    // A weights file is not a model file, and a model of another shape refuses it unchanged.
    assert!(load_model(&path).err().unwrap().to_string().contains("load_weights"));
    let mut wider = Sequential::new();
    wider.add(Flatten::new().input_shape([2, 3])).unwrap();
    wider.add(Dense::new(9)).unwrap();
    wider.add(Dense::new(3)).unwrap();
    let before = wider.get_weights();
    let err = wider.load_weights(&path).unwrap_err().to_string();
    assert!(err.contains("dense/kernel") && err.contains("[6, 9]") && err.contains("[6, 8]"), "{err}");
    assert_eq!(wider.get_weights(), before);
    // A full model file also gives its weights.
    let full = dir.path("full.safetensors");
    m.save(&full).unwrap();
    let mut third = model(7);
    third.load_weights(&full).unwrap();
    assert_eq!(third.get_weights(), m.get_weights());
}

const CHILD_ENV: &str = "KERUST_TEST_LOAD_CHILD";

/// Run twice: as the parent (saves, spawns this test binary again), and as the child (loads in a fresh process,
/// writes its predictions).
#[test]
fn a_fresh_process_reads_the_file() {
    let (x, _) = data();
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let m = load_model(&path).unwrap();
        let out = m.predict(&x).unwrap();
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(format!("{path}.predictions"), bytes).unwrap();
        return;
    }
    let dir = TempDir::new("process");
    let mut m = model(21);
    fit(&mut m, 0, 1);
    let path = dir.path("m.safetensors");
    m.save(&path).unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["a_fresh_process_reads_the_file", "--exact", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let got = std::fs::read(format!("{}.predictions", path.display())).unwrap();
    let want: Vec<u8> = m.predict(&x).unwrap().iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(got, want);
}

// ---- Corrupt files ---------------------------------------------------------------------------------------

/// The checksum kerust stores, recomputed so that a test can make a well-formed file with one thing wrong.
fn checksum(meta: &HashMap<String, String>, tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    let mut keys: Vec<_> = meta.keys().filter(|k| *k != "checksum").collect();
    keys.sort();
    for k in keys {
        field(k.as_bytes());
        field(meta[k].as_bytes());
    }
    let mut sorted: Vec<_> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, _, shape, data) in sorted {
        field(name.as_bytes());
        field(&shape.iter().flat_map(|&d| (d as u64).to_le_bytes()).collect::<Vec<_>>());
        field(data);
    }
    format!("sha256:{}", h.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

type Tensors = Vec<(String, Dtype, Vec<usize>, Vec<u8>)>;

/// Decodes a valid file, lets `edit` change it, and writes it back with a correct checksum.
fn reencode(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, String>, &mut Tensors)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut meta = meta.metadata().clone().unwrap();
    let mut tensors: Tensors = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    edit(&mut meta, &mut tensors);
    meta.insert("checksum".into(), checksum(&meta, &tensors));
    let views: Vec<_> =
        tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize(views, Some(meta)).unwrap()
}

fn load_err(bytes: &[u8]) -> String {
    match load_model_from_bytes(bytes) {
        Ok(_) => panic!("a corrupt file loaded"),
        Err(e) => e.to_string(),
    }
}

fn small_saved() -> Vec<u8> {
    let mut m = model(1);
    fit(&mut m, 0, 1);
    m.to_bytes().unwrap()
}

#[test]
fn reencode_without_changes_loads() {
    let bytes = small_saved();
    assert!(load_model_from_bytes(&reencode(&bytes, |_, _| {})).is_ok());
}

#[test]
fn truncated_files_are_errors_naming_offsets() {
    let bytes = small_saved();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for cut in [
        0,
        1,
        7,
        8,
        9,
        header_end / 2,
        header_end - 1,
        header_end,
        header_end + 1,
        bytes.len() - 4,
        bytes.len() - 1,
    ] {
        let err = load_err(&bytes[..cut]);
        assert!(err.contains("byte") || err.contains("truncated"), "cut at {cut}: {err}");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 4]);
    assert!(load_err(&longer).contains("byte"));
}

#[test]
fn flipped_bytes_in_header_and_data_are_errors() {
    let bytes = small_saved();
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Every byte of the header-length field, a spread of header bytes, every 97th data byte.
    let positions: Vec<usize> =
        (0..8).chain((8..header_end).step_by(13)).chain((header_end..bytes.len()).step_by(97)).collect();
    for &pos in &positions {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[pos] ^= flip;
            // A flip that only changes JSON whitespace padding changes nothing: that one may load.
            let was_padding = pos >= 8
                && pos < header_end
                && bytes[pos] == b' '
                && matches!(bad[pos], b'\t' | b'\n' | b'\r');
            if !was_padding {
                load_err(&bad);
            }
        }
    }
    let mut data_flip = bytes.clone();
    let last = data_flip.len() - 1;
    data_flip[last] ^= 0x01;
    assert!(load_err(&data_flip).contains("checksum"));
}

#[test]
fn a_renamed_missing_or_extra_tensor_is_named() {
    let bytes = small_saved();
    let renamed = reencode(&bytes, |_, t| {
        t.iter_mut().find(|x| x.0 == "dense/kernel").unwrap().0 = "dense/kernal".into();
    });
    let err = load_err(&renamed);
    assert!(err.contains("dense/kernel") && err.contains("missing"), "{err}");
    let extra = reencode(&bytes, |_, t| t.push(("stray/weight".into(), Dtype::F32, vec![1], vec![0; 4])));
    assert!(load_err(&extra).contains("stray/weight"));
    let extra_state = reencode(&bytes, |_, t| {
        t.push(("optimizer/nothing/m".into(), Dtype::F32, vec![1], vec![0; 4]));
    });
    assert!(load_err(&extra_state).contains("optimizer/nothing/m"));
    // Raw, without fixing the checksum: caught by it.
    let raw = String::from_utf8_lossy(&bytes).replacen("dense/kernel", "dense/kernal", 1);
    assert!(load_err(raw.as_bytes()).contains("checksum") || raw.len() != bytes.len());
}

#[test]
fn wrong_shapes_and_dtypes_are_named_with_both_shapes() {
    let bytes = small_saved();
    let reshaped = reencode(&bytes, |_, t| {
        let k = t.iter_mut().find(|x| x.0 == "dense_1/kernel").unwrap();
        k.2 = vec![k.2[1], k.2[0]];
    });
    let err = load_err(&reshaped);
    assert!(err.contains("dense_1/kernel") && err.contains("[8, 3]") && err.contains("[3, 8]"), "{err}");
    let state_shape = reencode(&bytes, |_, t| {
        let k = t.iter_mut().find(|x| x.0 == "optimizer/dense_1/bias/m").unwrap();
        k.2 = vec![1, 3];
    });
    assert!(load_err(&state_shape).contains("optimizer/dense_1/bias/m"));
    let f64s = reencode(&bytes, |_, t| {
        let k = t.iter_mut().find(|x| x.0 == "dense_1/bias").unwrap();
        k.1 = Dtype::F64;
        k.3 = k.3.iter().flat_map(|&b| [b, 0]).collect();
    });
    let err = load_err(&f64s);
    assert!(err.contains("dense_1/bias") && err.contains("F64"), "{err}");
}

fn edit_config(bytes: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    reencode(bytes, |meta, _| {
        let mut config: serde_json::Value = serde_json::from_str(&meta["model_config"]).unwrap();
        edit(&mut config);
        meta.insert("model_config".into(), config.to_string());
    })
}

#[test]
fn bad_configs_are_clear_errors() {
    let bytes = small_saved();
    let err = load_err(&edit_config(&bytes, |c| {
        c["layers"][1]["config"].as_object_mut().unwrap().remove("units");
    }));
    assert!(err.contains("units"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| c["layers"][1]["class_name"] = "ConvLSTM2D".into()));
    assert!(err.contains("ConvLSTM2D") && err.contains("Dense"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| c["compile"]["optimizer"]["name"] = "lion".into()));
    assert!(err.contains("lion"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| {
        c["compile"]["optimizer"]["config"].as_object_mut().unwrap().remove("beta_1");
    }));
    assert!(err.contains("beta_1"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| c["compile"]["loss"]["name"] = "hinge".into()));
    assert!(err.contains("hinge"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| c["compile"]["metrics"][0] = "f1".into()));
    assert!(err.contains("f1"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| {
        c.as_object_mut().unwrap().remove("training").map(|_| ()).unwrap()
    }));
    assert!(err.contains("training"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| c["layers"][2]["config"]["rate"] = (-0.5).into()));
    assert!(err.contains("rate"), "{err}");
    // A huge layer cannot make loading allocate more than the file holds.
    let err = load_err(&edit_config(&bytes, |c| c["layers"][1]["config"]["units"] = (1u64 << 40).into()));
    assert!(err.contains("units") || err.contains("weights"), "{err}");
    let err = load_err(&edit_config(&bytes, |c| {
        c["build_input_shape"] = serde_json::json!([1u64 << 40, 1u64 << 40])
    }));
    assert!(!err.is_empty());
    let err = load_err(&reencode(&bytes, |m, _| {
        m.insert("format_version".into(), "2".into());
    }));
    assert!(err.contains("newer") && err.contains('2'), "{err}");
    let err = load_err(&reencode(&bytes, |m, _| {
        m.remove("model_config");
    }));
    assert!(err.contains("model_config"), "{err}");
    let err = load_err(&reencode(&bytes, |m, _| {
        m.insert("model_config".into(), "{\"class_name\": \"Sequential\"".into());
    }));
    assert!(err.contains("model_config"), "{err}");
    assert!(load_err(b"not a model").contains("byte"));
    let missing = load_model("/nonexistent/kerust/model.safetensors").err().unwrap().to_string();
    assert!(missing.contains("nonexistent"), "{missing}");
}

// ---- Interrupted saves --------------------------------------------------------------------------------------

/// A writer that fails (like a full disk) after `left` bytes.
struct FailAfter<'w> {
    inner: &'w mut dyn Write,
    left: usize,
}

impl Write for FailAfter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"));
        }
        let n = buf.len().min(self.left);
        self.left -= n;
        self.inner.write(&buf[..n])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn an_interrupted_save_leaves_the_previous_file_loadable() {
    let dir = TempDir::new("interrupted");
    let path = dir.path("model.safetensors");
    let mut old = model(8);
    fit(&mut old, 0, 1);
    old.save(&path).unwrap();
    let old_bytes = std::fs::read(&path).unwrap();
    let mut new = model(9);
    fit(&mut new, 0, 2);
    let size = new.to_bytes().unwrap().len();
    for n in [0, 1, 8, 100, size / 2, size - 1] {
        let result =
            kerust::saving::write_atomic(&path, |w| new.save_to_writer(&mut FailAfter { inner: w, left: n }));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("no space"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), old_bytes, "after failing at byte {n}");
        assert_eq!(files_in(&dir.0), vec!["model.safetensors"], "a temporary file was left behind");
        let (x, _) = data();
        assert_eq!(load_model(&path).unwrap().predict(&x).unwrap(), old.predict(&x).unwrap());
    }
    // An unwritable target: an error, not a panic, and nothing left behind.
    assert!(new.save(dir.path("missing-folder/model.safetensors")).is_err());
    assert_eq!(files_in(&dir.0), vec!["model.safetensors"]);
    new.save(&path).unwrap();
    let (x, _) = data();
    assert!(load_model(&path).unwrap().predict(&x).unwrap() == new.predict(&x).unwrap());
}

// ---- ModelCheckpoint ------------------------------------------------------------------------------------------

#[test]
fn checkpoint_fills_placeholders_and_keeps_the_best() {
    let dir = TempDir::new("ckpt");
    let template = dir.path("m-{epoch:02d}-{val_loss:.3f}.safetensors").display().to_string();
    let mut m = model(4);
    let (x, y) = data();
    let mut ckpt = ModelCheckpoint::new(template).save_best_only(true);
    let h = m
        .fit(&x, &y)
        .epochs(4)
        .batch_size(8)
        .verbose(0)
        .validation_split(0.25)
        .callback_ref(&mut ckpt)
        .run()
        .unwrap();
    let val = h.get("val_loss").unwrap();
    let mut best = f32::INFINITY;
    let mut expected = Vec::new();
    for (e, &v) in val.iter().enumerate() {
        if v < best {
            best = v;
            expected.push(format!("m-{:02}-{v:.3}.safetensors", e + 1));
        }
    }
    let names: Vec<String> =
        ckpt.saved_paths().iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, expected);
    assert_eq!(ckpt.best(), Some(best));
    let last = ckpt.saved_paths().last().unwrap();
    assert!(load_model(last).is_ok());

    let weights_only = dir.path("w.safetensors");
    let mut wc =
        ModelCheckpoint::new(weights_only.display().to_string()).save_weights_only(true).monitor("loss");
    m.fit(&x, &y).epochs(1).verbose(0).callback_ref(&mut wc).run().unwrap();
    assert!(load_model(&weights_only).is_err());
    model(5).load_weights(&weights_only).unwrap();

    let mut bad = ModelCheckpoint::new(dir.path("{nope}.st").display().to_string());
    assert!(m.fit(&x, &y).epochs(1).verbose(0).callback_ref(&mut bad).run().is_err());
}

#[test]
fn checkpoint_never_overwrites_a_good_file_with_nan() {
    let dir = TempDir::new("nan");
    let path = dir.path("last.safetensors");
    let mut m = Sequential::new();
    m.set_seed(2);
    m.add(Dense::new(1).input_shape([1])).unwrap();
    // Tiny steps first (a good checkpoint), then a learning rate that blows the weights up.
    m.compile("mse", SGD::new().learning_rate(1e-3), []).unwrap();
    let x = Array2::from_shape_fn((8, 1), |(i, _)| i as f32);
    let y = x.mapv(|v| 2.0 * v + 1.0);
    let mut ckpt = ModelCheckpoint::new(path.display().to_string()).monitor("loss");
    m.fit(&x, &y).epochs(1).verbose(0).callback_ref(&mut ckpt).run().unwrap();
    let good = std::fs::read(&path).unwrap();
    m.optimizer_mut().unwrap().set_learning_rate(1e30);
    m.fit(&x, &y).epochs(5).batch_size(1).verbose(0).callback_ref(&mut ckpt).run().unwrap();
    assert!(m.get_weights().iter().any(|w| w.iter().any(|v| !v.is_finite())), "the run should diverge");
    assert_eq!(std::fs::read(&path).unwrap(), good);
    let back = load_model(&path).unwrap();
    assert!(back.get_weights().iter().all(|w| w.iter().all(|v| v.is_finite())));
}

#[test]
fn a_checkpoint_saved_during_fit_keeps_the_metrics() {
    // fit takes the metrics out of the model while it updates them; a save from a callback must still
    // write them, as a save after fit does (issue 12, point 2).
    let dir = TempDir::new("ckpt-metrics");
    let mut m = model(4);
    let (x, y) = data();
    let path = dir.path("during.safetensors");
    let mut ckpt = ModelCheckpoint::new(path.display().to_string()).monitor("loss");
    m.fit(&x, &y).epochs(1).batch_size(8).verbose(0).callback_ref(&mut ckpt).run().unwrap();
    let after = dir.path("after.safetensors");
    m.save(&after).unwrap();
    for file in [&path, &after] {
        let mut loaded = load_model(file).unwrap();
        let logs = loaded.evaluate(&x, &y).unwrap();
        assert!(logs.get("accuracy").is_some(), "{}: {logs:?}", file.display());
    }
    // And the model itself keeps them after fit, for the next fit and evaluate.
    assert!(m.evaluate(&x, &y).unwrap().get("accuracy").is_some());
}

#[test]
fn a_save_into_a_missing_folder_names_the_users_path_and_the_folder() {
    let dir = TempDir::new("missing-folder");
    let path = dir.path("no/such/folder/m.safetensors");
    let m = model(1);
    for err in [m.save(&path).unwrap_err(), m.save_weights(&path).unwrap_err()] {
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("does not exist") && msg.contains(&dir.path("no/such/folder").display().to_string())
        );
        assert!(!msg.contains(".tmp-"), "the temporary file is ours, not the user's: {msg}");
    }
}

#[test]
fn a_typo_in_a_checkpoint_placeholder_names_the_unknown_key() {
    let dir = TempDir::new("ckpt-typo");
    let (x, y) = data();
    let mut m = model(3);
    let template = dir.path("m-{epoc:02d}.safetensors").display().to_string();
    let err = m.fit(&x, &y).epochs(1).verbose(0).callback(ModelCheckpoint::new(template)).run().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown key `epoc`"), "{msg}");
    assert!(msg.contains("known keys: epoch, loss, accuracy, val_loss, val_accuracy"), "{msg}");
    assert!(!msg.contains("format spec"), "the spec is fine, the key is not: {msg}");
    // A known key with a spec that does not fit it is still reported as the spec.
    let template = dir.path("m-{loss:02d}.safetensors").display().to_string();
    let err = m.fit(&x, &y).epochs(1).verbose(0).callback(ModelCheckpoint::new(template)).run().unwrap_err();
    assert!(err.to_string().contains("unsupported format spec `02d`"), "{err}");
    // Nothing was trained or written by the refused fits.
    assert_eq!(m.epochs_run(), 0);
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0);
}

/// The child of `checkpoint_verbose_prints_the_best_value_as_keras_does`: two epochs where the second does
/// not improve (a learning rate of 0 keeps the weights, so the loss stays the same).
#[test]
fn checkpoint_verbose_child() {
    let Ok(dir) = std::env::var("KERUST_TEST_CKPT_VERBOSE") else { return };
    let (x, y) = data();
    let mut m = Sequential::new();
    m.set_seed(1);
    m.add(Flatten::new().input_shape([2, 3])).unwrap();
    m.add(Dense::new(3).activation("softmax")).unwrap();
    m.compile("categorical_crossentropy", SGD::new().learning_rate(0.0), Vec::<&str>::new()).unwrap();
    let path = Path::new(&dir).join("best.safetensors");
    let ckpt =
        ModelCheckpoint::new(path.display().to_string()).monitor("loss").save_best_only(true).verbose(1);
    let h = m.fit(&x, &y).epochs(2).verbose(0).shuffle(false).callback(ckpt).run().unwrap();
    eprintln!("LOSS {:.5}", h["loss"][0]);
}

#[test]
fn checkpoint_verbose_prints_the_best_value_as_keras_does() {
    let dir = TempDir::new("ckpt-verbose");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["checkpoint_verbose_child", "--exact", "--nocapture", "--test-threads=1"])
        .env("KERUST_TEST_CKPT_VERBOSE", &dir.0)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let loss = stderr.lines().find_map(|l| l.strip_prefix("LOSS ")).unwrap();
    let path = dir.path("best.safetensors");
    let want = [
        format!("Epoch 1: loss improved from inf to {loss}, saving model to {}", path.display()),
        format!("Epoch 2: loss did not improve from {loss}"),
    ];
    for line in &want {
        assert!(stderr.lines().any(|l| l == line), "{line:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("Some("), "{stderr}");
}
