//! A seeded crowd simulator: the evaluation of the quality engine.
//!
//! A [`Crowd`] is a set of simulated contributors: honest ones with a
//! spread of skills (right with probability `skill`, otherwise a uniformly
//! wrong class), spammers (a uniformly random class), adversaries (always
//! the true class shifted by a fixed offset: systematically wrong),
//! colluding pairs (two accounts of one person, giving the same random
//! answer to the same item and working the same items), and uneven
//! activity (log-normal weights decide who asks for the next task).
//!
//! [`run`] plays a bounty through the same pure functions the server uses:
//! every task a contributor takes is a gold item with probability
//! `1 / gold_every`, else the next real item that needs an answer (items
//! already started first, as the queue does). Gold answers update the
//! contributor's record and may suspend them at once; every
//! `reestimate_every` answers EM re-runs (the server's background
//! `run_once`), refreshes the model used for live decisions, and re-checks
//! everyone with the evidence from aggregation. A suspended contributor
//! gets no more tasks and their answers on items still open stop counting:
//! those items ask someone else. At the end, one last estimation gives
//! the delivered labels.
//!
//! Everything is deterministic for a given seed.

use std::collections::BTreeSet;

use crate::em::{self, Answer, Dataset, EmConfig, Model};
use crate::reliability::{self, GoldRecord, PeerEvidence, SuspensionRule};
use crate::signals::{self, SignalConfig};

/// SplitMix64: small, fast, and good enough for simulation.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// Standard normal, by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.f64();
        let v = self.f64();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// What kind of contributor a simulated one is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Honest,
    Spammer,
    Adversary,
    Colluder,
}

impl Kind {
    /// Spammers, adversaries and colluders: people who should go.
    pub fn is_bad(self) -> bool {
        !matches!(self, Kind::Honest)
    }
}

#[derive(Clone, Debug)]
pub struct Worker {
    pub kind: Kind,
    /// Honest: probability of the right class.
    pub skill: f64,
    /// Adversary: the offset added to the true class.
    pub shift: u16,
    /// Colluder: the pair's id; partners share it.
    pub pair: u32,
    /// Relative activity.
    pub weight: f64,
}

impl Worker {
    /// The worker's true confusion matrix (`[true k][label l]`). A
    /// colluder's answer, on its own, says nothing about the truth.
    pub fn confusion(&self, classes: u16) -> Vec<f64> {
        let c = classes as usize;
        let mut m = vec![0.0; c * c];
        for k in 0..c {
            for l in 0..c {
                m[k * c + l] = match self.kind {
                    Kind::Honest if k == l => self.skill,
                    Kind::Honest => (1.0 - self.skill) / (c - 1) as f64,
                    Kind::Spammer | Kind::Colluder => 1.0 / c as f64,
                    Kind::Adversary if l == (k + self.shift as usize) % c => 1.0 - 1e-9,
                    Kind::Adversary => 1e-9 / (c - 1) as f64,
                };
            }
        }
        m
    }

    fn answer(&self, truth: u16, item: u32, classes: u16, rng: &mut Rng) -> u16 {
        match self.kind {
            Kind::Honest => {
                if rng.chance(self.skill) {
                    truth
                } else {
                    let wrong = rng.below(classes as u64 - 1) as u16;
                    if wrong >= truth { wrong + 1 } else { wrong }
                }
            }
            Kind::Spammer => rng.below(classes as u64) as u16,
            Kind::Adversary => (truth + self.shift) % classes,
            Kind::Colluder => {
                // The same "random" class for both accounts of the pair.
                let mut h = Rng::new(((self.pair as u64) << 32) ^ item as u64 ^ 0xC011_0DE5);
                h.below(classes as u64) as u16
            }
        }
    }
}

/// Who is in the crowd.
#[derive(Clone, Debug)]
pub struct Crowd {
    pub seed: u64,
    pub classes: u16,
    pub items: usize,
    pub honest: usize,
    pub spammers: usize,
    pub adversaries: usize,
    pub colluding_pairs: usize,
    pub skill: (f64, f64),
    /// Sigma of the log-normal activity weights (0: everyone alike).
    pub activity_sigma: f64,
}

impl Crowd {
    /// 3 classes, 2,000 items, honest skills 0.65-0.95, uneven activity;
    /// the mix of contributors is up to the caller.
    pub fn standard(seed: u64, honest: usize, spammers: usize, adversaries: usize) -> Crowd {
        Crowd {
            seed,
            classes: 3,
            items: 2000,
            honest,
            spammers,
            adversaries,
            colluding_pairs: 0,
            skill: (0.65, 0.95),
            activity_sigma: 0.8,
        }
    }

    pub fn workers(&self) -> Vec<Worker> {
        let mut rng = Rng::new(self.seed ^ 0x5EED_C0DE);
        let mut out = Vec::new();
        let mut push = |kind, rng: &mut Rng, pair| {
            let skill = self.skill.0 + (self.skill.1 - self.skill.0) * rng.f64();
            let shift = 1 + rng.below(self.classes as u64 - 1) as u16;
            let weight = (self.activity_sigma * rng.normal()).exp();
            out.push(Worker {
                kind,
                skill,
                shift,
                pair,
                weight,
            });
        };
        for _ in 0..self.honest {
            push(Kind::Honest, &mut rng, 0);
        }
        for _ in 0..self.spammers {
            push(Kind::Spammer, &mut rng, 0);
        }
        for _ in 0..self.adversaries {
            push(Kind::Adversary, &mut rng, 0);
        }
        for p in 0..self.colluding_pairs {
            push(Kind::Colluder, &mut rng, p as u32 + 1);
            push(Kind::Colluder, &mut rng, p as u32 + 1);
        }
        // Interleave kinds so worker ids say nothing.
        let n = out.len();
        for i in (1..n).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            out.swap(i, j);
        }
        out
    }
}

/// How many answers an item gets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Overlap {
    /// Exactly this many.
    Fixed(u32),
    /// Resolve once the posterior of the best class reaches `target` with
    /// at least `min` answers; otherwise ask for one more, up to `max`.
    /// An item also resolves when one class has `cap` agreeing answers
    /// (so no item ever pays more than `cap` answers).
    Dynamic {
        min: u32,
        max: u32,
        target: f64,
        cap: u32,
    },
}

/// How the delivered labels are computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Plurality, ties broken at random: what the spine does.
    MajorityVote,
    Em,
}

/// How the bounty is run.
#[derive(Clone, Debug)]
pub struct Policy {
    pub overlap: Overlap,
    pub aggregation: Aggregation,
    /// Gold items available (0: no gold).
    pub gold_items: usize,
    /// One task in this many is gold.
    pub gold_every: u32,
    pub suspension: Option<SuspensionRule>,
    /// Real answers between two estimations.
    pub reestimate_every: usize,
    pub em: EmConfig,
}

impl Policy {
    /// The spine: fixed overlap, plurality, no gold.
    pub fn majority_vote(overlap: u32) -> Policy {
        Policy {
            overlap: Overlap::Fixed(overlap),
            aggregation: Aggregation::MajorityVote,
            gold_items: 0,
            gold_every: 0,
            suspension: None,
            reestimate_every: usize::MAX,
            em: EmConfig::default(),
        }
    }

    /// The quality engine with fixed overlap: EM, 200 gold items mixed in
    /// at 1 in 10, the default suspension rule.
    pub fn engine(classes: u16, overlap: Overlap) -> Policy {
        Policy {
            overlap,
            aggregation: Aggregation::Em,
            gold_items: 200,
            gold_every: 10,
            suspension: Some(SuspensionRule::for_classes(classes as usize)),
            reestimate_every: 250,
            em: EmConfig::default(),
        }
    }
}

/// What happened to one simulated contributor.
#[derive(Clone, Debug)]
pub struct WorkerOutcome {
    pub kind: Kind,
    pub skill: f64,
    pub real_answers: u32,
    pub gold: GoldRecord,
    /// Gold answers they had given when suspended.
    pub suspended_after_gold: Option<u32>,
}

/// The result of a simulated bounty.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Share of real items whose delivered label is the true class.
    pub accuracy: f64,
    /// The best any aggregation could do with the same answers: the
    /// posterior under the crowd's *true* parameters (which no real
    /// system knows). The ceiling for `accuracy`.
    pub oracle_accuracy: f64,
    /// Real answers collected per item, including those that stopped
    /// counting when their author was suspended.
    pub answers_per_item: f64,
    pub gold_answers: u32,
    /// Answers that stopped counting because their author was suspended.
    pub discarded: u32,
    pub estimations: u32,
    pub workers: Vec<WorkerOutcome>,
    /// Colluding pairs flagged by the collusion signal, of all pairs.
    pub colluding_pairs_flagged: (u32, u32),
    /// Pairs flagged that are not a colluding pair.
    pub other_pairs_flagged: u32,
}

impl Outcome {
    /// `(suspended within `n` gold answers, evaluable)` over bad workers.
    /// A bad worker is evaluable if suspended or if they gave at least `n`
    /// gold answers; one who ran out of work earlier unsuspended is not.
    pub fn bad_suspended_within(&self, n: u32) -> (u32, u32) {
        let mut ok = 0;
        let mut of = 0;
        for w in self.workers.iter().filter(|w| w.kind.is_bad()) {
            match w.suspended_after_gold {
                Some(g) => {
                    of += 1;
                    if g <= n {
                        ok += 1;
                    }
                }
                None if w.gold.total >= n => of += 1,
                None => {}
            }
        }
        (ok, of)
    }

    /// `(suspended, all)` over honest workers with skill at least `skill`.
    pub fn honest_suspended(&self, skill: f64) -> (u32, u32) {
        let honest = self
            .workers
            .iter()
            .filter(|w| w.kind == Kind::Honest && w.skill >= skill);
        let mut n = 0;
        let mut s = 0;
        for w in honest {
            n += 1;
            if w.suspended_after_gold.is_some() {
                s += 1;
            }
        }
        (s, n)
    }
}

struct State<'a> {
    crowd: &'a Crowd,
    policy: &'a Policy,
    workers: Vec<Worker>,
    truth: Vec<u16>,
    /// Counted answers of each real item.
    counted: Vec<Vec<(u32, u16)>>,
    /// Everyone who ever answered each real item.
    touched: Vec<Vec<u32>>,
    needed: Vec<u32>,
    closed: Vec<bool>,
    available: BTreeSet<(bool, u32)>,
    gold_answers: Vec<Answer>,
    gold_seen: Vec<Vec<bool>>,
    records: Vec<GoldRecord>,
    peer: Vec<PeerEvidence>,
    suspended: Vec<Option<u32>>,
    exhausted: Vec<bool>,
    real_by_worker: Vec<Vec<u32>>,
    model: Model,
    answers: u32,
    discarded: u32,
    estimations: u32,
    rng: Rng,
}

impl State<'_> {
    fn key(&self, i: u32) -> (bool, u32) {
        (self.touched[i as usize].is_empty(), i)
    }

    fn refile(&mut self, i: u32, was: (bool, u32), was_available: bool) {
        if was_available {
            self.available.remove(&was);
        }
        let iu = i as usize;
        if !self.closed[iu] && (self.counted[iu].len() as u32) < self.needed[iu] {
            self.available.insert(self.key(i));
        }
    }

    fn is_available(&self, i: u32) -> bool {
        let iu = i as usize;
        !self.closed[iu] && (self.counted[iu].len() as u32) < self.needed[iu]
    }

    fn pick_worker(&mut self) -> Option<usize> {
        let total: f64 = (0..self.workers.len())
            .filter(|&w| self.suspended[w].is_none() && !self.exhausted[w])
            .map(|w| self.workers[w].weight)
            .sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.rng.f64() * total;
        let mut last = None;
        for w in 0..self.workers.len() {
            if self.suspended[w].is_some() || self.exhausted[w] {
                continue;
            }
            last = Some(w);
            x -= self.workers[w].weight;
            if x < 0.0 {
                return Some(w);
            }
        }
        last
    }

    fn next_real(&self, w: usize) -> Option<u32> {
        let me = w as u32;
        self.available
            .iter()
            .map(|&(_, i)| i)
            .find(|&i| !self.touched[i as usize].contains(&me))
    }

    /// The other account of a colluder's pair, if it still works.
    fn partner(&self, w: usize) -> Option<usize> {
        let me = &self.workers[w];
        if me.kind != Kind::Colluder {
            return None;
        }
        (0..self.workers.len()).find(|&p| {
            p != w
                && self.workers[p].kind == Kind::Colluder
                && self.workers[p].pair == me.pair
                && self.suspended[p].is_none()
        })
    }

    fn answer_gold(&mut self, w: usize, g: usize) {
        self.gold_seen[w][g] = true;
        let item = (self.crowd.items + g) as u32;
        let truth = self.truth[item as usize];
        let label = self.workers[w].answer(truth, item, self.crowd.classes, &mut self.rng);
        self.gold_answers.push(Answer {
            item,
            worker: w as u32,
            label,
        });
        self.records[w].add(label == truth);
        self.check(w);
    }

    fn answer_real(&mut self, w: usize, i: u32) {
        let iu = i as usize;
        let was = self.key(i);
        let label = self.workers[w].answer(self.truth[iu], i, self.crowd.classes, &mut self.rng);
        self.touched[iu].push(w as u32);
        self.counted[iu].push((w as u32, label));
        self.real_by_worker[w].push(i);
        self.answers += 1;
        self.refile(i, was, true);
        self.decide(i);
        if (self.answers as usize).is_multiple_of(self.policy.reestimate_every.max(1)) {
            self.reestimate();
        }
    }

    fn suspend(&mut self, w: usize) {
        if self.suspended[w].is_some() {
            return;
        }
        self.suspended[w] = Some(self.records[w].total);
        let items = self.real_by_worker[w].clone();
        for i in items {
            let iu = i as usize;
            if self.closed[iu] {
                continue;
            }
            let was = self.key(i);
            let was_available = self.is_available(i);
            let before = self.counted[iu].len();
            self.counted[iu].retain(|(x, _)| *x as usize != w);
            self.discarded += (before - self.counted[iu].len()) as u32;
            self.refile(i, was, was_available);
        }
    }

    fn check(&mut self, w: usize) {
        if let Some(rule) = &self.policy.suspension
            && rule.suspends_with(self.records[w], self.peer[w])
        {
            self.suspend(w);
        }
    }

    /// Decides a real item that has the answers it needs.
    fn decide(&mut self, i: u32) {
        let iu = i as usize;
        let n = self.counted[iu].len() as u32;
        if self.closed[iu] || n < self.needed[iu] {
            return;
        }
        let was = self.key(i);
        let was_available = self.is_available(i);
        match self.policy.overlap {
            Overlap::Fixed(_) => self.closed[iu] = true,
            Overlap::Dynamic {
                min,
                max,
                target,
                cap,
            } => {
                if self.confident(i, min, target, cap) || n >= max {
                    self.closed[iu] = true;
                } else {
                    self.needed[iu] = n + 1;
                }
            }
        }
        self.refile(i, was, was_available);
    }

    fn confident(&self, i: u32, min: u32, target: f64, cap: u32) -> bool {
        let votes = &self.counted[i as usize];
        let mut post = vec![0.0; self.crowd.classes as usize];
        self.model.posterior(votes, &mut post);
        let (_, conf) = em::argmax(&post);
        let mut counts = vec![0u32; self.crowd.classes as usize];
        for (_, l) in votes {
            counts[*l as usize] += 1;
        }
        let top = counts.iter().copied().max().unwrap_or(0);
        (votes.len() as u32 >= min && conf >= target) || top >= cap
    }

    fn dataset(&self) -> (Dataset, Vec<(u32, u16)>) {
        let n = self.crowd.items;
        let mut answers: Vec<Answer> = Vec::with_capacity(self.answers as usize);
        for (i, votes) in self.counted.iter().enumerate() {
            for &(worker, label) in votes {
                answers.push(Answer {
                    item: i as u32,
                    worker,
                    label,
                });
            }
        }
        answers.extend(self.gold_answers.iter().copied());
        let gold: Vec<(u32, u16)> = (0..self.policy.gold_items)
            .map(|g| ((n + g) as u32, self.truth[n + g]))
            .collect();
        let data = Dataset::new(
            self.crowd.classes as usize,
            n + self.policy.gold_items,
            self.workers.len(),
            &answers,
        )
        .expect("simulated answers are in range");
        (data, gold)
    }

    fn reestimate(&mut self) {
        self.estimations += 1;
        let (data, gold) = self.dataset();
        let est = em::estimate(&data, &gold, &self.policy.em);
        self.peer = reliability::peer_evidence(&data, &est, &gold);
        self.model = est.model;
        for w in 0..self.workers.len() {
            self.check(w);
        }
        if let Overlap::Dynamic { .. } = self.policy.overlap {
            // Open items waiting for one more answer may be sure enough now.
            let waiting: Vec<u32> = (0..self.crowd.items as u32)
                .filter(|&i| !self.closed[i as usize] && !self.counted[i as usize].is_empty())
                .collect();
            for i in waiting {
                let iu = i as usize;
                if let Overlap::Dynamic {
                    min, target, cap, ..
                } = self.policy.overlap
                    && self.confident(i, min, target, cap)
                {
                    let was = self.key(i);
                    let was_available = self.is_available(i);
                    self.closed[iu] = true;
                    self.refile(i, was, was_available);
                }
            }
        }
    }
}

/// Plays a bounty with `crowd` under `policy`.
pub fn run(crowd: &Crowd, policy: &Policy) -> Outcome {
    let mut rng = Rng::new(crowd.seed);
    let workers = crowd.workers();
    let nw = workers.len();
    let total_items = crowd.items + policy.gold_items;
    let truth: Vec<u16> = (0..total_items)
        .map(|_| rng.below(crowd.classes as u64) as u16)
        .collect();
    let start = match policy.overlap {
        Overlap::Fixed(n) => n,
        Overlap::Dynamic { min, .. } => min,
    };
    let mut s = State {
        crowd,
        policy,
        workers,
        truth,
        counted: vec![Vec::new(); crowd.items],
        touched: vec![Vec::new(); crowd.items],
        needed: vec![start; crowd.items],
        closed: vec![false; crowd.items],
        available: (0..crowd.items as u32).map(|i| (true, i)).collect(),
        gold_answers: Vec::new(),
        gold_seen: vec![vec![false; policy.gold_items]; nw],
        records: vec![GoldRecord::default(); nw],
        peer: vec![PeerEvidence::default(); nw],
        suspended: vec![None; nw],
        exhausted: vec![false; nw],
        real_by_worker: vec![Vec::new(); nw],
        model: Model::uninformed(crowd.classes as usize, 0, &policy.em),
        answers: 0,
        discarded: 0,
        estimations: 0,
        rng,
    };
    let classes = crowd.classes;
    while let Some(w) = s.pick_worker() {
        let wants_gold = policy.gold_every > 0
            && policy.gold_items > 0
            && s.rng.chance(1.0 / policy.gold_every as f64);
        if wants_gold {
            let unseen: Vec<usize> = (0..policy.gold_items)
                .filter(|g| !s.gold_seen[w][*g])
                .collect();
            if !unseen.is_empty() {
                let g = unseen[s.rng.below(unseen.len() as u64) as usize];
                s.answer_gold(w, g);
                // The other account of a colluding pair sees it too.
                if let Some(p) = s.partner(w)
                    && !s.gold_seen[p][g]
                {
                    s.answer_gold(p, g);
                }
                continue;
            }
        }
        let Some(i) = s.next_real(w) else {
            s.exhausted[w] = true;
            continue;
        };
        s.answer_real(w, i);
        if let Some(p) = s.partner(w)
            && s.is_available(i)
            && !s.touched[i as usize].contains(&(p as u32))
        {
            s.answer_real(p, i);
        }
    }

    // The delivered labels.
    let n = crowd.items;
    let (data, gold) = s.dataset();
    let (labels, flagged) = match policy.aggregation {
        Aggregation::MajorityVote => {
            let mut counts = vec![0u32; classes as usize];
            let labels: Vec<u16> = (0..n)
                .map(|i| {
                    counts.iter_mut().for_each(|c| *c = 0);
                    for (_, l) in data.item_answers(i) {
                        counts[l as usize] += 1;
                    }
                    let top = counts.iter().copied().max().unwrap_or(0);
                    let leaders: Vec<u16> = (0..classes)
                        .filter(|k| counts[*k as usize] == top)
                        .collect();
                    leaders[s.rng.below(leaders.len() as u64) as usize]
                })
                .collect();
            (labels, Vec::new())
        }
        Aggregation::Em => {
            let est = em::estimate(&data, &gold, &policy.em);
            let labels = (0..n).map(|i| est.label(i).0).collect();
            let pairs = signals::collusion(&data, &est, &SignalConfig::default());
            (labels, pairs)
        }
    };
    let correct = (0..n).filter(|&i| labels[i] == s.truth[i]).count();
    let truth_model = Model::from_parts(
        vec![1.0 / classes as f64; classes as usize],
        s.workers
            .iter()
            .flat_map(|w| w.confusion(classes))
            .collect(),
        &policy.em,
    );
    let mut post = vec![0.0; classes as usize];
    let oracle = (0..n)
        .filter(|&i| {
            let votes: Vec<(u32, u16)> = data.item_answers(i).collect();
            truth_model.posterior(&votes, &mut post);
            em::argmax(&post).0 == s.truth[i]
        })
        .count();
    let pairs = crowd.colluding_pairs as u32;
    let mut caught = BTreeSet::new();
    let mut other = 0;
    for p in flagged.iter().filter(|p| p.flagged) {
        let (a, b) = (&s.workers[p.a as usize], &s.workers[p.b as usize]);
        if a.kind == Kind::Colluder && b.kind == Kind::Colluder && a.pair == b.pair {
            caught.insert(a.pair);
        } else {
            other += 1;
        }
    }
    let real_answers: Vec<u32> = s.real_by_worker.iter().map(|v| v.len() as u32).collect();
    Outcome {
        accuracy: correct as f64 / n as f64,
        oracle_accuracy: oracle as f64 / n as f64,
        answers_per_item: s.answers as f64 / n as f64,
        gold_answers: s.gold_answers.len() as u32,
        discarded: s.discarded,
        estimations: s.estimations,
        workers: s
            .workers
            .iter()
            .enumerate()
            .map(|(w, x)| WorkerOutcome {
                kind: x.kind,
                skill: x.skill,
                real_answers: real_answers[w],
                gold: s.records[w],
                suspended_after_gold: s.suspended[w],
            })
            .collect(),
        colluding_pairs_flagged: (caught.len() as u32, pairs),
        other_pairs_flagged: other,
    }
}

/// One row of the evaluation: a crowd, and how Sahel runs the bounty.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub crowd: Crowd,
    /// The bounty's overlap `N`: the baseline gets exactly `N` answers per
    /// item.
    pub overlap: u32,
    /// How the engine runs: `Overlap::Dynamic { min: N, max: 2N - 1, .. }`
    /// is Sahel's "overlap N" (N answers, more while not confident, like
    /// the spine's ties); a lower `min` is dynamic overlap.
    pub engine: Overlap,
}

/// The outcomes of one scenario.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub scenario: Scenario,
    /// Plurality vote over exactly `overlap` answers, no gold: the spine.
    pub majority: Outcome,
    /// The engine with exactly `overlap` answers per item.
    pub exact: Outcome,
    /// The engine as the scenario runs it.
    pub engine: Outcome,
}

/// Sahel's "overlap N" under the engine: N answers, then more while the
/// best class is below `target`, up to 2N - 1, and never more than N paid.
pub fn overlap_n(n: u32, target: f64) -> Overlap {
    Overlap::Dynamic {
        min: n,
        max: 2 * n - 1,
        target,
        cap: n,
    }
}

/// Dynamic overlap on an overlap-N budget: resolve from `min` answers on.
pub fn dynamic(min: u32, n: u32, target: f64) -> Overlap {
    Overlap::Dynamic {
        min,
        max: 2 * n - 1,
        target,
        cap: n,
    }
}

/// The evaluation table: 3 classes, 2,000 items, 100 contributors.
pub fn scenarios(seed: u64) -> Vec<Scenario> {
    let mut mixed = Crowd::standard(seed, 70, 10, 10);
    mixed.colluding_pairs = 5;
    vec![
        Scenario {
            name: "honest, skills 0.65-0.95",
            crowd: Crowd::standard(seed, 100, 0, 0),
            overlap: 5,
            engine: overlap_n(5, 0.95),
        },
        Scenario {
            name: "30% spammers",
            crowd: Crowd::standard(seed, 70, 30, 0),
            overlap: 5,
            engine: overlap_n(5, 0.95),
        },
        Scenario {
            name: "20% adversaries",
            crowd: Crowd::standard(seed, 80, 0, 20),
            overlap: 3,
            engine: overlap_n(3, 0.95),
        },
        Scenario {
            name: "honest, dynamic overlap",
            crowd: Crowd::standard(seed, 100, 0, 0),
            overlap: 5,
            engine: dynamic(2, 5, 0.95),
        },
        Scenario {
            name: "30% spammers, dynamic overlap",
            crowd: Crowd::standard(seed, 70, 30, 0),
            overlap: 5,
            engine: dynamic(2, 5, 0.95),
        },
        Scenario {
            name: "20% adversaries, dynamic overlap",
            crowd: Crowd::standard(seed, 80, 0, 20),
            overlap: 5,
            engine: dynamic(2, 5, 0.95),
        },
        Scenario {
            name: "10% spammers, 10% adversaries, 5 colluding pairs",
            crowd: mixed,
            overlap: 5,
            engine: overlap_n(5, 0.95),
        },
    ]
}

/// Runs the baseline, the engine at exactly `overlap`, and the engine as
/// the scenario says, on the same crowd.
pub fn evaluate(s: &Scenario) -> Evaluation {
    let classes = s.crowd.classes;
    Evaluation {
        scenario: s.clone(),
        majority: run(&s.crowd, &Policy::majority_vote(s.overlap)),
        exact: run(
            &s.crowd,
            &Policy::engine(classes, Overlap::Fixed(s.overlap)),
        ),
        engine: run(&s.crowd, &Policy::engine(classes, s.engine)),
    }
}

/// A multi-label crowd: each of `classes` classes is in an item's true set
/// with probability `density`. Honest contributors get each class right
/// with their `skill`; spammers tick each class with probability one
/// half; adversaries invert every class. Each real and gold item gets
/// `overlap` answers from distinct contributors, picked by log-normal
/// activity weights.
#[derive(Clone, Debug)]
pub struct MultiCrowd {
    pub seed: u64,
    pub classes: u16,
    pub items: usize,
    pub gold_items: usize,
    pub density: f64,
    pub overlap: u32,
    pub honest: usize,
    pub spammers: usize,
    pub adversaries: usize,
    pub skill: (f64, f64),
    pub activity_sigma: f64,
}

impl MultiCrowd {
    /// 4 classes at density 0.3, 1,000 items and 50 gold, overlap 3, 20
    /// honest contributors (skills 0.7-0.95 per class), 5 spammers and
    /// one adversary.
    pub fn standard(seed: u64) -> MultiCrowd {
        MultiCrowd {
            seed,
            classes: 4,
            items: 1000,
            gold_items: 50,
            density: 0.3,
            overlap: 3,
            honest: 20,
            spammers: 5,
            adversaries: 1,
            skill: (0.7, 0.95),
            activity_sigma: 0.8,
        }
    }
}

/// How one aggregation did on a [`MultiCrowd`]'s real items.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SetScore {
    /// Share of items whose set is exactly the true set.
    pub exact: f64,
    /// Share of (item, class) pairs decided right.
    pub per_class: f64,
}

/// Per-class majority and per-class EM on the same answers.
#[derive(Clone, Debug)]
pub struct MultiOutcome {
    pub majority: SetScore,
    /// EM seeded by the gold items.
    pub em: SetScore,
    /// EM on the same answers with no gold given.
    pub em_without_gold: SetScore,
    /// EM's mean per-class accuracy of each contributor, by kind.
    pub accuracy: Vec<(Kind, f64)>,
}

/// Plays a multi-label bounty at fixed overlap and scores per-class
/// majority vote against per-class EM ([`crate::multi_label`]).
pub fn run_multi(crowd: &MultiCrowd) -> MultiOutcome {
    use crate::multi_label::{self, SetAnswer};
    let mut rng = Rng::new(crowd.seed ^ 0x4D55_17ED);
    let k = crowd.classes;
    let mut workers: Vec<(Kind, f64, f64)> = Vec::new();
    for (kind, n) in [
        (Kind::Honest, crowd.honest),
        (Kind::Spammer, crowd.spammers),
        (Kind::Adversary, crowd.adversaries),
    ] {
        for _ in 0..n {
            let skill = crowd.skill.0 + (crowd.skill.1 - crowd.skill.0) * rng.f64();
            let weight = (crowd.activity_sigma * rng.normal()).exp();
            workers.push((kind, skill, weight));
        }
    }
    let total = crowd.items + crowd.gold_items;
    let truth: Vec<Vec<u16>> = (0..total)
        .map(|_| (0..k).filter(|_| rng.chance(crowd.density)).collect())
        .collect();
    let mut answers = Vec::with_capacity(total * crowd.overlap as usize);
    for (i, t) in truth.iter().enumerate() {
        let mut picked: Vec<usize> = Vec::new();
        while picked.len() < (crowd.overlap as usize).min(workers.len()) {
            let sum: f64 = (0..workers.len())
                .filter(|w| !picked.contains(w))
                .map(|w| workers[w].2)
                .sum();
            let mut x = rng.f64() * sum;
            let w = (0..workers.len())
                .filter(|w| !picked.contains(w))
                .find(|&w| {
                    x -= workers[w].2;
                    x < 0.0
                })
                .unwrap_or_else(|| (0..workers.len()).rfind(|w| !picked.contains(w)).unwrap());
            picked.push(w);
            let (kind, skill, _) = workers[w];
            let labels: Vec<u16> = (0..k)
                .filter(|c| {
                    let has = t.contains(c);
                    match kind {
                        Kind::Honest => has == rng.chance(skill),
                        Kind::Adversary => !has,
                        _ => rng.chance(0.5),
                    }
                })
                .collect();
            answers.push(SetAnswer {
                item: i as u32,
                worker: w as u32,
                labels,
            });
        }
    }
    let gold: Vec<(u32, Vec<u16>)> = (crowd.items..total)
        .map(|i| (i as u32, truth[i].clone()))
        .collect();
    let cfg = EmConfig::default();
    let fit = |gold: &[(u32, Vec<u16>)]| {
        multi_label::estimate(k as usize, total, workers.len(), &answers, gold, &cfg)
            .expect("simulated answers are in range")
    };
    let score = |label: &dyn Fn(usize) -> Vec<u16>| {
        let (mut exact, mut right) = (0usize, 0usize);
        for (i, t) in truth.iter().enumerate().take(crowd.items) {
            let got = label(i);
            exact += usize::from(got == *t);
            right += (0..k).filter(|c| got.contains(c) == t.contains(c)).count();
        }
        SetScore {
            exact: exact as f64 / crowd.items as f64,
            per_class: right as f64 / (crowd.items * k as usize) as f64,
        }
    };
    let seeded = fit(&gold);
    let blind = fit(&[]);
    let votes = multi_label::majority_vote(&seeded.data);
    MultiOutcome {
        majority: score(&|i| votes[i].clone().unwrap_or_default()),
        em: score(&|i| seeded.labels(i).0),
        em_without_gold: score(&|i| blind.labels(i).0),
        accuracy: workers
            .iter()
            .enumerate()
            .map(|(w, x)| (x.0, seeded.accuracy(w)))
            .collect(),
    }
}
