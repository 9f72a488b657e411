//! `sahel aggregate`: the real binary on the bluebirds fixture, no server.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use sahel_quality::em::EmConfig;
use sahel_quality::offline;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/bluebirds")
        .join(name)
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sahel-aggregate-{}-{}",
        std::process::id(),
        sahel_server::accounts::random_hex(4)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sahel(args: &[&str], stdin: &str) -> Output {
    let home = scratch();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sahel"))
        .args(["--home", home.to_str().unwrap()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sahel binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(home);
    out
}

fn truth() -> HashMap<String, String> {
    offline::read_gold(std::fs::File::open(fixture("gold.csv")).unwrap())
        .unwrap()
        .into_iter()
        .collect()
}

fn parse(csv: &str) -> Vec<(String, String, f64)> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("item,label,confidence"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_owned(), f[1].to_owned(), f[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn aggregate_labels_bluebirds_offline_with_88_percent_accuracy() {
    let answers = fixture("labels.csv");
    let out = sahel(&["aggregate", "--answers", answers.to_str().unwrap()], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = parse(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(rows.len(), 108);
    let truth = truth();
    let right = rows.iter().filter(|(i, l, _)| truth[i] == *l).count();
    assert!(right as f64 / 108.0 >= 0.88, "{right} of 108");
    assert!(rows.iter().all(|(_, _, c)| (0.5..=1.0).contains(c)));
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.contains("4212 answers from 39 workers on 108 items"),
        "{summary}"
    );
}

#[test]
fn aggregate_gives_the_same_labels_as_the_engine_and_clamps_gold() {
    let dir = scratch();
    let out_path = dir.join("labels.csv");
    let gold_path = dir.join("gold.csv");
    // The first 20 images are known.
    let gold: String = std::fs::read_to_string(fixture("gold.csv"))
        .unwrap()
        .lines()
        .take(21)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&gold_path, &gold).unwrap();
    let answers = std::fs::read_to_string(fixture("labels.csv")).unwrap();
    let out = sahel(
        &[
            "aggregate",
            "--answers",
            "-",
            "--gold",
            gold_path.to_str().unwrap(),
            "--out",
            out_path.to_str().unwrap(),
            "--quiet",
        ],
        &answers,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    let rows = parse(&std::fs::read_to_string(&out_path).unwrap());

    let lib_rows = offline::read_answers(answers.as_bytes()).unwrap();
    let lib_gold = offline::read_gold(gold.as_bytes()).unwrap();
    let lib = offline::aggregate(&lib_rows, &lib_gold, &EmConfig::default())
        .unwrap()
        .labels();
    assert_eq!(rows.len(), lib.len());
    for ((item, label, conf), l) in rows.iter().zip(&lib) {
        assert_eq!((item, label), (&l.item, &l.label));
        assert!((conf - l.confidence).abs() < 1e-6);
    }
    for (item, label) in &lib_gold {
        let r = rows.iter().find(|r| &r.0 == item).unwrap();
        assert_eq!((&r.1, r.2), (label, 1.0), "gold item {item}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn aggregate_refuses_a_malformed_file_with_the_line_and_exit_code_1() {
    let out = sahel(
        &["aggregate", "--answers", "-"],
        "item,worker,label\na,w1,x\nb,w2\n",
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("expected 3 fields"),
        "{err}"
    );
    let out = sahel(&["aggregate", "--answers", "/nonexistent/answers.csv"], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/answers.csv"));
}

#[test]
fn aggregate_multi_label_reads_bar_separated_sets_and_writes_one_per_item() {
    // Two careful workers and one who ticks everything: per class, the
    // careful pair outvotes them.
    let answers = "item,worker,labels\n\
                   p1,w1,cat\np1,w2,cat\np1,w3,bird|cat|dog\n\
                   p2,w1,dog|bird\np2,w2,bird|dog\np2,w3,bird|cat|dog\n\
                   p3,w1,\np3,w2,\np3,w3,bird|cat|dog\n";
    let out = sahel(&["aggregate", "--multi-label", "--answers", "-"], answers);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("item,labels,confidence"));
    let rows: Vec<(String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let conf: f64 = f[2].parse().unwrap();
            assert!(conf > 0.5 && conf <= 1.0, "{l}");
            (f[0].to_owned(), f[1].to_owned())
        })
        .collect();
    let want = [("p1", "cat"), ("p2", "bird|dog"), ("p3", "")];
    assert_eq!(
        rows,
        want.map(|(i, l)| (i.to_owned(), l.to_owned())).to_vec()
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 classes, one EM each"));
}
