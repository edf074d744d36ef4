//! Tests of `kmip_report.rs`: the rendered KMIP report and its figures.

use super::*;

#[test]
fn many_rounds_are_left_to_the_results_file() {
    let few: Vec<String> = (1..=3).map(|i| i.to_string()).collect();
    assert_eq!(listed(&few, ", "), "1, 2, 3");
    let many: Vec<String> = (0..=MAX_LISTED_ROUNDS).map(|i| i.to_string()).collect();
    assert_eq!(
        listed(&many, " "),
        format!("{} rounds, each in the results file", MAX_LISTED_ROUNDS + 1)
    );
}

fn phase(samples: Vec<u32>, dec: u64, enc: u64) -> Phase {
    Phase {
        samples,
        errors: 0,
        first_error: None,
        wall: Duration::from_secs(1),
        client: Sched {
            run_ns: 100_000,
            ..Sched::default()
        },
        kms: Sched {
            slices: 8,
            ..Sched::default()
        },
        proxy: Sched::default(),
        hsm: Sched {
            run_ns: 1_000_000,
            ..Sched::default()
        },
        hsm_decrypts: dec,
        hsm_encrypts: enc,
    }
}

#[test]
fn pools_rounds_and_judges_the_ratio() {
    let d = KmipResult::from_phases(
        DIRECT,
        1,
        &[
            phase(vec![1000, 1000, 1100], 3, 0),
            phase(vec![1000, 900, 1000], 4, 1),
        ],
    );
    assert_eq!(
        (d.requests, d.p50_us, d.round_p50_us.clone()),
        (6, 1000, vec![1000, 1000])
    );
    assert_eq!(d.request_decrypts(), 6);
    let k = KmipResult::from_phases(COLD, 1, &[phase(vec![1200, 1200], 2, 0)]);
    let text = render(&[d.clone(), k]);
    assert!(text.contains("**1.20**"), "{text}");
    assert!(text.contains("NOT met"), "{text}");
    let k = KmipResult::from_phases(COLD, 1, &[phase(vec![1050, 1050], 9, 0)]);
    let text = render(&[d, k]);
    assert!(
        text.contains("**1.05**") && text.contains("target ≤ 1.1: met"),
        "{text}"
    );
    assert!(
        text.contains("NOT as expected"),
        "9 Decrypts for 2 requests: {text}"
    );
}

#[test]
fn hsm_decrypts_may_stray_by_the_start_up_canaries_only_however_many_rounds() {
    // A thousand rounds of one request each: the stray canaries allowed do
    // not grow with the rounds.
    let run = |extra: u64| {
        let phases: Vec<Phase> = (0..1000)
            .map(|i| phase(vec![1000], if i == 0 { 1 + extra } else { 1 }, 0))
            .collect();
        let k = KmipResult::from_phases(COLD, 1, &phases);
        render(&[k])
    };
    let two = run(2);
    assert!(
        two.contains("1002 for 1000 requests, expected 1000: as expected"),
        "{two}"
    );
    let three = run(3);
    assert!(
        three.contains("1003 for 1000 requests, expected 1000: NOT as expected"),
        "{three}"
    );
}

#[test]
fn judges_the_added_time_and_sets_the_proxy_beside_it() {
    let d = KmipResult::from_phases(DIRECT, 1, &[phase(vec![1000, 1000], 2, 0)]);
    let k = KmipResult::from_phases(COLD, 1, &[phase(vec![1040, 1040], 2, 0)]);
    let text = render(&[d.clone(), k]);
    assert!(
        text.contains("cmx-kms 0.04 ms (target ≤ 0.05 ms: met)"),
        "{text}"
    );
    assert!(!text.contains("nginx TLS proxy"), "no proxy run: {text}");
    let k = KmipResult::from_phases(COLD, 1, &[phase(vec![1300, 1300], 2, 0)]);
    let mut through = phase(vec![1100, 1100], 2, 0);
    through.proxy = Sched {
        run_ns: 50_000,
        wait_ns: 0,
        slices: 5,
    };
    let p = KmipResult::from_phases(PROXY, 1, &[through]);
    let text = render(&[d, k, p]);
    assert!(
        text.contains("cmx-kms 0.30 ms (target ≤ 0.05 ms: NOT met)"),
        "{text}"
    );
    assert!(
        text.contains("proxy (stream module, TLS ended and opened again, the same certificates) 0.10 ms, using 25.0 µs of its CPU per request against cmx-kms's 0.0, put on a CPU 2.5 times per request against cmx-kms's 4.0"),
        "{text}"
    );
    assert!(
        text.contains("added per round, ms: cmx-kms +0.30; the nginx TLS proxy +0.10"),
        "{text}"
    );
    assert!(
        text.contains("| 50.0 | 0.0 | 500.0 | 0.0 | 25.0 | 2.5 |"),
        "{text}"
    );
}
