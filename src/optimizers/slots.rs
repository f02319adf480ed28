//! Per-parameter state buffers on the parameters' device, created lazily, and their saving and restoring
//! (as host arrays).
use crate::autodiff::{ParamId, Tensor};
use crate::device::{Device, Storage};
use crate::{Error, Result};

/// One kind of per-parameter state (e.g. Adam's first moments `m`), by parameter index.
#[derive(Clone, Debug)]
pub(super) struct Slots {
    /// The name in saved state: `<kind>/<parameter index>`.
    kind: &'static str,
    /// The value a new buffer starts with (Adagrad's `initial_accumulator_value`, else 0).
    init: f32,
    arrays: Vec<Option<Storage>>,
}

impl Slots {
    pub(super) fn new(kind: &'static str, init: f32) -> Self {
        Slots { kind, init, arrays: Vec::new() }
    }

    /// Sets the initial value of buffers created from now on.
    pub(super) fn set_init(&mut self, init: f32) {
        self.init = init;
    }

    /// The buffer of `id` for its value `param`, created on first use with the parameter's shape on its device.
    /// One whose shape no longer matches (the parameter was replaced) starts over; one on another device
    /// (restored state, which [`load`] keeps on the CPU) moves to the parameter's.
    pub(super) fn get(&mut self, id: ParamId, param: &Storage) -> &mut Storage {
        let i = id.index();
        if self.arrays.len() <= i {
            self.arrays.resize_with(i + 1, || None);
        }
        let (shape, device) = (param.shape(), param.device());
        let slot = &mut self.arrays[i];
        match slot {
            Some(a) if a.shape() != shape => *slot = None,
            Some(a) if a.device() != device => *a = Storage::from_array(device, a.to_array().view()),
            _ => {}
        }
        slot.get_or_insert_with(|| {
            let mut a = device.zeros(shape);
            a.fill(self.init);
            a
        })
    }

    fn at(&self, index: usize) -> Option<&Storage> {
        self.arrays.get(index).and_then(Option::as_ref)
    }
}

/// Every array of `slots`, by parameter index and in the order of `slots`.
pub(super) fn save(slots: &[&Slots]) -> Vec<(String, Tensor)> {
    let mut out = Vec::new();
    let len = slots.iter().map(|s| s.arrays.len()).max().unwrap_or(0);
    for index in 0..len {
        for s in slots {
            if let Some(a) = s.at(index) {
                out.push((format!("{}/{index}", s.kind), a.to_array()));
            }
        }
    }
    out
}

/// Checks `new_iterations` and `state` against `slots` and, only if all of it is valid, replaces their arrays
/// and `iterations`.
pub(super) fn load(
    new_iterations: u64,
    state: &[(String, Tensor)],
    iterations: &mut u64,
    slots: &mut [&mut Slots],
) -> Result<()> {
    if new_iterations > super::MAX_ITERATIONS {
        return Err(Error::invalid_argument(
            "iterations",
            new_iterations,
            format!("must be at most {} (an int64, as Keras stores it)", super::MAX_ITERATIONS),
        ));
    }
    let known =
        || slots.iter().map(|s| format!("{}/<parameter index>", s.kind)).collect::<Vec<_>>().join(", ");
    let mut new_arrays: Vec<Vec<Option<&Tensor>>> = vec![Vec::new(); slots.len()];
    for (name, value) in state {
        let parsed = name.split_once('/').and_then(|(kind, index)| {
            let k = slots.iter().position(|s| s.kind == kind)?;
            Some((k, index.parse::<usize>().ok()?))
        });
        let Some((k, index)) = parsed else {
            return Err(Error::UnknownName { kind: "optimizer state", name: name.clone(), known: known() });
        };
        let arrays = &mut new_arrays[k];
        if arrays.len() <= index {
            // The index comes from the caller's names: allocate fallibly.
            let what = || format!("optimizer state `{name}`");
            let mut grown = crate::memory::try_vec(index + 1, what, &[index + 1])?;
            grown.append(arrays);
            grown.resize_with(index + 1, || None);
            *arrays = grown;
        }
        if arrays[index].replace(value).is_some() {
            return Err(Error::invalid_argument("state", name, "the name appears twice"));
        }
    }

    // Every parameter that has state must have all of its slots, of one shape, matching what is held.
    let len = new_arrays.iter().map(Vec::len).max().unwrap_or(0);
    for index in 0..len {
        let present: Vec<_> = new_arrays.iter().map(|a| a.get(index).copied().flatten()).collect();
        let Some(first) = present.iter().flatten().next() else { continue };
        let shape = first.shape();
        for (k, array) in present.iter().enumerate() {
            let name = format!("{}/{index}", slots[k].kind);
            match array {
                None => {
                    return Err(Error::invalid_argument(
                        "state",
                        format!("{name} missing"),
                        "every state slot of a parameter must be given",
                    ))
                }
                Some(a) if a.shape() != shape => {
                    return Err(Error::shape(
                        format!("optimizer state {name}"),
                        format!("{shape:?} like the other slots of parameter {index}"),
                        format!("{:?}", a.shape()),
                    ))
                }
                Some(_) => {}
            }
            if let Some(held) = slots[k].at(index).filter(|held| held.shape() != shape) {
                return Err(Error::shape(
                    format!("optimizer state {name}"),
                    format!("{:?} (the shape of the state already held for parameter {index})", held.shape()),
                    format!("{shape:?}"),
                ));
            }
        }
    }

    *iterations = new_iterations;
    // On the CPU until a step moves each to its parameter's device (`Slots::get`).
    for (s, arrays) in slots.iter_mut().zip(new_arrays) {
        s.arrays =
            arrays.into_iter().map(|a| a.map(|a| Storage::from_array(Device::Cpu, a.view()))).collect();
    }
    Ok(())
}
