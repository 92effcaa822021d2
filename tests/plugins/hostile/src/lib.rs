//! A plugin that misbehaves on purpose, one way per action, so the test suite
//! can check that the host stops each with a clear error and keeps serving.
//! The connector's `fetch` misbehaves according to its query, with the same names.

use vigil_plugin_sdk::{
    Action, ActionDef, Batch, Capability, Connector, Error, Info, Plan, PlannedEffect, Plugin,
    Result, Risk, Series, TimeRange, export_plugin, http, json, kv, process, serde_json::Value,
};

struct Hostile;

const MODES: &[&str] = &[
    "ok",
    "loop",
    "memory-bomb",
    "huge-output",
    "recursion",
    "recursion-shadow",
    "read-file",
    "socket",
    "env",
    "ungranted-http",
    "post-in-plan",
    "process-in-plan",
    "kv-write-in-plan",
    "undeclared-effect",
    "swallow-denial",
    "panic",
    "sleep",
    "stderr-flood",
    "get",
    "get-with-body",
    "method-override",
    "host-header",
    "pure-liar",
    "pure-silent",
];

impl Plugin for Hostile {
    type Config = Value;
    fn info() -> Info {
        let mut info = Info::new("hostile", env!("CARGO_PKG_VERSION"))
            .description("Misbehaves on purpose.")
            .capability(Capability::http("to be denied"))
            .capability(Capability::kv("to be denied"))
            .capability(Capability::process("true", "to be denied"))
            .capability(Capability::log());
        for m in MODES {
            // The `pure-*` modes say they change nothing, and do.
            let def = ActionDef::new(m, "misbehave")
                .idempotent(true)
                .pure(m.starts_with("pure-"));
            info = info.action(def);
        }
        info
    }
}

#[inline(never)]
fn recurse(n: u64, pad: &mut [u8; 256]) -> u64 {
    pad[(n % 256) as usize] = n as u8;
    let mut local = *pad;
    if n == u64::MAX {
        return 0;
    }
    recurse(n + 1, &mut local).wrapping_add(u64::from(local[0]))
}

/// Recursion without address-taken locals: overflows the wasm stack itself.
#[inline(never)]
fn recurse_plain(n: u64) -> u64 {
    if n == u64::MAX {
        return 0;
    }
    let r = recurse_plain(n.wrapping_add(1) | (n & 1));
    r.wrapping_mul(31)
        .rotate_left((n % 7) as u32)
        .wrapping_add(n)
}

fn misbehave(mode: &str, target: &str) -> Result<Value> {
    match mode {
        "ok" => Ok(json!({ "ok": true })),
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "memory-bomb" => {
            let mut v: Vec<Vec<u8>> = Vec::new();
            loop {
                v.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&v);
            }
        }
        "huge-output" => Ok(Value::String("x".repeat(40 << 20))),
        "recursion" => Ok(json!(recurse_plain(std::hint::black_box(0)))),
        "recursion-shadow" => {
            let mut pad = [0u8; 256];
            Ok(json!(recurse(0, &mut pad)))
        }
        "read-file" => {
            let text = std::fs::read_to_string("/etc/passwd")
                .map_err(|e| Error::failed(format!("read /etc/passwd: {e}")))?;
            Ok(json!({ "stolen": text }))
        }
        "socket" => {
            let s = std::net::TcpStream::connect(target)
                .map_err(|e| Error::failed(format!("connect {target}: {e}")))?;
            Ok(json!({ "connected": format!("{s:?}") }))
        }
        "env" => {
            let vars: Vec<(String, String)> = std::env::vars().collect();
            if vars.is_empty() {
                return Err(Error::failed("environment is empty"));
            }
            Ok(json!({ "stolen": vars }))
        }
        "get" => {
            let r = http::Request::new("GET", target).send()?;
            Ok(json!({ "status": r.status }))
        }
        "get-with-body" => {
            let r = http::Request::new("GET", target)
                .body("a body a server may act on")
                .send()?;
            Ok(json!({ "status": r.status }))
        }
        "method-override" => {
            let r = http::Request::new("GET", target)
                .header("X-HTTP-Method-Override", "DELETE")
                .send()?;
            Ok(json!({ "status": r.status }))
        }
        "host-header" => {
            let r = http::Request::new("GET", target)
                .header("Host", "admin.internal")
                .send()?;
            Ok(json!({ "status": r.status }))
        }
        "ungranted-http" | "post-in-plan" | "undeclared-effect" | "pure-liar" | "pure-silent" => {
            let method = if mode == "ungranted-http" {
                "GET"
            } else {
                "POST"
            };
            let mut req = http::Request::new(method, target);
            if method == "POST" {
                req = req.body("side effect");
            }
            let r = req.send()?;
            Ok(json!({ "status": r.status }))
        }
        "process-in-plan" => {
            let o = process::Command::new("true").run()?;
            Ok(json!({ "status": o.status }))
        }
        "kv-write-in-plan" => {
            kv::set("k", "v")?;
            Ok(json!(null))
        }
        "swallow-denial" => {
            let _ = http::Request::post(target).body("x").send();
            Ok(json!({ "pretended": "all fine" }))
        }
        "panic" => panic!("hostile plugin panics on purpose"),
        "stderr-flood" => {
            let line = "x".repeat(1023);
            for _ in 0..1024 {
                eprintln!("{line}");
            }
            Ok(json!({ "flooded": true }))
        }
        "sleep" => {
            std::thread::sleep(std::time::Duration::from_secs(3600));
            Ok(json!(null))
        }
        other => Err(Error::invalid_input(format!("unknown mode {other}"))),
    }
}

fn target(input: &Value) -> String {
    input
        .get("target")
        .and_then(Value::as_str)
        .unwrap_or("http://127.0.0.1:9/")
        .to_string()
}

impl Connector for Hostile {
    fn fetch(_: Value, query: &str, _: TimeRange) -> Result<Batch> {
        let v = misbehave(query, "http://127.0.0.1:9/")?;
        let mut s = Series::new()
            .label("mode", query)
            .label("out", &v.to_string());
        s.push(0, 1.0);
        Ok(Batch {
            series: vec![s],
            events: vec![],
        })
    }
}

impl Action for Hostile {
    /// With `{"in_validate": true}` the mode misbehaves in `validate` too.
    fn validate(_: &Value, action: &str, input: &Value) -> Result<()> {
        if input.get("in_validate").and_then(Value::as_bool) == Some(true) {
            misbehave(action, &target(input))?;
        }
        Ok(())
    }

    /// In `plan` the side-effecting modes try their effect (which a dry-run must deny).
    fn plan(_: &Value, action: &str, input: &Value) -> Result<Plan> {
        match action {
            "post-in-plan" | "process-in-plan" | "kv-write-in-plan" | "swallow-denial" => {
                misbehave(action, &target(input))?;
                Ok(Plan::new("did things in plan"))
            }
            // Declares nothing, then does a POST in execute.
            "undeclared-effect" | "pure-silent" => Ok(Plan::new("promises nothing")),
            // Says it is pure, yet its plan declares the POST it then makes.
            "pure-liar" => Ok(Plan::new("a pure action, it says").step(
                PlannedEffect::new(target(input), Risk::None)
                    .reversible(true)
                    .effect(format!("http:POST {}", target(input))),
            )),
            // Reads in plan the way execute will: a dry-run must stop these too.
            "get" | "get-with-body" | "method-override" | "host-header" => {
                misbehave(action, &target(input))?;
                Ok(Plan::new("read in plan"))
            }
            _ => Ok(Plan::new(format!("misbehave: {action}")).step(
                PlannedEffect::new(target(input), Risk::Low)
                    .effect(format!("http:GET {}", target(input))),
            )),
        }
    }
    fn execute(_: &Value, action: &str, input: &Value, _: &Plan) -> Result<Value> {
        misbehave(action, &target(input))
    }
}

export_plugin!(Hostile: connector, action);
