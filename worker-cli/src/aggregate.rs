//! `sahel aggregate`: a buyer's crowd labels from elsewhere, aggregated
//! offline with the server's own engine (`sahel_quality`), no server and
//! no account needed.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use sahel_quality::em::EmConfig;
use sahel_quality::offline;

fn open(path: &Path) -> anyhow::Result<Box<dyn Read>> {
    if path == Path::new("-") {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    Ok(Box::new(std::io::BufReader::new(f)))
}

/// Reads `answers` (`item,worker,label`, `-` for stdin) and optionally
/// `gold` (`item,label`), and writes `item,label,confidence` to `out` or
/// stdout. With `multi_label`, labels are sets of classes separated by
/// `|`, aggregated one class at a time, and the output is
/// `item,labels,confidence`. A summary of the fit goes to stderr unless
/// `quiet`.
pub fn run(
    answers: &Path,
    gold: Option<&Path>,
    out: Option<&Path>,
    multi_label: bool,
    quiet: bool,
) -> anyhow::Result<()> {
    if gold == Some(Path::new("-")) && answers == Path::new("-") {
        bail!("only one of --answers and --gold can be read from stdin");
    }
    let cfg = EmConfig::default();
    let (labels, summary, write): (_, _, Writer) = if multi_label {
        let rows = offline::read_set_answers(open(answers)?).map_err(anyhow::Error::msg)?;
        let gold = match gold {
            Some(g) => offline::read_set_gold(open(g)?).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        };
        let result = offline::aggregate_sets(&rows, &gold, &cfg).map_err(anyhow::Error::msg)?;
        (result.labels(), result.summary(), write_sets)
    } else {
        let rows = offline::read_answers(open(answers)?).map_err(anyhow::Error::msg)?;
        let gold = match gold {
            Some(g) => offline::read_gold(open(g)?).map_err(anyhow::Error::msg)?,
            None => Vec::new(),
        };
        let result = offline::aggregate(&rows, &gold, &cfg).map_err(anyhow::Error::msg)?;
        (result.labels(), result.summary(), write_one)
    };
    match out {
        Some(path) => {
            let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            write(&mut std::io::BufWriter::new(f), &labels).map_err(anyhow::Error::msg)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            write(&mut lock, &labels).map_err(anyhow::Error::msg)?;
            lock.flush()?;
        }
    }
    if !quiet {
        eprintln!("{summary}");
    }
    Ok(())
}

type Writer = fn(&mut dyn Write, &[offline::LabelRow]) -> Result<(), String>;

fn write_one(w: &mut dyn Write, rows: &[offline::LabelRow]) -> Result<(), String> {
    offline::write_labels(w, rows)
}

fn write_sets(w: &mut dyn Write, rows: &[offline::LabelRow]) -> Result<(), String> {
    offline::write_set_labels(w, rows)
}
