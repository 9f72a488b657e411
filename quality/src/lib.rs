//! Sahel's quality engine, as plain functions over plain data: no
//! database, no async, no I/O beyond the readers and writers handed in.
//! The server and the `sahel aggregate` command both call it, so a buyer's
//! offline aggregation and the server's decisions are the same code.
//!
//! - [`em`]: Dawid-Skene aggregation by EM, seeded by gold.
//! - [`multi_label`]: multi-label answers as one binary EM per class.
//! - [`agreement`]: Krippendorff's alpha, confusion, per-worker agreement.
//! - [`reliability`]: Beta posterior accuracy and the suspension rule.
//! - [`signals`]: too-fast, one-class and collusion signals.
//! - [`sim`]: a seeded crowd simulator, the evaluation.
//! - [`offline`]: CSV in, CSV out, for `sahel aggregate`.

pub mod aggregate;
pub mod agreement;
pub mod em;
pub mod multi_label;
pub mod offline;
pub mod reliability;
pub mod signals;
pub mod sim;

use std::collections::HashMap;
use std::hash::Hash;

/// Dense ids for arbitrary keys (item names, user ids, class names), in
/// order of first appearance.
#[derive(Clone, Debug)]
pub struct Interner<K> {
    ids: HashMap<K, u32>,
    keys: Vec<K>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner {
            ids: HashMap::new(),
            keys: Vec::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The key's id, assigning the next one on first sight.
    pub fn id(&mut self, key: &K) -> u32 {
        if let Some(id) = self.ids.get(key) {
            return *id;
        }
        let id = self.keys.len() as u32;
        self.ids.insert(key.clone(), id);
        self.keys.push(key.clone());
        id
    }

    pub fn get(&self, key: &K) -> Option<u32> {
        self.ids.get(key).copied()
    }

    pub fn key(&self, id: u32) -> &K {
        &self.keys[id as usize]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn keys(&self) -> &[K] {
        &self.keys
    }
}
