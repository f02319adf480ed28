use super::tree::Group;
use crate::Result;
pub(super) fn write(_root: &Group) -> Result<Vec<u8>> {
    Err(super::read::err("file", "not yet"))
}
