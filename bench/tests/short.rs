//! The benchmark in a short mode, so it keeps working: a few hundred
//! items, checked for invariants, never for speed.

use std::process::Command;

fn bench(extra: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_sahel-bench"))
        .args([
            "--items",
            "300",
            "--contributors",
            "8",
            "--max-secs",
            "120",
            "--noise",
            "0",
            "--json",
        ])
        .args(extra)
        .output()
        .expect("sahel-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sahel-bench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("a JSON summary")
}

fn check(summary: &serde_json::Value) {
    assert_eq!(summary["invariants_ok"], true, "{summary}");
    assert_eq!(summary["timed_out"], false, "{summary}");
    // No noise means no ties: exactly overlap answers per item.
    assert_eq!(summary["answers"], 900, "{summary}");
    assert!(
        summary["server_peak_rss_mb"][0].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    // The servers' own counts agree with the load generator's.
    assert_eq!(summary["answer_calls_written"], 900, "{summary}");
    let writes = summary["answer_writes"].as_u64().unwrap();
    assert!((1..=900).contains(&writes), "{summary}");
    let server = summary["server_cpu_ms"].as_u64().unwrap();
    assert!(server > 0, "{summary}");
    // The whole machine's busy time holds the servers' and the load
    // generator's (clock ticks apart), and sets a ceiling from it.
    let own = server + summary["bench_cpu_ms"].as_u64().unwrap();
    let machine = summary["machine_cpu_ms"].as_u64().unwrap();
    assert!(machine * 10 >= own * 9 && machine > 0, "{summary}");
    let ceiling = summary["ceiling_answers_per_s"].as_f64().unwrap();
    let cores = summary["cores"].as_f64().unwrap();
    let expected = cores * 1e9 / machine as f64 * 900.0 / 1e6;
    assert!((ceiling - expected).abs() < 1e-6 * expected, "{summary}");
}

#[test]
fn the_benchmark_completes_a_small_bounty_with_its_invariants_intact() {
    let summary = bench(&[]);
    check(&summary);
}

#[test]
fn the_benchmark_drives_three_replicas_when_postgres_and_redis_are_there() {
    let have = |v: &str| std::env::var(v).is_ok_and(|s| !s.is_empty());
    if !(have("DATABASE_URL") && have("REDIS_URL")) {
        let required = matches!(
            std::env::var("SAHEL_TEST_REQUIRE_SERVICES").as_deref(),
            Ok("1" | "true" | "yes")
        );
        assert!(!required, "needs DATABASE_URL and REDIS_URL");
        eprintln!("skipped: needs DATABASE_URL and REDIS_URL");
        return;
    }
    let summary = bench(&["--servers", "3"]);
    assert_eq!(summary["servers"], 3);
    check(&summary);
}
