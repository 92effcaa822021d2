//! Failure prediction lifecycle on generated data with a known failure signature.

use vigil_detect::classifier::{
    ClassifierError, FailureModel, FeatureExtractor, MODEL_FORMAT, TrainConfig, synthetic_fleet,
};

fn trained() -> FailureModel {
    let (history, failures) = synthetic_fleet(6000, 7, 12);
    let fx = FeatureExtractor::new(12).expect("valid");
    let (xs, ys) = fx.examples(&history, &failures, 6).expect("finite");
    FailureModel::train("disk-failure@1", fx, 6, &xs, &ys, &TrainConfig::default())
        .expect("trains and beats baseline")
}

#[test]
fn hold_out_quality_beats_the_baselines() {
    let m = trained();
    let e = &m.evaluation;
    println!("{e:#?}");
    assert!(e.holdout_model.f1 > e.holdout_baseline.f1, "{e:?}");
    assert!(e.holdout_model.f1 > e.holdout_majority.f1);
    assert!(e.holdout_model.precision >= 0.8, "{e:?}");
    assert!(e.holdout_model.recall >= 0.5, "{e:?}");
}

#[test]
fn predictions_carry_confidence_and_only_confident_ones_raise() {
    let m = trained();
    let (history, failures) = synthetic_fleet(2000, 99, 12);
    let first_failure = failures.iter().position(|f| *f).expect("has failures");
    let before = m
        .predict_samples(&history[..first_failure])
        .expect("valid window");
    assert!(
        before.failure && before.raise && before.confidence >= 0.8,
        "{before:?}"
    );
    for p in m.predict_batch(&m.extractor.examples(&history, &failures, 6).expect("ok").0) {
        assert!((0.5..=1.0).contains(&p.confidence));
        assert_eq!(p.raise, p.failure && p.confidence >= m.min_confidence);
    }
    assert!(matches!(
        m.predict(&[1.0, 2.0]),
        Err(ClassifierError::WrongFeatureCount { .. })
    ));
}

#[test]
fn models_round_trip_through_bytes_and_check_their_format() {
    let m = trained();
    let bytes = m.to_bytes().expect("serialises");
    let back = FailureModel::from_bytes(&bytes).expect("reads");
    assert_eq!(back.version, "disk-failure@1");
    assert_eq!(back.format, MODEL_FORMAT);
    let (history, _) = synthetic_fleet(500, 3, 12);
    assert_eq!(
        back.predict_samples(&history).ok(),
        m.predict_samples(&history).ok()
    );
    let text = String::from_utf8(bytes).expect("json");
    let future = text.replacen(&format!("\"format\":{MODEL_FORMAT}"), "\"format\":999", 1);
    assert!(matches!(
        FailureModel::from_bytes(future.as_bytes()),
        Err(ClassifierError::UnsupportedFormat { found: 999 })
    ));
    assert!(matches!(
        FailureModel::from_bytes(b"not json"),
        Err(ClassifierError::Decode(_))
    ));
}

#[test]
fn bad_training_data_is_refused_not_panicked_on() {
    let fx = FeatureExtractor::new(12).expect("valid");
    let x = [[0.0; vigil_detect::classifier::FEATURE_COUNT]; 100];
    let all_healthy = [false; 100];
    assert!(matches!(
        FailureModel::train("v", fx, 6, &x, &all_healthy, &TrainConfig::default()),
        Err(ClassifierError::OneClass { .. })
    ));
    assert!(matches!(
        FailureModel::train(
            "v",
            fx,
            6,
            &x[..5],
            &all_healthy[..5],
            &TrainConfig::default()
        ),
        Err(ClassifierError::TooFewExamples { .. })
    ));
    let mut nan = x;
    nan[3][2] = f64::NAN;
    let mixed: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
    assert!(matches!(
        FailureModel::train("v", fx, 6, &nan, &mixed, &TrainConfig::default()),
        Err(ClassifierError::NonFinite {
            index: 3,
            feature: 2
        })
    ));
    // Features carry no signal: the model cannot beat the baseline and is not promoted.
    let noise: Vec<[f64; vigil_detect::classifier::FEATURE_COUNT]> = (0..300)
        .map(|i| [((i * 7919) % 101) as f64; vigil_detect::classifier::FEATURE_COUNT])
        .collect();
    let labels: Vec<bool> = (0..300).map(|i| (i * 31) % 7 == 0).collect();
    let r = FailureModel::train("v", fx, 6, &noise, &labels, &TrainConfig::default());
    assert!(r.is_err(), "a signal-free model must not pass validation");
}
