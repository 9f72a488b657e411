//! Prints the quality engine's evaluation as Markdown tables: the
//! bluebirds dataset, the simulated crowds, and the suspension rule's
//! exact curves. `cargo run --release -p sahel-quality --bin
//! sahel-quality-report [-- --seed N]`; the README's tables come from it.

use sahel_quality::em;
use sahel_quality::offline;
use sahel_quality::reliability::{SuspensionRule, suspension_curve};
use sahel_quality::sim::{self, Evaluation, Kind, Overlap};

fn overlap_text(o: Overlap) -> String {
    match o {
        Overlap::Fixed(n) => format!("exactly {n}"),
        Overlap::Dynamic {
            min,
            max,
            target,
            cap,
        } if min == cap => format!("{min}, up to {max} below {target}"),
        Overlap::Dynamic {
            min, max, target, ..
        } => format!("dynamic {min}-{max} at {target}"),
    }
}

fn bluebirds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/bluebirds");
    let open = |f: &str| {
        std::fs::File::open(format!("{dir}/{f}")).unwrap_or_else(|e| panic!("{dir}/{f}: {e}"))
    };
    let rows = offline::read_answers(open("labels.csv")).expect("labels.csv");
    let gold = offline::read_gold(open("gold.csv")).expect("gold.csv");
    let out = offline::aggregate(&rows, &[], &em::EmConfig::default()).expect("aggregates");
    let truth: std::collections::HashMap<&str, &str> =
        gold.iter().map(|(i, l)| (i.as_str(), l.as_str())).collect();
    let labels = out.labels();
    let em_acc = labels
        .iter()
        .filter(|r| truth.get(r.item.as_str()) == Some(&r.label.as_str()))
        .count() as f64
        / labels.len() as f64;
    let votes = em::majority_vote(&out.fitted.data);
    let mv = (0..labels.len())
        .filter(|&i| {
            let item = out.fitted.items.key(i as u32);
            votes[i].map(|k| out.classes[k as usize].as_str()) == truth.get(item.as_str()).copied()
        })
        .count() as f64
        / labels.len() as f64;
    println!("## Bluebirds (108 images, 39 workers, 4,212 answers, no gold given)\n");
    println!("| method | accuracy |\n|---|---|");
    println!("| majority vote (ties to the first class) | {mv:.3} |");
    println!(
        "| Sahel EM ({} iterations) | {em_acc:.3} |",
        out.fitted.estimate.iterations
    );
    println!("| published: majority vote / Dawid-Skene | 0.759 / 0.889 |\n");
}

fn crowds(seed: u64) -> Vec<Evaluation> {
    let evals: Vec<Evaluation> = sim::scenarios(seed).iter().map(sim::evaluate).collect();
    println!("## Simulated crowds (3 classes, 2,000 items, 100 contributors, seed {seed})\n");
    println!(
        "| crowd | overlap N | majority vote, exactly N | best possible, exactly N | Sahel EM, exactly N | Sahel as run | accuracy | answers/item | gold answers/item |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for e in &evals {
        println!(
            "| {} | {} | {:.4} | {:.4} | {:.4} | {} | **{:.4}** | {:.2} | {:.2} |",
            e.scenario.name,
            e.scenario.overlap,
            e.majority.accuracy,
            e.majority.oracle_accuracy,
            e.exact.accuracy,
            overlap_text(e.scenario.engine),
            e.engine.accuracy,
            e.engine.answers_per_item,
            e.engine.gold_answers as f64 / e.scenario.crowd.items as f64,
        );
    }
    println!(
        "\n\"Best possible\" labels the baseline's answers with the crowd's true parameters, which no real system knows: no aggregation of exactly N answers can beat it.\n"
    );
    println!(
        "| crowd (Sahel as run) | bad contributors | suspended within 20 gold answers | gold answers at suspension: median / max | honest >= 0.8: wrongly suspended | honest < 0.8: suspended | answers that stopped counting | colluding pairs flagged | other pairs flagged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for e in &evals {
        let o = &e.engine;
        let bad = o.workers.iter().filter(|w| w.kind.is_bad()).count();
        let (ok, of) = o.bad_suspended_within(20);
        let mut at: Vec<u32> = o
            .workers
            .iter()
            .filter(|w| w.kind.is_bad())
            .filter_map(|w| w.suspended_after_gold)
            .collect();
        at.sort_unstable();
        let median = at.get(at.len() / 2).map_or("-".into(), |m| m.to_string());
        let max = at.last().map_or("-".into(), |m| m.to_string());
        let (hs, hn) = o.honest_suspended(0.8);
        let low: Vec<_> = o
            .workers
            .iter()
            .filter(|w| w.kind == Kind::Honest && w.skill < 0.8)
            .collect();
        let low_s = low
            .iter()
            .filter(|w| w.suspended_after_gold.is_some())
            .count();
        let (cp, call) = o.colluding_pairs_flagged;
        println!(
            "| {} | {bad} | {ok} of {of}{} | {median} / {max} | {hs} of {hn} | {low_s} of {} | {} | {} | {} |",
            e.scenario.name,
            if (of as usize) < bad {
                format!(
                    " ({} left before 20 gold answers, unsuspended)",
                    bad - of as usize
                )
            } else {
                String::new()
            },
            low.len(),
            o.discarded,
            if call > 0 {
                format!("{cp} of {call}")
            } else {
                "-".into()
            },
            o.other_pairs_flagged,
        );
    }
    println!();
    evals
}

fn rule() {
    let rule = SuspensionRule::for_classes(3);
    println!(
        "## The suspension rule on gold alone, exactly (3 classes: threshold {:.4}, prior Beta({}, {}), {}% lower bound, from {} gold answers)\n",
        rule.threshold,
        rule.prior_correct,
        rule.prior_wrong,
        rule.level * 100.0,
        rule.min_gold
    );
    let ns = [8u32, 10, 15, 20, 50, 100, 400];
    print!("| true accuracy |");
    for n in ns {
        print!(" suspended within {n} |");
    }
    println!("\n|---|{}", "---|".repeat(ns.len()));
    for (name, p) in [
        ("0 (adversary)", 0.0),
        ("1/3 (random)", 1.0 / 3.0),
        ("0.5", 0.5),
        ("0.6", 0.6),
        ("0.7", 0.7),
        ("0.8", 0.8),
        ("0.9", 0.9),
    ] {
        let curve = suspension_curve(&rule, p, 400);
        print!("| {name} |");
        for n in ns {
            print!(" {:.4} |", curve[n as usize]);
        }
        println!();
    }
    println!();
}

fn multi_label(seed: u64) {
    let c = sim::MultiCrowd::standard(seed);
    let o = sim::run_multi(&c);
    println!(
        "## Multi-label ({} classes at density {}, {} items and {} gold, overlap {}; {} honest, {} spammers, {} adversary)\n",
        c.classes, c.density, c.items, c.gold_items, c.overlap, c.honest, c.spammers, c.adversaries
    );
    println!("| method | exact sets | per class |\n|---|---|---|");
    for (name, s) in [
        ("per-class majority vote", o.majority),
        ("per-class EM, no gold", o.em_without_gold),
        ("per-class EM seeded by gold", o.em),
    ] {
        println!("| {name} | {:.3} | {:.3} |", s.exact, s.per_class);
    }
    println!();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed = args
        .iter()
        .position(|a| a == "--seed")
        .and_then(|i| args.get(i + 1))
        .map_or(1, |s| s.parse().expect("--seed takes a number"));
    bluebirds();
    crowds(seed);
    multi_label(seed);
    rule();
}
