//! `${{ … }}` expressions: small Rhai expressions evaluated in a sandbox against
//! `params`, `incident`, `steps`, `now`, `env` and (in `assert`) `output`.
//!
//! Expressions are compiled once and cached. The engine forbids statements and
//! function definitions (`compile_expression`), and caps operations, nesting and
//! the size of strings, arrays and maps, so a runaway expression fails fast.

use rhai::packages::Package as _;
use rhai::{AST, Dynamic, Engine, Scope};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The names an expression may refer to.
/// `outcome` is bound in notifiers only (what automation did for an incident).
pub const VARIABLES: [&str; 7] = [
    "params", "incident", "steps", "now", "env", "output", "outcome",
];

const MAX_OPERATIONS: u64 = 100_000;
const MAX_STRING: usize = 1 << 20;
const MAX_ARRAY: usize = 100_000;
const MAX_MAP: usize = 10_000;
const MAX_CACHED: usize = 10_000;

/// An expression error, with the position inside the expression (1-based) when known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExprError {
    pub message: String,
    pub hint: Option<String>,
    pub line: usize,
    pub col: usize,
}

/// The values an expression sees. Built once per step and reused for its expressions.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    scope: Scope<'static>,
}

impl Bindings {
    pub fn new() -> Self {
        Bindings {
            scope: Scope::new(),
        }
    }

    /// Binds `name` (one of [`VARIABLES`]) to a JSON value.
    pub fn set(&mut self, name: &str, value: &Value) {
        let dynamic = rhai::serde::to_dynamic(value).unwrap_or(Dynamic::UNIT);
        self.scope.set_or_push(name.to_string(), dynamic);
    }

    pub fn set_int(&mut self, name: &str, value: i64) {
        self.scope.set_or_push(name.to_string(), value);
    }
}

/// A sandboxed expression engine with a compiled-expression cache.
#[derive(Debug)]
pub struct ExprEngine {
    engine: Engine,
    cache: RwLock<HashMap<String, Arc<AST>>>,
}

impl Default for ExprEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl ExprEngine {
    pub fn new() -> Self {
        let mut engine = Engine::new_raw();
        engine.register_global_module(rhai::packages::StandardPackage::new().as_shared_module());
        engine
            .set_max_operations(MAX_OPERATIONS)
            .set_max_call_levels(16)
            .set_max_expr_depths(64, 32)
            .set_max_string_size(MAX_STRING)
            .set_max_array_size(MAX_ARRAY)
            .set_max_map_size(MAX_MAP)
            .set_strict_variables(true);
        engine.on_print(|_| {});
        engine.on_debug(|_, _, _| {});
        ExprEngine {
            engine,
            cache: RwLock::new(HashMap::new()),
        }
    }

    fn compile(&self, source: &str) -> Result<Arc<AST>, ExprError> {
        if let Some(ast) = self.cache.read().ok().and_then(|c| c.get(source).cloned()) {
            return Ok(ast);
        }
        let mut scope = Scope::new();
        for name in VARIABLES {
            scope.push(name, Dynamic::UNIT);
        }
        let ast = self
            .engine
            .compile_expression_with_scope(&scope, source)
            .map_err(|e| parse_error(source, e))?;
        let ast = Arc::new(ast);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(source.to_string(), ast.clone());
        }
        Ok(ast)
    }

    /// Checks syntax and variable names without evaluating.
    pub fn check(&self, source: &str) -> Result<(), ExprError> {
        self.compile(source).map(|_| ())
    }

    /// Evaluates an expression to JSON.
    pub fn eval(&self, source: &str, bindings: &Bindings) -> Result<Value, ExprError> {
        let ast = self.compile(source)?;
        let mut scope = bindings.scope.clone();
        for name in VARIABLES {
            if !scope.contains(name) {
                scope.push(name, Dynamic::UNIT);
            }
        }
        let result: Dynamic = self
            .engine
            .eval_ast_with_scope(&mut scope, &ast)
            .map_err(|e| eval_error(&e))?;
        to_json(&result)
    }

    /// Evaluates an expression that must be true or false.
    pub fn eval_bool(&self, source: &str, bindings: &Bindings) -> Result<bool, ExprError> {
        match self.eval(source, bindings)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExprError {
                message: format!("expected true or false, got {}", describe(&other)),
                hint: Some("write a comparison, e.g. `${{ steps.check.output.value > 0 }}`".into()),
                line: 0,
                col: 0,
            }),
        }
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (a missing value)".into(),
        Value::String(s) => format!("the string {s:?}"),
        other => format!("`{other}`"),
    }
}

/// Converts a Rhai value to JSON; `()` becomes `null`, non-finite floats an error.
fn to_json(d: &Dynamic) -> Result<Value, ExprError> {
    if d.is_unit() {
        return Ok(Value::Null);
    }
    rhai::serde::from_dynamic::<Value>(d).map_err(|e| ExprError {
        message: format!("result cannot be used as a value: {e}"),
        hint: None,
        line: 0,
        col: 0,
    })
}

fn parse_error(source: &str, e: rhai::ParseError) -> ExprError {
    let (line, col) = (e.1.line().unwrap_or(0), e.1.position().unwrap_or(0));
    let message = e.0.to_string();
    let hint = if let rhai::ParseErrorType::VariableUndefined(name) = &*e.0 {
        Some(match vigil_core::suggest::closest(name, VARIABLES) {
            Some(c) => format!("did you mean `{c}`?"),
            None => format!(
                "expressions can use {}",
                VARIABLES.map(|v| format!("`{v}`")).join(", ")
            ),
        })
    } else if source.contains("${{") {
        Some("nested `${{` inside an expression; write the expression directly".into())
    } else {
        None
    };
    ExprError {
        message,
        hint,
        line,
        col,
    }
}

fn eval_error(e: &rhai::EvalAltResult) -> ExprError {
    let pos = e.position();
    let hint = match e {
        rhai::EvalAltResult::ErrorTooManyOperations(_) => {
            Some(format!("expressions are limited to {MAX_OPERATIONS} operations; move heavy work into a step"))
        }
        rhai::EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.contains("()") => Some(
            "a value is missing (`()`); check the names, e.g. that the step ran and has that output field".into(),
        ),
        _ => None,
    };
    // Rhai appends the position to its message; we report it separately.
    let message = e.to_string();
    let message = message
        .split(" (line ")
        .next()
        .unwrap_or(&message)
        .to_string();
    ExprError {
        message,
        hint,
        line: pos.line().unwrap_or(0),
        col: pos.position().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bindings() -> Bindings {
        let mut b = Bindings::new();
        b.set("params", &json!({"service": "api", "threshold": 2e9}));
        b.set("steps", &json!({"measure": {"output": {"value": 3.5e9}}}));
        b.set("incident", &json!({"labels": {"service": "api"}}));
        b.set_int("now", 1_700_000_000);
        b
    }

    #[test]
    fn evaluates_against_context() {
        let e = ExprEngine::new();
        let b = bindings();
        assert!(
            e.eval_bool("steps.measure.output.value > params.threshold", &b)
                .unwrap()
        );
        assert_eq!(e.eval("incident.labels.service", &b).unwrap(), json!("api"));
        assert_eq!(
            e.eval("`svc-${params.service}`", &b).unwrap(),
            json!("svc-api")
        );
        assert_eq!(e.eval("now > 0", &b).unwrap(), json!(true));
    }

    #[test]
    fn unknown_variables_are_compile_errors_with_a_hint() {
        let e = ExprEngine::new();
        let err = e.check("parms.service").unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("did you mean `params`?"));
        assert_eq!((err.line, err.col), (1, 1));
    }

    #[test]
    fn statements_and_runaway_loops_are_refused() {
        let e = ExprEngine::new();
        assert!(e.check("let x = 1").is_err());
        assert!(e.check("fn f() { 1 }").is_err());
        // An expression cannot loop, but it can build something big: capped.
        let err = e
            .eval("\"x\".pad(100000000, 'y')", &bindings())
            .unwrap_err();
        assert!(
            err.message.to_lowercase().contains("length") || err.message.contains("size"),
            "{}",
            err.message
        );
    }

    #[test]
    fn non_boolean_conditions_are_errors() {
        let e = ExprEngine::new();
        let err = e.eval_bool("params.service", &bindings()).unwrap_err();
        assert!(err.message.contains("expected true or false"));
    }
}
