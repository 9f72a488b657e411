//! Spam and collusion signals: evidence about a contributor that gold
//! alone does not give.
//!
//! - **Too fast**: a share of answers given faster than the bounty's floor.
//! - **One class**: a class chosen far more often than the rest of the
//!   crowd chose it *on the same items* (so a skewed dataset is no alarm).
//! - **Collusion**: two accounts agreeing with each other, on items where
//!   the crowd disagrees, far more than their estimated confusion matrices
//!   predict for two independent people. Comparing with that prediction
//!   (rather than with raw agreement) keeps two excellent contributors,
//!   who agree because both are right, from looking like a ring.

use std::collections::HashMap;

use crate::em::{Dataset, Estimate};

/// Thresholds of the signals; the defaults are the server's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SignalConfig {
    /// Answers needed before the speed or class signals say anything.
    pub min_answers: u32,
    /// Flag when at least this share of answers is under the floor.
    pub fast_share: f64,
    /// Flag when a class's share exceeds the crowd's by this much...
    pub class_excess: f64,
    /// ...and is at least this many times the crowd's.
    pub class_ratio: f64,
    /// Contested items two accounts must share before they are compared.
    pub min_shared: u32,
    /// Flag when observed agreement exceeds the predicted by this much...
    pub collusion_excess: f64,
    /// ...and by this many standard deviations.
    pub collusion_z: f64,
}

impl Default for SignalConfig {
    fn default() -> SignalConfig {
        SignalConfig {
            min_answers: 10,
            fast_share: 0.5,
            class_excess: 0.3,
            class_ratio: 2.0,
            min_shared: 6,
            collusion_excess: 0.3,
            collusion_z: 3.0,
        }
    }
}

/// One contributor's speed record.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpeedSignal {
    pub fast: u32,
    pub total: u32,
    pub flagged: bool,
}

/// Counts the answers faster than `floor_ms` among `durations_ms`.
pub fn speed(durations_ms: &[i64], floor_ms: i64, cfg: &SignalConfig) -> SpeedSignal {
    let fast = durations_ms.iter().filter(|d| **d < floor_ms).count() as u32;
    speed_counts(fast, durations_ms.len() as u32, floor_ms, cfg)
}

/// The speed signal from counts kept elsewhere: `fast` of `total`
/// answers under a floor of `floor_ms` (0: no floor, no signal).
pub fn speed_counts(fast: u32, total: u32, floor_ms: i64, cfg: &SignalConfig) -> SpeedSignal {
    SpeedSignal {
        fast,
        total,
        flagged: floor_ms > 0
            && total >= cfg.min_answers
            && fast as f64 >= cfg.fast_share * total as f64,
    }
}

/// A contributor's most over-chosen class.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassSignal {
    pub worker: u32,
    pub class: u16,
    /// Share of the contributor's answers that chose `class`.
    pub share: f64,
    /// Share of the other answers on the same items that chose it.
    pub crowd_share: f64,
    pub answers: u32,
    pub flagged: bool,
}

/// For each worker, the class they over-choose most relative to the other
/// answers on the same items.
pub fn class_bias(data: &Dataset, cfg: &SignalConfig) -> Vec<ClassSignal> {
    let c = data.classes();
    let mut mine = vec![0u32; data.workers() * c];
    let mut crowd = vec![0.0_f64; data.workers() * c];
    let mut n = vec![0u32; data.workers()];
    let mut compared = vec![0u32; data.workers()];
    let mut counts = vec![0u32; c];
    for i in 0..data.items() {
        let m = data.answer_count(i);
        counts.iter_mut().for_each(|x| *x = 0);
        for (_, l) in data.item_answers(i) {
            counts[l as usize] += 1;
        }
        for (w, l) in data.item_answers(i) {
            let w = w as usize;
            mine[w * c + l as usize] += 1;
            n[w] += 1;
            if m > 1 {
                compared[w] += 1;
                for k in 0..c {
                    let others = counts[k] - u32::from(k == l as usize);
                    crowd[w * c + k] += others as f64 / (m - 1) as f64;
                }
            }
        }
    }
    (0..data.workers())
        .map(|w| {
            let mut best = ClassSignal {
                worker: w as u32,
                class: 0,
                share: 0.0,
                crowd_share: 0.0,
                answers: n[w],
                flagged: false,
            };
            if n[w] == 0 || compared[w] == 0 {
                return best;
            }
            let mut best_excess = f64::NEG_INFINITY;
            for k in 0..c {
                let share = mine[w * c + k] as f64 / n[w] as f64;
                let crowd_share = crowd[w * c + k] / compared[w] as f64;
                if share - crowd_share > best_excess {
                    best_excess = share - crowd_share;
                    best.class = k as u16;
                    best.share = share;
                    best.crowd_share = crowd_share;
                }
            }
            best.flagged = n[w] >= cfg.min_answers
                && best.share - best.crowd_share >= cfg.class_excess
                && best.share >= cfg.class_ratio * best.crowd_share;
            best
        })
        .collect()
}

/// Two accounts compared on the contested items they both answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PairSignal {
    pub a: u32,
    pub b: u32,
    pub shared: u32,
    pub agreed: u32,
    /// Agreements two independent people with the estimated confusion
    /// matrices would produce on those items, in expectation.
    pub expected: f64,
    pub z: f64,
    pub flagged: bool,
}

/// Pairs of workers who agree on contested items (items whose answers are
/// not unanimous) more than independence predicts. Returns the pairs with
/// at least `min_shared` contested items in common, flagged or not,
/// most suspicious first.
pub fn collusion(data: &Dataset, est: &Estimate, cfg: &SignalConfig) -> Vec<PairSignal> {
    let c = data.classes();
    // (a, b) -> (shared, agreed, expected, variance)
    let mut pairs: HashMap<(u32, u32), (u32, u32, f64, f64)> = HashMap::new();
    let mut answers: Vec<(u32, u16)> = Vec::new();
    for i in 0..data.items() {
        answers.clear();
        answers.extend(data.item_answers(i));
        if answers.len() < 3 || answers.iter().all(|(_, l)| *l == answers[0].1) {
            continue;
        }
        let post = est.item_posterior(i);
        for x in 0..answers.len() {
            for y in x + 1..answers.len() {
                let (wa, la) = answers[x];
                let (wb, lb) = answers[y];
                let (ma, mb) = (
                    est.model.confusion(wa as usize),
                    est.model.confusion(wb as usize),
                );
                // P(same label) = sum_k post[k] sum_l pi_a[k][l] pi_b[k][l]
                let mut p = 0.0;
                for (k, pk) in post.iter().enumerate() {
                    let row: f64 = (0..c).map(|l| ma[k * c + l] * mb[k * c + l]).sum();
                    p += pk * row;
                }
                let key = if wa < wb { (wa, wb) } else { (wb, wa) };
                let e = pairs.entry(key).or_insert((0, 0, 0.0, 0.0));
                e.0 += 1;
                e.1 += u32::from(la == lb);
                e.2 += p;
                e.3 += p * (1.0 - p);
            }
        }
    }
    let mut out: Vec<PairSignal> = pairs
        .into_iter()
        .filter(|(_, v)| v.0 >= cfg.min_shared)
        .map(|((a, b), (shared, agreed, expected, var))| {
            let z = (agreed as f64 - expected) / var.max(1e-9).sqrt();
            let excess = (agreed as f64 - expected) / shared as f64;
            PairSignal {
                a,
                b,
                shared,
                agreed,
                expected,
                z,
                flagged: excess >= cfg.collusion_excess && z >= cfg.collusion_z,
            }
        })
        .collect();
    out.sort_by(|x, y| y.z.total_cmp(&x.z).then((x.a, x.b).cmp(&(y.a, y.b))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::{Answer, EmConfig, estimate};
    use crate::sim::Rng;

    /// 300 items of 3 classes, skewed towards class 0; workers 0-3 honest
    /// at 0.85, 4 and 5 excellent (0.97), 6 and 7 a colluding pair giving
    /// the same random class, 8 always class 2.
    fn crowd() -> Dataset {
        let mut rng = Rng::new(7);
        let mut answers = Vec::new();
        for i in 0..300u32 {
            let truth = if rng.chance(0.6) {
                0
            } else {
                1 + rng.below(2) as u16
            };
            let copied = rng.below(3) as u16;
            for w in 0..9u32 {
                let skill = match w {
                    0..=3 => 0.85,
                    4 | 5 => 0.97,
                    _ => 0.0,
                };
                let label = match w {
                    6 | 7 => copied,
                    8 => 2,
                    _ if rng.chance(skill) => truth,
                    _ => (truth + 1 + rng.below(2) as u16) % 3,
                };
                answers.push(Answer {
                    item: i,
                    worker: w,
                    label,
                });
            }
        }
        Dataset::new(3, 300, 9, &answers).unwrap()
    }

    #[test]
    fn a_one_class_answerer_is_flagged_but_a_skewed_dataset_is_no_alarm() {
        let flagged: Vec<u32> = class_bias(&crowd(), &SignalConfig::default())
            .iter()
            .filter(|s| s.flagged)
            .map(|s| s.worker)
            .collect();
        assert_eq!(flagged, vec![8], "class 0 is 60% of the data for everyone");
    }

    #[test]
    fn a_copying_pair_is_flagged_and_two_excellent_contributors_are_not() {
        let data = crowd();
        let est = estimate(&data, &[], &EmConfig::default());
        let pairs = collusion(&data, &est, &SignalConfig::default());
        let flagged: Vec<(u32, u32)> = pairs
            .iter()
            .filter(|p| p.flagged)
            .map(|p| (p.a, p.b))
            .collect();
        assert_eq!(flagged, vec![(6, 7)], "{:?}", &pairs[..4]);
        let excellent = pairs.iter().find(|p| (p.a, p.b) == (4, 5)).unwrap();
        assert!(
            excellent.agreed as f64 / excellent.shared as f64 > 0.85,
            "{excellent:?}"
        );
    }

    #[test]
    fn speed_needs_a_floor_and_enough_answers() {
        let cfg = SignalConfig::default();
        let quick = vec![100; 12];
        assert!(speed(&quick, 500, &cfg).flagged);
        assert!(!speed(&quick, 0, &cfg).flagged, "no floor, no signal");
        assert!(!speed(&quick[..5], 500, &cfg).flagged, "too few answers");
        let mixed: Vec<i64> = (0..12).map(|i| if i < 5 { 100 } else { 2000 }).collect();
        assert_eq!(speed(&mixed, 500, &cfg).fast, 5);
        assert!(!speed(&mixed, 500, &cfg).flagged);
    }
}
