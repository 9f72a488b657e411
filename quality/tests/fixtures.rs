//! The pure core against the hand-computed cases in `fixtures/quality/`:
//! one `check()` per kind of case.

use sahel_quality::agreement::alpha_nominal;
use sahel_quality::em::{self, Answer, Dataset, EmConfig};
use sahel_quality::reliability::{GoldRecord, SuspensionRule, beta_cdf, beta_quantile};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/../fixtures/quality/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A number, or a fraction written as a string ("5/6").
fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => {
            let (a, b) = s.split_once('/').unwrap_or((s, "1"));
            a.trim().parse::<f64>().unwrap() / b.trim().parse::<f64>().unwrap()
        }
        other => panic!("not a number: {other}"),
    }
}

fn cases(v: &Value) -> &Vec<Value> {
    v["cases"].as_array().expect("a \"cases\" array")
}

fn close(got: f64, want: f64, tol: f64) -> bool {
    (got - want).abs() <= tol
}

fn check_em(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let classes = case["classes"].as_u64().unwrap() as usize;
    let answers: Vec<Answer> = case["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| Answer {
            item: a[0].as_u64().unwrap() as u32,
            worker: a[1].as_u64().unwrap() as u32,
            label: a[2].as_u64().unwrap() as u16,
        })
        .collect();
    let gold: Vec<(u32, u16)> = case["gold"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g[0].as_u64().unwrap() as u32, g[1].as_u64().unwrap() as u16))
        .collect();
    let items = answers.iter().map(|a| a.item + 1).max().unwrap_or(0) as usize;
    let workers = answers.iter().map(|a| a.worker + 1).max().unwrap_or(0) as usize;
    let mut cfg = EmConfig::default();
    let c = &case["config"];
    if let Some(v) = c.get("max_iterations") {
        cfg.max_iterations = v.as_u64().unwrap() as usize;
    }
    if let Some(v) = c.get("prior_strength") {
        cfg.prior_strength = num(v);
    }
    if let Some(v) = c.get("prior_accuracy") {
        cfg.prior_accuracy = num(v);
    }
    if let Some(v) = c.get("class_pseudo_count") {
        cfg.class_pseudo_count = num(v);
    }
    let data = Dataset::new(classes, items, workers, &answers).unwrap();
    let est = em::estimate(&data, &gold, &cfg);
    let e = &case["expect"];
    let tol = e.get("tolerance").map_or(1e-12, num);
    if let Some(post) = e.get("posterior") {
        for (i, row) in post.as_array().unwrap().iter().enumerate() {
            for (k, want) in row.as_array().unwrap().iter().enumerate() {
                let got = est.item_posterior(i)[k];
                assert!(
                    close(got, num(want), tol),
                    "{name}: posterior[{i}][{k}] = {got}, want {}",
                    num(want)
                );
            }
        }
    }
    if let Some(priors) = e.get("priors") {
        for (k, want) in priors.as_array().unwrap().iter().enumerate() {
            let got = est.model.priors()[k];
            assert!(close(got, num(want), tol), "{name}: prior[{k}] = {got}");
        }
    }
    if let Some(conf) = e.get("confusion") {
        for (w, m) in conf.as_array().unwrap().iter().enumerate() {
            for (k, row) in m.as_array().unwrap().iter().enumerate() {
                for (l, want) in row.as_array().unwrap().iter().enumerate() {
                    let got = est.model.confusion(w)[k * classes + l];
                    assert!(
                        close(got, num(want), tol),
                        "{name}: confusion[{w}][{k}][{l}] = {got}, want {}",
                        num(want)
                    );
                }
            }
        }
    }
    if let Some(labels) = e.get("labels") {
        let min_conf = e.get("min_confidence").map_or(0.0, num);
        for (i, want) in labels.as_array().unwrap().iter().enumerate() {
            let (got, conf) = est.label(i);
            assert_eq!(
                got as u64,
                want.as_u64().unwrap(),
                "{name}: label of item {i}"
            );
            assert!(
                conf >= min_conf,
                "{name}: item {i} confidence {conf} < {min_conf}"
            );
        }
    }
    if let Some(acc) = e.get("accuracy") {
        for row in acc.as_array().unwrap() {
            let w = row[0].as_u64().unwrap() as usize;
            let got = est.model.accuracy(w);
            assert!(
                got >= num(&row[1]) && got <= num(&row[2]),
                "{name}: accuracy of worker {w} = {got}, want {}..{}",
                row[1],
                row[2]
            );
        }
    }
}

#[test]
fn em_matches_the_hand_computed_cases() {
    let f = load("em.json");
    for case in cases(&f) {
        check_em(case);
    }
}

fn check_alpha(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let classes = case["classes"].as_u64().unwrap() as usize;
    let units: Vec<Vec<u16>> = case["units"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            u.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as u16)
                .collect()
        })
        .collect();
    let got = alpha_nominal(classes, units.iter().map(Vec::as_slice));
    match &case["expect"] {
        Value::Null => assert_eq!(got, None, "{name}"),
        want => {
            let got = got.unwrap_or_else(|| panic!("{name}: alpha undefined"));
            assert!(
                close(got, num(want), 1e-12),
                "{name}: alpha {got}, want {}",
                num(want)
            );
        }
    }
}

#[test]
fn krippendorff_alpha_matches_the_hand_computed_cases() {
    let f = load("alpha.json");
    for case in cases(&f) {
        check_alpha(case);
    }
}

fn check_beta(case: &Value) {
    let name = case["name"].as_str().unwrap();
    let (x, a, b) = (num(&case["x"]), num(&case["a"]), num(&case["b"]));
    let got = match case["fn"].as_str().unwrap() {
        "cdf" => beta_cdf(x, a, b),
        "quantile" => beta_quantile(x, a, b),
        other => panic!("{name}: unknown fn {other}"),
    };
    let want = num(&case["expect"]);
    assert!(close(got, want, 1e-9), "{name}: {got}, want {want}");
}

#[test]
fn the_beta_distribution_matches_its_closed_forms() {
    let f = load("beta.json");
    for case in cases(&f) {
        check_beta(case);
    }
}

fn check_suspension(rule: &SuspensionRule, case: &Value) {
    let r = GoldRecord {
        correct: case["correct"].as_u64().unwrap() as u32,
        total: case["total"].as_u64().unwrap() as u32,
    };
    let want = case["suspended"].as_bool().unwrap();
    assert_eq!(
        rule.suspends(r),
        want,
        "{r:?} ({}): bound {}",
        case["why"],
        rule.estimate(r).lower
    );
}

#[test]
fn the_default_suspension_rule_matches_its_cases() {
    let f = load("suspension.json");
    let rule = SuspensionRule::for_classes(f["classes"].as_u64().unwrap() as usize);
    for case in cases(&f) {
        check_suspension(&rule, case);
    }
}
