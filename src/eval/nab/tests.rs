use super::*;

const STANDARD: Profile = PROFILES[0];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// What the earliest detection at relative position `y` of a window earns
/// per A_TP: σ(y)/σ(−1).
fn tp(y: f64) -> f64 {
    scaled_sigmoid(y) / scaled_sigmoid(-1.0)
}

/// A file of `n` rows 1 ms apart, so that times are row indices; scores 0
/// but for `detections` (row, score).
fn file(key: &str, n: usize, detections: &[(usize, f64)], windows: &[(i64, i64)]) -> Scored {
    let mut scores = vec![0.0; n];
    for &(row, score) in detections {
        scores[row] = score;
    }
    Scored {
        key: key.into(),
        times: (0..n as i64).collect(),
        scores,
        windows: windows.to_vec(),
    }
}

#[test]
fn sigmoid_matches_nab() {
    assert!(close(scaled_sigmoid(0.0), 0.0));
    // NAB's docstring: 0.98661 at −1, 0.84828 at −0.5, −0.98661 at 1.
    assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
    assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
    assert!(close(scaled_sigmoid(1.0), -scaled_sigmoid(-1.0)));
    assert_eq!(scaled_sigmoid(3.5), -1.0);
}

#[test]
fn probation_is_fifteen_percent_up_to_750_rows() {
    assert_eq!(probation(10), 1);
    assert_eq!(probation(4032), 604);
    assert_eq!(probation(5000), 750);
    assert_eq!(probation(22_695), 750);
}

#[test]
fn earliest_detection_counts_and_later_ones_are_free() {
    // 10 rows, row 0 probation (⌊1.5⌋), window rows 4..=7 (4 rows).
    let files = [file("a/x.csv", 10, &[(5, 0.9), (6, 0.8)], &[(4, 7)])];
    // Thresholds: never → −1. 0.9 → row 5, y = −(7 − 5 + 1)/4 = −0.75:
    // σ(−0.75)/σ(−1) ≈ 0.96699. 0.8 adds row 6, later in the same window:
    // the same total, and a tie keeps the higher threshold. 0 → rows 1..=9:
    // row 4 earns 1; rows 1..=3, before any window, −0.11 each; rows 8 and
    // 9 past the window, 0.11·σ(1/3) ≈ −0.0750 and 0.11·σ(2/3) ≈ −0.1024:
    // ≈ 0.49253.
    let s = score_corpus(&files, &STANDARD);
    assert_eq!(s.threshold, 0.9);
    assert!(close(s.total.raw, tp(-0.75)), "{s:?}");
    // The null detector: always detecting (≈ 0.49253) beats never (−1).
    let always = 1.0 - 0.33 + 0.11 * (scaled_sigmoid(1.0 / 3.0) + scaled_sigmoid(2.0 / 3.0));
    assert!(close(s.total.null, always), "{s:?}");
    assert_eq!(s.total.perfect, 1.0);
    // 100·(0.96699 − 0.49253)/(1 − 0.49253) ≈ 93.495.
    let normalised = s.total.normalised.unwrap();
    assert!(close(
        normalised,
        100.0 * (tp(-0.75) - always) / (1.0 - always)
    ));
    assert!((normalised - 93.495).abs() < 1e-3);
    assert_eq!(s.categories.len(), 1);
    assert_eq!(s.categories["a"], s.total);
}

#[test]
fn false_positives_cost_less_just_after_a_window() {
    // 20 rows, rows 0..=2 probation; window rows 5..=8 (4 rows).
    let near = file(
        "a/near.csv",
        20,
        &[(5, 1.0), (10, 1.0), (18, 1.0)],
        &[(5, 8)],
    );
    // 20 rows, a one-row window at row 10.
    let narrow = file("a/narrow.csv", 20, &[(10, 1.0), (11, 1.0)], &[(10, 10)]);
    let s = score_corpus(&[near, narrow], &STANDARD);
    assert_eq!(s.threshold, 1.0);
    // near: row 5 at the left edge earns 1; row 10, 2 rows past a 4-row
    // window, costs 0.11·σ(2/3) ≈ −0.1024; row 18, 10/3 > 3 past it, the
    // full 0.11. ≈ 0.78758.
    let near_raw = 1.0 + 0.11 * scaled_sigmoid(2.0 / 3.0) - 0.11;
    // narrow: row 10 earns 1; past a one-row window every row costs the
    // full 0.11 (NAB would divide by 0 there).
    let narrow_raw = 1.0 - 0.11;
    // Threshold 0 would add rows 3, 4 and 9..=19 of near, 3..=9 and
    // 12..=19 of narrow, at about −0.11 each: far worse.
    assert!(close(s.total.raw, near_raw + narrow_raw), "{s:?}");
}

#[test]
fn probation_rows_are_not_scored() {
    // 20 rows, rows 0..=2 probation. Window A (row 0) lies wholly in it;
    // window B (rows 2..=5) straddles its end; row 1 is outside windows.
    let detected = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0)];
    let files = [file("a/x.csv", 20, &detected, &[(0, 0), (2, 5)])];
    let s = score_corpus(&files, &STANDARD);
    // Rows 0..=2 count neither way; A is not scored (no miss, no perfect
    // share); B's first scored detection, row 3, sits at
    // y = −(5 − 3 + 1)/4 = −0.75 of the whole window: ≈ 0.96699.
    assert_eq!(s.threshold, 1.0);
    assert!(close(s.total.raw, tp(-0.75)), "{s:?}");
    assert_eq!(s.total.perfect, 1.0);
    let a = at_threshold(&files, 1.0);
    assert_eq!(
        (a.windows, a.detected, a.false_positive_rows, a.false_alarms),
        (1, 1, 0, 0)
    );
}

#[test]
fn every_row_at_the_threshold_counts() {
    // 10 rows, row 0 probation, window rows 4..=7. Row 2 (before the
    // window) and row 6 tie at 0.5; row 5 scores 0.3.
    let files = [file(
        "a/x.csv",
        10,
        &[(2, 0.5), (6, 0.5), (5, 0.3)],
        &[(4, 7)],
    )];
    // 0.5 → rows 2 and 6: −0.11 + σ(−0.5)/σ(−1) ≈ 0.74979. 0.3 adds row 5,
    // now the earliest: −0.11 + σ(−0.75)/σ(−1) ≈ 0.85699. 0 ≈ 0.49253 (as
    // above); never −1.
    let s = score_corpus(&files, &STANDARD);
    assert_eq!(s.threshold, 0.3);
    assert!(close(s.total.raw, tp(-0.75) - 0.11), "{s:?}");
    let at = at_threshold(&files, 0.5);
    assert_eq!((at.detected, at.false_positive_rows), (1, 1));
    let above = at_threshold(&files, 0.5 + 1e-9);
    assert_eq!((above.detected, above.false_positive_rows), (0, 0));
}

#[test]
fn normalised_against_null_and_perfect_per_category() {
    // Two categories, 40 rows each (rows 0..=5 probation). a: window rows
    // 20..=23, detected at its left edge. b: window rows 30..=31 missed,
    // and a detection at row 35, 4 rows past that 2-row window: > 3, the
    // full A_FP.
    let files = [
        file("a/one.csv", 40, &[(20, 1.0)], &[(20, 23)]),
        file("b/two.csv", 40, &[(35, 1.0)], &[(30, 31)]),
    ];
    // Always detecting: a ≈ −0.11·14 + 1 − 0.11·15.6 ≈ −2.26, b ≈
    // −0.11·24 + 1 − 0.11·7.99 ≈ −2.52, whatever A_FN: worse than never
    // (−2 or −4), so null is never detecting; perfect is 1 per window.
    let expected = [
        // standard: raw 1 − 1 − 0.11; 100·(−0.11 + 2)/(2 + 2) = 47.25;
        // a 100·(1 + 1)/2 = 100; b 100·(−1.11 + 1)/2 = −5.5.
        (-0.11, -2.0, 47.25, -5.5),
        // reward_low_FP_rate: raw 1 − 1 − 0.22; 100·1.78/4 = 44.5;
        // b 100·(−1.22 + 1)/2 = −11.
        (-0.22, -2.0, 44.5, -11.0),
        // reward_low_FN_rate: raw 1 − 2 − 0.11; 100·(−1.11 + 4)/6 ≈
        // 48.1667; a 100·(1 + 2)/3 = 100; b 100·(−2.11 + 2)/3 ≈ −3.6667.
        (-1.11, -4.0, 289.0 / 6.0, -11.0 / 3.0),
    ];
    for (profile, (raw, null, all, b)) in PROFILES.iter().zip(expected) {
        let s = score_corpus(&files, profile);
        assert_eq!(s.threshold, 1.0);
        assert!(close(s.total.raw, raw), "{s:?}");
        assert!(close(s.total.null, null), "{s:?}");
        assert_eq!(s.total.perfect, 2.0);
        assert!(close(s.total.normalised.unwrap(), all), "{s:?}");
        assert!(close(s.categories["a"].normalised.unwrap(), 100.0));
        assert!(close(s.categories["b"].normalised.unwrap(), b), "{s:?}");
    }
}

#[test]
fn rows_without_a_score_never_detect() {
    let mut x = file("a/x.csv", 10, &[], &[(4, 7)]);
    x.scores = vec![f64::NAN; 10];
    let s = score_corpus(std::slice::from_ref(&x), &STANDARD);
    assert_eq!(s.threshold, f64::INFINITY);
    assert_eq!(s.total.raw, -1.0);
    assert_eq!(at_threshold(&[x], f64::NEG_INFINITY).detected, 0);
}

#[test]
fn false_alarms_are_rising_edges_outside_windows() {
    // 30 hourly rows, rows 0..=3 probation (⌊4.5⌋), window rows 10..=12.
    let detected: Vec<(usize, f64)> = [2, 3, 4, 5, 11, 12, 13, 15, 16, 17]
        .into_iter()
        .map(|r| (r, 1.0))
        .collect();
    let mut x = file("a/x.csv", 30, &detected, &[(10, 12)]);
    x.times = (0..30).map(|i| i * 3_600_000).collect();
    x.windows = vec![(10 * 3_600_000, 12 * 3_600_000)];
    let a = at_threshold(&[x], 1.0);
    // Rows 4–5 continue a run begun in probation: one alarm, 2 rows. Rows
    // 11–12 detect the window. Row 13, just past it, is a new alarm; rows
    // 15–17 another: 3 alarms, 6 rows. Scored span: rows 4..=29, 25 h.
    assert_eq!(a.windows, 1);
    assert_eq!(a.detected, 1);
    assert_eq!(a.false_positive_rows, 6);
    assert_eq!(a.false_alarms, 3);
    assert!(close(a.days, 25.0 / 24.0));
    assert!(close(a.false_alarms_per_day.unwrap(), 2.88));
}

#[test]
fn reads_results_by_header_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let category = results.join("det").join("cat");
    std::fs::create_dir_all(&category).unwrap();
    std::fs::create_dir_all(results.join("other")).unwrap();
    // Scores beside the category folders, and files not named after the
    // detector, are not results.
    std::fs::write(results.join("det").join("det_standard_scores.csv"), "x\n").unwrap();
    std::fs::write(category.join("notes.csv"), "x\n").unwrap();
    let good = category.join("det_f.csv");
    std::fs::write(
        &good,
        "timestamp,value,anomaly_score,label\r\n\
         2014-04-01 00:00:00,1,0.25,0\r\n\
         2014-04-01 00:05:00,2,,0\r\n",
    )
    .unwrap();
    let labels = dir.path().join("windows.json");
    std::fs::write(
        &labels,
        r#"{"cat/f.csv": [["2014-04-01 00:05:00.000000", "2014-04-01 00:05:00.000000"]]}"#,
    )
    .unwrap();
    let windows = Windows::read(&labels).unwrap();

    assert_eq!(detectors(&results).unwrap(), ["det", "other"]);
    let files = read_detector(&results, "det", &windows).unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!((f.key.as_str(), f.category()), ("cat/f.csv", "cat"));
    assert_eq!(f.times, [1_396_310_400_000, 1_396_310_700_000]);
    assert_eq!(f.scores[0], 0.25);
    assert!(f.scores[1].is_nan());
    assert_eq!(f.windows, [(1_396_310_700_000, 1_396_310_700_000)]);

    std::fs::write(
        &good,
        "timestamp,anomaly_score\n2014-04-01 00:00:00,0\nnow,1\n",
    )
    .unwrap();
    let err = read_detector(&results, "det", &windows)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("det_f.csv:3: invalid timestamp \"now\""),
        "{err}"
    );
    std::fs::write(&good, "timestamp,anomaly_score\n2014-04-01 00:00:00,high\n").unwrap();
    let err = read_detector(&results, "det", &windows)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("det_f.csv:2: invalid anomaly_score \"high\""),
        "{err}"
    );
    std::fs::write(&good, "timestamp,score\n").unwrap();
    let err = read_detector(&results, "det", &windows)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("det_f.csv:1: no `anomaly_score` column in the header"),
        "{err}"
    );

    std::fs::write(&good, "timestamp,anomaly_score\n").unwrap();
    std::fs::write(category.join("det_g.csv"), "timestamp,anomaly_score\n").unwrap();
    let err = read_detector(&results, "det", &windows)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("det_g.csv: no labelled windows for cat/g.csv"),
        "{err}"
    );
    assert!(matches!(
        read_detector(&results, "other", &windows),
        Err(DatasetError::NoFiles(_))
    ));
}

#[test]
fn table_lines_up_profiles_and_categories() {
    let files = [
        file("a/one.csv", 40, &[(20, 1.0)], &[(20, 23)]),
        file("b/two.csv", 40, &[(35, 1.0)], &[(30, 31)]),
    ];
    let never = [file("a/one.csv", 40, &[], &[(20, 23)])];
    let rows = [
        ("det".to_owned(), PROFILES.map(|p| score_corpus(&files, &p))),
        (
            "none".to_owned(),
            PROFILES.map(|p| score_corpus(&never, &p)),
        ),
    ];
    let expected = "\
detector  profile             threshold     all        a        b
det       standard             1.000000  47.250  100.000   -5.500
          reward_low_FP_rate   1.000000  44.500  100.000  -11.000
          reward_low_FN_rate   1.000000  48.167  100.000   -3.667
none      standard                never   0.000    0.000        -
          reward_low_FP_rate      never   0.000    0.000        -
          reward_low_FN_rate      never   0.000    0.000        -
";
    assert_eq!(table(&rows), expected);
}

#[test]
#[ignore = "needs ../shared, not in CI"]
fn reproduces_the_published_scores_on_the_shared_subset() {
    let nab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nab");
    let windows = Windows::read(&nab.join("labels/combined_windows.json")).unwrap();
    let results = nab.join("results");
    assert_eq!(
        detectors(&results).unwrap(),
        ["ARTime", "contextOSE", "numenta"]
    );
    // The README's table: standard, reward_low_FP_rate, reward_low_FN_rate.
    let published = [
        ("numenta", [66.538, 60.096, 71.598]),
        ("ARTime", [67.678, 59.027, 73.690]),
        ("contextOSE", [61.632, 56.150, 65.578]),
    ];
    let mut rows = Vec::new();
    for (detector, figures) in published {
        let files = read_detector(&results, detector, &windows).unwrap();
        assert_eq!(files.len(), 24);
        let started = std::time::Instant::now();
        let scores = PROFILES.map(|p| score_corpus(&files, &p));
        println!("{detector}: scored in {:?}", started.elapsed());
        for (s, want) in scores.iter().zip(figures) {
            let got = s.total.normalised.unwrap();
            assert_eq!(
                format!("{got:.3}"),
                format!("{want:.3}"),
                "{detector} {}",
                s.profile.name
            );
        }
        rows.push((detector.to_owned(), scores));
    }
    println!("{}", table(&rows));
}
