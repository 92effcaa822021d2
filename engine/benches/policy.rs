//! Policy decisions per second with the bundled (realistic) escalation policy
//! (target ≥ 100,000/s per core), and the cost of one `${{ }}` expression.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use vigil_bundle::Bundle;
use vigil_policy::decide::{Facts, PolicyEngine};
use vigil_policy::expr::{Bindings, ExprEngine};

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
    let bundle = Bundle::load(&root).unwrap();
    let engine = PolicyEngine::load(&bundle.policies).unwrap();
    let incident = json!({
        "id": "inc-1",
        "labels": { "alertname": "MemoryLeak", "service": "checkout-api", "severity": "warning", "team": "sre", "cluster": "eu-1" },
        "value": 2.6e9,
    });
    let plan = json!({ "runbook": "restart-leaking-service", "origin": "automatic", "risk": "low", "reversible": true, "targets": 2, "steps": [] });
    let facts = Facts {
        now_ms: 1_795_514_400_000,
        oncall: bundle.config.oncall.clone(),
        freeze: bundle.config.guardrails.freeze.clone(),
        history: None,
    };
    let (d, _) = engine.decide("escalation", &incident, &plan, &facts);
    assert!(!d.fallback, "{}", d.reason);

    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decide_escalation", |b| {
        b.iter(|| engine.decide("escalation", &incident, &plan, &facts))
    });

    let exprs = ExprEngine::new();
    let mut bindings = Bindings::new();
    bindings.set(
        "params",
        &json!({ "service": "checkout-api", "limit": 2e9 }),
    );
    bindings.set(
        "steps",
        &json!({ "measure": { "output": { "value": 2.6e9 }, "status": "succeeded" } }),
    );
    bindings.set(
        "incident",
        &json!({ "labels": BTreeMap::from([("service", "checkout-api")]) }),
    );
    let src = "steps.measure.output.value > params.limit";
    assert_eq!(exprs.eval(src, &bindings).unwrap(), json!(true));
    group.bench_function("expression_eval", |b| {
        b.iter(|| exprs.eval(src, &bindings).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
