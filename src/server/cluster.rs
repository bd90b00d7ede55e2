//! The queue replicas of `st2v serve` share: one Redis, one Stream of job ids read through a
//! consumer group, each replica a consumer (Redis Streams: XADD, XREADGROUP, XAUTOCLAIM,
//! XPENDING, XACK).
//!
//! A job is *admitted* against a global bound (a counter of accepted, unfinished jobs, checked
//! and incremented in one script, so two replicas cannot both take the last place) and
//! appended to the stream. A replica *takes* a job: first one whose owner stopped renewing its
//! lease (idle longer than `lease`: the owner died), else a new one. While it runs, the owner
//! *renews* its lease; a renewal that finds the job owned by another replica says so, and the
//! old owner stops. *Finishing* acknowledges the entry only if the replica still owns it, so a
//! job is completed once. Cancel requests are flags, and prompt changes a list, that any replica
//! sets and the owner polls.

use std::time::Duration;

use redis::{Commands, Value};

pub const STREAM: &str = "st2v:jobs";
pub const GROUP: &str = "replicas";
const ACTIVE: &str = "st2v:active";

/// Redis is unreachable or answered something unexpected.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis: unexpected reply to {command}: {reply}")]
    Reply {
        command: &'static str,
        reply: String,
    },
}

/// A job a replica took: its stream entry and job id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub entry: String,
    pub job: String,
    /// Taken over from a replica whose lease ran out (it continues from a checkpoint).
    pub reclaimed: bool,
}

/// One replica's handle on the shared queue.
pub struct ClusterQueue {
    client: redis::Client,
    consumer: String,
    lease: Duration,
    bound: usize,
}

/// Admits a job if fewer than ARGV[1] are active, and appends it to the stream.
const ADMIT: &str = r"
local active = redis.call('INCR', KEYS[1])
if active > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
redis.call('XADD', KEYS[2], '*', 'job', ARGV[2])
return 1";

/// Whether ARGV[3] owns entry ARGV[2]; if so, resets its idle time (a renewed lease) or, with
/// ARGV[4] = 'ack', acknowledges it and frees its place.
const OWNED: &str = r"
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #pending == 0 or pending[1][2] ~= ARGV[3] then
  return 0
end
if ARGV[4] == 'ack' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('DECR', KEYS[2])
else
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
end
return 1";

impl ClusterQueue {
    /// Connects as `consumer` (unique per replica) and creates the consumer group if needed.
    pub fn connect(
        url: &str,
        consumer: impl Into<String>,
        lease: Duration,
        bound: usize,
    ) -> Result<Self, ClusterError> {
        let queue = Self {
            client: redis::Client::open(url)?,
            consumer: consumer.into(),
            lease,
            bound,
        };
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg(&["CREATE", STREAM, GROUP, "0", "MKSTREAM"])
            .query(&mut queue.connection()?);
        match created {
            Err(err) if err.code() == Some("BUSYGROUP") => {}
            other => {
                other?;
            }
        }
        Ok(queue)
    }

    fn connection(&self) -> Result<redis::Connection, ClusterError> {
        Ok(self.client.get_connection()?)
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Jobs admitted and not finished the cluster holds at most.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// How long a job's owner may go without renewing before another replica takes it over.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Appends `job` if the cluster holds fewer than its bound of active jobs; `false`: full.
    pub fn admit(&self, job: &str) -> Result<bool, ClusterError> {
        let admitted: i64 = redis::cmd("EVAL")
            .arg(ADMIT)
            .arg(2)
            .arg(&[ACTIVE, STREAM])
            .arg(self.bound)
            .arg(job)
            .query(&mut self.connection()?)?;
        Ok(admitted == 1)
    }

    /// A job whose owner's lease ran out, else a new one, waiting up to `block` for one.
    pub fn take(&self, block: Duration) -> Result<Option<Claimed>, ClusterError> {
        let mut connection = self.connection()?;
        let reply: Value = redis::cmd("XAUTOCLAIM")
            .arg(&[STREAM, GROUP, &self.consumer])
            .arg(self.lease.as_millis() as u64)
            .arg(&["0-0", "COUNT", "1"])
            .query(&mut connection)?;
        let reclaimed = match &reply {
            Value::Array(parts) if parts.len() >= 2 => entries(&parts[1]).into_iter().next(),
            other => return Err(unexpected("XAUTOCLAIM", other)),
        };
        if let Some((entry, job)) = reclaimed {
            return Ok(Some(Claimed {
                entry,
                job,
                reclaimed: true,
            }));
        }
        let reply: Value = redis::cmd("XREADGROUP")
            .arg(&["GROUP", GROUP, &self.consumer, "COUNT", "1", "BLOCK"])
            .arg(block.as_millis().max(1) as u64)
            .arg(&["STREAMS", STREAM, ">"])
            .query(&mut connection)?;
        let fresh = match &reply {
            Value::Nil => None,
            Value::Array(streams) => streams.first().and_then(|stream| match stream {
                Value::Array(pair) if pair.len() == 2 => entries(&pair[1]).into_iter().next(),
                _ => None,
            }),
            // RESP3 answers a map of stream name to entries.
            Value::Map(streams) => streams
                .first()
                .and_then(|(_, list)| entries(list).into_iter().next()),
            other => return Err(unexpected("XREADGROUP", other)),
        };
        Ok(fresh.map(|(entry, job)| Claimed {
            entry,
            job,
            reclaimed: false,
        }))
    }

    /// Renews the lease on `claimed`; `false` when another replica owns it now (stop it).
    pub fn renew(&self, claimed: &Claimed) -> Result<bool, ClusterError> {
        self.owned(claimed, "renew")
    }

    /// Acknowledges a finished job and frees its place; `false` (nothing done) when another
    /// replica owns it now: that replica completes it.
    pub fn finish(&self, claimed: &Claimed) -> Result<bool, ClusterError> {
        self.owned(claimed, "ack")
    }

    fn owned(&self, claimed: &Claimed, action: &str) -> Result<bool, ClusterError> {
        let owned: i64 = redis::cmd("EVAL")
            .arg(OWNED)
            .arg(2)
            .arg(&[STREAM, ACTIVE])
            .arg(&[GROUP, &claimed.entry, &self.consumer, action])
            .query(&mut self.connection()?)?;
        Ok(owned == 1)
    }

    /// Asks whichever replica runs (or will take) `job` to cancel it.
    pub fn cancel(&self, job: &str) -> Result<(), ClusterError> {
        let _: () = self
            .connection()?
            .set_ex(cancel_key(job), 1, 7 * 24 * 3600)?;
        Ok(())
    }

    pub fn is_cancelled(&self, job: &str) -> Result<bool, ClusterError> {
        Ok(self.connection()?.exists(cancel_key(job))?)
    }

    /// Leaves a prompt change for whichever replica runs (or will take) `job`.
    pub fn steer(&self, job: &str, prompt: &str) -> Result<(), ClusterError> {
        let mut connection = self.connection()?;
        let _: () = connection.rpush(steer_key(job), prompt)?;
        let _: () = connection.expire(steer_key(job), 7 * 24 * 3600)?;
        Ok(())
    }

    /// The prompt changes left for `job` since the last call, oldest first.
    pub fn take_steers(&self, job: &str) -> Result<Vec<String>, ClusterError> {
        Ok(redis::cmd("EVAL")
            .arg(TAKE_ALL)
            .arg(1)
            .arg(steer_key(job))
            .query(&mut self.connection()?)?)
    }

    /// Jobs admitted and not finished, across the cluster.
    pub fn active(&self) -> Result<usize, ClusterError> {
        let active: Option<i64> = self.connection()?.get(ACTIVE)?;
        Ok(active.unwrap_or(0).max(0) as usize)
    }

    /// Jobs taken by a replica and not finished.
    pub fn pending(&self) -> Result<usize, ClusterError> {
        let reply: Value = redis::cmd("XPENDING")
            .arg(&[STREAM, GROUP])
            .query(&mut self.connection()?)?;
        match &reply {
            Value::Array(summary) => match summary.first() {
                Some(Value::Int(count)) => Ok((*count).max(0) as usize),
                _ => Err(unexpected("XPENDING", &reply)),
            },
            other => Err(unexpected("XPENDING", other)),
        }
    }
}

fn steer_key(job: &str) -> String {
    format!("st2v:steer:{job}")
}

/// Returns and removes every prompt change waiting in list KEYS[1].
const TAKE_ALL: &str = r"
local prompts = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return prompts";

fn cancel_key(job: &str) -> String {
    format!("st2v:cancel:{job}")
}

fn unexpected(command: &'static str, reply: &Value) -> ClusterError {
    ClusterError::Reply {
        command,
        reply: format!("{reply:?}"),
    }
}

/// (entry id, job id) of each `[id, [field, value, ...]]` in a list of stream entries.
fn entries(list: &Value) -> Vec<(String, String)> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item {
            Value::Array(pair) if pair.len() == 2 => {
                let entry = text(&pair[0])?;
                let Value::Array(fields) = &pair[1] else {
                    return None;
                };
                let job = fields
                    .chunks(2)
                    .find(|kv| text(&kv[0]).as_deref() == Some("job"))
                    .and_then(|kv| kv.get(1).and_then(text))?;
                Some((entry, job))
            }
            _ => None,
        })
        .collect()
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
