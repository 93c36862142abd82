//! The durable state: one redb database in the state directory, one row per
//! object, so a write costs the objects it touches and not the whole state.
//!
//! redb commits copy-on-write B-trees with checksums and fsyncs before
//! `commit` returns ([`Durability::Immediate`], its default), so a crash or
//! `kill -9` at any moment leaves the last acknowledged commit and never a torn
//! state. It also locks the file: two edges cannot share a state directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::{
    Account, Change, CustomHostname, CustomHostnameSettings, FallbackOrigin, Keyed, State, Table,
    Zone, ZoneState,
};

/// File name of the database inside the state directory.
pub const STATE_FILE: &str = "state.redb";

/// Values are the objects' API JSON: readable with any redb tool, and a new
/// optional field needs no migration.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
/// By zone id; the zone's rulesets live in its row.
const ZONES: TableDefinition<&str, &[u8]> = TableDefinition::new("zones");
/// By (zone id, record id).
const DNS_RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("dns_records");
/// By (zone id, custom hostname id).
const CUSTOM_HOSTNAMES: TableDefinition<(&str, &str), &[u8]> =
    TableDefinition::new("custom_hostnames");
const FALLBACK_ORIGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("fallback_origins");
const HOSTNAME_SETTINGS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("custom_hostname_settings");
/// `seeded`: present once the config's state was written (first start).
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SEEDED: &str = "seeded";

pub struct Store {
    db: Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) `<state_dir>/state.redb`; redb repairs it from its
    /// checksums after a crash.
    pub fn open(state_dir: &Path) -> Result<Store> {
        let path = state_dir.join(STATE_FILE);
        let db = Database::create(&path)
            .with_context(|| format!("opening the state database {}", path.display()))?;
        Ok(Store { db, path })
    }

    /// The stored state; on first start `seed` (the config's state) is
    /// written first. After that the store is the truth and `seed` is unused.
    pub fn load_or_seed(&self, seed: &State) -> Result<State> {
        let seeded = {
            let read = self.db.begin_read()?;
            match read.open_table(META) {
                Ok(meta) => meta.get(SEEDED)?.is_some(),
                Err(redb::TableError::TableDoesNotExist(_)) => false,
                Err(error) => return Err(error.into()),
            }
        };
        if !seeded {
            self.replace(seed)?;
            return Ok(seed.clone());
        }
        let state = self.load()?;
        state
            .validate()
            .with_context(|| format!("the stored state in {}", self.path.display()))?;
        Ok(state)
    }

    /// Writes the objects `changes` touched, as they are in `next` (the state
    /// after them), in one durable transaction.
    pub fn commit(&self, changes: &[Change], next: &State) -> Result<()> {
        let txn = self.db.begin_write()?;
        for change in changes {
            write_change(&txn, change, next)?;
        }
        txn.commit().context("committing to the state database")
    }

    /// Replaces everything with `state` in one durable transaction (import, seed).
    pub fn replace(&self, state: &State) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            txn.open_table(ACCOUNTS)?.retain(|_, _| false)?;
            txn.open_table(ZONES)?.retain(|_, _| false)?;
            txn.open_table(DNS_RECORDS)?.retain(|_, _| false)?;
            txn.open_table(CUSTOM_HOSTNAMES)?.retain(|_, _| false)?;
            txn.open_table(FALLBACK_ORIGINS)?.retain(|_, _| false)?;
            txn.open_table(HOSTNAME_SETTINGS)?.retain(|_, _| false)?;
            for account in state.accounts() {
                put(&txn, ACCOUNTS, account.id.as_str(), account)?;
            }
            for zone in state.zones() {
                write_zone(&txn, zone)?;
            }
            txn.open_table(META)?.insert(SEEDED, b"1".as_slice())?;
        }
        txn.commit().context("committing to the state database")
    }

    fn load(&self) -> Result<State> {
        let read = self.db.begin_read()?;
        let mut zones: Vec<ZoneState> = Vec::new();
        for row in read.open_table(ZONES)?.iter()? {
            let (_, value) = row?;
            zones.push(ZoneState::new(decode::<Zone>(value.value())?));
        }
        let index: HashMap<String, usize> = zones
            .iter()
            .enumerate()
            .map(|(i, z)| (z.zone.id.clone(), i))
            .collect();
        let zone_of = |id: &str| {
            index
                .get(id)
                .copied()
                .with_context(|| format!("a stored object names the missing zone `{id}`"))
        };
        for row in read.open_table(DNS_RECORDS)?.iter()? {
            let (key, value) = row?;
            let zone = zone_of(key.value().0)?;
            zones[zone].dns_records.put(decode(value.value())?);
        }
        for row in read.open_table(CUSTOM_HOSTNAMES)?.iter()? {
            let (key, value) = row?;
            let zone = zone_of(key.value().0)?;
            zones[zone].custom_hostnames.put(decode(value.value())?);
        }
        for row in read.open_table(FALLBACK_ORIGINS)?.iter()? {
            let (key, value) = row?;
            let zone = zone_of(key.value())?;
            zones[zone].fallback_origin = Some(decode(value.value())?);
        }
        for row in read.open_table(HOSTNAME_SETTINGS)?.iter()? {
            let (key, value) = row?;
            let zone = zone_of(key.value())?;
            zones[zone].custom_hostname_settings = Some(decode(value.value())?);
        }
        let mut accounts = Table::default();
        for row in read.open_table(ACCOUNTS)?.iter()? {
            accounts.put(decode::<Account>(row?.1.value())?);
        }
        Ok(State::new(accounts, zones.into_iter().collect()))
    }
}

fn write_change(txn: &WriteTransaction, change: &Change, next: &State) -> Result<()> {
    let zone = |id: &str| {
        next.zone(id)
            .with_context(|| format!("zone `{id}` is not in the state being committed"))
    };
    match change {
        Change::PutAccount { account } => put(txn, ACCOUNTS, account.id.as_str(), account)?,
        Change::DeleteAccount { id } => {
            txn.open_table(ACCOUNTS)?.remove(id.as_str())?;
        }
        Change::PutZone { zone: z } => put(txn, ZONES, z.id.as_str(), &zone(&z.id)?.zone)?,
        Change::DeleteZone { id } => delete_zone(txn, id)?,
        Change::PutDnsRecord { zone_id, record } => {
            let stored = stored(&zone(zone_id)?.dns_records, &record.id)?;
            put(
                txn,
                DNS_RECORDS,
                (zone_id.as_str(), record.id.as_str()),
                stored,
            )?
        }
        Change::DeleteDnsRecord { zone_id, id } => {
            txn.open_table(DNS_RECORDS)?
                .remove((zone_id.as_str(), id.as_str()))?;
        }
        Change::PutCustomHostname {
            zone_id,
            custom_hostname: CustomHostname { id, .. },
        }
        | Change::Observe {
            zone_id,
            custom_hostname_id: id,
            ..
        } => {
            let stored = stored(&zone(zone_id)?.custom_hostnames, id)?;
            put(
                txn,
                CUSTOM_HOSTNAMES,
                (zone_id.as_str(), id.as_str()),
                stored,
            )?
        }
        Change::DeleteCustomHostname { zone_id, id } => {
            txn.open_table(CUSTOM_HOSTNAMES)?
                .remove((zone_id.as_str(), id.as_str()))?;
        }
        Change::PutFallbackOrigin { zone_id, .. } => put_or_remove(
            txn,
            FALLBACK_ORIGINS,
            zone_id,
            &zone(zone_id)?.fallback_origin,
        )?,
        Change::PutCustomHostnameSettings { zone_id, .. } => put_or_remove(
            txn,
            HOSTNAME_SETTINGS,
            zone_id,
            &zone(zone_id)?.custom_hostname_settings,
        )?,
        Change::PutRuleset { zone_id, .. } => {
            put(txn, ZONES, zone_id.as_str(), &zone(zone_id)?.zone)?
        }
    }
    Ok(())
}

fn write_zone(txn: &WriteTransaction, zs: &ZoneState) -> Result<()> {
    let id = zs.zone.id.as_str();
    put(txn, ZONES, id, &zs.zone)?;
    for record in &zs.dns_records {
        put(txn, DNS_RECORDS, (id, record.id.as_str()), record)?;
    }
    for hostname in &zs.custom_hostnames {
        put(txn, CUSTOM_HOSTNAMES, (id, hostname.id.as_str()), hostname)?;
    }
    put_or_remove::<FallbackOrigin>(txn, FALLBACK_ORIGINS, id, &zs.fallback_origin)?;
    put_or_remove::<CustomHostnameSettings>(
        txn,
        HOSTNAME_SETTINGS,
        id,
        &zs.custom_hostname_settings,
    )
}

/// The zone row and every row under it.
fn delete_zone(txn: &WriteTransaction, id: &str) -> Result<()> {
    txn.open_table(ZONES)?.remove(id)?;
    txn.open_table(FALLBACK_ORIGINS)?.remove(id)?;
    txn.open_table(HOSTNAME_SETTINGS)?.remove(id)?;
    for table in [DNS_RECORDS, CUSTOM_HOSTNAMES] {
        let mut table = txn.open_table(table)?;
        // Keys sort by zone id first, so the zone's rows are one run from (id, "").
        let mut children = Vec::new();
        for row in table.range((id, "")..)? {
            let (key, _) = row?;
            let (zone, child) = key.value();
            if zone != id {
                break;
            }
            children.push(child.to_owned());
        }
        for child in children {
            table.remove((id, child.as_str()))?;
        }
    }
    Ok(())
}

fn put<'k, K: redb::Key + 'static, T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<K, &[u8]>,
    key: impl std::borrow::Borrow<K::SelfType<'k>>,
    value: &T,
) -> Result<()> {
    let json = serde_json::to_vec(value)?;
    txn.open_table(table)?.insert(key, json.as_slice())?;
    Ok(())
}

fn put_or_remove<T: Serialize>(
    txn: &WriteTransaction,
    table: TableDefinition<&str, &[u8]>,
    key: &str,
    value: &Option<T>,
) -> Result<()> {
    match value {
        Some(value) => put(txn, table, key, value),
        None => {
            txn.open_table(table)?.remove(key)?;
            Ok(())
        }
    }
}

fn stored<'t, T: Keyed>(table: &'t Table<T>, id: &str) -> Result<&'t T> {
    table
        .get(id)
        .context("a changed object is not in the state being committed")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).context("decoding a stored object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    fn seed() -> State {
        crate::config::Config::parse(crate::config::DEMO)
            .unwrap()
            .state
    }

    /// `state` in id order, as the store's tables read back.
    fn sorted(state: State) -> State {
        fn by_id<T: Keyed>(table: &Table<T>) -> Table<T> {
            let mut items: Vec<T> = table.iter().cloned().collect();
            items.sort_by(|a, b| a.key().cmp(b.key()));
            items.into_iter().collect()
        }
        let zones: Vec<ZoneState> = by_id(state.zones())
            .iter()
            .map(|zone| ZoneState {
                dns_records: by_id(&zone.dns_records),
                custom_hostnames: by_id(&zone.custom_hostnames),
                ..zone.clone()
            })
            .collect();
        State::new(by_id(state.accounts()), zones.into_iter().collect())
    }

    #[test]
    fn seeds_once_then_keeps_committed_changes() {
        let dir = tempfile_dir("seed");
        let store = Store::open(&dir).unwrap();
        let state = store.load_or_seed(&seed()).unwrap();
        assert_eq!(sorted(state.clone()), sorted(seed()));

        let change = Change::DeleteCustomHostname {
            zone_id: "zone-saasprovider".into(),
            id: "ch-othershop".into(),
        };
        let next = state.apply(change.clone()).unwrap();
        store.commit(&[change], &next).unwrap();
        drop(store);

        let store = Store::open(&dir).unwrap();
        // The seed is ignored once the store holds a state.
        let reopened = store.load_or_seed(&seed()).unwrap();
        assert_eq!(sorted(reopened.clone()), sorted(next));
        assert_ne!(sorted(reopened), sorted(seed()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deleting_a_zone_deletes_its_rows() {
        let dir = tempfile_dir("delete-zone");
        let store = Store::open(&dir).unwrap();
        let state = store.load_or_seed(&seed()).unwrap();
        let changes = vec![
            Change::DeleteZone {
                id: "zone-example".into(),
            },
            Change::DeleteZone {
                id: "zone-saasprovider".into(),
            },
        ];
        let next = state.apply_all(changes.clone()).unwrap();
        store.commit(&changes, &next).unwrap();
        let reopened = store.load().unwrap();
        assert!(reopened.zones().is_empty());
        let read = store.db.begin_read().unwrap();
        assert_eq!(read.open_table(DNS_RECORDS).unwrap().len().unwrap(), 0);
        assert_eq!(read.open_table(CUSTOM_HOSTNAMES).unwrap().len().unwrap(), 0);
        assert_eq!(read.open_table(FALLBACK_ORIGINS).unwrap().len().unwrap(), 0);
        drop(read);
        drop(store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_edge_on_the_same_directory_is_refused() {
        let dir = tempfile_dir("locked");
        let _first = Store::open(&dir).unwrap();
        let second = Store::open(&dir).err().expect("the database is locked");
        assert!(format!("{second:#}").contains("state.redb"), "{second:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edge-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
