//! The state's collections: objects keyed by id, in the order they were
//! first put, stored in persistent trees. A write clones the whole state
//! to build its candidate; with a million custom hostnames a `Vec` made that
//! clone take seconds, while these share every node the write does not touch
//! (clone O(1), put and remove O(log n)).

use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _};
use serde::ser::{Serialize, SerializeSeq, Serializer};

/// Ids and names are hashed on every write and every load: foldhash, seeded
/// per process, instead of SipHash.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// A persistent hash map with the state's hasher.
pub(crate) type Map<K, V> = imbl::GenericHashMap<K, V, Hasher, imbl::shared_ptr::DefaultSharedPtr>;

/// An object a [`Table`] finds by its id.
pub trait Keyed: Clone {
    fn key(&self) -> &str;
}

/// Objects by id, iterated in the order their ids were first put; the JSON
/// shape is a plain array.
#[derive(Clone)]
pub struct Table<T: Keyed> {
    /// By insertion sequence number, so iteration keeps the order operators
    /// created things in.
    items: imbl::OrdMap<u64, T>,
    seq: Map<String, u64>,
    next: u64,
}

impl<T: Keyed> Default for Table<T> {
    fn default() -> Self {
        Table {
            items: imbl::OrdMap::new(),
            seq: Map::default(),
            next: 0,
        }
    }
}

impl<T: Keyed> Table<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator {
        self.items.values()
    }

    pub fn get(&self, id: &str) -> Option<&T> {
        self.items.get(self.seq.get(id)?)
    }

    /// The insertion sequence number of `id`: stable while the object is
    /// in the table, so an index can point at it without holding its id.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.seq.get(id).copied()
    }

    pub fn get_seq(&self, seq: u64) -> Option<&T> {
        self.items.get(&seq)
    }

    /// Objects with their sequence numbers.
    pub fn iter_seq(&self) -> impl Iterator<Item = (u64, &T)> {
        self.items.iter().map(|(seq, item)| (*seq, item))
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut T> {
        let seq = *self.seq.get(id)?;
        self.items.get_mut(&seq)
    }

    /// Replaces the object with `item`'s id where it stands, or appends it;
    /// returns the replaced one.
    pub fn put(&mut self, item: T) -> Option<T> {
        match self.seq.get(item.key()) {
            Some(&seq) => self.items.insert(seq, item),
            None => {
                self.seq.insert(item.key().to_owned(), self.next);
                self.items.insert(self.next, item);
                self.next += 1;
                None
            }
        }
    }

    pub fn remove(&mut self, id: &str) -> Option<T> {
        let seq = self.seq.remove(id)?;
        self.items.remove(&seq)
    }

    /// What changed from `self` to `newer`, in sequence order. Only the
    /// parts of the two tables that they do not share are visited: after a
    /// write, its own objects, not the million beside them.
    pub fn diff<'a>(&'a self, newer: &'a Self) -> impl Iterator<Item = Diff<'a, T>>
    where
        T: PartialEq,
    {
        self.items.diff(&newer.items).map(|item| match item {
            imbl::ordmap::DiffItem::Add(_, new) => Diff::Added(new),
            imbl::ordmap::DiffItem::Remove(_, old) => Diff::Removed(old),
            imbl::ordmap::DiffItem::Update {
                old: (_, old),
                new: (_, new),
            } => Diff::Changed(old, new),
        })
    }

    /// The table of `items`, refused when two share an id.
    pub fn from_unique(items: impl IntoIterator<Item = T>) -> Result<Table<T>, String> {
        let mut table = Table::default();
        for item in items {
            if table.seq.contains_key(item.key()) {
                return Err(format!("id `{}` appears twice", item.key()));
            }
            table.put(item);
        }
        Ok(table)
    }
}

/// Built in code (tests, benches): a later object replaces an earlier one
/// with the same id. Input read from JSON is refused instead.
impl<T: Keyed> FromIterator<T> for Table<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut table = Table::default();
        for item in items {
            table.put(item);
        }
        table
    }
}

impl<'a, T: Keyed> IntoIterator for &'a Table<T> {
    type Item = &'a T;
    type IntoIter = imbl::ordmap::Values<'a, u64, T, imbl::shared_ptr::DefaultSharedPtr>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.values()
    }
}

/// How one object differs between two versions of a table.
#[derive(Debug, PartialEq)]
pub enum Diff<'a, T> {
    Added(&'a T),
    Removed(&'a T),
    Changed(&'a T, &'a T),
}

/// Same objects in the same order. Objects the two tables share are the
/// same object, so comparing addresses first skips reading them.
impl<T: Keyed + PartialEq> PartialEq for Table<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && (self.items.ptr_eq(&other.items)
                || self
                    .iter()
                    .zip(other.iter())
                    .all(|(a, b)| std::ptr::eq(a, b) || a == b))
    }
}

impl<T: Keyed + fmt::Debug> fmt::Debug for Table<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Keyed + Serialize> Serialize for Table<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for item in self.iter() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Keyed + Deserialize<'de>> Deserialize<'de> for Table<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(deserializer)?;
        Table::from_unique(items).map_err(D::Error::custom)
    }
}
