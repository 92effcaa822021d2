//! Hostile plugins: each misbehaviour is stopped with a clear, typed error, and
//! the same host serves the next call normally.

mod common;

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_core::action::{ActionCall, ActionCatalog, ActionPlan};
use vigil_plugin_host::{
    Call, Grants, HostOptions, InstanceConfig, Limit, Limits, PluginCatalog, PluginError,
    PluginHost, PluginInstance, TimeRange,
};

fn host() -> PluginHost {
    PluginHost::new(HostOptions::default()).expect("host")
}

fn hostile(host: &PluginHost, grants: Grants, limits: Limits) -> PluginInstance {
    let plugin = host
        .load_file(&common::plugin_path("hostile"))
        .expect("load hostile");
    PluginInstance::new(
        plugin,
        InstanceConfig {
            grants,
            limits,
            ..InstanceConfig::bare("hostile")
        },
    )
    .expect("instance")
}

fn small_limits() -> Limits {
    Limits {
        timeout_ms: 500,
        memory_mib: 32,
        output_kib: 1024,
        ..Limits::default()
    }
}

/// After any failure the same instance still answers a normal call.
fn still_serves(inst: &PluginInstance) {
    let out = inst
        .execute("ok", &json!({}), &ActionPlan::default())
        .expect("next call works");
    assert_eq!(out, json!({ "ok": true }));
}

#[test]
fn infinite_loop_hits_the_time_limit() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let t = Instant::now();
    let err = inst
        .execute("loop", &json!({}), &ActionPlan::default())
        .expect_err("loop must be stopped");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "stopped promptly, took {:?}",
        t.elapsed()
    );
    assert_eq!(err.limit(), Some(&Limit::Timeout { ms: 500 }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("hostile") && msg.contains("execute") && msg.contains("time limit of 500 ms"),
        "{msg}"
    );
    still_serves(&inst);
    // The connector side too.
    let err = inst
        .fetch("loop", TimeRange::instant(0))
        .expect_err("loop in fetch");
    assert!(
        matches!(
            err,
            PluginError::LimitExceeded {
                call: Call::Fetch,
                limit: Limit::Timeout { .. },
                ..
            }
        ),
        "{err}"
    );
    still_serves(&inst);
}

#[test]
fn validate_has_a_short_leash() {
    let h = host();
    // A minute for real calls, but validate runs on the executor's thread: 1 s at most.
    let inst = hostile(
        &h,
        Grants::default(),
        Limits {
            timeout_ms: 60_000,
            ..small_limits()
        },
    );
    let t = Instant::now();
    let err = inst
        .validate("loop", &json!({ "in_validate": true }))
        .expect_err("stopped");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(
        err.limit(),
        Some(&Limit::Timeout {
            ms: vigil_plugin_host::VALIDATE_TIMEOUT_MS
        }),
        "{err}"
    );
    inst.validate("loop", &json!({}))
        .expect("a normal validate passes");
}

#[test]
fn memory_bomb_hits_the_memory_limit() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("memory-bomb", &json!({}), &ActionPlan::default())
        .expect_err("bomb must be stopped");
    assert_eq!(
        err.limit(),
        Some(&Limit::Memory { bytes: 32 << 20 }),
        "{err}"
    );
    assert!(err.to_string().contains("memory limit of 32 MiB"), "{err}");
    still_serves(&inst);
}

#[test]
fn huge_output_is_refused() {
    let h = host();
    // 40 MiB string: over the output cap even though it fits in memory.
    let inst = hostile(
        &h,
        Grants::default(),
        Limits {
            memory_mib: 256,
            output_kib: 1024,
            ..Limits::default()
        },
    );
    let err = inst
        .execute("huge-output", &json!({}), &ActionPlan::default())
        .expect_err("output must be refused");
    assert_eq!(
        err.limit(),
        Some(&Limit::Output { bytes: 1 << 20 }),
        "{err}"
    );
    still_serves(&inst);
    // With the default memory cap it cannot even build it: memory limit.
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("huge-output", &json!({}), &ActionPlan::default())
        .expect_err("refused");
    assert!(err.limit().is_some(), "{err}");
    still_serves(&inst);
}

#[test]
fn deep_recursion_hits_the_stack_limit() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("recursion", &json!({}), &ActionPlan::default())
        .expect_err("recursion must be stopped");
    assert_eq!(err.limit(), Some(&Limit::Stack), "{err}");
    assert!(
        err.to_string().contains("stack limit (recursion too deep)"),
        "{err}"
    );
    still_serves(&inst);
    // Big frames overflow the guest's shadow stack (in linear memory) first: a trap.
    let err = inst
        .execute("recursion-shadow", &json!({}), &ActionPlan::default())
        .expect_err("stopped");
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(err.to_string().contains("deep recursion"), "{err}");
    assert!(err.to_string().len() < 2000, "no endless backtrace: {err}");
    still_serves(&inst);
}

#[test]
fn no_filesystem() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("read-file", &json!({}), &ActionPlan::default())
        .expect_err("no files");
    let msg = err.to_string();
    assert!(matches!(err, PluginError::Reported { .. }), "{msg}");
    assert!(msg.contains("read /etc/passwd"), "{msg}");
    assert!(!msg.contains("root:"), "file content leaked: {msg}");
    still_serves(&inst);
}

#[test]
fn no_sockets() {
    let h = host();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("socket", &json!({ "target": addr }), &ActionPlan::default())
        .expect_err("no sockets");
    assert!(
        err.to_string().contains(&format!("connect {addr}")),
        "{err}"
    );
    assert!(
        listener.accept().is_err(),
        "the plugin reached the listener"
    );
    still_serves(&inst);
}

#[test]
fn no_environment() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("env", &json!({}), &ActionPlan::default())
        .expect_err("env is empty");
    assert!(err.to_string().contains("environment is empty"), "{err}");
    still_serves(&inst);
}

#[test]
fn ungranted_http_is_denied_with_the_grant_line() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let url = "http://127.0.0.1:9/secret";
    let err = inst
        .execute(
            "ungranted-http",
            &json!({ "target": url }),
            &ActionPlan::default(),
        )
        .expect_err("denied");
    assert!(
        matches!(
            err,
            PluginError::Denied {
                call: Call::Execute,
                ..
            }
        ),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains(r#"grants: { http: [{ url: "http://127.0.0.1:9/secret", methods: [GET] }] }"#),
        "the error quotes the grant line: {msg}"
    );
    still_serves(&inst);
}

#[test]
fn a_swallowed_denial_still_fails_the_call() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("swallow-denial", &json!({}), &ActionPlan::default())
        .expect_err("denied");
    assert!(matches!(err, PluginError::Denied { .. }), "{err}");
}

#[test]
fn plan_cannot_do_execute_only_effects_even_when_granted() {
    let h = host();
    // Everything granted: the dry-run restriction alone must stop these.
    let grants: Grants = serde_json::from_value(json!({
        "http": [{ "url": "http://127.0.0.1:*", "methods": ["GET", "POST"] }],
        "kv": { "namespace": "hostile", "write": true },
        "process": [{ "command": "true" }],
    }))
    .expect("grants");
    let inst = hostile(&h, grants, small_limits());
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    receiver.set_nonblocking(true).expect("nonblocking");
    let target = format!("http://{}/hook", receiver.local_addr().expect("addr"));
    for mode in [
        "post-in-plan",
        "process-in-plan",
        "kv-write-in-plan",
        "swallow-denial",
    ] {
        let err = inst
            .plan(mode, &json!({ "target": target }))
            .expect_err(mode);
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                PluginError::Denied {
                    call: Call::Plan,
                    ..
                }
            ),
            "{mode}: {msg}"
        );
        assert!(msg.contains("read-only (dry-run)"), "{mode}: {msg}");
    }
    assert!(receiver.accept().is_err(), "a plan reached the receiver");
    // In execute, an effect the plan did not declare is denied too.
    let plan = inst
        .plan("undeclared-effect", &json!({ "target": target }))
        .expect("plan");
    let err = inst
        .execute("undeclared-effect", &json!({ "target": target }), &plan)
        .expect_err("undeclared");
    assert!(
        err.to_string().contains("was not declared by the plan"),
        "{err}"
    );
    assert!(
        receiver.accept().is_err(),
        "execute reached the receiver without declaring it"
    );
    still_serves(&inst);
}

#[test]
fn dry_run_through_the_catalog_never_executes() {
    let h = host();
    let plugin = h.load_file(&common::plugin_path("hostile")).expect("load");
    let mut cat = PluginCatalog::new(h.clone());
    cat.add_plugin(plugin).expect("add");
    let action = cat.resolve("hostile/post-in-plan").expect("resolves");
    assert!(cat.names().contains(&"hostile/loop".to_string()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let err = rt
        .block_on(action.plan(&json!({})))
        .expect_err("denied in plan");
    assert!(
        matches!(err, vigil_core::action::ActionError::Sandbox(_)),
        "{err}"
    );
    let ok = cat.resolve("hostile/ok").expect("ok action");
    let out = rt
        .block_on(ok.execute(ActionCall {
            execution_id: "e".into(),
            step_id: "s".into(),
            attempt: 1,
            input: json!({}),
            plan: ActionPlan::default(),
            deadline: None,
        }))
        .expect("execute ok");
    assert_eq!(out, json!({ "ok": true }));
}

#[test]
fn a_panic_is_a_trap_with_the_message() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let err = inst
        .execute("panic", &json!({}), &ActionPlan::default())
        .expect_err("panics");
    assert!(matches!(err, PluginError::Trap { .. }), "{err}");
    assert!(
        err.to_string().contains("hostile plugin panics on purpose"),
        "{err}"
    );
    still_serves(&inst);
}

#[test]
fn a_stderr_flood_is_absorbed() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let out = inst
        .execute("stderr-flood", &json!({}), &ActionPlan::default())
        .expect("1 MiB of stderr is fine");
    assert_eq!(out, json!({ "flooded": true }));
}

#[test]
fn sleeping_does_not_hang_the_engine() {
    let h = host();
    let inst = hostile(&h, Grants::default(), small_limits());
    let t = Instant::now();
    let err = inst
        .execute("sleep", &json!({}), &ActionPlan::default())
        .expect_err("stopped");
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(err.limit(), Some(&Limit::Timeout { ms: 500 }), "{err}");
    still_serves(&inst);
}

#[test]
fn many_failures_in_parallel_then_normal_service() {
    let h = host();
    let inst = Arc::new(hostile(&h, Grants::default(), small_limits()));
    let threads: Vec<_> = ["loop", "memory-bomb", "recursion", "panic"]
        .into_iter()
        .map(|m| {
            let inst = inst.clone();
            std::thread::spawn(move || inst.execute(m, &json!({}), &ActionPlan::default()).is_err())
        })
        .collect();
    for t in threads {
        assert!(t.join().expect("thread"));
    }
    for _ in 0..20 {
        still_serves(&inst);
    }
}

#[test]
fn declared_effects_are_allowed_in_execute() {
    use vigil_core::action::{PlannedEffect, Risk};
    use vigil_plugin_host::{KvStore, MemoryKv};
    let kv = Arc::new(MemoryKv::default());
    let h = PluginHost::new(HostOptions {
        kv: Some(kv.clone()),
        ..HostOptions::default()
    })
    .expect("host");
    let grants: Grants =
        serde_json::from_value(json!({ "kv": { "namespace": "ns1", "write": true } }))
            .expect("grants");
    let inst = hostile(&h, grants, small_limits());
    let plan = ActionPlan {
        summary: "write k".into(),
        steps: vec![PlannedEffect {
            target: "kv".into(),
            risk: Risk::Low,
            reversible: true,
            effects: vec!["kv:write".into()],
        }],
        preview: None,
    };
    inst.execute("kv-write-in-plan", &json!({}), &plan)
        .expect("declared and granted");
    assert_eq!(kv.get("ns1", "k").expect("get"), Some("v".to_string()));
    // The same write, undeclared: denied.
    let err = inst
        .execute("kv-write-in-plan", &json!({}), &ActionPlan::default())
        .expect_err("undeclared");
    assert!(
        err.to_string().contains("the plan would need `kv:write`"),
        "{err}"
    );
    // Declared but not granted (read-only namespace): denied with the grant line.
    let ro: Grants =
        serde_json::from_value(json!({ "kv": { "namespace": "ns1" } })).expect("grants");
    let inst = hostile(&h, ro, small_limits());
    let err = inst
        .execute("kv-write-in-plan", &json!({}), &plan)
        .expect_err("read-only grant");
    assert!(
        err.to_string()
            .contains("grants: { kv: { namespace: <name>, write: true } }"),
        "{err}"
    );
}
