//! Leases this process handed out, kept until they are answered, so that
//! the answer needs no read of its lease and item.
//!
//! Only what never changes is trusted: a lease's id, owner, project, item
//! and start, and the item's content. Its status and expiry do change (an
//! answer through another replica, a release, a renewal, the buyer closing
//! the bounty), so the write that uses a lease re-checks both in its
//! conditional UPDATE, and a lease that looks expired here is read again
//! (another replica may have renewed it). A miss, on a replica that did not
//! hand the lease out, after a restart or an eviction, is a read, as before.
//!
//! Bounded in bytes: leases nobody answers leave when they expire or when
//! room is needed, oldest first (lease ids grow with time).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::entity::lease;
use crate::projects::entity::item;

/// What an entry costs beyond its item's content.
const ENTRY_OVERHEAD: usize = 256;

pub struct HeldLeases {
    inner: Mutex<Inner>,
    max_bytes: usize,
}

#[derive(Default)]
struct Inner {
    by_id: BTreeMap<i64, (lease::Model, item::Model)>,
    bytes: usize,
}

fn cost(it: &item::Model) -> usize {
    ENTRY_OVERHEAD + it.data.len()
}

impl Inner {
    fn remove(&mut self, lease_id: i64) -> Option<(lease::Model, item::Model)> {
        let (l, it) = self.by_id.remove(&lease_id)?;
        self.bytes -= cost(&it);
        Some((l, it))
    }
}

impl HeldLeases {
    pub fn new(max_bytes: usize) -> Self {
        HeldLeases {
            inner: Mutex::new(Inner::default()),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps leases just committed, with their items; drops what expired
    /// by `now` and, past the byte bound, the oldest.
    pub fn keep(&self, now: i64, leases: impl IntoIterator<Item = (lease::Model, item::Model)>) {
        let mut g = self.lock();
        let Inner { by_id, bytes } = &mut *g;
        for (l, it) in leases {
            let c = cost(&it);
            if c > self.max_bytes {
                continue;
            }
            *bytes += c;
            if let Some((_, old)) = by_id.insert(l.id, (l, it)) {
                *bytes -= cost(&old);
            }
        }
        while let Some(first) = by_id.first_entry() {
            let (l, it) = first.get();
            if l.expires_at >= now && *bytes <= self.max_bytes {
                break;
            }
            *bytes -= cost(it);
            first.remove();
        }
    }

    /// Takes out a lease of `user`'s that an answer is about to use, if it
    /// has not expired by `now` (then it is dropped: another replica may
    /// have renewed it, so it must be read). Someone else's stays.
    pub fn take(&self, lease_id: i64, user: i64, now: i64) -> Option<(lease::Model, item::Model)> {
        let mut g = self.lock();
        if g.by_id.get(&lease_id)?.0.user_id != user {
            return None;
        }
        let (l, it) = g.remove(lease_id)?;
        (l.expires_at >= now).then_some((l, it))
    }

    /// Forgets a lease (released or renewed here).
    pub fn forget(&self, lease_id: i64) {
        self.lock().remove(lease_id);
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, expires_at: i64, data: &str) -> (lease::Model, item::Model) {
        (
            lease::Model {
                id,
                project_id: 1,
                item_id: id,
                user_id: 7,
                status: "open".into(),
                expires_at,
                created_at: 0,
            },
            item::Model {
                id,
                project_id: 1,
                seq: id,
                data: data.into(),
                status: "open".into(),
                needed: 3,
                answers_count: 0,
                result: None,
                created_at: 0,
                resolved_at: None,
            },
        )
    }

    #[test]
    fn a_taken_lease_is_gone_and_its_bytes_freed() {
        let h = HeldLeases::new(10_000);
        h.keep(0, [entry(1, 100, "abc"), entry(2, 100, "de")]);
        // Someone else's is neither given nor dropped.
        assert!(h.take(1, 8, 0).is_none());
        let (l, it) = h.take(1, 7, 0).expect("held");
        assert_eq!((l.id, it.data.as_str()), (1, "abc"));
        assert!(h.take(1, 7, 0).is_none());
        assert_eq!(h.len(), 1);
        assert_eq!(h.lock().bytes, ENTRY_OVERHEAD + 2);
        // One that looks expired is dropped, to be read again.
        assert!(h.take(2, 7, 101).is_none());
        assert!(h.is_empty());
        assert_eq!(h.lock().bytes, 0);
    }

    #[test]
    fn expired_leases_and_the_oldest_past_the_bound_leave() {
        let h = HeldLeases::new(3 * ENTRY_OVERHEAD + 30);
        h.keep(
            0,
            [
                entry(1, 50, &"x".repeat(10)),
                entry(2, 500, &"y".repeat(10)),
            ],
        );
        // Lease 1 expired by 100: dropped on the next keep.
        h.keep(100, [entry(3, 500, &"z".repeat(10))]);
        assert!(h.take(1, 7, 0).is_none());
        assert_eq!(h.len(), 2);
        // Over the bound: the oldest (2) makes room.
        h.keep(100, [entry(4, 500, &"w".repeat(10)), entry(5, 500, "v")]);
        assert!(h.take(2, 7, 100).is_none());
        assert!(h.lock().bytes <= 3 * ENTRY_OVERHEAD + 30);
        assert!(h.take(5, 7, 100).is_some());
        // An item bigger than the whole bound is never kept.
        h.keep(100, [entry(6, 500, &"q".repeat(10_000))]);
        assert!(h.take(6, 7, 100).is_none());
    }
}
