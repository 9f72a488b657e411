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

use crate::aggregate::{self, Fitted, FittedSets};
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

/// The CSV's records, `width` fields each, trimmed. Empty fields are
/// refused, but for the last one when `empty_last` (a multi-label
/// answer's empty set).
fn records(
    r: impl Read,
    width: usize,
    header: &[&[&str]],
    what: &str,
    empty_last: bool,
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
        let checked = if empty_last { width - 1 } else { width };
        if let Some(empty) = fields[..checked].iter().position(String::is_empty) {
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
        false,
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
    let recs = records(r, 2, &[&["item", "task"], &["label"]], "gold", false)?;
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
    write_rows(w, "label", rows)
}

/// Writes `item,labels,confidence`: a multi-label aggregation's sets, as
/// read, classes separated by `|`.
pub fn write_set_labels(w: impl Write, rows: &[LabelRow]) -> Result<(), String> {
    write_rows(w, "labels", rows)
}

fn write_rows(w: impl Write, column: &str, rows: &[LabelRow]) -> Result<(), String> {
    let mut out = csv::Writer::from_writer(w);
    let err = |e: csv::Error| format!("writing the labels: {e}");
    out.write_record(["item", column, "confidence"])
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

/// Multi-label input: the label column holds the classes an answer
/// picked, separated by [`SET_SEPARATOR`]; an empty field is the empty
/// set.
pub const SET_SEPARATOR: char = '|';

/// One multi-label answer as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetRow {
    pub item: String,
    pub worker: String,
    /// Distinct, sorted.
    pub labels: Vec<String>,
}

fn split_set(field: &str) -> Vec<String> {
    field
        .split(SET_SEPARATOR)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Reads `item,worker,labels` rows ([`SET_SEPARATOR`] between classes);
/// a worker answering an item twice is an error.
pub fn read_set_answers(r: impl Read) -> Result<Vec<SetRow>, String> {
    let recs = records(
        r,
        3,
        &[
            &["item", "task"],
            &["worker", "annotator", "user"],
            &["label", "labels"],
        ],
        "answers",
        true,
    )?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(recs.len());
    for f in recs {
        let (item, worker) = (f[0].clone(), f[1].clone());
        if !seen.insert((item.clone(), worker.clone())) {
            return Err(format!(
                "answers: worker {worker:?} answered item {item:?} twice"
            ));
        }
        out.push(SetRow {
            item,
            worker,
            labels: split_set(&f[2]),
        });
    }
    Ok(out)
}

/// Reads `item,labels` gold rows; an item given two different sets is an
/// error.
pub fn read_set_gold(r: impl Read) -> Result<Vec<(String, Vec<String>)>, String> {
    let recs = records(
        r,
        2,
        &[&["item", "task"], &["label", "labels"]],
        "gold",
        true,
    )?;
    let mut out: Vec<(String, Vec<String>)> = Vec::with_capacity(recs.len());
    for f in recs {
        let set = split_set(&f[1]);
        match out.iter().find(|(i, _)| *i == f[0]) {
            Some((_, s)) if *s != set => {
                return Err(format!("gold: item {:?} has two label sets", f[0]));
            }
            Some(_) => {}
            None => out.push((f[0].clone(), set)),
        }
    }
    Ok(out)
}

/// The multi-label aggregation of a CSV's answers.
pub struct OfflineSets {
    pub classes: Vec<String>,
    pub fitted: FittedSets<String, String>,
}

impl OfflineSets {
    /// One row per item that has answers or gold, in order of first
    /// appearance; `label` is the set joined by [`SET_SEPARATOR`].
    pub fn labels(&self) -> Vec<LabelRow> {
        let est = &self.fitted.estimate;
        self.fitted
            .items
            .keys()
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let (set, conf) = est.labels(i);
                let names: Vec<&str> = set
                    .iter()
                    .map(|&c| self.classes[c as usize].as_str())
                    .collect();
                LabelRow {
                    item: item.clone(),
                    label: names.join(&SET_SEPARATOR.to_string()),
                    confidence: conf,
                }
            })
            .collect()
    }

    /// A few lines about the fit, for the terminal.
    pub fn summary(&self) -> String {
        let f = &self.fitted;
        let labels = self.labels();
        let mean_conf =
            labels.iter().map(|r| r.confidence).sum::<f64>() / labels.len().max(1) as f64;
        let low = labels.iter().filter(|r| r.confidence < 0.95).count();
        let unconverged = f.estimate.per_class.iter().filter(|e| !e.converged).count();
        format!(
            "{} answers from {} workers on {} items ({} gold), {} classes, one EM each{}\n\
             mean confidence {mean_conf:.3}; {low} items below 0.95",
            f.estimate.data.first().map_or(0, |d| d.answers()),
            f.workers.len(),
            f.items.len(),
            f.estimate.gold.first().map_or(0, Vec::len),
            self.classes.len(),
            if unconverged > 0 {
                format!(" ({unconverged} not converged)")
            } else {
                String::new()
            },
        )
    }
}

/// Aggregates multi-label answers (and gold sets) with the server's
/// per-class EM. The classes are every class named, in sorted order.
pub fn aggregate_sets(
    answers: &[SetRow],
    gold: &[(String, Vec<String>)],
    cfg: &EmConfig,
) -> Result<OfflineSets, String> {
    if answers.is_empty() {
        return Err("answers: no rows".into());
    }
    let classes: Vec<String> = answers
        .iter()
        .flat_map(|r| r.labels.iter())
        .chain(gold.iter().flat_map(|g| g.1.iter()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if classes.is_empty() {
        return Err("no answer names a class".into());
    }
    if classes.len() > u16::MAX as usize {
        return Err("too many distinct labels".into());
    }
    let set_of = |labels: &[String]| -> Vec<u16> {
        labels
            .iter()
            .filter_map(|l| classes.binary_search(l).ok())
            .map(|c| c as u16)
            .collect()
    };
    let fitted = aggregate::fit_sets(
        classes.len(),
        answers
            .iter()
            .map(|r| (r.item.clone(), r.worker.clone(), set_of(&r.labels))),
        gold.iter().map(|(i, s)| (i.clone(), set_of(s))),
        cfg,
    )?;
    Ok(OfflineSets { classes, fitted })
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

    #[test]
    fn multi_label_rows_are_sets_split_on_bars_and_come_out_the_same_way() {
        // Three workers agree on every item but one, where w3 alone
        // differs; gold fixes item g. Empty fields are empty sets.
        let csv = "item,worker,labels\n\
                   a,w1,cat|dog\na,w2,dog|cat\na,w3,cat\n\
                   b,w1,\nb,w2,\nb,w3,\n\
                   c,w1,bird\nc,w2, bird | bird\nc,w3,bird\n\
                   g,w1,dog\ng,w2,dog\n";
        let rows = read_set_answers(csv.as_bytes()).unwrap();
        assert_eq!(rows[1].labels, vec!["cat", "dog"], "sorted");
        assert_eq!(rows[3].labels, Vec::<String>::new(), "the empty set");
        assert_eq!(rows[7].labels, vec!["bird"], "repeats fold");
        let gold = read_set_gold("g,dog|cat\n".as_bytes()).unwrap();
        let e = read_set_gold("g,dog\ng,cat\n".as_bytes()).unwrap_err();
        assert!(e.contains("two label sets"), "{e}");
        let e = read_set_answers("a,w1,x\na,w1,y\n".as_bytes()).unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = read_set_answers(",w1,x\n".as_bytes()).unwrap_err();
        assert!(e.contains("empty"), "{e}");

        let out = aggregate_sets(&rows, &gold, &EmConfig::default()).unwrap();
        assert_eq!(out.classes, vec!["bird", "cat", "dog"]);
        let labels = out.labels();
        let got: Vec<(&str, &str)> = labels
            .iter()
            .map(|r| (r.item.as_str(), r.label.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("a", "cat|dog"), ("b", ""), ("c", "bird"), ("g", "cat|dog")]
        );
        assert_eq!(labels[3].confidence, 1.0, "gold is clamped");
        assert!(labels.iter().all(|r| r.confidence > 0.9), "{labels:?}");
        let mut csv_out = Vec::new();
        write_set_labels(&mut csv_out, &labels).unwrap();
        let text = String::from_utf8(csv_out).unwrap();
        assert!(
            text.starts_with("item,labels,confidence\na,cat|dog,"),
            "{text}"
        );
        assert!(text.contains("\nb,,"), "{text}");
        assert!(
            out.summary().contains("3 classes, one EM each"),
            "{}",
            out.summary()
        );
    }
}
