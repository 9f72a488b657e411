//! Multi-label answers (any subset of K classes) by EM: one binary
//! Dawid-Skene per class.
//!
//! Each class is its own yes/no question: an answer says the class is
//! present (it is in the answer's set) or absent (it is not). Per class,
//! [`crate::em::estimate`] fits a 2-category model (category
//! [`ABSENT`] = 0, [`PRESENT`] = 1): a prior of presence and, per worker,
//! a 2x2 confusion matrix (a sensitivity and a specificity). Gold sets
//! are clamped per class. Classes are independent in this model: a
//! worker's habit of ticking one class says nothing about another, which
//! keeps the cost at K times a binary fit and the evidence per class
//! exactly what the answers say about it.
//!
//! An item's label set is every class whose posterior of presence is
//! above 0.5; its confidence is the smallest, over the classes, posterior
//! of the side chosen (present or absent), so a set is as sure as its
//! least sure class.

use crate::em::{self, Answer, Dataset, EmConfig, Estimate, Model};
use crate::reliability::{self, PeerEvidence};

/// The per-class category of an answer that leaves the class out.
pub const ABSENT: u16 = 0;
/// The per-class category of an answer that has the class.
pub const PRESENT: u16 = 1;

/// One multi-label answer: `worker` gave the set `labels` (class
/// indices, any order, no repeats) for `item`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAnswer {
    pub item: u32,
    pub worker: u32,
    pub labels: Vec<u16>,
}

/// The binary dataset of every class: class `c`'s says, for each answer,
/// whether its set has `c`. Refuses a class index out of range.
pub fn class_datasets(
    classes: usize,
    items: usize,
    workers: usize,
    answers: &[SetAnswer],
) -> Result<Vec<Dataset>, String> {
    if classes == 0 {
        return Err("a multi-label bounty needs at least one class".into());
    }
    if let Some(a) = answers
        .iter()
        .find(|a| a.labels.iter().any(|&l| l as usize >= classes))
    {
        return Err(format!("answer {a:?} has a label out of {classes} classes"));
    }
    (0..classes as u16)
        .map(|c| {
            let rows: Vec<Answer> = answers
                .iter()
                .map(|a| Answer {
                    item: a.item,
                    worker: a.worker,
                    label: side(&a.labels, c),
                })
                .collect();
            Dataset::new(2, items, workers, &rows)
        })
        .collect()
}

fn side(labels: &[u16], class: u16) -> u16 {
    if labels.contains(&class) {
        PRESENT
    } else {
        ABSENT
    }
}

/// Class `c`'s gold: `(item, present or absent)` for every gold set.
fn class_gold(gold: &[(u32, Vec<u16>)], class: u16) -> Vec<(u32, u16)> {
    gold.iter().map(|(i, set)| (*i, side(set, class))).collect()
}

/// The label set and confidence from each class's posterior of presence:
/// the classes above 0.5 (in index order), and the smallest posterior of
/// the side chosen.
pub fn decide(present: &[f64]) -> (Vec<u16>, f64) {
    let mut set = Vec::new();
    let mut confidence = 1.0_f64;
    for (c, &p) in present.iter().enumerate() {
        if p > 0.5 {
            set.push(c as u16);
        }
        confidence = confidence.min(p.max(1.0 - p));
    }
    (set, confidence)
}

/// The fit of every class.
#[derive(Clone, Debug)]
pub struct MultiEstimate {
    /// Per class, its binary dataset and its fit.
    pub data: Vec<Dataset>,
    pub per_class: Vec<Estimate>,
    /// Per class, the gold as clamped.
    pub gold: Vec<Vec<(u32, u16)>>,
}

impl MultiEstimate {
    pub fn classes(&self) -> usize {
        self.per_class.len()
    }

    pub fn items(&self) -> usize {
        self.data.first().map_or(0, Dataset::items)
    }

    pub fn workers(&self) -> usize {
        self.data.first().map_or(0, Dataset::workers)
    }

    /// Each class's posterior of presence on `item`.
    pub fn present(&self, item: usize) -> Vec<f64> {
        self.per_class
            .iter()
            .map(|e| e.item_posterior(item)[PRESENT as usize])
            .collect()
    }

    /// The item's label set and its confidence ([`decide`]).
    pub fn labels(&self, item: usize) -> (Vec<u16>, f64) {
        decide(&self.present(item))
    }

    /// The worker's accuracy on each class, under that class's prior
    /// ([`Model::accuracy`]).
    pub fn class_accuracy(&self, worker: usize) -> Vec<f64> {
        self.per_class
            .iter()
            .map(|e| e.model.accuracy(worker))
            .collect()
    }

    /// One figure per worker: the mean of the per-class accuracies.
    pub fn accuracy(&self, worker: usize) -> f64 {
        let acc = self.class_accuracy(worker);
        acc.iter().sum::<f64>() / acc.len().max(1) as f64
    }

    /// The live-decision model: every class's fitted parameters.
    pub fn model(&self) -> MultiModel {
        MultiModel {
            per_class: self.per_class.iter().map(|e| e.model.clone()).collect(),
        }
    }

    /// Peer evidence summed over the classes: each answer is judged once
    /// per class, as gold answers are ([`reliability::peer_evidence`] on
    /// each class's fit).
    pub fn peer_evidence(&self) -> Vec<PeerEvidence> {
        let mut out = vec![PeerEvidence::default(); self.workers()];
        for ((data, est), gold) in self.data.iter().zip(&self.per_class).zip(&self.gold) {
            for (o, p) in out
                .iter_mut()
                .zip(reliability::peer_evidence(data, est, gold))
            {
                o.agreement += p.agreement;
                o.answers += p.answers;
            }
        }
        out
    }
}

/// Fits every class. `gold` lists `(item, set)` pairs known to be true;
/// each class clamps its side of them.
pub fn estimate(
    classes: usize,
    items: usize,
    workers: usize,
    answers: &[SetAnswer],
    gold: &[(u32, Vec<u16>)],
    cfg: &EmConfig,
) -> Result<MultiEstimate, String> {
    let data = class_datasets(classes, items, workers, answers)?;
    let gold: Vec<Vec<(u32, u16)>> = (0..classes as u16).map(|c| class_gold(gold, c)).collect();
    let per_class = data
        .iter()
        .zip(&gold)
        .map(|(d, g)| em::estimate(d, g, cfg))
        .collect();
    Ok(MultiEstimate {
        data,
        per_class,
        gold,
    })
}

/// Per-class models, for deciding an item between two estimations.
#[derive(Clone, Debug)]
pub struct MultiModel {
    pub per_class: Vec<Model>,
}

impl MultiModel {
    /// Each class's posterior of presence given an item's `(worker,
    /// set)` answers. Workers a class's model has not seen count at the
    /// prior's accuracy ([`Model::posterior`]).
    pub fn present(&self, answers: &[(u32, &[u16])]) -> Vec<f64> {
        let mut post = [0.0; 2];
        let mut votes = Vec::with_capacity(answers.len());
        self.per_class
            .iter()
            .enumerate()
            .map(|(c, m)| {
                votes.clear();
                votes.extend(answers.iter().map(|(w, set)| (*w, side(set, c as u16))));
                m.posterior(&votes, &mut post);
                post[PRESENT as usize]
            })
            .collect()
    }
}

/// Per-class majority: a class is in an item's set when more than half of
/// its answers have it (what a multi-label bounty without the engine
/// merges); `None` for an unanswered item.
pub fn majority_vote(data: &[Dataset]) -> Vec<Option<Vec<u16>>> {
    let votes: Vec<Vec<Option<u16>>> = data.iter().map(em::majority_vote).collect();
    let items = data.first().map_or(0, Dataset::items);
    (0..items)
        .map(|i| {
            (data.first()?.answer_count(i) > 0).then(|| {
                (0..data.len())
                    .filter(|&c| votes[c][i] == Some(PRESENT))
                    .map(|c| c as u16)
                    .collect()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(item: u32, worker: u32, labels: &[u16]) -> SetAnswer {
        SetAnswer {
            item,
            worker,
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn the_set_is_the_classes_above_one_half_and_the_confidence_its_least_sure_side() {
        // (posteriors of presence, set, confidence)
        let cases: &[(&[f64], &[u16], f64)] = &[
            (&[0.9, 0.2, 0.6], &[0, 2], 0.6),
            (&[0.1, 0.05], &[], 0.9),
            (&[0.99, 0.97], &[0, 1], 0.97),
            // Exactly one half is not "present", and as unsure as can be.
            (&[0.5, 1.0], &[1], 0.5),
        ];
        for (present, set, conf) in cases {
            let (s, c) = decide(present);
            assert_eq!(s, set.to_vec(), "{present:?}");
            assert!((c - conf).abs() < 1e-12, "{present:?}: {c}");
        }
    }

    #[test]
    fn each_class_is_a_binary_dataset_of_present_and_absent() {
        let d = class_datasets(3, 2, 2, &[a(0, 0, &[0, 2]), a(0, 1, &[]), a(1, 0, &[1])]).unwrap();
        assert_eq!(d.len(), 3);
        let sides = |c: usize, i: usize| d[c].item_answers(i).collect::<Vec<_>>();
        assert_eq!(sides(0, 0), vec![(0, PRESENT), (1, ABSENT)]);
        assert_eq!(sides(1, 0), vec![(0, ABSENT), (1, ABSENT)]);
        assert_eq!(sides(2, 0), vec![(0, PRESENT), (1, ABSENT)]);
        assert_eq!(sides(1, 1), vec![(0, PRESENT)]);
        assert!(class_datasets(2, 2, 2, &[a(0, 0, &[2])]).is_err());
        assert!(class_datasets(0, 2, 2, &[]).is_err());
    }

    /// By hand, with an uninformed model (every worker right with
    /// probability 0.7, prior of presence 1/2): two workers ticking a
    /// class and one leaving it out give `0.7^2 * 0.3 / (0.7^2 * 0.3 +
    /// 0.3^2 * 0.7) = 0.7`; three agreeing give `0.343 / (0.343 + 0.027)`.
    #[test]
    fn the_live_posterior_is_the_binary_dawid_skene_of_each_class() {
        let cfg = EmConfig::default();
        let m = MultiModel {
            per_class: vec![Model::uninformed(2, 0, &cfg); 2],
        };
        let (x, y, z): (&[u16], &[u16], &[u16]) = (&[0, 1], &[0, 1], &[1]);
        let p = m.present(&[(0, x), (1, y), (2, z)]);
        assert!((p[0] - 0.7).abs() < 1e-12, "{p:?}");
        assert!((p[1] - 0.343 / 0.37).abs() < 1e-12, "{p:?}");
        let (set, conf) = decide(&p);
        assert_eq!(set, vec![0, 1]);
        assert!((conf - 0.7).abs() < 1e-12);
    }

    /// Workers 0-2 are right about every class; worker 3 inverts every
    /// class. Per-class majority is 3 to 1 on items 0-7, so both get the
    /// truth; EM also learns worker 3 is an inverter. On item 8 only
    /// workers 0 and 3 answered: majority ties (2 answers, 1 for) and
    /// leaves the class out; EM believes worker 0 over the inverter.
    #[test]
    fn em_learns_an_inverter_per_class_where_majority_ties() {
        let truth: [&[u16]; 8] = [&[0], &[1], &[0, 1], &[], &[0], &[1], &[0, 1], &[]];
        let invert = |s: &[u16]| -> Vec<u16> { (0..2).filter(|c| !s.contains(c)).collect() };
        let mut answers = Vec::new();
        for (i, t) in truth.iter().enumerate() {
            for w in 0..3 {
                answers.push(a(i as u32, w, t));
            }
            answers.push(a(i as u32, 3, &invert(t)));
        }
        answers.push(a(8, 0, &[0, 1]));
        answers.push(a(8, 3, &[]));
        let cfg = EmConfig::default();
        let est = estimate(2, 9, 4, &answers, &[], &cfg).unwrap();
        for (i, t) in truth.iter().enumerate() {
            assert_eq!(est.labels(i).0, t.to_vec(), "item {i}");
        }
        let (set, conf) = est.labels(8);
        assert_eq!(set, vec![0, 1]);
        assert!(conf > 0.9, "{conf}");
        assert_eq!(majority_vote(&est.data)[8], Some(vec![]));
        // Eight wrong answers per class against a prior worth 2 at 0.7.
        assert!(
            est.accuracy(0) > 0.8 && est.accuracy(3) < 0.3,
            "{} {}",
            est.accuracy(0),
            est.accuracy(3)
        );
        let peer = est.peer_evidence();
        assert!(peer[0].answers >= 8, "judged once per class: {peer:?}");
        assert!(peer[3].agreement < 0.2 * peer[3].answers as f64, "{peer:?}");
    }

    #[test]
    fn gold_is_clamped_per_class_and_anchors_the_workers() {
        // Two workers always disagree on class 0: without gold the data
        // cannot tell who is right. Gold on items 0-3 says worker 1 is.
        let mut answers = Vec::new();
        for i in 0..6u32 {
            let truth: &[u16] = if i % 2 == 0 { &[0] } else { &[] };
            let wrong: &[u16] = if i % 2 == 0 { &[] } else { &[0] };
            answers.push(a(i, 0, wrong));
            answers.push(a(i, 1, truth));
        }
        let gold: Vec<(u32, Vec<u16>)> = (0..4)
            .map(|i| (i, if i % 2 == 0 { vec![0] } else { vec![] }))
            .collect();
        let est = estimate(1, 6, 2, &answers, &gold, &EmConfig::default()).unwrap();
        assert_eq!(est.gold[0], vec![(0, 1), (1, 0), (2, 1), (3, 0)]);
        assert_eq!(est.labels(0), (vec![0], 1.0), "gold is clamped");
        assert_eq!(est.labels(4).0, vec![0]);
        assert_eq!(est.labels(5).0, Vec::<u16>::new());
        assert!(est.accuracy(1) > est.accuracy(0));
    }
}
