//! Aggregation over named things: items, workers and classes by key
//! instead of dense index. The server (keys are database ids) and the
//! offline command (keys are CSV strings) both go through [`fit`], so
//! both get the same labels from the same answers.

use std::hash::Hash;

use crate::Interner;
use crate::em::{self, Answer, Dataset, EmConfig, Estimate};
use crate::multi_label::{self, MultiEstimate, SetAnswer};

/// A fitted aggregation with its keys.
#[derive(Clone, Debug)]
pub struct Fitted<I, W> {
    pub items: Interner<I>,
    pub workers: Interner<W>,
    pub data: Dataset,
    /// Gold as `(item index, class)`.
    pub gold: Vec<(u32, u16)>,
    pub estimate: Estimate,
}

impl<I: Hash + Eq + Clone, W: Hash + Eq + Clone> Fitted<I, W> {
    /// The label (class index) and confidence of an item, if it is known.
    pub fn label(&self, item: &I) -> Option<(u16, f64)> {
        self.items
            .get(item)
            .map(|i| self.estimate.label(i as usize))
    }

    /// Whether an item was gold.
    pub fn is_gold(&self, item: u32) -> bool {
        self.gold.iter().any(|(i, _)| *i == item)
    }
}

/// Fits EM to `answers` (`item, worker, class index`) with `gold`
/// (`item, class index`) clamped. Items and workers get dense indices in
/// order of first appearance (answers first, then gold-only items).
pub fn fit<I, W>(
    classes: usize,
    answers: impl IntoIterator<Item = (I, W, u16)>,
    gold: impl IntoIterator<Item = (I, u16)>,
    cfg: &EmConfig,
) -> Result<Fitted<I, W>, String>
where
    I: Hash + Eq + Clone,
    W: Hash + Eq + Clone,
{
    let mut items = Interner::new();
    let mut workers = Interner::new();
    let mut rows = Vec::new();
    for (i, w, label) in answers {
        rows.push(Answer {
            item: items.id(&i),
            worker: workers.id(&w),
            label,
        });
    }
    let gold: Vec<(u32, u16)> = gold.into_iter().map(|(i, k)| (items.id(&i), k)).collect();
    let data = Dataset::new(classes, items.len(), workers.len(), &rows)?;
    let estimate = em::estimate(&data, &gold, cfg);
    Ok(Fitted {
        items,
        workers,
        data,
        gold,
        estimate,
    })
}

/// A fitted multi-label aggregation with its keys.
#[derive(Clone, Debug)]
pub struct FittedSets<I, W> {
    pub items: Interner<I>,
    pub workers: Interner<W>,
    pub estimate: MultiEstimate,
}

impl<I: Hash + Eq + Clone, W: Hash + Eq + Clone> FittedSets<I, W> {
    /// The label set (class indices) and confidence of an item, if it is
    /// known.
    pub fn labels(&self, item: &I) -> Option<(Vec<u16>, f64)> {
        self.items
            .get(item)
            .map(|i| self.estimate.labels(i as usize))
    }
}

/// [`fit`] for multi-label answers (`item, worker, class indices`) and
/// gold sets: one binary EM per class ([`crate::multi_label`]).
pub fn fit_sets<I, W>(
    classes: usize,
    answers: impl IntoIterator<Item = (I, W, Vec<u16>)>,
    gold: impl IntoIterator<Item = (I, Vec<u16>)>,
    cfg: &EmConfig,
) -> Result<FittedSets<I, W>, String>
where
    I: Hash + Eq + Clone,
    W: Hash + Eq + Clone,
{
    let mut items = Interner::new();
    let mut workers = Interner::new();
    let mut rows = Vec::new();
    for (i, w, labels) in answers {
        rows.push(SetAnswer {
            item: items.id(&i),
            worker: workers.id(&w),
            labels,
        });
    }
    let gold: Vec<(u32, Vec<u16>)> = gold.into_iter().map(|(i, s)| (items.id(&i), s)).collect();
    let estimate = multi_label::estimate(classes, items.len(), workers.len(), &rows, &gold, cfg)?;
    Ok(FittedSets {
        items,
        workers,
        estimate,
    })
}
