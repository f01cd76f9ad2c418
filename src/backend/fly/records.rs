//! Records and state on Fly: the metadata of one machine per environment that is created and
//! never started (a "record keeper", `<project>-<environment>-hm-records`; a stopped machine
//! costs only its root filesystem). Metadata writes are upserts, so every change is made under the
//! keeper's lease: `POST …/lease` answers 409 while another deployer holds it, and that deployer's
//! lease lapses by itself if its process dies. Creating a record under the lease is the atomic
//! create-if-absent the deploy lock is built on.
//!
//! Keys: `hm-r-<hex of the record name>` holds a record (JSON: name, kind, created, data); a state
//! file is `hm-s-<hex of its name>` (its chunk count) and `hm-s-<hex>-<n>` (base64 chunks of at
//! most [`CHUNK`] bytes).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use super::machine::Machine;
use super::FlyBackend;
use crate::backend::{label, NewRecord, Record, RecordStore, Scope, StateFile};
use crate::error::{Error, ErrorKind, Result};

const RECORD: &str = "hm-r-";
const STATE: &str = "hm-s-";
/// The role of the record keeper, in its metadata.
pub(super) const ROLE: &str = "io.harbormaster.role";
const KEEPER: &str = "records";
/// Bytes of a state file per metadata value (before base64).
const CHUNK: usize = 24 * 1024;
/// How long a record change may hold the keeper's lease.
const LEASE_TTL: i64 = 15;

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> =
        (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect();
    String::from_utf8(bytes?).ok()
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// The keeper's machine name for `scope`.
pub(super) fn keeper_name(scope: &Scope) -> String {
    super::fly_name(&format!("{}-hm-records", scope.qualified()))
}

/// A held lease on the keeper: its machine and nonce.
struct Held {
    machine: String,
    nonce: String,
}

impl FlyBackend {
    /// The keeper of `scope`, created if `create` and missing.
    async fn keeper(&self, scope: &Scope, create: bool) -> Result<Option<String>> {
        if let Some(id) = self.keepers.lock().ok().and_then(|k| k.get(scope).cloned()) {
            return Ok(Some(id));
        }
        let name = keeper_name(scope);
        let find = |list: &[Machine]| {
            let mut mine: Vec<&Machine> = list
                .iter()
                .filter(|m| m.name == name && !m.gone() && m.metadata(ROLE).is_some_and(|r| r == KEEPER))
                .collect();
            // Two deployers may both have created one where names are not unique: the oldest wins.
            mine.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
            mine.first().map(|m| m.id.clone())
        };
        let mut found = find(&self.machines().await?);
        if found.is_none() && create {
            let mut metadata: BTreeMap<String, String> = scope.labels();
            metadata.insert(ROLE.to_string(), KEEPER.to_string());
            let body = json!({
                "name": name,
                "region": self.region,
                "skip_launch": true,
                "config": {
                    "image": self.keeper_image,
                    "metadata": metadata,
                    "restart": {"policy": "no"},
                    "guest": {"cpu_kind": "shared", "cpus": 1, "memory_mb": 256},
                },
            });
            let answer = self
                .api
                .send("create the record keeper", Method::POST, &self.path("/machines"), Some(&body), None, None)
                .await?;
            if !answer.ok() && answer.status != 409 && answer.status != 422 {
                return Err(self.api.error("create the record keeper", &name, &answer));
            }
            found = find(&self.machines().await?);
        }
        if let Some(id) = &found {
            if let Ok(mut k) = self.keepers.lock() {
                k.insert(scope.clone(), id.clone());
            }
        }
        Ok(found)
    }

    async fn keeper_or_fail(&self, scope: &Scope) -> Result<String> {
        match self.keeper(scope, true).await? {
            Some(id) => Ok(id),
            None => Err(Error::backend_kind(
                "find the record keeper",
                keeper_name(scope),
                ErrorKind::NotFound,
                "it was created but is not listed",
            )),
        }
    }

    /// Takes the keeper's lease, waiting while another deployer holds it; `None` if the keeper is
    /// gone.
    async fn lease(&self, machine: &str) -> Result<Option<Held>> {
        let started = tokio::time::Instant::now();
        let who = format!("harbormaster on {} (pid {})", crate::process::me().host, std::process::id());
        let body = json!({"ttl": LEASE_TTL, "description": who});
        let path = self.path(&format!("/machines/{machine}/lease"));
        let mut pause = Duration::from_millis(50);
        loop {
            let answer =
                self.api.send("take the record keeper's lease", Method::POST, &path, Some(&body), None, None).await?;
            if answer.ok() {
                let nonce = answer.body.get("nonce").and_then(Value::as_str).unwrap_or_default().to_string();
                return Ok(Some(Held { machine: machine.to_string(), nonce }));
            }
            if answer.status == 404 {
                return Ok(None);
            }
            if answer.status != 409 {
                return Err(self.api.error("take the record keeper's lease", machine, &answer));
            }
            if started.elapsed() > self.lease_wait {
                return Err(self.held_by_another(machine).await);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(800));
        }
    }

    /// [`Error::Locked`] naming who holds the keeper's lease (the Fly user, and the process its
    /// description names), for a lease that stayed held past the wait.
    async fn held_by_another(&self, machine: &str) -> Error {
        let path = self.path(&format!("/machines/{machine}/lease"));
        let lease = match self.api.send("show the record keeper's lease", Method::GET, &path, None, None, None).await {
            Ok(a) if a.ok() => a.body,
            Ok(a) => return self.api.error("take the record keeper's lease", machine, &a),
            Err(e) => return e,
        };
        let text = |k: &str| lease.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let description = text("description");
        // Our own holders describe themselves as `harbormaster on <host> (pid <pid>)`.
        let host = description
            .strip_prefix("harbormaster on ")
            .and_then(|r| r.split(" (pid ").next())
            .unwrap_or("unknown")
            .to_string();
        let pid = description.rsplit_once("(pid ").and_then(|(_, p)| p.trim_end_matches(')').parse().ok()).unwrap_or(0);
        let expires = lease
            .get("expires_at")
            .and_then(Value::as_u64)
            .and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s)))
            .unwrap_or_else(SystemTime::now);
        let environment = self
            .keepers
            .lock()
            .ok()
            .and_then(|k| k.iter().find(|(_, id)| id.as_str() == machine).map(|(s, _)| s.qualified()))
            .unwrap_or_else(|| machine.to_string());
        Error::Locked {
            environment,
            holder: Box::new(crate::error::LockHolder {
                actor: Some(text("owner")).filter(|o| !o.is_empty()),
                host,
                pid,
                operation: if description.is_empty() {
                    "a change of the environment's records".into()
                } else {
                    description
                },
                since: SystemTime::now(),
                expires,
                state: format!(
                    "it holds the Fly lease of the record keeper machine {machine} (still held after {})",
                    crate::duration::human(self.lease_wait)
                ),
                renew_every: Duration::from_secs(LEASE_TTL.unsigned_abs()),
            }),
        }
    }

    async fn lease_or_fail(&self, machine: &str) -> Result<Held> {
        match self.lease(machine).await? {
            Some(h) => Ok(h),
            None => {
                if let Ok(mut k) = self.keepers.lock() {
                    k.retain(|_, id| id != machine);
                }
                Err(Error::backend_kind(
                    "take the record keeper's lease",
                    machine,
                    ErrorKind::StateLost,
                    "the record keeper machine is gone (destroyed outside the library?); the next operation creates a new one",
                ))
            }
        }
    }

    async fn release(&self, held: &Held) {
        let path = self.path(&format!("/machines/{}/lease", held.machine));
        let _ = self
            .api
            .send("release the record keeper's lease", Method::DELETE, &path, None, Some(&held.nonce), None)
            .await;
    }

    async fn metadata(&self, machine: &str) -> Result<BTreeMap<String, String>> {
        let answer = self
            .api
            .expect("read records", Method::GET, &self.path(&format!("/machines/{machine}/metadata")), None, None)
            .await?;
        Ok(serde_json::from_value(answer.body).unwrap_or_default())
    }

    async fn set_key(&self, held: &Held, key: &str, value: &str) -> Result<()> {
        let path = self.path(&format!("/machines/{}/metadata/{key}", held.machine));
        self.api
            .expect("write a record", Method::POST, &path, Some(&json!({"value": value})), Some(&held.nonce))
            .await?;
        Ok(())
    }

    async fn delete_key(&self, held: &Held, key: &str) -> Result<()> {
        let path = self.path(&format!("/machines/{}/metadata/{key}", held.machine));
        let answer = self.api.send("remove a record", Method::DELETE, &path, None, Some(&held.nonce), None).await?;
        if answer.ok() || answer.status == 404 {
            Ok(())
        } else {
            Err(self.api.error("remove a record", key, &answer))
        }
    }
}

fn record_of(machine: &str, key: &str, value: &str) -> Option<Record> {
    let v: Value = serde_json::from_str(value).ok()?;
    let data: BTreeMap<String, String> = serde_json::from_value(v.get("data")?.clone()).ok()?;
    Some(Record {
        id: format!("{machine}/{key}"),
        name: v.get("name")?.as_str()?.to_string(),
        kind: v.get("kind")?.as_str()?.to_string(),
        created: UNIX_EPOCH.checked_add(Duration::from_secs(v.get("created")?.as_u64()?)).unwrap_or(UNIX_EPOCH),
        data,
    })
}

#[async_trait]
impl RecordStore for FlyBackend {
    async fn create_record(&self, scope: &Scope, record: &NewRecord) -> Result<Option<Record>> {
        let machine = self.keeper_or_fail(scope).await?;
        let key = format!("{RECORD}{}", hex(&record.name));
        let created = self.clock().await?;
        let held = self.lease_or_fail(&machine).await?;
        let r = async {
            if self.metadata(&machine).await?.contains_key(&key) {
                return Ok(None);
            }
            let value =
                json!({"name": record.name, "kind": record.kind, "created": unix(created), "data": record.data});
            self.set_key(&held, &key, &value.to_string()).await?;
            Ok(record_of(&machine, &key, &value.to_string()))
        }
        .await;
        self.release(&held).await;
        r
    }

    async fn list_records(&self, scope: &Scope, kind: &str) -> Result<Vec<Record>> {
        let Some(machine) = self.keeper(scope, false).await? else { return Ok(Vec::new()) };
        let mut out: Vec<Record> = self
            .metadata(&machine)
            .await?
            .iter()
            .filter(|(k, _)| k.starts_with(RECORD))
            .filter_map(|(k, v)| record_of(&machine, k, v))
            .filter(|r| r.kind == kind)
            .collect();
        out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
        Ok(out)
    }

    async fn remove_record(&self, id: &str) -> Result<()> {
        let Some((machine, key)) = id.split_once('/') else {
            return Err(Error::backend_kind(
                "remove a record",
                id,
                ErrorKind::Invalid,
                "not a record ID of this backend",
            ));
        };
        let Some(held) = self.lease(machine).await? else { return Ok(()) };
        let r = async {
            self.delete_key(&held, key).await?;
            // A keeper with nothing left to keep (the end of `down`) goes too.
            if !self.metadata(machine).await?.keys().any(|k| k.starts_with(RECORD) || k.starts_with(STATE)) {
                let path = self.path(&format!("/machines/{machine}"));
                let answer = self
                    .api
                    .send("remove the record keeper", Method::DELETE, &path, None, Some(&held.nonce), None)
                    .await?;
                if answer.ok() {
                    if let Ok(mut k) = self.keepers.lock() {
                        k.retain(|_, id| id != machine);
                    }
                    return Ok(true);
                }
            }
            Ok(false)
        }
        .await;
        if !matches!(r, Ok(true)) {
            self.release(&held).await;
        }
        r.map(|_| ())
    }

    async fn clock(&self) -> Result<SystemTime> {
        let answer =
            self.api.expect("read the API's clock", Method::GET, &format!("/apps/{}", self.app), None, None).await?;
        Ok(answer.date.unwrap_or_else(SystemTime::now))
    }

    async fn read_state(&self, scope: &Scope) -> Result<Option<Vec<StateFile>>> {
        let Some(machine) = self.keeper(scope, false).await? else { return Ok(None) };
        let md = self.metadata(&machine).await?;
        let mut files = Vec::new();
        for (key, count) in md.iter().filter(|(k, _)| k.starts_with(STATE) && !k[STATE.len()..].contains('-')) {
            let Some(name) = unhex(&key[STATE.len()..]) else { continue };
            let count: usize = count.parse().unwrap_or(0);
            let mut contents = Vec::new();
            for n in 0..count {
                let chunk = md.get(&format!("{key}-{n}")).ok_or_else(|| {
                    Error::backend_kind(
                        "read state",
                        &name,
                        ErrorKind::StateLost,
                        format!("chunk {n} of {count} is missing"),
                    )
                })?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(chunk)
                    .map_err(|e| Error::backend_kind("read state", &name, ErrorKind::StateLost, e))?;
                contents.extend(bytes);
            }
            files.push(StateFile { name, contents });
        }
        Ok(Some(files))
    }

    async fn write_state(&self, scope: &Scope, name: &str, contents: &[u8]) -> Result<()> {
        let machine = self.keeper_or_fail(scope).await?;
        let key = format!("{STATE}{}", hex(name));
        let held = self.lease_or_fail(&machine).await?;
        let held = &held;
        let r = async {
            let before: usize = self.metadata(&machine).await?.get(&key).and_then(|c| c.parse().ok()).unwrap_or(0);
            let chunks: Vec<&[u8]> = contents.chunks(CHUNK).collect();
            for (n, chunk) in chunks.iter().enumerate() {
                self.set_key(held, &format!("{key}-{n}"), &base64::engine::general_purpose::STANDARD.encode(chunk))
                    .await?;
            }
            self.set_key(held, &key, &chunks.len().to_string()).await?;
            for n in chunks.len()..before {
                self.delete_key(held, &format!("{key}-{n}")).await?;
            }
            Ok(())
        }
        .await;
        self.release(held).await;
        r
    }

    async fn remove_state(&self, scope: &Scope) -> Result<()> {
        let Some(machine) = self.keeper(scope, false).await? else { return Ok(()) };
        let Some(held) = self.lease(&machine).await? else { return Ok(()) };
        let r = async {
            for key in self.metadata(&machine).await?.keys().filter(|k| k.starts_with(STATE)) {
                self.delete_key(&held, key).await?;
            }
            Ok(())
        }
        .await;
        self.release(&held).await;
        r
    }
}

/// The label a machine of the library carries that is not an instance (the record keeper).
pub(super) fn is_keeper(m: &Machine) -> bool {
    m.metadata(ROLE).is_some() || m.metadata(label::SERVICE).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_survive_the_key_encoding() {
        let name = "shop-staging.lock.12";
        assert_eq!(unhex(&hex(name)).as_deref(), Some(name));
        assert!(hex(name).chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn a_record_is_read_back_as_written() {
        let v = json!({"name": "a.lock.1", "kind": "lock", "created": 1_700_000_000u64, "data": {"epoch": "1"}});
        let r = record_of("m1", "hm-r-61", &v.to_string()).unwrap_or_else(|| panic!("unreadable"));
        assert_eq!(r.id, "m1/hm-r-61");
        assert_eq!(r.kind, "lock");
        assert_eq!(r.data.get("epoch").map(String::as_str), Some("1"));
        assert!(record_of("m1", "k", "not json").is_none());
    }
}
