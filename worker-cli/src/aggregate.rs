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
/// stdout. A summary of the fit goes to stderr unless `quiet`.
pub fn run(
    answers: &Path,
    gold: Option<&Path>,
    out: Option<&Path>,
    quiet: bool,
) -> anyhow::Result<()> {
    let rows = offline::read_answers(open(answers)?).map_err(anyhow::Error::msg)?;
    let gold = match gold {
        Some(g) => {
            if g == Path::new("-") && answers == Path::new("-") {
                bail!("only one of --answers and --gold can be read from stdin");
            }
            offline::read_gold(open(g)?).map_err(anyhow::Error::msg)?
        }
        None => Vec::new(),
    };
    let result =
        offline::aggregate(&rows, &gold, &EmConfig::default()).map_err(anyhow::Error::msg)?;
    let labels = result.labels();
    match out {
        Some(path) => {
            let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
            offline::write_labels(std::io::BufWriter::new(f), &labels)
                .map_err(anyhow::Error::msg)?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            offline::write_labels(&mut lock, &labels).map_err(anyhow::Error::msg)?;
            lock.flush()?;
        }
    }
    if !quiet {
        eprintln!("{}", result.summary());
    }
    Ok(())
}
