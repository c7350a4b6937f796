//! The benchmark's plain ffmpeg baselines on a short clip: every way of making the ladder runs to
//! the end, the layout that shares the cores as a worker does included. In a process of its own,
//! since the bench's sampler tests count this process's ffmpeg children.

use pulse_activities::cpu_share::CpuShare;
use pulse_tests::{
    bench::{Baselines, plan_local},
    media::{ClipSpec, clip},
};

#[tokio::test]
async fn plain_ffmpeg_makes_every_baseline_of_a_short_clip() {
    let source = clip(&ClipSpec::new(640, 360, 2.0));
    let plan = plan_local(&source).await;
    assert!(plan.variants.len() > 1, "a ladder with a rest: {plan:?}");
    let baselines = Baselines {
        source: &source,
        plan: &plan,
        preset: "ultrafast",
        cpu_share: CpuShare::default(),
    };
    let targets = baselines.targets().await;
    let run = baselines.others(targets).await;
    for secs in [
        run.sequential_secs,
        run.single_decode_secs,
        run.smallest_secs,
        run.smallest_then_rest_secs,
        run.smallest_beside_rest_secs,
    ] {
        assert!(secs > 0.0, "{run:?}");
    }
    assert!(run.smallest_within_beside_secs <= run.smallest_beside_rest_secs);
}
