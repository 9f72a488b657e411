//! How far a contributor can be trusted, from their answers to gold items.
//!
//! Accuracy on gold is a Beta posterior: a contributor starts from the
//! prior `Beta(prior_correct, prior_wrong)` and each gold answer adds one
//! to the first (correct) or the second (wrong) parameter. The rule that
//! suspends a contributor compares a *lower credible bound* of that
//! posterior, its `level` quantile, with the bounty's threshold
//! ([`SuspensionRule`]).
//!
//! The Beta quantile is computed exactly (to 1e-12): the regularized
//! incomplete beta function by its continued fraction, inverted by
//! bisection. [`suspension_curve`] gives, by dynamic programming over every
//! possible sequence of gold answers, the exact probability that a
//! contributor of a given true accuracy is suspended within `n` gold
//! answers: that is how the defaults below were chosen.

use std::f64::consts::PI;

use crate::em::{Dataset, Estimate};

/// `ln Γ(x)` for `x > 0`: Stirling's series, after shifting `x` above 10
/// with `Γ(x + 1) = x Γ(x)`. Accurate to about 1e-13.
pub fn ln_gamma(x: f64) -> f64 {
    debug_assert!(x > 0.0);
    let mut shift = 0.0;
    let mut x = x;
    while x < 10.0 {
        shift += x.ln();
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    let series = inv
        * (1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0))));
    (x - 0.5) * x.ln() - x + 0.5 * (2.0 * PI).ln() + series - shift
}

/// `ln B(a, b)`.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b)
}

/// The Beta(a, b) cumulative distribution function `I_x(a, b)`.
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - beta_cdf(1.0 - x, b, a);
    }
    let front = (a * x.ln() + b * (1.0 - x).ln() - ln_beta(a, b)).exp() / a;
    (front * lentz(x, a, b)).clamp(0.0, 1.0)
}

/// Evaluates `1 / (1 + d1/(1 + d2/(1 + ...)))`, the continued fraction of
/// `I_x(a, b)` (DLMF 8.17.22), by the modified Lentz method. It converges
/// quickly for `x < (a+1)/(a+b+2)`; [`beta_cdf`] uses the symmetry
/// `I_x(a, b) = 1 - I_{1-x}(b, a)` otherwise.
fn lentz(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    const EPS: f64 = 1e-15;
    // The fraction 1 + d1/(1 + d2/(1 + ...)).
    let mut f = 1.0_f64;
    let mut c = 1.0_f64;
    let mut d = 0.0_f64;
    for n in 1..2000 {
        let m = (n / 2) as f64;
        let dn = if n % 2 == 1 {
            -((a + m) * (a + b + m) * x) / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
        } else {
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
        };
        d = 1.0 + dn * d;
        if d.abs() < TINY {
            d = TINY;
        }
        d = 1.0 / d;
        c = 1.0 + dn / c;
        if c.abs() < TINY {
            c = TINY;
        }
        let delta = c * d;
        f *= delta;
        if (delta - 1.0).abs() < EPS {
            break;
        }
    }
    1.0 / f
}

/// The `q` quantile of Beta(a, b), by bisection on [`beta_cdf`] to 1e-12.
pub fn beta_quantile(q: f64, a: f64, b: f64) -> f64 {
    if q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while hi - lo > 1e-12 {
        let mid = 0.5 * (lo + hi);
        if beta_cdf(mid, a, b) < q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A contributor's record on gold items.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoldRecord {
    pub correct: u32,
    pub total: u32,
}

impl GoldRecord {
    pub fn add(&mut self, correct: bool) {
        self.total += 1;
        if correct {
            self.correct += 1;
        }
    }

    pub fn wrong(&self) -> u32 {
        self.total - self.correct
    }
}

/// When a contributor is suspended from a bounty: once they have answered
/// at least `min_gold` gold items and the `level` quantile of their
/// accuracy posterior `Beta(prior_correct + correct, prior_wrong + wrong)`
/// is below `threshold`.
///
/// The prior is the benefit of the doubt a newcomer gets (worth
/// `prior_correct + prior_wrong` gold answers); `level` is how sure Sahel
/// must be that the accuracy is at least the bound. See
/// [`SuspensionRule::for_classes`] for the defaults and their guarantees.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuspensionRule {
    pub prior_correct: f64,
    pub prior_wrong: f64,
    pub level: f64,
    pub threshold: f64,
    pub min_gold: u32,
    /// What one answer checked against the crowd ([`PeerEvidence`]) is
    /// worth, in gold answers.
    pub peer_weight: f64,
}

/// A contributor's accuracy on gold, as shown to buyers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AccuracyEstimate {
    /// Posterior mean.
    pub mean: f64,
    /// The rule's lower credible bound.
    pub lower: f64,
}

impl SuspensionRule {
    /// The default rule for a bounty with `classes` classes.
    ///
    /// The threshold is halfway between chance (`1/classes`) and 0.75:
    /// 0.54 for 3 classes. A newcomer starts from `Beta(16, 3)`, the
    /// benefit of the doubt worth 19 gold answers at 84%, and is suspended
    /// when the 5% quantile of their posterior (a 95% lower credible bound)
    /// falls under the threshold once they have given 8 gold answers. The
    /// exact probabilities on gold alone ([`suspension_curve`], asserted
    /// in tests) for 3 classes: a random answerer is suspended within 20
    /// gold answers with probability 0.97, a systematically wrong one
    /// within 8, and a contributor with true accuracy 0.8 is ever
    /// suspended (over 400 gold answers) with probability 0.009. Answers
    /// checked against the crowd ([`PeerEvidence`], half a gold answer
    /// each) only sharpen this.
    pub fn for_classes(classes: usize) -> SuspensionRule {
        let chance = 1.0 / classes.max(2) as f64;
        SuspensionRule {
            prior_correct: 16.0,
            prior_wrong: 3.0,
            level: 0.05,
            threshold: (chance + 0.75) / 2.0,
            min_gold: 8,
            peer_weight: 0.5,
        }
    }

    /// The posterior from gold answers alone.
    pub fn estimate(&self, r: GoldRecord) -> AccuracyEstimate {
        self.estimate_with(r, PeerEvidence::default())
    }

    /// The posterior from gold answers and, at `peer_weight` each, answers
    /// checked against the crowd.
    pub fn estimate_with(&self, r: GoldRecord, peer: PeerEvidence) -> AccuracyEstimate {
        let a = self.prior_correct + r.correct as f64 + self.peer_weight * peer.agreement;
        let b = self.prior_wrong
            + r.wrong() as f64
            + self.peer_weight * (peer.answers as f64 - peer.agreement).max(0.0);
        AccuracyEstimate {
            mean: a / (a + b),
            lower: beta_quantile(self.level, a, b),
        }
    }

    /// The rule on gold answers alone.
    pub fn suspends(&self, r: GoldRecord) -> bool {
        self.suspends_with(r, PeerEvidence::default())
    }

    /// The rule on all the evidence: suspended once the evidence is worth
    /// `min_gold` gold answers and the lower bound is under the threshold.
    pub fn suspends_with(&self, r: GoldRecord, peer: PeerEvidence) -> bool {
        let evidence = r.total as f64 + self.peer_weight * peer.answers as f64;
        evidence >= self.min_gold as f64 && self.estimate_with(r, peer).lower < self.threshold
    }
}

/// What aggregation says about a contributor: over their answers to items
/// whose class the *other* answers settle (leave-one-out posterior at
/// least [`PEER_CONFIDENCE`]), how much posterior mass their label had.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PeerEvidence {
    /// Sum over those answers of the leave-one-out posterior of the label
    /// given: a soft count of agreements.
    pub agreement: f64,
    pub answers: u32,
}

/// How sure the other answers must be about an item before it is used to
/// judge one more answer.
pub const PEER_CONFIDENCE: f64 = 0.9;

/// Peer evidence for every worker of `data` from a fitted estimate.
///
/// The leave-one-out posterior divides the worker's own likelihood out of
/// the item's posterior, `q[k] ~ post[k] / confusion_w[k][label]`, so no
/// one is judged by a consensus they shaped. Gold items are skipped: gold
/// answers are counted exactly by [`GoldRecord`].
pub fn peer_evidence(data: &Dataset, est: &Estimate, gold: &[(u32, u16)]) -> Vec<PeerEvidence> {
    let c = data.classes();
    let mut is_gold = vec![false; data.items()];
    for &(i, _) in gold {
        if let Some(g) = is_gold.get_mut(i as usize) {
            *g = true;
        }
    }
    let mut out = vec![PeerEvidence::default(); data.workers()];
    let mut q = vec![0.0; c];
    for (i, gold) in is_gold.iter().enumerate() {
        if *gold {
            continue;
        }
        let post = est.item_posterior(i);
        for (w, l) in data.item_answers(i) {
            let m = est.model.confusion(w as usize);
            let mut sum = 0.0;
            for k in 0..c {
                let p = m[k * c + l as usize];
                q[k] = if p > 0.0 { post[k] / p } else { 0.0 };
                sum += q[k];
            }
            if sum <= 0.0 {
                continue;
            }
            let top = q.iter().copied().fold(0.0, f64::max) / sum;
            if top >= PEER_CONFIDENCE {
                let e = &mut out[w as usize];
                e.agreement += q[l as usize] / sum;
                e.answers += 1;
            }
        }
    }
    out
}

/// The number of correct answers out of `total` gold answers below which
/// `rule` suspends: with `c < cut` correct the contributor is suspended,
/// with `c >= cut` not. The bound grows with `c`, so one cut exists.
pub fn suspension_cut(rule: &SuspensionRule, total: u32) -> u32 {
    let (mut lo, mut hi) = (0u32, total + 1);
    // Invariant: c < lo suspends, c >= hi does not.
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if rule.suspends(GoldRecord {
            correct: mid,
            total,
        }) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// `curve[n]` is the exact probability that a contributor whose gold
/// answers are each correct with probability `accuracy` is suspended by
/// `rule` within their first `n` gold answers (`n` from 0 to `horizon`).
pub fn suspension_curve(rule: &SuspensionRule, accuracy: f64, horizon: u32) -> Vec<f64> {
    // alive[c]: probability of not being suspended yet, with c correct.
    let mut alive = vec![1.0_f64];
    let mut curve = Vec::with_capacity(horizon as usize + 1);
    let mut suspended = 0.0;
    curve.push(0.0);
    for n in 1..=horizon {
        let mut next = vec![0.0_f64; n as usize + 1];
        for (c, p) in alive.iter().enumerate() {
            next[c + 1] += p * accuracy;
            next[c] += p * (1.0 - accuracy);
        }
        let cut = suspension_cut(rule, n) as usize;
        for p in &mut next[..cut] {
            suspended += *p;
            *p = 0.0;
        }
        alive = next;
        curve.push(suspended);
    }
    curve
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn the_default_rule_catches_spammers_within_20_gold_answers_and_spares_good_contributors() {
        let rule = SuspensionRule::for_classes(3);
        let spammer = suspension_curve(&rule, 1.0 / 3.0, 20);
        assert!(spammer[20] >= 0.95, "random answerer: {}", spammer[20]);
        assert_eq!(spammer[7], 0.0, "no one is judged before 8 gold answers");
        let adversary = suspension_curve(&rule, 0.0, 8);
        assert!(adversary[8] > 1.0 - 1e-12, "always wrong: {}", adversary[8]);
        let good = suspension_curve(&rule, 0.8, 400);
        assert!(good[400] < 0.01, "accuracy 0.8: {}", good[400]);
        let better = suspension_curve(&rule, 0.9, 400);
        assert!(better[400] < 0.001, "accuracy 0.9: {}", better[400]);
        // The curve flattens: a good contributor who survived the first
        // gold answers is not worn down by more of them.
        assert!(
            good[400] - good[100] < 1e-4,
            "{} vs {}",
            good[400],
            good[100]
        );
    }

    #[test]
    fn the_exact_curve_agrees_with_enumerating_every_sequence() {
        let rule = SuspensionRule {
            min_gold: 2,
            ..SuspensionRule::for_classes(2)
        };
        let n = 12u32;
        let p = 0.6;
        let mut by_n = vec![0.0; n as usize + 1];
        for bits in 0u32..(1 << n) {
            let mut r = GoldRecord::default();
            let mut prob = 1.0;
            for i in 0..n {
                let ok = bits >> i & 1 == 1;
                prob *= if ok { p } else { 1.0 - p };
            }
            for i in 0..n {
                r.add(bits >> i & 1 == 1);
                if rule.suspends(r) {
                    for x in &mut by_n[r.total as usize..] {
                        *x += prob;
                    }
                    break;
                }
            }
        }
        let curve = suspension_curve(&rule, p, n);
        for (k, (a, b)) in curve.iter().zip(&by_n).enumerate() {
            assert!((a - b).abs() < 1e-12, "n = {k}: {a} vs {b}");
        }
        assert!(curve[n as usize] > 0.0);
    }

    #[test]
    fn the_cut_splits_suspended_from_kept() {
        let rule = SuspensionRule::for_classes(3);
        for total in [8u32, 20, 50] {
            let cut = suspension_cut(&rule, total);
            assert!(cut > 0 && cut <= total);
            assert!(rule.suspends(GoldRecord {
                correct: cut - 1,
                total
            }));
            assert!(!rule.suspends(GoldRecord {
                correct: cut,
                total
            }));
        }
    }

    #[test]
    fn peer_evidence_counts_only_what_the_others_settle_and_leaves_the_worker_out() {
        use crate::em::{Answer, Dataset, EmConfig, estimate};
        // Items 0-5: workers 0-2 agree on the class (i % 2). Worker 3
        // always says the other class. Item 6: only workers 0 and 3.
        let mut answers = Vec::new();
        for i in 0..6u32 {
            for w in 0..3u32 {
                answers.push(Answer {
                    item: i,
                    worker: w,
                    label: (i % 2) as u16,
                });
            }
            answers.push(Answer {
                item: i,
                worker: 3,
                label: 1 - (i % 2) as u16,
            });
        }
        answers.push(Answer {
            item: 6,
            worker: 0,
            label: 0,
        });
        answers.push(Answer {
            item: 6,
            worker: 3,
            label: 1,
        });
        let data = Dataset::new(2, 7, 4, &answers).unwrap();
        let est = estimate(&data, &[], &EmConfig::default());
        let peer = peer_evidence(&data, &est, &[]);
        assert!(peer[0].answers >= 6 && peer[0].agreement / peer[0].answers as f64 > 0.9);
        assert_eq!(
            peer[3].answers, 6,
            "worker 0 alone does not settle item 6: {peer:?}"
        );
        assert!(peer[3].agreement < 0.5, "{peer:?}");
        // Gold items are not peer evidence.
        let gold: Vec<(u32, u16)> = (0..6).map(|i| (i, (i % 2) as u16)).collect();
        let peer = peer_evidence(&data, &estimate(&data, &gold, &EmConfig::default()), &gold);
        assert!(peer.iter().all(|p| p.answers <= 1), "{peer:?}");
    }

    #[test]
    fn ln_gamma_matches_factorials_and_half_integers() {
        let mut fact = 1.0_f64;
        for n in 1..30 {
            assert!(close(ln_gamma(n as f64), fact.ln(), 1e-11), "{n}");
            fact *= n as f64;
        }
        assert!(close(ln_gamma(0.5), PI.sqrt().ln(), 1e-12));
        assert!(close(ln_gamma(1.5), (PI.sqrt() / 2.0).ln(), 1e-12));
    }
}
