//! The fleets view: instances with sparklines, and a daemon without `metrics.get`.

use super::*;

#[test]
fn snapshot_fleets_with_sparklines() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    let samples: Vec<GpuSample> = [0.0, 10.0, 35.0, 60.0, 90.0, 100.0, 80.0, 40.0]
        .iter()
        .enumerate()
        .map(|(i, u)| GpuSample {
            time: Timestamp(NOW.0 - 8000 + i as u64 * 1000),
            util_percent: *u,
            memory_used_gb: 10.0,
            memory_total_gb: 80.0,
        })
        .collect();
    app.handle_msg(Msg::Metrics {
        key: "local/local-0".into(),
        result: Ok(MetricsResult {
            series: vec![GpuSeries {
                instance: "local/local-0".into(),
                gpu: 0,
                samples,
            }],
        }),
    });
    insta::assert_snapshot!(screen(&mut app, 120, 14));
}

#[test]
fn without_metrics_get_there_are_no_sparklines_and_no_more_requests() {
    let mut app = app_with(sample_runs());
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    let asked = app.take_commands();
    assert_eq!(
        asked
            .iter()
            .filter(|c| matches!(c, Command::Metrics { .. }))
            .count(),
        3
    );
    app.handle_msg(Msg::MetricsUnsupported);
    assert!(app.flash.is_none(), "no error shown");
    app.tick(Timestamp(NOW.0 + 60_000));
    typ(&mut app, ":fleets");
    press(&mut app, "enter");
    assert!(app.take_commands().is_empty());
}
