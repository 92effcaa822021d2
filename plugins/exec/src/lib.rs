//! `exec`: runs a command through the host's `process` capability — no shell,
//! only commands and arguments the operator granted, with a timeout and
//! size-limited output.
//!
//! Action `command`: input `{ command, args?, stdin?, timeout_ms?, allow_failure? }`,
//! output `{ status, stdout, stderr, truncated, timed_out }`. Not idempotent:
//! after a crash mid-step the executor asks instead of re-running it.

use serde::Deserialize;
use vigil_plugin_sdk::serde_json::{self, Value};
use vigil_plugin_sdk::{
    Action, ActionDef, Capability, Error, Info, Plan, PlannedEffect, Plugin, Result, Risk,
    export_plugin, json, process,
};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default timeout per command (ms).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Commands whose effects can be undone (shown as reversible in plans).
    #[serde(default)]
    pub reversible: Vec<String>,
    /// Risk shown in plans (default `high`).
    #[serde(default)]
    pub risk: Option<Risk>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandInput {
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// Succeed even on a non-zero exit status.
    #[serde(default)]
    pub allow_failure: bool,
}

pub fn parse(input: &Value) -> Result<CommandInput> {
    let c: CommandInput = serde_json::from_value(input.clone())
        .map_err(|e| Error::invalid_input(format!("exec/command input: {e}")))?;
    if c.command.trim().is_empty() || c.command.contains(char::is_whitespace) {
        return Err(Error::invalid_input(format!(
            "`command` must be one program name, with arguments in `args` (got {:?}); there is no shell",
            c.command
        )));
    }
    Ok(c)
}

/// A shell-like rendering for humans (quoting args that need it).
pub fn render(c: &CommandInput) -> String {
    let mut parts = vec![c.command.clone()];
    for a in &c.args {
        if a.is_empty()
            || a.chars()
                .any(|ch| ch.is_whitespace() || "'\"$`\\;&|<>(){}*?!#~".contains(ch))
        {
            parts.push(format!("'{}'", a.replace('\'', "'\\''")));
        } else {
            parts.push(a.clone());
        }
    }
    parts.join(" ")
}

pub struct Exec;

impl Plugin for Exec {
    type Config = Config;
    fn info() -> Info {
        Info::new("exec", env!("CARGO_PKG_VERSION"))
            .description("Runs a granted command on the host, without a shell.")
            .capability(Capability::process(
                "",
                "runs the commands given to exec/command",
            ))
            .action(
                ActionDef::new(
                    "command",
                    "Runs a command; fails on a non-zero exit unless allow_failure.",
                )
                .idempotent(false),
            )
            .config_schema(json!({
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "timeout_ms": { "type": "integer", "minimum": 1 },
                    "reversible": { "type": "array", "items": { "type": "string" } },
                    "risk": { "enum": ["none", "low", "medium", "high"] }
                }
            }))
    }
}

impl Action for Exec {
    fn validate(_: &Config, action: &str, input: &Value) -> Result<()> {
        if action != "command" {
            return Err(Error::invalid_input(format!(
                "unknown action exec/{action}"
            )));
        }
        parse(input).map(|_| ())
    }
    fn plan(config: &Config, action: &str, input: &Value) -> Result<Plan> {
        Self::validate(config, action, input)?;
        let c = parse(input)?;
        Ok(Plan::new(format!("run `{}`", render(&c))).step(
            PlannedEffect::new(render(&c), config.risk.unwrap_or(Risk::High))
                .reversible(config.reversible.contains(&c.command))
                .effect(format!("process:{}", c.command)),
        ))
    }
    fn execute(config: &Config, _: &str, input: &Value, _: &Plan) -> Result<Value> {
        let c = parse(input)?;
        let mut cmd = process::Command::new(&c.command).args(c.args.clone());
        if let Some(s) = &c.stdin {
            cmd = cmd.stdin(s.as_bytes().to_vec());
        }
        if let Some(t) = c.timeout_ms.or(config.timeout_ms) {
            cmd = cmd.timeout_ms(t);
        }
        let out = cmd.run()?;
        let v = json!({
            "status": out.status,
            "stdout": out.stdout_text(),
            "stderr": out.stderr_text(),
            "truncated": out.truncated,
            "timed_out": out.timed_out,
        });
        if out.timed_out {
            return Err(Error::failed(format!("`{}` timed out", render(&c))));
        }
        if out.status != 0 && !c.allow_failure {
            let tail: String = out
                .stderr_text()
                .chars()
                .rev()
                .take(500)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(Error::failed(format!(
                "`{}` exited with status {}: {}",
                render(&c),
                out.status,
                tail.trim()
            )));
        }
        Ok(v)
    }
}

export_plugin!(Exec: action);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_declare_the_process_effect() {
        let input = json!({ "command": "systemctl", "args": ["restart", "my app"] });
        let plan = Exec::plan(&Config::default(), "command", &input).expect("plan");
        assert_eq!(plan.summary, "run `systemctl restart 'my app'`");
        assert_eq!(plan.steps[0].effects, vec!["process:systemctl"]);
        assert_eq!(plan.steps[0].risk, Risk::High);
        assert!(!plan.steps[0].reversible);
    }

    #[test]
    fn no_shell_strings() {
        assert!(parse(&json!({ "command": "rm -rf /" })).is_err());
        assert!(parse(&json!({ "command": "" })).is_err());
        assert!(parse(&json!({ "cmd": "ls" })).is_err());
        assert_eq!(
            render(&parse(&json!({ "command": "echo", "args": ["a;b", "it's"] })).expect("ok")),
            "echo 'a;b' 'it'\\''s'"
        );
    }
}
