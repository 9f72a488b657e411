//! The Redis queue backend: any number of server replicas share one queue.
//!
//! Per project, under `<prefix>:p<id>`:
//! - `:meta`  hash: `overlap`, and `ready` once the project is loaded;
//! - `:avail` sorted set of items that can take another lease, scored so
//!   that started items (an answer or lease) sort before fresh ones, each
//!   group in item-id (import) order;
//! - `:exp`   sorted set of `item:user` leases scored by expiry;
//! - `:i:<item>` hash of the item: `u<user>` = lease expiry or `a` for an
//!   answer, `n` = answers needed when not the overlap, `c` = closed;
//! - `:gone`  for an hour after the project was unloaded (closed or
//!   completed): answer updates still on their way are dropped, not
//!   written to item keys that nothing would remove.
//!
//! Every script ends by recomputing the item's place in `:avail` from its
//! hash ([`REFRESH`]), and every write to an item hash merges rather than
//! overwrites (an answer `a` beats a lease, a lease never overwrites an
//! answer, a closed item takes no more marks). That makes a rebuild
//! commutative with live traffic: a replica can reload a flushed project
//! from the database while others keep recording answers, and the union
//! is right. It also lets two batches' updates land in either order.
//!
//! Redis holds only derived state. If a project's keys vanish (flush,
//! restart), `reserve` answers `NOTREADY`, the server answers 503 and one
//! replica (holding `:loading`) rebuilds the project from the database.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::{AnswerChange, ProjectSnapshot, QueueBackend, QueueError, QueueResult, Reservation};

/// Recomputes an item's membership of `:avail` from its hash; and the
/// two changes an answer makes, which [`ANSWERED`], [`SET_NEEDED`] and
/// [`RECORD`] share.
const REFRESH: &str = r#"
local FRESH = 1125899906842624
local function refresh(pp, item, overlap)
  local fields = redis.call('HGETALL', pp .. ':i:' .. item)
  local taken, needed, closed = 0, overlap, false
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f == 'n' then needed = tonumber(fields[i + 1])
    elseif f == 'c' then closed = true
    else taken = taken + 1 end
  end
  if closed or taken >= needed then
    redis.call('ZREM', pp .. ':avail', item)
  else
    local score = tonumber(item)
    if taken == 0 then score = score + FRESH end
    redis.call('ZADD', pp .. ':avail', score, item)
  end
end
local function overlap_of(pp)
  return tonumber(redis.call('HGET', pp .. ':meta', 'overlap'))
end
local function gone(pp)
  return redis.call('EXISTS', pp .. ':gone') == 1
end
local function answered(pp, item, user)
  if gone(pp) then return end
  redis.call('ZREM', pp .. ':exp', item .. ':' .. user)
  local h = pp .. ':i:' .. item
  -- A closure that arrived first (another batch's update, sent later but
  -- landed sooner) has already dropped the item's contributors.
  if redis.call('HEXISTS', h, 'c') == 1 then return end
  redis.call('HSET', h, 'u' .. user, 'a')
  local overlap = overlap_of(pp)
  if overlap then refresh(pp, item, overlap) end
end
local function set_needed(pp, item, needed)
  if gone(pp) then return end
  local h = pp .. ':i:' .. item
  if needed == 0 then
    -- A closed item never comes back; drop its contributors to save memory.
    local fields = redis.call('HKEYS', h)
    for _, f in ipairs(fields) do
      if string.sub(f, 1, 1) == 'u' then redis.call('ZREM', pp .. ':exp', item .. ':' .. string.sub(f, 2)) end
    end
    redis.call('DEL', h)
    redis.call('HSET', h, 'c', '1')
    redis.call('ZREM', pp .. ':avail', item)
  else
    redis.call('HSET', h, 'n', needed)
    local overlap = overlap_of(pp)
    if overlap then refresh(pp, item, overlap) end
  end
end
"#;

/// ARGV: prefix, user, count, now, until. Frees lapsed leases, then takes
/// up to `count` items the user has not touched, in `:avail` order. The
/// first page is small: a contributor has touched few of the items at
/// the head (under load a lease call tests about one item), and a page
/// of 200 cost Redis more to build than the rest of the script.
const RESERVE: &str = r#"
local pp, user, count, now, untils = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5]
if redis.call('HGET', pp .. ':meta', 'ready') ~= '1' then
  return redis.error_reply('NOTREADY project not loaded')
end
local overlap = overlap_of(pp)
local lapsed = redis.call('ZRANGEBYSCORE', pp .. ':exp', '-inf', now, 'LIMIT', 0, 500)
for _, m in ipairs(lapsed) do
  redis.call('ZREM', pp .. ':exp', m)
  local sep = string.find(m, ':', 1, true)
  local item, u = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
  local h = pp .. ':i:' .. item
  local v = redis.call('HGET', h, 'u' .. u)
  if v and v ~= 'a' and tonumber(v) <= tonumber(now) then
    redis.call('HDEL', h, 'u' .. u)
    refresh(pp, item, overlap)
  end
end
local field = 'u' .. user
local picked = {}
local offset = 0
local size = math.max(16, 2 * count)
while #picked < count and offset < 20000 do
  local page = redis.call('ZRANGE', pp .. ':avail', offset, offset + size - 1)
  if #page == 0 then break end
  for _, item in ipairs(page) do
    if redis.call('HEXISTS', pp .. ':i:' .. item, field) == 0 then
      picked[#picked + 1] = item
      if #picked == count then break end
    end
  end
  offset = offset + size
  size = math.min(4 * size, 1000)
end
for _, item in ipairs(picked) do
  redis.call('HSET', pp .. ':i:' .. item, field, untils)
  redis.call('ZADD', pp .. ':exp', untils, item .. ':' .. user)
  refresh(pp, item, overlap)
end
return picked
"#;

/// ARGV: prefix, item, user. A lease became an answer.
const ANSWERED: &str = r#"
answered(ARGV[1], ARGV[2], ARGV[3])
return 1
"#;

/// ARGV: prefix, item, user. A lease ended without an answer.
const RELEASE: &str = r#"
local pp, item, user = ARGV[1], ARGV[2], ARGV[3]
local h = pp .. ':i:' .. item
local v = redis.call('HGET', h, 'u' .. user)
if v and v ~= 'a' then
  redis.call('HDEL', h, 'u' .. user)
  redis.call('ZREM', pp .. ':exp', item .. ':' .. user)
  local overlap = overlap_of(pp)
  if overlap then refresh(pp, item, overlap) end
end
return 1
"#;

/// ARGV: prefix, item, user, until. Extends a lease the user holds.
const RENEW: &str = r#"
local pp, item, user, untils = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local h = pp .. ':i:' .. item
local v = redis.call('HGET', h, 'u' .. user)
if v and v ~= 'a' then
  redis.call('HSET', h, 'u' .. user, untils)
  redis.call('ZADD', pp .. ':exp', untils, item .. ':' .. user)
end
return 1
"#;

/// ARGV: prefix, item, needed (0 = closed).
const SET_NEEDED: &str = r#"
set_needed(ARGV[1], ARGV[2], tonumber(ARGV[3]))
return 1
"#;

/// ARGV, per answer: project prefix, item, user (empty: no answer to
/// mark), needed (empty: unchanged, 0: closed). What a batch of committed
/// answers changed, in one round trip.
const RECORD: &str = r#"
for i = 1, #ARGV, 4 do
  local pp, item, user, needed = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  if user ~= '' then answered(pp, item, user) end
  if needed ~= '' then set_needed(pp, item, tonumber(needed)) end
end
return 1
"#;

/// ARGV: prefix, overlap, then per item: id, needed, pair count, then
/// (user, value) pairs where value is an expiry or `a`. Merges, never
/// overwrites an answer, and refreshes each item.
const LOAD_CHUNK: &str = r#"
local pp, overlap = ARGV[1], tonumber(ARGV[2])
redis.call('HSET', pp .. ':meta', 'overlap', overlap)
local i = 3
while i <= #ARGV do
  local item, needed, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local h = pp .. ':i:' .. item
  if redis.call('HEXISTS', h, 'c') == 0 then
    if needed ~= overlap then redis.call('HSET', h, 'n', needed) end
    for k = 0, n - 1 do
      local user, value = ARGV[i + 3 + 2 * k], ARGV[i + 4 + 2 * k]
      if value == 'a' then
        redis.call('HSET', h, 'u' .. user, 'a')
        redis.call('ZREM', pp .. ':exp', item .. ':' .. user)
      elseif redis.call('HSETNX', h, 'u' .. user, value) == 1 then
        redis.call('ZADD', pp .. ':exp', value, item .. ':' .. user)
      end
    end
    refresh(pp, item, overlap)
  end
  i = i + 3 + 2 * n
end
return 1
"#;

pub struct RedisQueue {
    conn: ConnectionManager,
    prefix: String,
    reserve: Script,
    answered: Script,
    release: Script,
    renew: Script,
    set_needed: Script,
    record: Script,
    load_chunk: Script,
}

fn unavailable(e: redis::RedisError) -> QueueError {
    QueueError::Unavailable(format!("redis: {e}"))
}

fn script(body: &str) -> Script {
    Script::new(&format!("{REFRESH}\n{body}"))
}

impl RedisQueue {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<RedisQueue> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = client.get_connection_manager_with_config(config).await?;
        Ok(RedisQueue {
            conn,
            prefix: prefix.to_owned(),
            reserve: script(RESERVE),
            answered: script(ANSWERED),
            release: script(RELEASE),
            renew: script(RENEW),
            set_needed: script(SET_NEEDED),
            record: script(RECORD),
            load_chunk: script(LOAD_CHUNK),
        })
    }

    fn pp(&self, project: i64) -> String {
        format!("{}:p{project}", self.prefix)
    }

    async fn run(&self, s: &Script, args: &[String]) -> QueueResult<()> {
        let mut inv = s.prepare_invoke();
        for a in args {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        inv.invoke_async::<i64>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// Deletes every key of this queue's prefix: what a Redis flush does,
    /// without disturbing other users of the same Redis (tests).
    pub async fn flush_prefix(&self) -> anyhow::Result<u64> {
        let mut conn = self.conn.clone();
        Ok(delete_matching(&mut conn, &format!("{}:*", self.prefix)).await?)
    }

    /// Every key of this queue's prefix.
    pub async fn keys(&self) -> anyhow::Result<Vec<String>> {
        let mut conn = self.conn.clone();
        Ok(scan(&mut conn, &format!("{}:*", self.prefix)).await?)
    }
}

/// Every key matching `pattern`. SCAN walks the whole keyspace whatever
/// the pattern: a page of 1,000 keys per call rather than the default 10.
async fn scan(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await?;
        out.extend(page);
        if next == 0 {
            return Ok(out);
        }
        cursor = next;
    }
}

/// Deletes every key matching `pattern`, 500 to a command. Returns how
/// many there were.
async fn delete_matching(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<u64> {
    let keys = scan(conn, pattern).await?;
    for chunk in keys.chunks(500) {
        let _: () = conn.unlink(chunk).await?;
    }
    Ok(keys.len() as u64)
}

/// Items per load script call: big enough to load a million items in a
/// few hundred round trips, small enough not to stall Redis.
const LOAD_CHUNK_ITEMS: usize = 2000;

#[async_trait::async_trait]
impl QueueBackend for RedisQueue {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn health(&self) -> QueueResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    async fn is_loaded(&self, project: i64) -> QueueResult<bool> {
        let mut conn = self.conn.clone();
        let ready: Option<String> = conn
            .hget(format!("{}:meta", self.pp(project)), "ready")
            .await
            .map_err(unavailable)?;
        Ok(ready.as_deref() == Some("1"))
    }

    async fn try_begin_load(&self, project: i64) -> QueueResult<bool> {
        let mut conn = self.conn.clone();
        let got: Option<String> = redis::cmd("SET")
            .arg(format!("{}:loading", self.pp(project)))
            .arg("1")
            .arg("NX")
            .arg("PX")
            .arg(120_000)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(got.is_some())
    }

    async fn load(&self, snapshot: ProjectSnapshot) -> QueueResult<()> {
        let pp = self.pp(snapshot.project_id);
        let mut conn = self.conn.clone();
        let _: () = conn.del(format!("{pp}:gone")).await.map_err(unavailable)?;
        for chunk in snapshot.items.chunks(LOAD_CHUNK_ITEMS) {
            let mut args = vec![pp.clone(), snapshot.overlap.to_string()];
            for it in chunk {
                args.push(it.item_id.to_string());
                args.push(it.needed.to_string());
                args.push((it.answered_by.len() + it.holders.len()).to_string());
                for u in &it.answered_by {
                    args.push(u.to_string());
                    args.push("a".into());
                }
                for (u, until) in &it.holders {
                    args.push(u.to_string());
                    args.push(until.to_string());
                }
            }
            self.run(&self.load_chunk, &args).await?;
        }
        let _: () = conn
            .hset(format!("{pp}:meta"), "ready", "1")
            .await
            .map_err(unavailable)?;
        let _: () = conn
            .del(format!("{pp}:loading"))
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn reload(&self, snapshot: ProjectSnapshot) -> QueueResult<()> {
        // Leasing stops (NOTREADY, a 503) while the project is rewritten.
        let project = snapshot.project_id;
        let pp = self.pp(project);
        let mut conn = self.conn.clone();
        let _: () = conn.del(format!("{pp}:meta")).await.map_err(unavailable)?;
        delete_matching(&mut conn, &format!("{pp}:i:*"))
            .await
            .map_err(unavailable)?;
        let _: () = conn
            .del(&[format!("{pp}:avail"), format!("{pp}:exp")])
            .await
            .map_err(unavailable)?;
        self.load(snapshot).await
    }

    async fn unload(&self, project: i64) -> QueueResult<()> {
        // Dropping the ready flag stops leasing at once. The tombstone
        // turns away the answer updates still on their way (another
        // batch's, another replica's), which would otherwise recreate
        // item keys nobody removes; it outlives any of them.
        let pp = self.pp(project);
        let mut conn = self.conn.clone();
        let _: () = redis::pipe()
            .atomic()
            .del(&[
                format!("{pp}:meta"),
                format!("{pp}:avail"),
                format!("{pp}:exp"),
            ])
            .set_ex(format!("{pp}:gone"), "1", 3_600)
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        // One key per item: a million-item bounty's take a while, and
        // nothing waits for them.
        tokio::spawn(async move {
            if let Err(e) = delete_matching(&mut conn, &format!("{pp}:i:*")).await {
                tracing::warn!(error = %e, prefix = pp, "removing an unloaded project's items from Redis failed");
            }
        });
        Ok(())
    }

    async fn reserve(
        &self,
        project: i64,
        user: i64,
        count: usize,
        now: i64,
        until: i64,
    ) -> QueueResult<Vec<Reservation>> {
        let mut conn = self.conn.clone();
        let picked: Result<Vec<i64>, _> = self
            .reserve
            .arg(self.pp(project))
            .arg(user)
            .arg(count)
            .arg(now)
            .arg(until)
            .invoke_async(&mut conn)
            .await;
        match picked {
            Ok(items) => Ok(items
                .into_iter()
                .map(|item_id| Reservation { item_id })
                .collect()),
            Err(e) if e.code() == Some("NOTREADY") => Err(QueueError::NotLoaded(project)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn release(&self, project: i64, item: i64, user: i64) -> QueueResult<()> {
        self.run(
            &self.release,
            &[self.pp(project), item.to_string(), user.to_string()],
        )
        .await
    }

    async fn renew(&self, project: i64, item: i64, user: i64, until: i64) -> QueueResult<()> {
        self.run(
            &self.renew,
            &[
                self.pp(project),
                item.to_string(),
                user.to_string(),
                until.to_string(),
            ],
        )
        .await
    }

    async fn answered(&self, project: i64, item: i64, user: i64) -> QueueResult<()> {
        self.run(
            &self.answered,
            &[self.pp(project), item.to_string(), user.to_string()],
        )
        .await
    }

    async fn set_needed(&self, project: i64, item: i64, needed: Option<u32>) -> QueueResult<()> {
        let n = needed.unwrap_or(0).to_string();
        self.run(&self.set_needed, &[self.pp(project), item.to_string(), n])
            .await
    }

    async fn record(&self, changes: &[AnswerChange]) -> QueueResult<()> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut args = Vec::with_capacity(4 * changes.len());
        for c in changes {
            args.extend([
                self.pp(c.project),
                c.item.to_string(),
                c.answered_by.map(|u| u.to_string()).unwrap_or_default(),
                c.needed
                    .map(|n| n.unwrap_or(0).to_string())
                    .unwrap_or_default(),
            ]);
        }
        self.run(&self.record, &args).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{ItemSnapshot, record_step_by_step};

    /// A queue's keys and their contents, its prefix left out, sorted.
    async fn dump(q: &RedisQueue) -> Vec<(String, Vec<String>)> {
        let mut conn = q.conn.clone();
        let mut out = Vec::new();
        for key in q.keys().await.unwrap() {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            let mut contents: Vec<String> = match kind.as_str() {
                "hash" => conn
                    .hgetall::<_, Vec<(String, String)>>(&key)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(f, v)| format!("{f}={v}"))
                    .collect(),
                "zset" => conn
                    .zrange_withscores::<_, Vec<(String, f64)>>(&key, 0, -1)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(m, s)| format!("{m}@{s}"))
                    .collect(),
                _ => vec![conn.get(&key).await.unwrap()],
            };
            contents.sort();
            out.push((key[q.prefix.len()..].to_owned(), contents));
        }
        out.sort();
        out
    }

    /// Runs `check` on a current-thread runtime with two fresh queues, each
    /// holding project 1 (overlap 2, items 1 to 3) and the given
    /// `(user, item)` leases, taken in that order; then flushes both. Without
    /// `REDIS_URL` it does nothing, unless services are required.
    fn two_queues(leases: &[(i64, i64)], check: impl AsyncFnOnce(&RedisQueue, &RedisQueue)) {
        let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) else {
            assert!(
                !crate::testing::require_services(),
                "this test needs REDIS_URL when SAHEL_TEST_REQUIRE_SERVICES=1"
            );
            return;
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut queues = Vec::new();
            for _ in 0..2 {
                let prefix = format!("sahel-test-{}", crate::accounts::random_hex(6));
                let q = RedisQueue::connect(&url, &prefix).await.unwrap();
                q.load(ProjectSnapshot {
                    project_id: 1,
                    overlap: 2,
                    items: (1..=3)
                        .map(|item_id| ItemSnapshot {
                            item_id,
                            needed: 2,
                            answered_by: vec![],
                            holders: vec![],
                        })
                        .collect(),
                })
                .await
                .unwrap();
                for &(user, item) in leases {
                    let got = q.reserve(1, user, 1, 0, UNTIL).await.unwrap();
                    assert_eq!(got.iter().map(|r| r.item_id).collect::<Vec<_>>(), [item]);
                }
                queues.push(q);
            }
            check(&queues[0], &queues[1]).await;
            for q in &queues {
                q.flush_prefix().await.unwrap();
            }
        });
    }

    const UNTIL: i64 = 1_000_000;

    fn change(item: i64, answered_by: Option<i64>, needed: Option<Option<u32>>) -> AnswerChange {
        AnswerChange {
            project: 1,
            item,
            answered_by,
            needed,
        }
    }

    /// Both queues hold the same keys, and item `id`'s hash holds `fields`;
    /// then both hand a new contributor `next`.
    async fn same_state(a: &RedisQueue, b: &RedisQueue, items: &[(&str, &[&str])], next: &[i64]) {
        let state = dump(a).await;
        assert_eq!(state, dump(b).await);
        for (id, fields) in items {
            let found = state
                .iter()
                .find(|(k, _)| k == &format!(":p1:i:{id}"))
                .map(|(_, v)| v.clone());
            assert_eq!(found, Some(fields.iter().map(|f| f.to_string()).collect()));
        }
        for q in [a, b] {
            let got = q.reserve(1, 99, 5, 0, UNTIL).await.unwrap();
            assert_eq!(got.iter().map(|r| r.item_id).collect::<Vec<_>>(), next);
        }
    }

    /// One script for a batch of answers leaves Redis as the calls one by
    /// one do: answers, a closure, a gold item's new need, in one batch.
    #[test]
    fn recording_a_batch_at_once_leaves_what_recording_it_step_by_step_does() {
        two_queues(&[(10, 1), (11, 1), (12, 2)], async |at_once, by_steps| {
            let changes = [
                change(1, Some(10), None),
                change(1, Some(11), Some(None)),
                change(2, None, Some(Some(3))),
                change(2, Some(12), None),
            ];
            at_once.record(&changes).await.unwrap();
            record_step_by_step(by_steps, &changes).await.unwrap();
            // Item 2 was started and still needs answers: it comes first.
            let items: &[(&str, &[&str])] = &[("1", &["c=1"]), ("2", &["n=3", "u12=a"])];
            same_state(at_once, by_steps, items, &[2, 3]).await;
        });
    }

    /// Two batches' updates may reach Redis in either order (each is sent
    /// from a task of its own, and replicas send theirs independently):
    /// either order leaves the same keys and hands out the same items.
    #[test]
    fn batches_recorded_in_either_order_leave_the_same_queue() {
        let leases = [(10, 1), (11, 1), (12, 2), (13, 2)];
        two_queues(&leases, async |in_order, reversed| {
            // The first batch answers both items; the second closes item 1
            // and, on a tie, asks a third answer of item 2.
            let first = [change(1, Some(10), None), change(2, Some(12), None)];
            let second = [
                change(1, Some(11), Some(None)),
                change(2, Some(13), Some(Some(3))),
            ];
            in_order.record(&first).await.unwrap();
            in_order.record(&second).await.unwrap();
            reversed.record(&second).await.unwrap();
            reversed.record(&first).await.unwrap();
            // Item 2 still needs an answer and was started: it comes
            // before the fresh item 3; the closed item 1 never comes.
            let items: &[(&str, &[&str])] = &[("1", &["c=1"]), ("2", &["n=3", "u12=a", "u13=a"])];
            same_state(in_order, reversed, items, &[2, 3]).await;
        });
    }
}
