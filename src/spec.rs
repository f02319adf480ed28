//! [`Spec`]: a setting given either by Keras' name or as a typed value.
use std::str::FromStr;

use crate::Error;

/// A setting given by name (`"relu"`, `"he_normal"`) or as a typed value. Builders take `impl Into<Spec<T>>`
/// and stay infallible; a bad name is reported when the layer is added to a model or built.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec<T> {
    /// A name still to be parsed.
    Name(String),
    /// A typed value.
    Value(T),
}

impl<T: FromStr<Err = Error> + Clone> Spec<T> {
    /// The value, or the error for an unknown name.
    pub fn resolve(&self) -> Result<T, Error> {
        match self {
            Spec::Name(n) => n.parse(),
            Spec::Value(v) => Ok(v.clone()),
        }
    }
}

/// `From<&str>`, `From<String>` and `From<T>` for `Spec<T>` (a blanket impl would overlap at `T = &str`).
macro_rules! impl_spec {
    ($t:ty) => {
        impl From<&str> for $crate::spec::Spec<$t> {
            fn from(name: &str) -> Self {
                $crate::spec::Spec::Name(name.to_owned())
            }
        }
        impl From<String> for $crate::spec::Spec<$t> {
            fn from(name: String) -> Self {
                $crate::spec::Spec::Name(name)
            }
        }
        impl From<$t> for $crate::spec::Spec<$t> {
            fn from(value: $t) -> Self {
                $crate::spec::Spec::Value(value)
            }
        }
    };
}
pub(crate) use impl_spec;
