//! EM on a large synthetic crowd, on one core.
//!
//! `cargo run --release -p sahel-quality --bin sahel-em-bench` fits
//! 1,000,000 answers (100,000 items x 10 answers, 2,000 workers, 10
//! classes) and prints the time. Flags: `--items N --per-item N
//! --workers N --classes N --seed N --tolerance X`.

use std::time::Instant;

use sahel_quality::em::{self, Answer, Dataset, EmConfig};
use sahel_quality::sim::Rng;

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

/// CPU time this process has used (user + system), from /proc on Linux:
/// on a machine shared with other work, wall time overstates the cost.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let items = arg(&args, "--items", 100_000) as usize;
    let per_item = arg(&args, "--per-item", 10) as usize;
    let workers = arg(&args, "--workers", 2_000) as usize;
    let classes = arg(&args, "--classes", 10) as u16;
    let seed = arg(&args, "--seed", 1);
    let mut cfg = EmConfig::default();
    if let Some(t) = args
        .iter()
        .position(|a| a == "--tolerance")
        .and_then(|i| args.get(i + 1))
    {
        cfg.tolerance = t.parse().expect("--tolerance takes a number");
    }

    // Workers right with probability 0.5-0.95, else a uniformly wrong
    // class; one in ten answers at random.
    let mut rng = Rng::new(seed);
    let skill: Vec<f64> = (0..workers)
        .map(|_| {
            if rng.chance(0.1) {
                1.0 / classes as f64
            } else {
                0.5 + 0.45 * rng.f64()
            }
        })
        .collect();
    let truth: Vec<u16> = (0..items)
        .map(|_| rng.below(classes as u64) as u16)
        .collect();
    let mut answers = Vec::with_capacity(items * per_item);
    for (i, &t) in truth.iter().enumerate() {
        for _ in 0..per_item {
            let w = rng.below(workers as u64) as usize;
            let label = if rng.chance(skill[w]) {
                t
            } else {
                let x = rng.below(classes as u64 - 1) as u16;
                if x >= t { x + 1 } else { x }
            };
            answers.push(Answer {
                item: i as u32,
                worker: w as u32,
                label,
            });
        }
    }
    // Shuffle so grouping by item is part of the measured work.
    for i in (1..answers.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        answers.swap(i, j);
    }

    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let data = Dataset::new(classes as usize, items, workers, &answers).expect("valid answers");
    let grouped = start.elapsed();
    let est = em::estimate(&data, &[], &cfg);
    let total = start.elapsed();
    let cpu = cpu_start.zip(cpu_seconds()).map(|(a, b)| b - a);

    let right = (0..items).filter(|&i| est.label(i).0 == truth[i]).count();
    let votes = em::majority_vote(&data);
    let mv = (0..items).filter(|&i| votes[i] == Some(truth[i])).count();
    println!(
        "EM: {} answers, {items} items, {workers} workers, {classes} classes, one thread",
        data.answers()
    );
    println!(
        "  {} iterations (converged: {}), grouping {:.3} s, total {:.3} s wall{}, {:.1} ms per iteration",
        est.iterations,
        est.converged,
        grouped.as_secs_f64(),
        total.as_secs_f64(),
        cpu.map_or_else(String::new, |c| format!(" / {c:.2} s CPU")),
        (total - grouped).as_secs_f64() * 1000.0 / est.iterations.max(1) as f64
    );
    println!(
        "  accuracy {:.4} (majority vote {:.4})",
        right as f64 / items as f64,
        mv as f64 / items as f64
    );
}
