//! Where today's list comes from: files, CSV over HTTPS, or the Register
//! (full or change lists), behind the [`ListSource`] seam the commit
//! protocol sees (tests give it lists of their own).

use std::fs;
use std::io;
use std::path::PathBuf;

use anyhow::Context;
use jiff::civil::Date;

use crate::config::{Authority, Config, ListMode, Source};
use crate::domain::keys::{self, KeyKind, KeySet};
use crate::domain::{diff, parse};
use crate::fsutil;
use crate::register::{fetch, wire};
use crate::store::snapshot;
use crate::store::state::{ChangeListRecord, State};

/// Today's keys and what the report says about them.
pub struct Loaded {
    pub keys: KeySet,
    pub taken_at: i64,
    pub n_rows: u64,
    pub n_duplicates: u64,
    pub anomalies: u64,
    /// The Register's id of the change list applied, if one was.
    pub change_list: Option<String>,
}

/// Why today's list could not be had: the authority fails, nothing is
/// written. Never holds a CPR number.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no list: {} does not exist", .0.display())]
    NoList(PathBuf),
    #[error(transparent)]
    List(#[from] crate::store::lists::ListFileError),
    #[error("{url}: {source}")]
    Download {
        url: String,
        source: fetch::FetchError,
    },
    #[error("{url}: {source}")]
    DownloadedIo { url: String, source: io::Error },
    #[error("{url}: {source}")]
    DownloadedList {
        url: String,
        source: parse::ParseError,
    },
    #[error("register: {0}")]
    Register(#[from] fetch::FetchError),
    #[error("{0:#}")]
    State(anyhow::Error),
}

/// What the commit protocol needs from the outside world.
pub trait ListSource: Sync {
    /// Today's list of `a` (a change list applies to `previous`).
    fn load(
        &self,
        cfg: &Config,
        state: &State,
        a: &Authority,
        date: Date,
        previous: Option<&snapshot::Snapshot>,
    ) -> Result<Loaded, LoadError>;

    /// Deletes a committed change list at the Register.
    fn delete_change_list(&self, cfg: &Config, a: &Authority, list_id: &str) -> anyhow::Result<()>;
}

/// The configured sources; Register clients, one per client certificate,
/// are made when first needed.
#[derive(Default)]
pub struct Sources {
    clients: std::sync::Mutex<
        std::collections::HashMap<(PathBuf, PathBuf), std::sync::Arc<fetch::Client>>,
    >,
    /// Reference collections fetched ahead (see [`Sources::read_ahead`]).
    ahead: std::sync::Mutex<Option<std::sync::Arc<Ahead>>>,
}

/// Reference collections fetched ahead of the workers, for one date.
struct Ahead {
    date: Date,
    /// How far the fetchers may get ahead of the loads begun.
    lead: usize,
    state: std::sync::Mutex<AheadState>,
    wake: std::sync::Condvar,
}

#[derive(Default)]
struct AheadState {
    /// The next authority (in the workers' order) for a fetcher.
    next: usize,
    /// Loads begun by the workers.
    begun: usize,
    slots: std::collections::HashMap<u32, Slot>,
    done: bool,
}

enum Slot {
    Fetching,
    Ready(Result<fetch::References, fetch::FetchError>),
    /// A worker has it (from here, or fetching it itself).
    Taken,
}

/// Ends the read-ahead when dropped (its threads then return).
pub struct ReadAhead<'a> {
    sources: &'a Sources,
}

impl Drop for ReadAhead<'_> {
    fn drop(&mut self) {
        if let Some(ahead) = self.sources.ahead.lock().expect("lock").take() {
            ahead.state.lock().expect("lock").done = true;
            ahead.wake.notify_all();
        }
    }
}

impl Sources {
    /// Over OIOREST, fetches the reference collections of `order` (the
    /// order the workers take the authorities in) for `date` ahead of
    /// them, on `threads` threads of `scope`, at most `lead` past the
    /// loads begun: a worker then starts on its delliste at once instead
    /// of one round trip later (across a WAN, a run is mostly round
    /// trips). What a fetch ahead gives (list or error) is what the
    /// worker's own fetch would have given; its deadline is the list's.
    /// Other sources: nothing. Ends when the guard is dropped.
    pub fn read_ahead<'scope, 'env: 'scope>(
        &'env self,
        scope: &'scope std::thread::Scope<'scope, 'env>,
        cfg: &'env Config,
        order: Vec<&'env Authority>,
        date: Date,
        threads: usize,
        lead: usize,
    ) -> ReadAhead<'env> {
        let guard = ReadAhead { sources: self };
        if !matches!(cfg.source, Source::Oiorest) || order.is_empty() || threads == 0 {
            return guard;
        }
        let ahead = std::sync::Arc::new(Ahead {
            date,
            lead: lead.max(1),
            state: std::sync::Mutex::new(AheadState::default()),
            wake: std::sync::Condvar::new(),
        });
        *self.ahead.lock().expect("lock") = Some(ahead.clone());
        let order = std::sync::Arc::new(order);
        for _ in 0..threads.min(order.len()) {
            let ahead = ahead.clone();
            let order = order.clone();
            scope.spawn(move || {
                loop {
                    let a = {
                        let mut st = ahead.state.lock().expect("lock");
                        while !st.done && st.next < order.len() && st.next >= st.begun + ahead.lead
                        {
                            st = ahead.wake.wait(st).expect("lock");
                        }
                        if st.done || st.next >= order.len() {
                            return;
                        }
                        let a = order[st.next];
                        st.next += 1;
                        if st.slots.contains_key(&a.cvr) {
                            continue; // a worker got there first
                        }
                        st.slots.insert(a.cvr, Slot::Fetching);
                        a
                    };
                    let kind = match a.list_mode {
                        ListMode::Full => wire::ListKind::Full,
                        ListMode::Delta => wire::ListKind::Change,
                    };
                    let result = match self.client(cfg, a) {
                        Ok(client) => client.fetch_references(&a.register_sysid, date, kind),
                        // The worker makes (and reports) the client itself.
                        Err(_) => {
                            ahead.state.lock().expect("lock").slots.remove(&a.cvr);
                            ahead.wake.notify_all();
                            continue;
                        }
                    };
                    ahead
                        .state
                        .lock()
                        .expect("lock")
                        .slots
                        .insert(a.cvr, Slot::Ready(result));
                    ahead.wake.notify_all();
                }
            });
        }
        guard
    }

    /// `a`'s reference collection for `date`: the one fetched ahead, or
    /// `None` (the caller fetches it).
    fn references_ahead(
        &self,
        a: &Authority,
        date: Date,
    ) -> Option<Result<fetch::References, fetch::FetchError>> {
        let ahead = self.ahead.lock().expect("lock").clone()?;
        if ahead.date != date {
            return None;
        }
        let mut st = ahead.state.lock().expect("lock");
        st.begun += 1;
        ahead.wake.notify_all();
        loop {
            match st.slots.insert(a.cvr, Slot::Taken) {
                Some(Slot::Ready(r)) => return Some(r),
                Some(Slot::Fetching) => {
                    st.slots.insert(a.cvr, Slot::Fetching);
                    st = ahead.wake.wait(st).expect("lock");
                }
                // Not fetched ahead (now marked as the worker's own), or
                // already taken once (a second load fetches afresh).
                None | Some(Slot::Taken) => return None,
            }
        }
    }

    fn client(&self, cfg: &Config, a: &Authority) -> anyhow::Result<std::sync::Arc<fetch::Client>> {
        let register = cfg
            .register
            .as_ref()
            .context("no [register] section in the config")?;
        let (cert, key) = a
            .client_cert
            .clone()
            .unwrap_or_else(|| (register.client_cert.clone(), register.client_key.clone()));
        let mut clients = self.clients.lock().expect("lock");
        if let Some(c) = clients.get(&(cert.clone(), key.clone())) {
            return Ok(c.clone());
        }
        let client = std::sync::Arc::new(fetch::Client::new(register, &cert, &key)?);
        clients.insert((cert, key), client.clone());
        Ok(client)
    }
}

impl ListSource for Sources {
    fn load(
        &self,
        cfg: &Config,
        state: &State,
        a: &Authority,
        date: Date,
        previous: Option<&snapshot::Snapshot>,
    ) -> Result<Loaded, LoadError> {
        self.load_today(cfg, state, a, date, previous)
    }

    fn delete_change_list(&self, cfg: &Config, a: &Authority, list_id: &str) -> anyhow::Result<()> {
        Ok(self
            .client(cfg, a)?
            .delete_change_list(&a.register_sysid, list_id)?)
    }
}

impl Sources {
    /// Reads today's list from the configured source. An error fails the
    /// authority for the report; nothing is written.
    fn load_today(
        &self,
        cfg: &Config,
        state: &State,
        a: &Authority,
        date: Date,
        previous: Option<&snapshot::Snapshot>,
    ) -> Result<Loaded, LoadError> {
        let from_list = |list: parse::ParsedList, taken_at| Loaded {
            keys: list.keys,
            taken_at,
            n_rows: list.n_rows,
            n_duplicates: list.n_duplicates,
            anomalies: 0,
            change_list: None,
        };
        let tmp = state.tmp(a.cvr, date);
        match &cfg.source {
            Source::Files(_) => {
                let path = cfg.source_path(a.cvr, date).expect("file source");
                let list = match crate::store::lists::read_list(&path) {
                    Ok(l) => l,
                    Err(crate::store::lists::ListFileError::Io { path, source })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Err(LoadError::NoList(path));
                    }
                    Err(e) => return Err(e.into()),
                };
                let taken_at =
                    crate::fsutil::mtime(&path).map_err(|e| LoadError::State(e.into()))?;
                Ok(from_list(list, taken_at))
            }
            Source::Https(template) => {
                let url = Config::expand(template, a.cvr, date);
                let client = self.client(cfg, a).map_err(LoadError::State)?;
                fsutil::create_dir_all(&tmp).map_err(|e| {
                    LoadError::State(anyhow::anyhow!("cannot create {}: {e}", tmp.display()))
                })?;
                let file = tmp.join("list.csv");
                let result = client
                    .download(&url, &file)
                    .map_err(|source| LoadError::Download {
                        url: url.clone(),
                        source,
                    })
                    .and_then(|()| {
                        crate::store::lists::read_list(&file).map_err(|e| match e {
                            crate::store::lists::ListFileError::Io { source, .. } => {
                                LoadError::DownloadedIo {
                                    url: url.clone(),
                                    source,
                                }
                            }
                            crate::store::lists::ListFileError::Parse { source, .. } => {
                                LoadError::DownloadedList {
                                    url: url.clone(),
                                    source,
                                }
                            }
                        })
                    });
                let _ = fs::remove_dir_all(&tmp);
                let list = result?;
                let taken_at = taken_at(state, a.cvr, date)?;
                Ok(from_list(list, taken_at))
            }
            Source::Oiorest => {
                let client = self.client(cfg, a).map_err(LoadError::State)?;
                let kind = match a.list_mode {
                    ListMode::Full => wire::ListKind::Full,
                    ListMode::Delta => wire::ListKind::Change,
                };
                let fetched = match self.references_ahead(a, date) {
                    Some(refs) => client.fetch_listed(&refs?)?,
                    None => client.fetch_list(&a.register_sysid, date, kind)?,
                };
                let taken_at = taken_at(state, a.cvr, date)?;
                if kind == wire::ListKind::Full {
                    return Ok(Loaded {
                        n_rows: fetched.n_entries,
                        n_duplicates: fetched.n_duplicates,
                        keys: fetched.up,
                        taken_at,
                        anomalies: 0,
                        change_list: None,
                    });
                }
                let empty = KeySet::default();
                let prev = previous.map_or(&empty, |p| &p.keys);
                // A change list counts as applied only once the date it was
                // fetched for is committed (the current pointer reached it): a
                // list fetched by a run that crashed, failed or was quarantined
                // before its commit is applied afresh when the Register serves
                // it again.
                let current = previous.map(|p| p.meta.date);
                let applied = ChangeListRecord::read(state, a.cvr)
                    .map_err(LoadError::State)?
                    .is_some_and(|r| r.list_id == fetched.list_id && r.committed(current));
                let (keys, anomalies) = if applied {
                    tracing::warn!(authority_cvr = %keys::format(KeyKind::Cvr, a.cvr), "the register sent a change list that was already applied: nothing emitted for it");
                    (prev.clone(), 0)
                } else {
                    diff::apply_delta(prev, &fetched.up, &fetched.off)
                };
                Ok(Loaded {
                    keys,
                    taken_at,
                    n_rows: fetched.n_entries,
                    n_duplicates: fetched.n_duplicates,
                    anomalies,
                    change_list: Some(fetched.list_id),
                })
            }
        }
    }
}

/// The taken-at stamp of a network list (see [`State::taken_at_stamp`]).
fn taken_at(state: &State, authority: u32, date: Date) -> Result<i64, LoadError> {
    state
        .taken_at_stamp(authority, date, || fetch::now().timestamp().as_second())
        .map_err(LoadError::State)
}
