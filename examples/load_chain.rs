//! Load time of long graph-model chains (issue 25, item 4: loading must be linear in the file's size).
//!
//! `cargo run --release --example load_chain [-- 5000 10000 20000 40000]`
//!
//! For each length `n`: a chain `x -> d0 -> ... -> d{n-1}` of `Dense(1)` layers is saved, then loaded from
//! its bytes as saved and with its layer list reversed (every call then waits for a tensor listed after it);
//! the median of 3 loads of each is printed, with the time per layer, which stays flat when loading is
//! linear. Timing only: nothing is asserted.
use std::time::Instant;

use kerust::layers::{Dense, Input};
use kerust::models::{load_model_from_bytes, Graph, Model};
use kerust::Result;

/// The chain's file, and the same file with its layer list reversed.
fn files(n: usize) -> Result<(Vec<u8>, Vec<u8>)> {
    let mut g = Graph::with_seed(2);
    let x = g.input(Input::new([1]).name("x"))?;
    let mut t = x;
    for i in 0..n {
        t = g.apply(Dense::new(1).name(format!("d{i}")), t)?;
    }
    let bytes = Model::new(g, x, t)?.to_bytes()?;
    let reversed = reverse_layers(&bytes);
    Ok((bytes, reversed))
}

/// `bytes` with the `layers` of its `model_config` in reverse order (the checksum recomputed).
fn reverse_layers(bytes: &[u8]) -> Vec<u8> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).expect("a safetensors header");
    let data = &bytes[8 + n..];
    let meta = header["__metadata__"].as_object_mut().expect("metadata");
    let mut config: serde_json::Value =
        serde_json::from_str(meta["model_config"].as_str().expect("a config")).expect("JSON");
    config["layers"].as_array_mut().expect("layers").reverse();
    let mut metadata: std::collections::BTreeMap<String, String> =
        meta.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect();
    metadata.insert("model_config".into(), config.to_string());
    metadata.remove("checksum");
    let tensors: Vec<(String, Vec<usize>, Vec<u8>)> = header
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let shape =
                v["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().unwrap_or(0) as usize);
            let (a, b) =
                (v["data_offsets"][0].as_u64().unwrap_or(0), v["data_offsets"][1].as_u64().unwrap_or(0));
            (k.clone(), shape.collect(), data[a as usize..b as usize].to_vec())
        })
        .collect();
    let sum = kerust::saving::checksum(
        &metadata,
        tensors.iter().map(|(n, s, d)| (n.as_str(), s.as_slice(), d.as_slice())),
    );
    metadata.insert("checksum".into(), sum);
    let mut head = serde_json::Map::new();
    head.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut out_data = Vec::new();
    for (name, shape, d) in &tensors {
        let start = out_data.len();
        out_data.extend_from_slice(d);
        head.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, out_data.len()]}),
        );
    }
    let mut h = serde_json::to_vec(&serde_json::Value::Object(head)).expect("JSON");
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(out_data);
    out
}

/// The median of 3 load times of `bytes`, in seconds.
fn median_load(bytes: &[u8]) -> Result<f64> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let model = load_model_from_bytes(bytes)?;
        times.push(start.elapsed().as_secs_f64());
        drop(model);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

fn main() -> Result<()> {
    let lengths: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let lengths = if lengths.is_empty() { vec![5_000, 10_000, 20_000] } else { lengths };
    println!(
        "{:>8} {:>10} {:>12} {:>14} {:>12} {:>14}",
        "layers", "file KB", "load s", "us/layer", "reversed s", "us/layer"
    );
    for n in lengths {
        let (bytes, reversed) = files(n)?;
        let (forward, backward) = (median_load(&bytes)?, median_load(&reversed)?);
        println!(
            "{n:>8} {:>10} {forward:>12.3} {:>14.1} {backward:>12.3} {:>14.1}",
            bytes.len() / 1024,
            forward * 1e6 / n as f64,
            backward * 1e6 / n as f64
        );
    }
    Ok(())
}
