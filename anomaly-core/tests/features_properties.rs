//! Properties of the streaming features, for arbitrary event sequences: windowed aggregates
//! equal a naive recomputation over the retained events, variance stays accurate far from
//! zero, serialized state continues identically, and corrupt bytes never panic.

use anomaly_core::features::*;
use proptest::prelude::*;

/// The window policy, re-implemented the obvious way: a sorted `Vec`, recomputed from scratch.
#[derive(Debug)]
struct NaiveWindow {
    span: WindowSpan,
    lateness: u64,
    newest: Option<i64>,
    events: Vec<(i64, f64)>,
    late: u64,
}

impl NaiveWindow {
    fn new(params: WindowParams) -> Self {
        Self {
            span: params.span,
            lateness: params.allowed_lateness_ms,
            newest: None,
            events: Vec::new(),
            late: 0,
        }
    }

    fn push(&mut self, t: i64, v: f64) -> Ingest {
        if let Some(newest) = self.newest {
            if i128::from(t) < i128::from(newest) - i128::from(self.lateness) {
                self.late += 1;
                return Ingest::DroppedLate;
            }
        }
        let newest = self.newest.map_or(t, |n| n.max(t));
        self.newest = Some(newest);
        let pos = self.events.partition_point(|e| e.0 <= t);
        self.events.insert(pos, (t, v));
        match self.span {
            WindowSpan::Events { count } => {
                while self.events.len() > count as usize {
                    self.events.remove(0);
                }
            }
            WindowSpan::Time { millis } => self
                .events
                .retain(|e| i128::from(e.0) > i128::from(newest) - i128::from(millis)),
        }
        Ingest::Accepted
    }

    fn values(&self) -> Vec<f64> {
        self.events.iter().map(|e| e.1).collect()
    }
}

/// Two-pass statistics on values shifted by the first one (exact for nearby values, where the
/// mean of two floats near 1e9 is not representable), with a refined mean.
struct Oracle {
    n: usize,
    sum: f64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    max_abs: f64,
}

fn oracle(xs: &[f64]) -> Oracle {
    let n = xs.len();
    let nf = n as f64;
    let shift = xs.first().copied().unwrap_or(0.0);
    let ys: Vec<f64> = xs.iter().map(|x| x - shift).collect();
    let rough = ys.iter().sum::<f64>() / nf;
    let mean = rough + ys.iter().map(|y| y - rough).sum::<f64>() / nf;
    Oracle {
        n,
        sum: xs.iter().sum(),
        mean: shift + mean,
        m2: ys.iter().map(|y| (y - mean) * (y - mean)).sum(),
        min: xs.iter().copied().fold(f64::INFINITY, f64::min),
        max: xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        max_abs: xs.iter().fold(0.0, |m, x| m.max(x.abs())),
    }
}

fn assert_summary_matches(s: &Summary, xs: &[f64]) {
    assert_eq!(s.count() as usize, xs.len());
    if xs.is_empty() {
        assert_eq!(
            (s.sum(), s.mean(), s.min(), s.max()),
            (0.0, 0.0, None, None)
        );
        return;
    }
    let o = oracle(xs);
    let n = o.n as f64;
    assert_eq!(s.min(), Some(o.min), "min of {xs:?}");
    assert_eq!(s.max(), Some(o.max), "max of {xs:?}");
    let tol_sum = 1e-12 * n * o.max_abs + 1e-300;
    assert!(
        (s.sum() - o.sum).abs() <= tol_sum,
        "sum {} vs {} of {xs:?}",
        s.sum(),
        o.sum
    );
    assert!(
        (s.mean() - o.mean).abs() <= 1e-12 * o.max_abs + 1e-300,
        "mean {} vs {} of {xs:?}",
        s.mean(),
        o.mean
    );
    // Errors scale with the spread, not the magnitude: that is the numerical-robustness claim.
    let range = o.max - o.min;
    let tol_var = 1e-10 * range * range + 1e-300;
    let pop = o.m2 / n;
    assert!(
        (s.population_variance() - pop).abs() <= tol_var,
        "population variance {} vs {pop} of {xs:?}",
        s.population_variance()
    );
    let sample = if o.n > 1 { o.m2 / (n - 1.0) } else { 0.0 };
    assert!(
        (s.sample_variance() - sample).abs() <= tol_var * 2.0,
        "sample variance {} vs {sample} of {xs:?}",
        s.sample_variance()
    );
    assert!((s.population_std() - pop.sqrt()).abs() <= tol_var.sqrt() * 2.0);
}

fn window_params() -> impl Strategy<Value = WindowParams> {
    let span = prop_oneof![
        (1u64..80).prop_map(|millis| WindowSpan::Time { millis }),
        (1u32..16).prop_map(|count| WindowSpan::Events { count }),
    ];
    (span, prop_oneof![Just(0u64), 0u64..50]).prop_map(|(span, allowed_lateness_ms)| WindowParams {
        span,
        allowed_lateness_ms,
    })
}

/// Values from one of several regimes: small, repeated integers (ties for min/max), large,
/// 1e9 plus a small spread, two-decimal amounts (compact encoding), and a mix.
fn values(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    let regime = prop_oneof![
        Just(0u8),
        Just(1u8),
        Just(2u8),
        Just(3u8),
        Just(4u8),
        Just(5u8)
    ];
    (
        regime,
        prop::collection::vec((0.0..1.0f64, -50i32..50), len),
    )
        .prop_map(|(regime, raw)| {
            raw.into_iter()
                .map(|(u, i)| match regime {
                    0 => (u - 0.5) * 2000.0,
                    1 => f64::from(i),
                    2 => (u - 0.5) * 2e12,
                    3 => 1e9 + u,
                    4 => f64::from(i * 1234 + 7) / 100.0,
                    _ => {
                        if i % 3 == 0 {
                            f64::from(i) * 1e6
                        } else {
                            u
                        }
                    }
                })
                .collect()
        })
}

/// Event times: mostly forward, often equal, sometimes late (behind the newest by up to 60).
fn events(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<(i64, f64)>> {
    (prop::collection::vec(-60i64..25, len.clone()), values(len)).prop_map(|(deltas, xs)| {
        let mut newest = 1_700_000_000_000i64;
        deltas
            .into_iter()
            .zip(xs)
            .map(|(d, x)| {
                let d = if d > 10 { 0 } else { d };
                let t = newest + d;
                newest = newest.max(t);
                (t, x)
            })
            .collect()
    })
}

fn check_window_against_naive(params: WindowParams, events: &[(i64, f64)]) -> SlidingWindow {
    let mut window = SlidingWindow::new(params).unwrap();
    let mut naive = NaiveWindow::new(params);
    for &(t, x) in events {
        assert_eq!(
            window.push(t, x).unwrap(),
            naive.push(t, x),
            "event ({t}, {x})"
        );
        assert_eq!(window.events().collect::<Vec<_>>(), naive.events);
        assert_eq!(window.late_dropped(), naive.late);
        assert_eq!(window.newest_timestamp(), naive.newest);
        assert_summary_matches(&window.summary(), &naive.values());
    }
    window
}

fn tx(t: i64, amount: f64, category: u8, lat: f64, lon: f64) -> Transaction {
    Transaction {
        event_id: format!("e{t}"),
        card_id: "card".into(),
        timestamp_ms: t,
        amount,
        merchant: "m".into(),
        category: format!("cat{category}"),
        latitude: lat,
        longitude: lon,
    }
}

fn transactions(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Transaction>> {
    let amount = prop_oneof![
        4 => 0.0..5_000.0f64,
        4 => (0u32..500_000).prop_map(|cents| f64::from(cents) / 100.0),
        1 => Just(0.0),
        1 => prop_oneof![Just(-1.0), Just(f64::NAN), Just(f64::INFINITY), Just(1e101), Just(1e100)],
    ];
    let lat = prop_oneof![10 => -90.0..=90.0f64, 1 => prop_oneof![Just(f64::NAN), Just(90.5)]];
    let lon =
        prop_oneof![10 => -180.0..=180.0f64, 1 => prop_oneof![Just(-181.0), Just(f64::INFINITY)]];
    let step = prop_oneof![
        4 => 0i64..600_000,
        1 => Just(0i64),
        1 => -900_000i64..0,
        1 => 3_600_000i64..90_000_000,
    ];
    prop::collection::vec((step, amount, 0u8..6, lat, lon), len).prop_map(|raw| {
        let mut newest = 1_700_000_000_000i64;
        raw.into_iter()
            .map(|(step, amount, cat, lat, lon)| {
                let t = newest + step;
                newest = newest.max(t);
                tx(t, amount, cat, lat, lon)
            })
            .collect()
    })
}

/// Applies `txs`, checking the feature contract and that rejections leave the state alone.
fn feed_card(
    card: &mut CardState,
    txs: &[Transaction],
) -> Vec<Result<TransactionFeatures, String>> {
    txs.iter()
        .map(|t| {
            let before = card.clone();
            match card.update(t) {
                Ok(f) => {
                    for (name, v) in f.iter() {
                        assert!((0.0..=1.0).contains(&v), "{name} = {v}");
                        assert!(((v * 1e4).round() - v * 1e4).abs() < 1e-6, "{name} = {v}");
                    }
                    Ok(f)
                }
                Err(e @ TransactionError::TooLate { .. }) => {
                    assert_eq!(card.late_dropped(), before.late_dropped() + 1);
                    assert_eq!(card.last_day(), before.last_day());
                    assert_eq!(card.recent(), before.recent());
                    Err(e.to_string())
                }
                Err(e) => {
                    assert_eq!(*card, before, "{e} changed the state");
                    Err(e.to_string())
                }
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn window_aggregates_equal_naive_recomputation(
        params in window_params(),
        events in events(0..150),
    ) {
        check_window_against_naive(params, &events);
    }

    #[test]
    fn variance_is_accurate_around_1e9(
        us in prop::collection::vec(0.0..1.0f64, 2..1500),
        count in 2u32..300,
        lateness in 0u64..5,
    ) {
        let xs: Vec<f64> = us.iter().map(|u| 1e9 + u).collect();
        let params = WindowParams { span: WindowSpan::Events { count }, allowed_lateness_ms: lateness };
        let mut window = SlidingWindow::new(params).unwrap();
        let mut running = RunningStats::default();
        let mut ewm_far = EwmStats::new(EwmParams { alpha: 0.05 }).unwrap();
        let mut ewm_near = EwmStats::new(EwmParams { alpha: 0.05 }).unwrap();
        for (i, &x) in xs.iter().enumerate() {
            // Every 5th event is 2 ms late, within or beyond the lateness.
            let t = (i as i64) * 10 - if i % 5 == 4 { 12 } else { 0 };
            window.push(t, x).unwrap();
            running.push(x).unwrap();
            ewm_far.push(x).unwrap();
            ewm_near.push(x - 1e9).unwrap();
        }
        let retained: Vec<f64> = window.events().map(|e| e.1).collect();
        for (summary, xs) in [(window.summary(), &retained), (running.summary(), &xs)] {
            let o = oracle(xs);
            let var = o.m2 / o.n as f64;
            if var > 0.0 {
                let rel = (summary.population_variance() - var).abs() / var;
                prop_assert!(rel < 1e-9, "relative error {rel}");
            }
        }
        let (far, near) = (ewm_far.variance(), ewm_near.variance());
        prop_assert!((far - near).abs() <= 1e-12 * near + 1e-300, "{far} vs {near}");
    }

    #[test]
    fn window_round_trips_continue_identically(
        params in window_params(),
        events in events(0..120),
        split in 0usize..120,
    ) {
        let split = split.min(events.len());
        let mut window = SlidingWindow::new(params).unwrap();
        for &(t, x) in &events[..split] {
            window.push(t, x).unwrap();
        }
        let bytes = window.to_bytes();
        let mut from_bytes = SlidingWindow::decode(&bytes).unwrap();
        let json = serde_json::to_string(&window).unwrap();
        let mut from_json: SlidingWindow = serde_json::from_str(&json).unwrap();
        prop_assert_eq!(&from_bytes, &window);
        prop_assert_eq!(&from_json, &window);
        for &(t, x) in &events[split..] {
            let a = window.push(t, x).unwrap();
            prop_assert_eq!(from_bytes.push(t, x).unwrap(), a);
            prop_assert_eq!(from_json.push(t, x).unwrap(), a);
            prop_assert_eq!(from_bytes.summary(), window.summary());
            prop_assert_eq!(from_json.summary(), window.summary());
        }
        prop_assert_eq!(&from_bytes, &window);
        prop_assert_eq!(from_bytes.to_bytes(), window.to_bytes());
    }

    #[test]
    fn corrupt_window_bytes_error_never_panic(
        params in window_params(),
        events in events(0..40),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..4),
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut window = SlidingWindow::new(params).unwrap();
        for &(t, x) in &events {
            window.push(t, x).unwrap();
        }
        let bytes = window.to_bytes();
        for cut in 0..bytes.len() {
            prop_assert!(SlidingWindow::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        prop_assert_eq!(
            SlidingWindow::decode(&longer),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
        let mut corrupt = bytes.clone();
        for (at, mask) in &flips {
            corrupt[at.index(bytes.len())] ^= mask;
        }
        if let Ok(w) = SlidingWindow::decode(&corrupt) {
            // Whatever decodes is a valid window: usable and re-encodable.
            let s = w.summary();
            prop_assert!(s.sum().is_finite() && s.sample_variance().is_finite());
            prop_assert_eq!(SlidingWindow::decode(&w.to_bytes()).unwrap(), w);
        }
        let _ = SlidingWindow::decode(&noise);
        let _ = CardState::decode(&noise);
        let mut headed = vec![FORMAT_VERSION, 1];
        headed.extend(&noise);
        let _ = SlidingWindow::decode(&headed);
        headed[1] = 2;
        let _ = CardState::decode(&headed);
    }

    #[test]
    fn card_features_stay_in_range_and_round_trip(
        txs in transactions(0..80),
        split in 0usize..80,
        lateness in prop_oneof![Just(0u64), Just(300_000u64), 0u64..2_000_000],
        recent in 2u32..30,
        max_categories in 1u32..5,
    ) {
        let params = TransactionParams {
            allowed_lateness_ms: lateness,
            recent_transactions: recent,
            max_categories,
        };
        let split = split.min(txs.len());
        let mut card = CardState::new(params).unwrap();
        feed_card(&mut card, &txs[..split]);

        let bytes = card.to_bytes();
        let mut from_bytes = CardState::decode(&bytes).unwrap();
        let mut from_json: CardState =
            serde_json::from_str(&serde_json::to_string(&card).unwrap()).unwrap();
        prop_assert_eq!(&from_bytes, &card);
        prop_assert_eq!(&from_json, &card);
        for cut in 0..bytes.len() {
            prop_assert!(CardState::decode(&bytes[..cut]).is_err());
        }

        let a = feed_card(&mut card, &txs[split..]);
        prop_assert_eq!(&feed_card(&mut from_bytes, &txs[split..]), &a);
        prop_assert_eq!(&feed_card(&mut from_json, &txs[split..]), &a);
        prop_assert_eq!(&from_bytes, &card);
    }

    #[test]
    fn card_windows_match_naive_windows(txs in transactions(0..100), lateness in 0u64..1_000_000) {
        let params = TransactionParams { allowed_lateness_ms: lateness, ..Default::default() };
        let mut card = CardState::new(params).unwrap();
        let mut hour = NaiveWindow::new(WindowParams {
            span: WindowSpan::Time { millis: 3_600_000 },
            allowed_lateness_ms: lateness,
        });
        for t in &txs {
            let accepted = card.update(t).is_ok();
            if accepted {
                prop_assert_eq!(hour.push(t.timestamp_ms, t.amount), Ingest::Accepted);
            }
            assert_summary_matches(&card.last_hour().summary(), &hour.values());
        }
    }

    #[test]
    fn scaler_matches_river_semantics(
        n_features in 1usize..10,
        rows in prop::collection::vec(prop::collection::vec(-1e6..1e6f64, 10), 1..60),
    ) {
        let mut scaler = MinMaxScaler::new(n_features).unwrap();
        let mut lo = vec![f64::INFINITY; n_features];
        let mut hi = vec![f64::NEG_INFINITY; n_features];
        let mut out = vec![0.0; n_features];
        let mut clamped = vec![0.0; n_features];
        for row in &rows {
            let row = &row[..n_features];
            scaler.transform_clamped(row, &mut clamped).unwrap();
            prop_assert!(clamped.iter().all(|v| (0.0..=1.0).contains(v)));
            scaler.learn_transform(row, &mut out).unwrap();
            for i in 0..n_features {
                lo[i] = lo[i].min(row[i]);
                hi[i] = hi[i].max(row[i]);
                let range = hi[i] - lo[i];
                let want = if range != 0.0 { (row[i] - lo[i]) / range } else { 0.0 };
                prop_assert_eq!(out[i], want);
                prop_assert!((0.0..=1.0).contains(&out[i]));
            }
        }
    }
}
