//! The in-process queue backend: one server, state in memory, rebuilt from
//! the database at start-up.
//!
//! Per project, items sit in a vector in import order, and the items that
//! can take another lease are kept in an ordered set keyed so that started
//! items (some answer or lease already) come before fresh ones, then by
//! import order. A lease request walks that set from the front and takes
//! the first items the contributor has not touched, so the cost is a few
//! set operations, independent of how many items a project holds.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::{ProjectSnapshot, QueueBackend, QueueResult, Reservation};

/// A contributor's mark on an item: an open lease until `until`, or an
/// answer (`until == ANSWERED`).
#[derive(Clone, Copy, Debug)]
struct Touch {
    user: i64,
    until: i64,
}

const ANSWERED: i64 = i64::MAX;

#[derive(Debug)]
struct Slot {
    item_id: i64,
    needed: u32,
    open: bool,
    touches: Vec<Touch>,
}

impl Slot {
    fn taken(&self) -> u32 {
        self.touches.len() as u32
    }

    fn available(&self) -> bool {
        self.open && self.taken() < self.needed
    }

    fn key(&self, idx: u32) -> (bool, u32) {
        // `false` sorts first: items with any answer or lease lead.
        (self.touches.is_empty(), idx)
    }
}

#[derive(Default)]
struct ProjectQueue {
    slots: Vec<Slot>,
    available: BTreeSet<(bool, u32)>,
    /// (expiry, slot, user) of every open lease, to free them lazily.
    expiries: BTreeSet<(i64, u32, i64)>,
}

impl ProjectQueue {
    fn from_snapshot(snap: ProjectSnapshot) -> ProjectQueue {
        let mut q = ProjectQueue::default();
        let mut items = snap.items;
        items.sort_by_key(|i| i.item_id);
        for (idx, it) in items.into_iter().enumerate() {
            let idx = idx as u32;
            let mut touches: Vec<Touch> = it
                .answered_by
                .iter()
                .map(|u| Touch {
                    user: *u,
                    until: ANSWERED,
                })
                .collect();
            for (user, until) in &it.holders {
                touches.push(Touch {
                    user: *user,
                    until: *until,
                });
                q.expiries.insert((*until, idx, *user));
            }
            let slot = Slot {
                item_id: it.item_id,
                needed: it.needed,
                open: true,
                touches,
            };
            if slot.available() {
                q.available.insert(slot.key(idx));
            }
            q.slots.push(slot);
        }
        q
    }

    fn find(&self, item_id: i64) -> Option<u32> {
        self.slots
            .binary_search_by_key(&item_id, |s| s.item_id)
            .ok()
            .map(|i| i as u32)
    }

    /// Re-files a slot in the available set after its state changed.
    fn update<F: FnOnce(&mut Slot)>(&mut self, idx: u32, f: F) {
        let slot = &mut self.slots[idx as usize];
        let before = slot.key(idx);
        let was = slot.available();
        f(slot);
        let after = slot.key(idx);
        let now = slot.available();
        if was {
            self.available.remove(&before);
        }
        if now {
            self.available.insert(after);
        }
    }

    fn expire(&mut self, now: i64) {
        while let Some(&(until, idx, user)) = self.expiries.first() {
            if until > now {
                break;
            }
            self.expiries.pop_first();
            self.update(idx, |s| {
                s.touches.retain(|t| !(t.user == user && t.until == until))
            });
        }
    }
}

#[derive(Default)]
pub struct MemoryQueue {
    projects: Mutex<HashMap<i64, ProjectQueue>>,
}

impl MemoryQueue {
    pub fn new() -> MemoryQueue {
        MemoryQueue::default()
    }

    fn with<R>(&self, project: i64, f: impl FnOnce(&mut ProjectQueue) -> R) -> Option<R> {
        let mut all = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        all.get_mut(&project).map(f)
    }
}

#[async_trait::async_trait]
impl QueueBackend for MemoryQueue {
    fn name(&self) -> &'static str {
        "in-process"
    }

    async fn health(&self) -> QueueResult<()> {
        Ok(())
    }

    async fn is_loaded(&self, project: i64) -> QueueResult<bool> {
        Ok(self
            .projects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&project))
    }

    async fn try_begin_load(&self, _project: i64) -> QueueResult<bool> {
        Ok(true)
    }

    async fn load(&self, snapshot: ProjectSnapshot) -> QueueResult<()> {
        let id = snapshot.project_id;
        let q = ProjectQueue::from_snapshot(snapshot);
        self.projects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, q);
        Ok(())
    }

    async fn reload(&self, snapshot: ProjectSnapshot) -> QueueResult<()> {
        self.load(snapshot).await
    }

    async fn unload(&self, project: i64) -> QueueResult<()> {
        self.projects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&project);
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
        let got = self.with(project, |q| {
            q.expire(now);
            let mut picked = Vec::with_capacity(count);
            for &(_, idx) in &q.available {
                if picked.len() == count {
                    break;
                }
                if q.slots[idx as usize].touches.iter().all(|t| t.user != user) {
                    picked.push(idx);
                }
            }
            picked
                .into_iter()
                .map(|idx| {
                    q.update(idx, |s| s.touches.push(Touch { user, until }));
                    q.expiries.insert((until, idx, user));
                    Reservation {
                        item_id: q.slots[idx as usize].item_id,
                    }
                })
                .collect()
        });
        Ok(got.unwrap_or_default())
    }

    async fn release(&self, project: i64, item: i64, user: i64) -> QueueResult<()> {
        self.with(project, |q| {
            if let Some(idx) = q.find(item) {
                let mut freed = None;
                q.update(idx, |s| {
                    if let Some(pos) = s
                        .touches
                        .iter()
                        .position(|t| t.user == user && t.until != ANSWERED)
                    {
                        freed = Some(s.touches.remove(pos).until);
                    }
                });
                if let Some(until) = freed {
                    q.expiries.remove(&(until, idx, user));
                }
            }
        });
        Ok(())
    }

    async fn renew(&self, project: i64, item: i64, user: i64, until: i64) -> QueueResult<()> {
        self.with(project, |q| {
            if let Some(idx) = q.find(item) {
                let mut old = None;
                if let Some(t) = q.slots[idx as usize]
                    .touches
                    .iter_mut()
                    .find(|t| t.user == user && t.until != ANSWERED)
                {
                    old = Some(t.until);
                    t.until = until;
                }
                if let Some(old) = old {
                    q.expiries.remove(&(old, idx, user));
                    q.expiries.insert((until, idx, user));
                }
            }
        });
        Ok(())
    }

    async fn answered(&self, project: i64, item: i64, user: i64) -> QueueResult<()> {
        self.with(project, |q| {
            if let Some(idx) = q.find(item) {
                let mut held = None;
                q.update(idx, |s| {
                    match s.touches.iter_mut().find(|t| t.user == user) {
                        Some(t) => {
                            if t.until != ANSWERED {
                                held = Some(t.until);
                            }
                            t.until = ANSWERED;
                        }
                        // The lease had already been freed here (expired just as
                        // the answer landed): the answer still counts.
                        None => s.touches.push(Touch {
                            user,
                            until: ANSWERED,
                        }),
                    }
                });
                if let Some(until) = held {
                    q.expiries.remove(&(until, idx, user));
                }
            }
        });
        Ok(())
    }

    async fn set_needed(&self, project: i64, item: i64, needed: Option<u32>) -> QueueResult<()> {
        self.with(project, |q| {
            if let Some(idx) = q.find(item) {
                q.update(idx, |s| match needed {
                    Some(n) => s.needed = n,
                    None => s.open = false,
                });
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ItemSnapshot;

    fn snap(n: i64, needed: u32) -> ProjectSnapshot {
        ProjectSnapshot {
            project_id: 1,
            overlap: needed,
            items: (1..=n)
                .map(|id| ItemSnapshot {
                    item_id: id,
                    needed,
                    answered_by: vec![],
                    holders: vec![],
                })
                .collect(),
        }
    }

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn ids(r: Vec<Reservation>) -> Vec<i64> {
        r.into_iter().map(|r| r.item_id).collect()
    }

    #[test]
    fn started_items_are_finished_before_fresh_ones_and_never_twice_per_user() {
        block(async {
            let q = MemoryQueue::new();
            q.load(snap(5, 2)).await.unwrap();
            assert_eq!(ids(q.reserve(1, 10, 1, 0, 100).await.unwrap()), vec![1]);
            // User 11 gets item 1 too: it is started and needs another answer.
            assert_eq!(ids(q.reserve(1, 11, 1, 0, 100).await.unwrap()), vec![1]);
            // Item 1 is full; user 10 cannot take it again anyway.
            assert_eq!(ids(q.reserve(1, 10, 2, 0, 100).await.unwrap()), vec![2, 3]);
            assert_eq!(
                ids(q.reserve(1, 12, 3, 0, 100).await.unwrap()),
                vec![2, 3, 4]
            );
        });
    }

    #[test]
    fn an_expired_lease_frees_its_slot_at_the_next_request() {
        block(async {
            let q = MemoryQueue::new();
            q.load(snap(1, 1)).await.unwrap();
            assert_eq!(ids(q.reserve(1, 10, 1, 0, 100).await.unwrap()), vec![1]);
            assert!(q.reserve(1, 11, 1, 50, 150).await.unwrap().is_empty());
            assert_eq!(ids(q.reserve(1, 11, 1, 100, 200).await.unwrap()), vec![1]);
            // The first holder's late answer still lands without corrupting state.
            q.answered(1, 1, 10).await.unwrap();
            q.answered(1, 1, 11).await.unwrap();
            assert!(q.reserve(1, 12, 1, 300, 400).await.unwrap().is_empty());
        });
    }

    #[test]
    fn answers_release_and_more_needed_move_items_in_and_out() {
        block(async {
            let q = MemoryQueue::new();
            q.load(snap(2, 1)).await.unwrap();
            assert_eq!(ids(q.reserve(1, 10, 1, 0, 100).await.unwrap()), vec![1]);
            q.release(1, 1, 10).await.unwrap();
            assert_eq!(ids(q.reserve(1, 11, 1, 0, 100).await.unwrap()), vec![1]);
            q.answered(1, 1, 11).await.unwrap();
            q.set_needed(1, 1, Some(2)).await.unwrap();
            assert_eq!(ids(q.reserve(1, 10, 1, 0, 100).await.unwrap()), vec![1]);
            assert!(
                q.reserve(1, 11, 1, 0, 100)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.item_id == 2)
            );
            q.set_needed(1, 2, None).await.unwrap();
            assert!(q.reserve(1, 12, 5, 0, 100).await.unwrap().is_empty());
        });
    }

    #[test]
    fn a_snapshot_restores_answers_and_live_leases() {
        block(async {
            let q = MemoryQueue::new();
            let s = ProjectSnapshot {
                project_id: 1,
                overlap: 2,
                items: vec![
                    ItemSnapshot {
                        item_id: 7,
                        needed: 2,
                        answered_by: vec![10],
                        holders: vec![(11, 500)],
                    },
                    ItemSnapshot {
                        item_id: 8,
                        needed: 2,
                        answered_by: vec![10],
                        holders: vec![],
                    },
                ],
            };
            q.load(s).await.unwrap();
            assert_eq!(ids(q.reserve(1, 12, 5, 0, 1000).await.unwrap()), vec![8]);
            assert_eq!(ids(q.reserve(1, 13, 5, 600, 700).await.unwrap()), vec![7]);
        });
    }
}
