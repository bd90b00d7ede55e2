//! What the replicas of a cluster share through Redis besides the queue: every job's record and
//! its events, so any replica answers for any job (`GET`, list, SSE) without a shared disk.
//!
//! - Records: the JSON of [`JobRecord`] under `st2v:record:<id>`, listed in the sorted set
//!   `st2v:records` by creation time. The replica that holds a job writes it (at most once a
//!   second for progress, at once for a change of status).
//! - Events: one Redis Stream per job, `st2v:events:<id>`, whose entry ids are the events' own
//!   numbers (`<n>-0`): SSE replays from any replica and resumes from `Last-Event-ID`, and a
//!   replica that takes a job over goes on numbering from the last entry. A replica that lost
//!   its lease cannot append behind the new owner (Redis refuses ids that are not increasing).
//! - Job ids: numbered by one counter (`st2v:next-job`), unique across replicas.

use std::sync::Mutex;

use redis::{Commands, Value};

use super::cluster::ClusterError;
use super::jobs::{JobEvent, JobRecord};

const RECORDS: &str = "st2v:records";
const NEXT_JOB: &str = "st2v:next-job";

/// One replica's handle on the shared records and events (one connection, reopened on error).
pub struct SharedJobs {
    client: redis::Client,
    connection: Mutex<Option<redis::Connection>>,
}

fn record_key(id: &str) -> String {
    format!("st2v:record:{id}")
}

fn events_key(id: &str) -> String {
    format!("st2v:events:{id}")
}

/// Ids are the server's own (`video_`, hex digits and `_`): anything else is not looked up.
pub fn is_job_id(id: &str) -> bool {
    id.strip_prefix("video_").is_some_and(|own| {
        !own.is_empty() && own.chars().all(|c| c.is_ascii_hexdigit() || c == '_')
    })
}

impl SharedJobs {
    pub fn connect(url: &str) -> Result<Self, ClusterError> {
        let shared = Self {
            client: redis::Client::open(url)?,
            connection: Mutex::new(None),
        };
        shared.with(|c| redis::cmd("PING").query::<()>(c))?;
        Ok(shared)
    }

    /// Runs `command` on the cached connection; a failure drops it and tries once more on a
    /// fresh one (Redis restarted, an idle connection closed).
    fn with<T>(
        &self,
        mut command: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, ClusterError> {
        let mut slot = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if slot.is_none() {
                *slot = Some(self.client.get_connection()?);
            }
            let connection = slot.as_mut().expect("just opened");
            match command(connection) {
                Ok(value) => return Ok(value),
                Err(err) if attempt == 0 && (err.is_io_error() || err.is_connection_dropped()) => {
                    *slot = None;
                }
                Err(err) => return Err(err.into()),
            }
        }
        unreachable!("the second attempt returns")
    }

    /// A number no other replica gets.
    pub fn next_number(&self) -> Result<u64, ClusterError> {
        self.with(|c| c.incr(NEXT_JOB, 1))
    }

    pub fn write_record(&self, record: &JobRecord) -> Result<(), ClusterError> {
        let text = serde_json::to_string(record).expect("a record serializes");
        self.with(|c| {
            redis::pipe()
                .atomic()
                .set(record_key(&record.id), &text)
                .zadd(RECORDS, &record.id, record.created_at)
                .query::<()>(c)
        })
    }

    pub fn read_record(&self, id: &str) -> Option<JobRecord> {
        if !is_job_id(id) {
            return None;
        }
        let text: Option<String> = self
            .with(|c| c.get(record_key(id)))
            .map_err(|err| tracing::warn!("reading job {id}'s record: {err}"))
            .ok()?;
        serde_json::from_str(&text?).ok()
    }

    /// Every record, oldest first.
    pub fn all_records(&self) -> Vec<JobRecord> {
        let list = || -> Result<Vec<Option<String>>, ClusterError> {
            let ids: Vec<String> = self.with(|c| c.zrange(RECORDS, 0, -1))?;
            let mut texts = Vec::with_capacity(ids.len());
            for batch in ids.chunks(256) {
                let keys: Vec<String> = batch.iter().map(|id| record_key(id)).collect();
                let found: Vec<Option<String>> =
                    self.with(|c| redis::cmd("MGET").arg(&keys).query(c))?;
                texts.extend(found);
            }
            Ok(texts)
        };
        match list() {
            Ok(texts) => texts
                .into_iter()
                .flatten()
                .filter_map(|text| serde_json::from_str(&text).ok())
                .collect(),
            Err(err) => {
                tracing::warn!("listing the cluster's jobs: {err}");
                Vec::new()
            }
        }
    }

    /// Appends event `event` of job `id`; refused (an error) unless its number is above the
    /// last one's.
    pub fn append_event(&self, id: &str, event: &JobEvent) -> Result<(), ClusterError> {
        let text = serde_json::to_string(event).expect("an event serializes");
        let entry = format!("{}-0", event.id);
        self.with(|c| {
            redis::cmd("XADD")
                .arg(events_key(id))
                .arg(&entry)
                .arg("event")
                .arg(&text)
                .query::<Value>(c)
        })
        .map(drop)
    }

    /// The events of job `id` numbered above `after` (all of them without it).
    pub fn events_after(&self, id: &str, after: Option<u64>) -> Vec<JobEvent> {
        let start = format!("{}-0", after.map_or(0, |a| a + 1));
        let reply = self.with(|c| {
            redis::cmd("XRANGE")
                .arg(events_key(id))
                .arg(&start)
                .arg("+")
                .query::<Value>(c)
        });
        match reply {
            Ok(reply) => stream_events(&reply),
            Err(err) => {
                tracing::warn!("reading job {id}'s events: {err}");
                Vec::new()
            }
        }
    }

    /// The number of job `id`'s last event (0 without any).
    pub fn last_event(&self, id: &str) -> Result<u64, ClusterError> {
        let reply = self.with(|c| {
            redis::cmd("XREVRANGE")
                .arg(events_key(id))
                .arg(&["+", "-", "COUNT", "1"])
                .query::<Value>(c)
        })?;
        Ok(stream_events(&reply).last().map_or(0, |e| e.id))
    }

    /// Forgets job `id` (its record and its events).
    pub fn forget(&self, id: &str) -> Result<(), ClusterError> {
        self.with(|c| {
            redis::pipe()
                .atomic()
                .del(record_key(id))
                .del(events_key(id))
                .zrem(RECORDS, id)
                .query::<()>(c)
        })
    }
}

/// The events in an XRANGE reply: `[[entry id, ["event", json]], ...]`.
fn stream_events(reply: &Value) -> Vec<JobEvent> {
    let Value::Array(entries) = reply else {
        return Vec::new();
    };
    entries
        .iter()
        .filter_map(|entry| {
            let Value::Array(pair) = entry else {
                return None;
            };
            let Some(Value::Array(fields)) = pair.get(1) else {
                return None;
            };
            match fields.get(1)? {
                Value::BulkString(bytes) => serde_json::from_slice(bytes).ok(),
                _ => None,
            }
        })
        .collect()
}
