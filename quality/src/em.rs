//! Dawid-Skene aggregation of categorical answers by expectation
//! maximization.
//!
//! The model: each item has a true class drawn from the class priors; each
//! worker answers an item of true class `k` with label `l` with probability
//! `confusion[worker][k][l]`, independently of the others. EM alternates:
//!
//! - **M-step**: from the current posteriors of the items' true classes,
//!   re-estimate the priors and every worker's confusion matrix (expected
//!   counts plus a Dirichlet prior that pulls each row towards "right with
//!   probability `prior_accuracy`", worth `prior_strength` answers: workers
//!   with few answers are neither trusted nor distrusted much).
//! - **E-step**: from those parameters, the posterior of each item's class
//!   is `prior[k] * prod over its answers of confusion[w][k][l]`,
//!   normalized.
//!
//! Gold items are clamped: their posterior is their known class, always,
//! so they anchor every worker's confusion matrix (the "seeding by gold").
//! The start is the vote share of each class on each item. Iteration stops
//! when no posterior moves by more than `tolerance`.
//!
//! Performance: answers are stored grouped by item, log-confusion rows are
//! laid out so each answer touches one contiguous run of `classes` floats
//! in each step, and nothing allocates inside the loop: one iteration is
//! `2 x answers x classes` additions plus `items x classes` exponentials.

/// One answer: `worker` said `label` about `item`. All three are dense
/// indices (see [`crate::Interner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub item: u32,
    pub worker: u32,
    pub label: u16,
}

/// Answers grouped by item, ready for EM.
#[derive(Clone, Debug)]
pub struct Dataset {
    classes: usize,
    items: usize,
    workers: usize,
    /// `offsets[i]..offsets[i + 1]` are item `i`'s answers.
    offsets: Vec<u32>,
    worker_of: Vec<u32>,
    label_of: Vec<u16>,
}

impl Dataset {
    /// Groups `answers` by item. Refuses a label, item or worker out of
    /// range, and fewer than two classes.
    pub fn new(
        classes: usize,
        items: usize,
        workers: usize,
        answers: &[Answer],
    ) -> Result<Dataset, String> {
        if !(2..=u16::MAX as usize).contains(&classes) {
            return Err(format!("{classes} classes: need at least 2"));
        }
        if answers.len() >= u32::MAX as usize {
            return Err("too many answers".into());
        }
        let mut counts = vec![0u32; items + 1];
        for a in answers {
            if a.item as usize >= items || a.worker as usize >= workers {
                return Err(format!(
                    "answer {a:?} names an item or worker out of range ({items} items, {workers} workers)"
                ));
            }
            if a.label as usize >= classes {
                return Err(format!("answer {a:?} has a label out of {classes} classes"));
            }
            counts[a.item as usize + 1] += 1;
        }
        for i in 0..items {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut next = counts;
        let mut worker_of = vec![0u32; answers.len()];
        let mut label_of = vec![0u16; answers.len()];
        for a in answers {
            let at = &mut next[a.item as usize];
            worker_of[*at as usize] = a.worker;
            label_of[*at as usize] = a.label;
            *at += 1;
        }
        Ok(Dataset {
            classes,
            items,
            workers,
            offsets,
            worker_of,
            label_of,
        })
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn items(&self) -> usize {
        self.items
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn answers(&self) -> usize {
        self.worker_of.len()
    }

    /// Item `i`'s answers as `(worker, label)`.
    pub fn item_answers(&self, item: usize) -> impl Iterator<Item = (u32, u16)> + '_ {
        let (lo, hi) = (self.offsets[item] as usize, self.offsets[item + 1] as usize);
        self.worker_of[lo..hi]
            .iter()
            .copied()
            .zip(self.label_of[lo..hi].iter().copied())
    }

    pub fn answer_count(&self, item: usize) -> usize {
        (self.offsets[item + 1] - self.offsets[item]) as usize
    }

    /// Every answer, in item order.
    pub fn iter(&self) -> impl Iterator<Item = Answer> + '_ {
        (0..self.items).flat_map(move |i| {
            self.item_answers(i).map(move |(worker, label)| Answer {
                item: i as u32,
                worker,
                label,
            })
        })
    }
}

/// Knobs of the estimation; the defaults are what the server and the
/// offline command use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EmConfig {
    /// At most this many M+E rounds.
    pub max_iterations: usize,
    /// Stop when no item's posterior moves by more than this...
    pub tolerance: f64,
    /// ...or when the log-likelihood improves by less than this fraction
    /// of itself: late rounds that move a few ambiguous items by tiny
    /// amounts change no decision.
    pub likelihood_tolerance: f64,
    /// Pseudo-answers added to each row of each confusion matrix.
    pub prior_strength: f64,
    /// Where those pseudo-answers put their weight: on the diagonal with
    /// this share, the rest spread evenly over the wrong labels.
    pub prior_accuracy: f64,
    /// Pseudo-count added to each class when estimating the priors.
    pub class_pseudo_count: f64,
}

impl Default for EmConfig {
    fn default() -> EmConfig {
        EmConfig {
            max_iterations: 100,
            tolerance: 1e-5,
            likelihood_tolerance: 1e-8,
            prior_strength: 2.0,
            prior_accuracy: 0.7,
            class_pseudo_count: 1.0,
        }
    }
}

/// Fitted parameters: class priors and one confusion matrix per worker.
#[derive(Clone, Debug)]
pub struct Model {
    classes: usize,
    workers: usize,
    priors: Vec<f64>,
    /// `[worker][true k][label l]`, rows sum to 1.
    confusion: Vec<f64>,
    /// `ln confusion`, laid out `[worker][label l][true k]` so that one
    /// answer's contribution to an item's log-posterior is contiguous.
    log_by_label: Vec<f64>,
    /// The prior's confusion matrix (same layout), for unknown workers.
    default_log: Vec<f64>,
}

fn prior_row(classes: usize, cfg: &EmConfig, k: usize, l: usize) -> f64 {
    if k == l {
        cfg.prior_strength * cfg.prior_accuracy
    } else {
        cfg.prior_strength * (1.0 - cfg.prior_accuracy) / (classes - 1) as f64
    }
}

impl Model {
    /// A model that knows nothing yet: uniform priors and every worker at
    /// the prior's accuracy.
    pub fn uninformed(classes: usize, workers: usize, cfg: &EmConfig) -> Model {
        let k2 = classes * classes;
        let mut confusion = vec![0.0; workers * k2];
        let mut row = vec![0.0; classes];
        let acc = cfg.prior_accuracy.clamp(1e-6, 1.0 - 1e-6);
        for k in 0..classes {
            for (l, r) in row.iter_mut().enumerate() {
                *r = if k == l {
                    acc
                } else {
                    (1.0 - acc) / (classes - 1) as f64
                };
            }
            for w in 0..workers {
                confusion[w * k2 + k * classes..w * k2 + (k + 1) * classes].copy_from_slice(&row);
            }
        }
        let mut m = Model {
            classes,
            workers,
            priors: vec![1.0 / classes as f64; classes],
            confusion,
            log_by_label: vec![0.0; workers * k2],
            default_log: vec![0.0; k2],
        };
        for k in 0..classes {
            for l in 0..classes {
                m.default_log[l * classes + k] = if k == l {
                    acc.ln()
                } else {
                    ((1.0 - acc) / (classes - 1) as f64).ln()
                };
            }
        }
        m.refresh_logs();
        m
    }

    /// A model with given priors and confusion matrices (`[worker][true
    /// k][label l]`, each row summing to 1), e.g. the true parameters of a
    /// simulated crowd.
    pub fn from_parts(priors: Vec<f64>, confusion: Vec<f64>, cfg: &EmConfig) -> Model {
        let classes = priors.len();
        let workers = confusion.len() / (classes * classes);
        let mut m = Model::uninformed(classes, workers, cfg);
        m.priors = priors;
        m.confusion = confusion;
        m.refresh_logs();
        m
    }

    fn refresh_logs(&mut self) {
        let c = self.classes;
        let k2 = c * c;
        for w in 0..self.workers {
            for k in 0..c {
                for l in 0..c {
                    self.log_by_label[w * k2 + l * c + k] = self.confusion[w * k2 + k * c + l].ln();
                }
            }
        }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn priors(&self) -> &[f64] {
        &self.priors
    }

    /// Worker `w`'s confusion matrix, row-major `[true k][label l]`.
    pub fn confusion(&self, worker: usize) -> &[f64] {
        let k2 = self.classes * self.classes;
        &self.confusion[worker * k2..(worker + 1) * k2]
    }

    /// The probability that worker `w` answers an item correctly, under
    /// the class priors: `sum_k prior[k] * confusion[k][k]`.
    pub fn accuracy(&self, worker: usize) -> f64 {
        let m = self.confusion(worker);
        (0..self.classes)
            .map(|k| self.priors[k] * m[k * self.classes + k])
            .sum()
    }

    fn log_row(&self, worker: u32, label: u16) -> &[f64] {
        let c = self.classes;
        let at = label as usize * c;
        if (worker as usize) < self.workers {
            let base = worker as usize * c * c + at;
            &self.log_by_label[base..base + c]
        } else {
            &self.default_log[at..at + c]
        }
    }

    /// The posterior over classes of an item with these `(worker, label)`
    /// answers, written into `out`. Workers the model has not seen count
    /// at the prior's accuracy. This is what a live decision uses between
    /// two estimations.
    pub fn posterior(&self, answers: &[(u32, u16)], out: &mut [f64]) {
        for (o, p) in out.iter_mut().zip(&self.priors) {
            *o = p.ln();
        }
        for &(w, l) in answers {
            for (o, x) in out.iter_mut().zip(self.log_row(w, l)) {
                *o += x;
            }
        }
        normalize_logs(out);
    }
}

/// Turns log-weights into probabilities in place and returns the log of
/// their sum. All `-inf` (answers the model calls impossible under every
/// class) becomes uniform.
fn normalize_logs(v: &mut [f64]) -> f64 {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY || max.is_nan() {
        let u = 1.0 / v.len() as f64;
        v.iter_mut().for_each(|x| *x = u);
        return f64::NEG_INFINITY;
    }
    let mut sum = 0.0;
    for x in v.iter_mut() {
        let d = *x - max;
        // exp(-60) is 1e-26 next to the 1 the maximum contributes: skip
        // the exponential, which dominates the E-step's cost otherwise.
        *x = if d < -60.0 { 0.0 } else { d.exp() };
        sum += *x;
    }
    let inv = 1.0 / sum;
    for x in v.iter_mut() {
        *x *= inv;
    }
    max + sum.ln()
}

/// The result of [`estimate`].
#[derive(Clone, Debug)]
pub struct Estimate {
    pub model: Model,
    /// `[item][class]`, rows sum to 1.
    pub posterior: Vec<f64>,
    pub iterations: usize,
    pub converged: bool,
    /// Log-likelihood of the non-gold items' answers at the last E-step.
    pub log_likelihood: f64,
}

impl Estimate {
    pub fn classes(&self) -> usize {
        self.model.classes
    }

    pub fn items(&self) -> usize {
        self.posterior.len() / self.model.classes
    }

    pub fn item_posterior(&self, item: usize) -> &[f64] {
        let c = self.model.classes;
        &self.posterior[item * c..(item + 1) * c]
    }

    /// The most probable class (lowest index on a tie) and its posterior.
    pub fn label(&self, item: usize) -> (u16, f64) {
        argmax(self.item_posterior(item))
    }
}

/// The largest entry (first on a tie) and its value.
pub fn argmax(p: &[f64]) -> (u16, f64) {
    let mut best = (0u16, f64::NEG_INFINITY);
    for (k, &x) in p.iter().enumerate() {
        if x > best.1 {
            best = (k as u16, x);
        }
    }
    best
}

/// Fits the model to `data`. `gold` lists `(item, class)` pairs known to
/// be true; they are clamped throughout.
pub fn estimate(data: &Dataset, gold: &[(u32, u16)], cfg: &EmConfig) -> Estimate {
    let c = data.classes;
    let k2 = c * c;
    let n = data.items;
    const NOT_GOLD: u16 = u16::MAX;
    let mut gold_of = vec![NOT_GOLD; n];
    for &(i, k) in gold {
        if (i as usize) < n && (k as usize) < c {
            gold_of[i as usize] = k;
        }
    }

    // Start: each item's vote shares (uniform when unanswered), gold clamped.
    let mut post = vec![0.0; n * c];
    for i in 0..n {
        let row = &mut post[i * c..(i + 1) * c];
        if gold_of[i] != NOT_GOLD {
            row[gold_of[i] as usize] = 1.0;
            continue;
        }
        let m = data.answer_count(i);
        if m == 0 {
            row.iter_mut().for_each(|x| *x = 1.0 / c as f64);
            continue;
        }
        for (_, l) in data.item_answers(i) {
            row[l as usize] += 1.0 / m as f64;
        }
    }

    let mut model = Model::uninformed(c, data.workers, cfg);
    // Expected counts `[w][l][k]` (laid out like the logs) and class totals
    // from the current posteriors. The E-step refills them as it writes
    // each new posterior, so one round reads every answer once.
    let mut counts = vec![0.0; data.workers * k2];
    let mut totals = vec![0.0; c];
    let counted = |i: usize| data.answer_count(i) > 0 || gold_of[i] != NOT_GOLD;
    for i in 0..n {
        if counted(i) {
            accumulate(data, i, &post[i * c..(i + 1) * c], &mut counts, &mut totals);
        }
    }
    let mut row_tot = vec![0.0; c];
    let mut acc = vec![0.0; c];
    let mut log_priors = vec![0.0; c];
    let mut iterations = 0;
    let mut converged = false;
    let mut log_likelihood = f64::NEG_INFINITY;
    let mut previous = f64::NEG_INFINITY;

    while iterations < cfg.max_iterations {
        iterations += 1;
        // M-step: priors, then each worker's confusion matrix.
        let s: f64 = totals.iter().sum::<f64>() + cfg.class_pseudo_count * c as f64;
        for k in 0..c {
            model.priors[k] = (totals[k] + cfg.class_pseudo_count) / s;
            log_priors[k] = model.priors[k].ln();
        }
        for w in 0..data.workers {
            let wc = &counts[w * k2..(w + 1) * k2];
            row_tot.iter_mut().for_each(|x| *x = cfg.prior_strength);
            for l in 0..c {
                for k in 0..c {
                    row_tot[k] += wc[l * c + k];
                }
            }
            for k in 0..c {
                for l in 0..c {
                    let v = (wc[l * c + k] + prior_row(c, cfg, k, l)) / row_tot[k];
                    model.confusion[w * k2 + k * c + l] = v;
                    model.log_by_label[w * k2 + l * c + k] = v.ln();
                }
            }
        }
        // E-step, accumulating the next M-step's counts on the way.
        counts.iter_mut().for_each(|x| *x = 0.0);
        totals.iter_mut().for_each(|x| *x = 0.0);
        let mut moved: f64 = 0.0;
        log_likelihood = 0.0;
        for i in 0..n {
            let (lo, hi) = (data.offsets[i] as usize, data.offsets[i + 1] as usize);
            if gold_of[i] == NOT_GOLD {
                acc.copy_from_slice(&log_priors);
                for j in lo..hi {
                    let base = data.worker_of[j] as usize * k2 + data.label_of[j] as usize * c;
                    for (a, x) in acc.iter_mut().zip(&model.log_by_label[base..base + c]) {
                        *a += x;
                    }
                }
                let ll = normalize_logs(&mut acc);
                if hi > lo {
                    log_likelihood += ll;
                }
                let row = &mut post[i * c..(i + 1) * c];
                for (r, a) in row.iter_mut().zip(&acc) {
                    moved = moved.max((*r - a).abs());
                    *r = *a;
                }
            }
            if counted(i) {
                accumulate(data, i, &post[i * c..(i + 1) * c], &mut counts, &mut totals);
            }
        }
        let gain = log_likelihood - previous;
        previous = log_likelihood;
        if moved <= cfg.tolerance || gain.abs() <= cfg.likelihood_tolerance * log_likelihood.abs() {
            converged = true;
            break;
        }
    }
    Estimate {
        model,
        posterior: post,
        iterations,
        converged,
        log_likelihood,
    }
}

/// Adds item `i`'s posterior `p` to the class totals and, for each of its
/// answers, to the answering worker's expected counts.
fn accumulate(data: &Dataset, i: usize, p: &[f64], counts: &mut [f64], totals: &mut [f64]) {
    let c = p.len();
    let k2 = c * c;
    for (t, q) in totals.iter_mut().zip(p) {
        *t += q;
    }
    let (lo, hi) = (data.offsets[i] as usize, data.offsets[i + 1] as usize);
    for j in lo..hi {
        let base = data.worker_of[j] as usize * k2 + data.label_of[j] as usize * c;
        for (x, q) in counts[base..base + c].iter_mut().zip(p) {
            *x += q;
        }
    }
}

/// Plurality vote per item (ties to the lowest class index), for
/// comparison: `None` for an unanswered item.
pub fn majority_vote(data: &Dataset) -> Vec<Option<u16>> {
    let mut counts = vec![0u32; data.classes];
    (0..data.items)
        .map(|i| {
            counts.iter_mut().for_each(|x| *x = 0);
            for (_, l) in data.item_answers(i) {
                counts[l as usize] += 1;
            }
            let (best, n) = counts
                .iter()
                .enumerate()
                .fold((0, 0), |b, (k, &n)| if n > b.1 { (k, n) } else { b });
            (n > 0).then_some(best as u16)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(item: u32, worker: u32, label: u16) -> Answer {
        Answer {
            item,
            worker,
            label,
        }
    }

    #[test]
    fn a_dataset_groups_answers_by_item_and_refuses_out_of_range_ones() {
        let d = Dataset::new(2, 3, 2, &[a(2, 0, 1), a(0, 1, 0), a(2, 1, 0)]).unwrap();
        assert_eq!(d.item_answers(2).collect::<Vec<_>>(), vec![(0, 1), (1, 0)]);
        assert_eq!(d.answer_count(1), 0);
        assert_eq!(d.iter().count(), 3);
        assert!(Dataset::new(2, 3, 2, &[a(3, 0, 0)]).is_err());
        assert!(Dataset::new(2, 3, 2, &[a(0, 2, 0)]).is_err());
        assert!(Dataset::new(2, 3, 2, &[a(0, 0, 2)]).is_err());
        assert!(Dataset::new(1, 3, 2, &[]).is_err());
    }

    #[test]
    fn an_unseen_worker_counts_at_the_prior_accuracy() {
        let cfg = EmConfig::default();
        let m = Model::uninformed(3, 0, &cfg);
        let mut out = [0.0; 3];
        m.posterior(&[(7, 1), (8, 1)], &mut out);
        // 0.7^2 against (0.15^2) twice.
        let expect = 0.49 / (0.49 + 2.0 * 0.0225);
        assert!((out[1] - expect).abs() < 1e-12, "{out:?}");
    }
}
