//! Validation of a 1,000-step runbook (parse with spans, decode, check references,
//! expressions and the graph).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use vigil_bundle::Bundle;

fn runbook(steps: usize) -> String {
    let mut s = String::from(
        "apiVersion: vigil/v1\nkind: Runbook\nname: big\nparams:\n  service: { type: string, default: api }\nsteps:\n",
    );
    for i in 0..steps {
        s.push_str(&format!("  - id: s{i}\n    uses: core/set\n    with: {{ v: \"${{{{ params.service }}}}-{i}\" }}\n"));
        if i > 0 {
            s.push_str(&format!(
                "    needs: [s{}]\n    when: \"${{{{ steps.s{}.output.v != \\\"\\\" }}}}\"\n",
                i - 1,
                i - 1
            ));
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let text = runbook(1000);
    let bundle = Bundle::from_source(Path::new("big.yaml"), &text);
    assert!(
        !bundle.has_errors(),
        "{:?}",
        &bundle.diagnostics[..bundle.diagnostics.len().min(3)]
    );
    let mut group = c.benchmark_group("validate");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_step_runbook", |b| {
        b.iter(|| Bundle::from_source(Path::new("big.yaml"), &text))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
