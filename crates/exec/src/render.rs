//! Turning a step's `with:` (and params' `from:`) into concrete JSON values.

use serde_json::{Map, Value};
use vigil_bundle::model::{Input, Param, Runbook, TemplateInput};
use vigil_bundle::template::Segment;
use vigil_policy::expr::{Bindings, ExprEngine, ExprError};

/// How to treat an expression that cannot be evaluated yet (dry-run: outputs of
/// steps that have not run are unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknowns {
    /// Fail: a live run must have every value.
    Error,
    /// Render a readable placeholder instead.
    Placeholder,
}

/// Renders one templated string.
pub fn render_template(
    t: &TemplateInput,
    exprs: &ExprEngine,
    b: &Bindings,
    unknowns: Unknowns,
) -> Result<Value, ExprError> {
    let template = t.template();
    if let Some(source) = template.sole_expression() {
        return eval_or_placeholder(source, exprs, b, unknowns);
    }
    let mut out = String::new();
    for seg in &template.segments {
        match seg {
            Segment::Text(s) => out.push_str(s),
            Segment::Expr { source, .. } => {
                match eval_or_placeholder(source, exprs, b, unknowns)? {
                    Value::String(s) => out.push_str(&s),
                    Value::Null => {}
                    other => out.push_str(&other.to_string()),
                }
            }
        }
    }
    Ok(Value::String(out))
}

fn eval_or_placeholder(
    source: &str,
    exprs: &ExprEngine,
    b: &Bindings,
    unknowns: Unknowns,
) -> Result<Value, ExprError> {
    match exprs.eval(source, b) {
        Ok(Value::Null) if unknowns == Unknowns::Placeholder && source.contains("steps.") => {
            Ok(Value::String(format!("⟨{source}: known at run time⟩")))
        }
        Ok(v) => Ok(v),
        Err(_) if unknowns == Unknowns::Placeholder => {
            Ok(Value::String(format!("⟨{source}: known at run time⟩")))
        }
        Err(e) => Err(e),
    }
}

/// Renders a step input tree.
pub fn render(
    input: &Input,
    exprs: &ExprEngine,
    b: &Bindings,
    unknowns: Unknowns,
) -> Result<Value, ExprError> {
    Ok(match input {
        Input::Literal(v) => v.clone(),
        Input::Template(t) => render_template(t, exprs, b, unknowns).map_err(|e| ExprError {
            message: format!("in `{}` (line {}): {}", t.text, t.pos.line, e.message),
            ..e
        })?,
        Input::List(items) => Value::Array(
            items
                .iter()
                .map(|i| render(i, exprs, b, unknowns))
                .collect::<Result<_, _>>()?,
        ),
        Input::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                m.insert(k.clone(), render(v, exprs, b, unknowns)?);
            }
            Value::Object(m)
        }
    })
}

/// A parameter problem: which parameter and what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub message: String,
}

/// Parses a `--set k=v` value: JSON if it parses (numbers, booleans, lists), else a string.
pub fn parse_set_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

/// Resolves a runbook's parameters from explicit values, `from:` expressions over the
/// incident, and defaults — in declaration order, so a `from:` may use earlier params.
pub fn resolve_params(
    runbook: &Runbook,
    explicit: &Map<String, Value>,
    incident: &Value,
    exprs: &ExprEngine,
    now: i64,
) -> Result<Map<String, Value>, ParamError> {
    for key in explicit.keys() {
        if !runbook.params.iter().any(|p| &p.name == key) {
            let names: Vec<&str> = runbook.params.iter().map(|p| p.name.as_str()).collect();
            return Err(ParamError {
                message: format!(
                    "runbook `{}` has no parameter `{key}`; {}",
                    runbook.name,
                    vigil_core::suggest::hint(key, names.iter().copied())
                ),
            });
        }
    }
    let mut resolved = Map::new();
    for p in &runbook.params {
        let value = match explicit.get(&p.name) {
            Some(v) => Some(coerce(p, v.clone())),
            None => from_or_default(p, &resolved, incident, exprs, now)?,
        };
        match value {
            Some(v) => {
                if let Some(ty) = p.ty
                    && !vigil_bundle::load::param_type_matches(ty, &v)
                {
                    return Err(ParamError {
                        message: format!("parameter `{}` must be a {:?}, got {v}", p.name, ty)
                            .to_lowercase(),
                    });
                }
                resolved.insert(p.name.clone(), v);
            }
            None if p.required => {
                return Err(ParamError {
                    message: format!(
                        "missing required parameter `{}`; pass `--set {}=…`{}",
                        p.name,
                        p.name,
                        if p.from.is_some() {
                            " or an incident that provides it (--incident FILE)"
                        } else {
                            ""
                        }
                    ),
                });
            }
            None => {
                resolved.insert(p.name.clone(), Value::Null);
            }
        }
    }
    Ok(resolved)
}

/// `--set count=3` arrives as a number; a string-typed param keeps it as text.
fn coerce(p: &Param, v: Value) -> Value {
    match (p.ty, &v) {
        (Some(vigil_bundle::model::ParamType::String), Value::Number(n)) => {
            Value::String(n.to_string())
        }
        (Some(vigil_bundle::model::ParamType::String), Value::Bool(b)) => {
            Value::String(b.to_string())
        }
        _ => v,
    }
}

fn from_or_default(
    p: &Param,
    resolved: &Map<String, Value>,
    incident: &Value,
    exprs: &ExprEngine,
    now: i64,
) -> Result<Option<Value>, ParamError> {
    if let Some(from) = &p.from {
        let mut b = Bindings::new();
        b.set("params", &Value::Object(resolved.clone()));
        b.set("incident", incident);
        b.set_int("now", now);
        let v = render_template(from, exprs, &b, Unknowns::Error).map_err(|e| ParamError {
            message: format!(
                "parameter `{}`: `from: {}` failed: {}",
                p.name, from.text, e.message
            ),
        })?;
        let empty = v.is_null() || v.as_str().is_some_and(str::is_empty);
        if !empty {
            return Ok(Some(v));
        }
    }
    Ok(p.default.clone())
}
