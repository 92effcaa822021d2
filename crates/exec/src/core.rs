//! Built-in `core/*` actions: small, dependable steps every runbook can use.
//!
//! - `core/log`   — write a message to the execution's log (`message`, `level`).
//! - `core/set`   — compute values: its output is its input (handy for `${{ }}` math).
//! - `core/sleep` — wait (`duration`), e.g. to let a restarted service settle.
//! - `core/fail`  — fail on purpose (`message`), for drills and guard steps.
//! - `core/write` — write or append `content` to a file at `path` (reports, markers).

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use vigil_core::action::*;
use vigil_core::duration::Duration;

fn info(name: &str, description: &str, idempotent: bool, pure: bool) -> ActionInfo {
    ActionInfo {
        name: name.into(),
        description: description.into(),
        idempotent,
        pure,
    }
}

fn field<'a>(input: &'a Value, key: &str) -> Option<&'a Value> {
    input.as_object().and_then(|m| m.get(key))
}

fn str_field<'a>(input: &'a Value, key: &str, action: &str) -> Result<&'a str, ActionError> {
    field(input, key).and_then(Value::as_str).ok_or_else(|| {
        ActionError::InvalidInput(format!(
            "{action} needs `with: {{ {key}: \"…\" }}` (a string)"
        ))
    })
}

fn only_keys(input: &Value, allowed: &[&str], action: &str) -> Result<(), ActionError> {
    let Some(map) = input.as_object() else {
        return if input.is_null() {
            Ok(())
        } else {
            Err(ActionError::InvalidInput(format!(
                "{action} takes a mapping of inputs"
            )))
        };
    };
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = vigil_core::suggest::hint(key, allowed.iter().copied());
            return Err(ActionError::InvalidInput(format!(
                "{action} has no input `{key}`; {hint}"
            )));
        }
    }
    Ok(())
}

fn pure_plan(summary: String, preview: Option<Value>) -> ActionPlan {
    ActionPlan {
        summary,
        steps: Vec::new(),
        preview,
    }
}

#[derive(Debug)]
struct Log(ActionInfo);
impl Action for Log {
    fn info(&self) -> &ActionInfo {
        &self.0
    }
    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        only_keys(input, &["message", "level"], "core/log")?;
        if let Some(level) = field(input, "level").and_then(Value::as_str)
            && !["debug", "info", "warn", "error"].contains(&level)
        {
            return Err(ActionError::InvalidInput(format!(
                "core/log level `{level}`; use debug, info, warn or error"
            )));
        }
        Ok(())
    }
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        Box::pin(async move {
            self.validate(input)?;
            let message = field(input, "message").map(display).unwrap_or_default();
            Ok(pure_plan(
                format!("log \"{message}\""),
                Some(json!({ "message": message })),
            ))
        })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        Box::pin(async move {
            let message = field(&call.input, "message")
                .map(display)
                .unwrap_or_default();
            match field(&call.input, "level")
                .and_then(Value::as_str)
                .unwrap_or("info")
            {
                "error" => {
                    tracing::error!(execution = %call.execution_id, step = %call.step_id, "{message}")
                }
                "warn" => {
                    tracing::warn!(execution = %call.execution_id, step = %call.step_id, "{message}")
                }
                "debug" => {
                    tracing::debug!(execution = %call.execution_id, step = %call.step_id, "{message}")
                }
                _ => {
                    tracing::info!(execution = %call.execution_id, step = %call.step_id, "{message}")
                }
            }
            Ok(json!({ "message": message }))
        })
    }
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[derive(Debug)]
struct Set(ActionInfo);
impl Action for Set {
    fn info(&self) -> &ActionInfo {
        &self.0
    }
    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        if input.is_object() || input.is_null() {
            Ok(())
        } else {
            Err(ActionError::InvalidInput(
                "core/set takes a mapping: its output is that mapping".into(),
            ))
        }
    }
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        Box::pin(async move {
            self.validate(input)?;
            let keys: Vec<&str> = input
                .as_object()
                .map(|m| m.keys().map(String::as_str).collect())
                .unwrap_or_default();
            Ok(pure_plan(
                format!("set {}", keys.join(", ")),
                Some(input.clone()),
            ))
        })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        Box::pin(async move {
            Ok(if call.input.is_null() {
                json!({})
            } else {
                call.input
            })
        })
    }
}

#[derive(Debug)]
struct Sleep(ActionInfo);
impl Sleep {
    fn duration(input: &Value) -> Result<Duration, ActionError> {
        let text = str_field(input, "duration", "core/sleep")?;
        Duration::parse(text)
            .map_err(|e| ActionError::InvalidInput(format!("{}; e.g. `30s`", e.message)))
    }
}
impl Action for Sleep {
    fn info(&self) -> &ActionInfo {
        &self.0
    }
    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        only_keys(input, &["duration"], "core/sleep")?;
        Self::duration(input).map(|_| ())
    }
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        Box::pin(async move {
            let d = Self::duration(input)?;
            Ok(pure_plan(
                format!("wait {d}"),
                Some(json!({ "slept_ms": d.as_std().as_millis() as u64 })),
            ))
        })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        Box::pin(async move {
            let d = Self::duration(&call.input)?;
            tokio::time::sleep(d.as_std()).await;
            Ok(json!({ "slept_ms": d.as_std().as_millis() as u64 }))
        })
    }
}

#[derive(Debug)]
struct Fail(ActionInfo);
impl Action for Fail {
    fn info(&self) -> &ActionInfo {
        &self.0
    }
    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        only_keys(input, &["message"], "core/fail")
    }
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        Box::pin(async move {
            self.validate(input)?;
            let message = field(input, "message")
                .map(display)
                .unwrap_or_else(|| "failed on purpose".into());
            Ok(pure_plan(format!("fail: {message}"), None))
        })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        Box::pin(async move {
            let message = field(&call.input, "message")
                .map(display)
                .unwrap_or_else(|| "failed on purpose".into());
            Err(ActionError::Failed(message))
        })
    }
}

#[derive(Debug)]
struct Write(ActionInfo);
impl Write {
    fn parts(input: &Value) -> Result<(&str, String, bool), ActionError> {
        let path = str_field(input, "path", "core/write")?;
        let content = field(input, "content").map(display).unwrap_or_default();
        let append = field(input, "append")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok((path, content, append))
    }
}
impl Action for Write {
    fn info(&self) -> &ActionInfo {
        &self.0
    }
    /// Overwriting is idempotent; appending is not.
    fn idempotent(&self, input: &Value) -> bool {
        !field(input, "append")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        only_keys(input, &["path", "content", "append"], "core/write")?;
        Self::parts(input).map(|_| ())
    }
    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        Box::pin(async move {
            let (path, content, append) = Self::parts(input)?;
            let verb = if append { "append" } else { "write" };
            Ok(ActionPlan {
                summary: format!("{verb} {} bytes to {path}", content.len()),
                steps: vec![PlannedEffect {
                    target: path.to_string(),
                    risk: Risk::Low,
                    reversible: !append,
                    effects: vec![format!("file:{verb} {path}")],
                }],
                preview: None,
            })
        })
    }
    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        Box::pin(async move {
            let (path, content, append) = Self::parts(&call.input)?;
            let path = path.to_string();
            let bytes = content.len();
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = std::path::Path::new(&path)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        ActionError::Failed(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(append)
                    .truncate(!append)
                    .open(&path)
                    .map_err(|e| ActionError::Failed(format!("cannot open {path}: {e}")))?;
                file.write_all(content.as_bytes())
                    .map_err(|e| ActionError::Failed(format!("cannot write {path}: {e}")))?;
                file.sync_data()
                    .map_err(|e| ActionError::Failed(format!("cannot sync {path}: {e}")))?;
                Ok(json!({ "path": path, "bytes": bytes }))
            })
            .await
            .map_err(|e| ActionError::Failed(format!("write task failed: {e}")))?
        })
    }
}

/// The built-in actions, and any others registered (plugins add theirs).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    actions: BTreeMap<String, Arc<dyn Action>>,
    /// Further catalogs consulted in order (e.g. the WASM plugin host).
    others: Vec<Arc<dyn ActionCatalog>>,
}

impl Catalog {
    /// A catalog with the `core/*` actions.
    pub fn with_core() -> Self {
        let mut c = Catalog::default();
        let core: Vec<Arc<dyn Action>> = vec![
            Arc::new(Log(info(
                "core/log",
                "Write a message to the execution log.",
                true,
                true,
            ))),
            Arc::new(Set(info(
                "core/set",
                "Output its input: compute values for later steps.",
                true,
                true,
            ))),
            Arc::new(Sleep(info(
                "core/sleep",
                "Wait for a duration.",
                true,
                true,
            ))),
            Arc::new(Fail(info(
                "core/fail",
                "Fail on purpose, with a message.",
                true,
                true,
            ))),
            Arc::new(Write(info(
                "core/write",
                "Write or append content to a file.",
                true,
                false,
            ))),
        ];
        for a in core {
            c.register(a);
        }
        c
    }

    pub fn register(&mut self, action: Arc<dyn Action>) {
        self.actions.insert(action.info().name.clone(), action);
    }

    pub fn add_catalog(&mut self, other: Arc<dyn ActionCatalog>) {
        self.others.push(other);
    }
}

impl ActionCatalog for Catalog {
    fn resolve(&self, uses: &str) -> Option<Arc<dyn Action>> {
        self.actions
            .get(uses)
            .cloned()
            .or_else(|| self.others.iter().find_map(|o| o.resolve(uses)))
    }
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.actions.keys().cloned().collect();
        for o in &self.others {
            names.extend(o.names());
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(input: Value) -> ActionCall {
        ActionCall {
            execution_id: "ex".into(),
            step_id: "s".into(),
            attempt: 1,
            input,
            plan: ActionPlan::default(),
            deadline: None,
        }
    }

    #[tokio::test]
    async fn core_actions_plan_and_execute() {
        let c = Catalog::with_core();
        let set = c.resolve("core/set").unwrap();
        let plan = set.plan(&json!({"x": 2})).await.unwrap();
        assert_eq!(plan.preview, Some(json!({"x": 2})));
        assert_eq!(
            set.execute(call(json!({"x": 2}))).await.unwrap(),
            json!({"x": 2})
        );

        let fail = c.resolve("core/fail").unwrap();
        assert_eq!(
            fail.execute(call(json!({"message": "drill"}))).await,
            Err(ActionError::Failed("drill".into()))
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        let write = c.resolve("core/write").unwrap();
        let input = json!({"path": path.to_str().unwrap(), "content": "a\n", "append": true});
        assert!(!write.idempotent(&input));
        let plan = write.plan(&input).await.unwrap();
        assert_eq!(plan.risk(), Risk::Low);
        assert!(!path.exists(), "planning must not write");
        write.execute(call(input.clone())).await.unwrap();
        write.execute(call(input)).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\na\n");
    }

    #[test]
    fn unknown_inputs_get_a_hint() {
        let c = Catalog::with_core();
        let err = c
            .resolve("core/log")
            .unwrap()
            .validate(&json!({"mesage": "x"}))
            .unwrap_err();
        assert!(err.to_string().contains("did you mean `message`?"), "{err}");
        assert!(
            c.resolve("core/sleep")
                .unwrap()
                .validate(&json!({"duration": "5 mins"}))
                .is_err()
        );
    }
}
