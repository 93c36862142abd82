//! What a write needs to know of the rest of the state without walking it:
//! which names and ids are taken edge-wide, which records other objects
//! point at. Kept up to date by every change and rebuilt when a state is
//! loaded, so validating a write costs the objects it touches, not the
//! million hostnames beside them.
//!
//! Names and ids are counted under a 64-bit hash rather than stored: a
//! count above what the write itself accounts for sends the checker to look
//! for the other object (to name it in the error, and to rule out a hash
//! collision), which only happens on the error path.

use std::hash::{BuildHasher, Hasher as _};
use std::sync::LazyLock;

use super::model::{CustomHostname, DnsRecord, RecordType};
use super::table::Map;
use super::{State, ZoneState};

/// One seed per process: the index is rebuilt on every load.
static SEED: LazyLock<foldhash::quality::RandomState> = LazyLock::new(Default::default);

/// The hash of `name` in ASCII lower case, optionally scoped to a zone id.
pub(super) fn key(scope: &str, name: &str) -> u64 {
    let mut hasher = SEED.build_hasher();
    hasher.write(scope.as_bytes());
    hasher.write_u8(0xff);
    for chunk in name.as_bytes().chunks(32) {
        let mut lower = [0u8; 32];
        for (to, from) in lower.iter_mut().zip(chunk) {
            *to = from.to_ascii_lowercase();
        }
        hasher.write(&lower[..chunk.len()]);
    }
    hasher.finish()
}

/// The hash of an id (ids are case-sensitive).
pub(super) fn id_key(id: &str) -> u64 {
    SEED.hash_one(id)
}

/// Counts of hashed keys; a key at zero is removed.
#[derive(Clone, Default, Debug, PartialEq)]
pub(super) struct Counts(Map<u64, u32>);

impl Counts {
    pub(super) fn get(&self, key: u64) -> u32 {
        self.0.get(&key).copied().unwrap_or(0)
    }

    fn add(&mut self, key: u64) {
        *self.0.entry(key).or_insert(0) += 1;
    }

    fn sub(&mut self, key: u64) {
        if let Some(count) = self.0.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&key);
            }
        }
    }
}

/// A custom hostname's place: its zone's and its own sequence number in
/// their tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) zone: u64,
    pub(super) hostname: u64,
}

/// The places of the hostnames under one hash: one in a valid state but
/// for a collision of hashes, more while a refused write is checked.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Places {
    One(Place),
    Many(Vec<Place>),
}

impl Places {
    pub(super) fn as_slice(&self) -> &[Place] {
        match self {
            Places::One(place) => std::slice::from_ref(place),
            Places::Many(places) => places,
        }
    }
}

#[derive(Clone, Default, Debug, PartialEq)]
pub(super) struct Index {
    /// Lower-case apex -> ids of the zones with it (one, in a valid state).
    pub(super) zone_names: Map<String, Vec<String>>,
    /// DNS record ids, edge-wide.
    pub(super) record_ids: Counts,
    /// Custom hostname ids, edge-wide.
    pub(super) hostname_ids: Counts,
    /// Custom hostnames (lower case), edge-wide, with where they are: a
    /// derived snapshot looks up the names a write changed here instead of
    /// walking every hostname.
    pub(super) hostnames: Map<u64, Places>,
    /// Contents of CNAME records (lower case), edge-wide: a custom hostname
    /// that a record points at shapes other names' chains.
    pub(super) cname_targets: Counts,
    /// `custom_origin_server`s, scoped to their zone: a record that one
    /// names cannot go away or stop being proxied unnoticed.
    pub(super) origins: Counts,
}

impl Index {
    pub(super) fn build(state: &State) -> Index {
        let mut index = Index::default();
        for (seq, zone) in state.zones().iter_seq() {
            index.add_zone(seq, zone);
        }
        index
    }

    pub(super) fn add_zone(&mut self, zone_seq: u64, zone: &ZoneState) {
        self.add_zone_name(&zone.zone.name, &zone.zone.id);
        for record in &zone.dns_records {
            self.add_record(record);
        }
        for (seq, hostname) in zone.custom_hostnames.iter_seq() {
            let place = Place {
                zone: zone_seq,
                hostname: seq,
            };
            self.add_hostname(&zone.zone.id, place, hostname);
        }
    }

    pub(super) fn remove_zone(&mut self, zone_seq: u64, zone: &ZoneState) {
        self.remove_zone_name(&zone.zone.name, &zone.zone.id);
        for record in &zone.dns_records {
            self.remove_record(record);
        }
        for (seq, hostname) in zone.custom_hostnames.iter_seq() {
            let place = Place {
                zone: zone_seq,
                hostname: seq,
            };
            self.remove_hostname(&zone.zone.id, place, hostname);
        }
    }

    pub(super) fn add_zone_name(&mut self, name: &str, id: &str) {
        self.zone_names
            .entry(name.to_ascii_lowercase())
            .or_default()
            .push(id.to_owned());
    }

    pub(super) fn remove_zone_name(&mut self, name: &str, id: &str) {
        let name = name.to_ascii_lowercase();
        if let Some(ids) = self.zone_names.get_mut(&name) {
            ids.retain(|other| other != id);
            if ids.is_empty() {
                self.zone_names.remove(&name);
            }
        }
    }

    pub(super) fn add_record(&mut self, record: &DnsRecord) {
        self.record_ids.add(id_key(&record.id));
        if record.record_type == RecordType::Cname {
            self.cname_targets.add(key("", &record.content));
        }
    }

    pub(super) fn remove_record(&mut self, record: &DnsRecord) {
        self.record_ids.sub(id_key(&record.id));
        if record.record_type == RecordType::Cname {
            self.cname_targets.sub(key("", &record.content));
        }
    }

    pub(super) fn add_hostname(&mut self, zone_id: &str, place: Place, hostname: &CustomHostname) {
        self.hostname_ids.add(id_key(&hostname.id));
        let entry = self.hostnames.entry(key("", &hostname.hostname));
        match entry {
            imbl::hashmap::Entry::Vacant(vacant) => {
                vacant.insert(Places::One(place));
            }
            imbl::hashmap::Entry::Occupied(mut occupied) => {
                let mut places = occupied.get().as_slice().to_vec();
                places.push(place);
                occupied.insert(Places::Many(places));
            }
        }
        if let Some(server) = &hostname.custom_origin_server {
            self.origins.add(key(zone_id, server));
        }
    }

    pub(super) fn remove_hostname(
        &mut self,
        zone_id: &str,
        place: Place,
        hostname: &CustomHostname,
    ) {
        self.hostname_ids.sub(id_key(&hostname.id));
        let name = key("", &hostname.hostname);
        if let Some(places) = self.hostnames.get(&name) {
            let rest: Vec<Place> = places
                .as_slice()
                .iter()
                .copied()
                .filter(|other| *other != place)
                .collect();
            match rest.as_slice() {
                [] => {
                    self.hostnames.remove(&name);
                }
                [one] => {
                    self.hostnames.insert(name, Places::One(*one));
                }
                _ => {
                    self.hostnames.insert(name, Places::Many(rest));
                }
            }
        }
        if let Some(server) = &hostname.custom_origin_server {
            self.origins.sub(key(zone_id, server));
        }
    }
}
