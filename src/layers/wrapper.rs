//! What the layers that contain layers ([`Bidirectional`](super::Bidirectional),
//! [`TimeDistributed`](super::TimeDistributed)) share: an inner layer's weights renamed under the wrapper's name,
//! as Keras' weight paths nest them (`bidirectional/forward_lstm/lstm_cell/kernel`).
use crate::autodiff::{ParamId, ParamStore};

/// Puts `outer/` before the names of the weights `ids` (an inner layer's, just built), so that they are saved
/// and loaded under the wrapper, as Keras names them, and two wrappers of like inner layers do not collide.
pub(super) fn prefix_weights(params: &mut ParamStore, ids: &[ParamId], outer: &str) {
    for &id in ids {
        let param = params.get_mut(id);
        param.name = format!("{outer}/{}", param.name);
    }
}

/// The name an inner layer goes by: its own, or the one a model would give the first layer of its class.
pub(super) fn inner_name(layer: &dyn super::Layer) -> String {
    layer.name().map_or_else(|| super::snake_case(layer.class_name()), str::to_owned)
}
