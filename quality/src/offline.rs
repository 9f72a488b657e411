//! Offline aggregation for buyers who already have crowd labels: CSV of
//! `item,worker,label` (and optionally gold `item,label`) in, CSV of
//! `item,label,confidence` out. No server, no database: the same
//! [`crate::aggregate::fit`] the server runs.
//!
//! A header row is optional: a first row whose fields are the column
//! names (`item` or `task`, `worker`, `label`) is skipped. Classes are the
//! distinct labels seen (answers and gold), in sorted order.

use std::collections::{BTreeSet, HashSet};
use std::io::{Read, Write};

use crate::aggregate::{self, Fitted};
use crate::agreement;
use crate::em::EmConfig;

/// One crowd answer as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub item: String,
    pub worker: String,
    pub label: String,
}

fn is_header(fields: &[&str], names: &[&[&str]]) -> bool {
    fields.len() == names.len()
        && fields
            .iter()
            .zip(names)
            .all(|(f, ok)| ok.iter().any(|n| f.trim().eq_ignore_ascii_case(n)))
}

fn records(
    r: impl Read,
    width: usize,
    header: &[&[&str]],
    what: &str,
) -> Result<Vec<Vec<String>>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(r);
    let mut out = Vec::new();
    for (n, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| format!("{what} line {}: {e}", n + 1))?;
        let fields: Vec<&str> = rec.iter().collect();
        if n == 0 && is_header(&fields, header) {
            continue;
        }
        if fields.len() == 1 && fields[0].trim().is_empty() {
            continue;
        }
        if fields.len() != width {
            return Err(format!(
                "{what} line {}: expected {width} fields, found {}",
                n + 1,
                fields.len()
            ));
        }
        let fields: Vec<String> = fields.iter().map(|f| f.trim().to_owned()).collect();
        if let Some(empty) = fields.iter().position(String::is_empty) {
            return Err(format!(
                "{what} line {}: field {} is empty",
                n + 1,
                empty + 1
            ));
        }
        out.push(fields);
    }
    Ok(out)
}

/// Reads `item,worker,label` rows; a worker answering an item twice is an
/// error.
pub fn read_answers(r: impl Read) -> Result<Vec<Row>, String> {
    let recs = records(
        r,
        3,
        &[
            &["item", "task"],
            &["worker", "annotator", "user"],
            &["label"],
        ],
        "answers",
    )?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(recs.len());
    for mut f in recs {
        let label = f.pop().unwrap_or_default();
        let worker = f.pop().unwrap_or_default();
        let item = f.pop().unwrap_or_default();
        if !seen.insert((item.clone(), worker.clone())) {
            return Err(format!(
                "answers: worker {worker:?} answered item {item:?} twice"
            ));
        }
        out.push(Row {
            item,
            worker,
            label,
        });
    }
    Ok(out)
}

/// Reads `item,label` gold rows; an item given two different labels is an
/// error.
pub fn read_gold(r: impl Read) -> Result<Vec<(String, String)>, String> {
    let recs = records(r, 2, &[&["item", "task"], &["label"]], "gold")?;
    let mut out: Vec<(String, String)> = Vec::with_capacity(recs.len());
    let mut seen = std::collections::HashMap::new();
    for mut f in recs {
        let label = f.pop().unwrap_or_default();
        let item = f.pop().unwrap_or_default();
        match seen.get(&item) {
            Some(l) if *l != label => {
                return Err(format!("gold: item {item:?} has two labels"));
            }
            Some(_) => continue,
            None => {
                seen.insert(item.clone(), label.clone());
                out.push((item, label));
            }
        }
    }
    Ok(out)
}

/// The aggregation of a CSV's answers.
pub struct Offline {
    pub classes: Vec<String>,
    pub fitted: Fitted<String, String>,
}

/// One output row.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelRow {
    pub item: String,
    pub label: String,
    pub confidence: f64,
}

impl Offline {
    /// One row per item that has answers or gold, in order of first
    /// appearance.
    pub fn labels(&self) -> Vec<LabelRow> {
        let est = &self.fitted.estimate;
        self.fitted
            .items
            .keys()
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (k, conf) = est.label(i);
                LabelRow {
                    item: item.clone(),
                    label: self.classes[k as usize].clone(),
                    confidence: conf,
                }
            })
            .collect()
    }

    /// A few lines about the fit, for the terminal.
    pub fn summary(&self) -> String {
        let f = &self.fitted;
        let alpha = agreement::dataset_alpha(&f.data)
            .map_or_else(|| "undefined".to_owned(), |a| format!("{a:.3}"));
        let labels = self.labels();
        let mean_conf =
            labels.iter().map(|r| r.confidence).sum::<f64>() / labels.len().max(1) as f64;
        let low = labels.iter().filter(|r| r.confidence < 0.95).count();
        format!(
            "{} answers from {} workers on {} items ({} gold), {} classes\n\
             EM: {} iterations{}; Krippendorff's alpha {alpha}\n\
             mean confidence {mean_conf:.3}; {low} items below 0.95",
            f.data.answers(),
            f.workers.len(),
            f.items.len(),
            f.gold.len(),
            self.classes.len(),
            f.estimate.iterations,
            if f.estimate.converged {
                ""
            } else {
                " (not converged)"
            },
        )
    }
}

/// Aggregates answers (and gold) with the server's EM.
pub fn aggregate(
    answers: &[Row],
    gold: &[(String, String)],
    cfg: &EmConfig,
) -> Result<Offline, String> {
    if answers.is_empty() {
        return Err("answers: no rows".into());
    }
    let classes: Vec<String> = answers
        .iter()
        .map(|r| r.label.clone())
        .chain(gold.iter().map(|g| g.1.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.len() < 2 {
        return Err(format!(
            "every answer is {:?}: aggregation needs at least two classes",
            classes.first().map(String::as_str).unwrap_or("")
        ));
    }
    if classes.len() > u16::MAX as usize {
        return Err("too many distinct labels".into());
    }
    let class_of = |l: &str| classes.binary_search_by(|c| c.as_str().cmp(l)).unwrap_or(0) as u16;
    let fitted = aggregate::fit(
        classes.len(),
        answers
            .iter()
            .map(|r| (r.item.clone(), r.worker.clone(), class_of(&r.label))),
        gold.iter().map(|(i, l)| (i.clone(), class_of(l))),
        cfg,
    )?;
    Ok(Offline { classes, fitted })
}

/// Writes `item,label,confidence` with a header; confidence to 6 places.
pub fn write_labels(w: impl Write, rows: &[LabelRow]) -> Result<(), String> {
    let mut out = csv::Writer::from_writer(w);
    let err = |e: csv::Error| format!("writing the labels: {e}");
    out.write_record(["item", "label", "confidence"])
        .map_err(err)?;
    for r in rows {
        out.write_record([
            r.item.as_str(),
            r.label.as_str(),
            &format!("{:.6}", r.confidence),
        ])
        .map_err(err)?;
    }
    out.flush().map_err(|e| format!("writing the labels: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_optional_and_bad_rows_are_refused_with_their_line() {
        let with = read_answers("item,worker,label\na,w1,x\n".as_bytes()).unwrap();
        let without = read_answers("a,w1,x\n".as_bytes()).unwrap();
        assert_eq!(with, without);
        let e = read_answers("a,w1,x\nb,w2\n".as_bytes()).unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = read_answers("a,w1,x\na,w1,y\n".as_bytes()).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = read_answers("a,,x\n".as_bytes()).unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = read_gold("a,x\na,y\n".as_bytes()).unwrap_err();
        assert!(e.contains("two labels"), "{e}");
        assert_eq!(
            read_gold("task,label\na,x\na,x\n".as_bytes()).unwrap(),
            vec![("a".to_owned(), "x".to_owned())]
        );
    }

    #[test]
    fn one_class_is_not_enough() {
        let rows = read_answers("a,w1,x\nb,w1,x\n".as_bytes()).unwrap();
        assert!(aggregate(&rows, &[], &EmConfig::default()).is_err());
    }
}
