//! An HDF5 file's content as a tree in memory: groups, datasets and attributes, what Keras' `.h5` files hold.

/// A group: attributes and named members (groups or datasets), in file order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    /// The group's attributes, in file order.
    pub attrs: Vec<(String, Attr)>,
    /// The group's members (links), in file order.
    pub members: Vec<(String, Node)>,
}

/// A member of a group.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// A sub-group.
    Group(Group),
    /// A dataset.
    Dataset(Dataset),
}

/// A dataset: an n-dimensional array of numbers, row-major, with its attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The dimensions (empty for a scalar, which holds one element).
    pub shape: Vec<usize>,
    /// The elements, row-major; their number is the product of `shape`.
    pub data: Data,
    /// The dataset's attributes, in file order.
    pub attrs: Vec<(String, Attr)>,
}

/// A dataset's elements, row-major, converted to the host's byte order.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    /// 32-bit floats.
    F32(Vec<f32>),
    /// 64-bit floats.
    F64(Vec<f64>),
    /// 64-bit signed integers.
    I64(Vec<i64>),
    /// 32-bit signed integers.
    I32(Vec<i32>),
    /// Unsigned bytes.
    U8(Vec<u8>),
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// One string (a scalar string attribute, fixed-length or variable-length).
    Str(String),
    /// An array of strings, row-major.
    Strs(Vec<String>),
    /// Floats, row-major (a scalar is one element).
    F64(Vec<f64>),
    /// Integers, row-major (a scalar is one element); unsigned integers above `i64::MAX` are an error.
    I64(Vec<i64>),
}

impl Data {
    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            Data::F32(v) => v.len(),
            Data::F64(v) => v.len(),
            Data::I64(v) => v.len(),
            Data::I32(v) => v.len(),
            Data::U8(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Group {
    /// The member named `name` (one path component), if any.
    pub fn member(&self, name: &str) -> Option<&Node> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, node)| node)
    }

    /// The node at `path`, `"a/b/c"` relative to this group (leading, trailing and repeated `/` ignored); the
    /// empty path is not a node (use the group itself).
    fn node(&self, path: &str) -> Option<&Node> {
        let mut parts = path.split('/').filter(|p| !p.is_empty());
        let mut node = self.member(parts.next()?)?;
        for part in parts {
            match node {
                Node::Group(g) => node = g.member(part)?,
                Node::Dataset(_) => return None,
            }
        }
        Some(node)
    }

    /// The group at `path` (`"a/b/c"`, relative to this group); `""` is this group.
    pub fn group(&self, path: &str) -> Option<&Group> {
        if path.split('/').all(|p| p.is_empty()) {
            return Some(self);
        }
        match self.node(path)? {
            Node::Group(g) => Some(g),
            Node::Dataset(_) => None,
        }
    }

    /// The dataset at `path` (`"a/b/c"`, relative to this group).
    pub fn dataset(&self, path: &str) -> Option<&Dataset> {
        match self.node(path)? {
            Node::Dataset(d) => Some(d),
            Node::Group(_) => None,
        }
    }

    /// This group's attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

impl Dataset {
    /// This dataset's attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}
