//! The resources as written (`…Doc`, deserialised with `deny_unknown_fields`) and
//! as checked (`Runbook`, `Step`, …) — the executor only ever sees checked ones.

use super::de::Spanned;
use super::template::Template;
use super::yaml::Node;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use vigil_core::duration::Duration;
use vigil_core::span::{Pos, Span};
pub use vigil_policy::docs::{FreezeWindow, PolicyFile, RotationDoc};

pub const API_VERSION: &str = "vigil/v1";
pub const KINDS: [&str; 3] = ["Config", "Runbook", "Detector"];

// ---------------------------------------------------------------- as written

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookDoc {
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    pub kind: Spanned<String>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub trigger: Option<TriggerDoc>,
    #[serde(default)]
    pub params: Option<Node>,
    #[serde(default)]
    pub policy: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<Duration>>,
    /// How many steps may run at once.
    #[serde(default)]
    pub concurrency: Option<Spanned<u32>>,
    pub steps: Spanned<Vec<Node>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerDoc {
    #[serde(rename = "match")]
    pub matchers: Node,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Number,
    Integer,
    Boolean,
    List,
    Map,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamDoc {
    #[serde(rename = "type", default)]
    pub ty: Option<ParamType>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub default: Option<Node>,
    #[serde(default)]
    pub from: Option<Spanned<String>>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    None,
    Required,
    Policy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryDoc {
    pub attempts: Spanned<u32>,
    #[serde(default)]
    pub backoff: Option<Duration>,
    #[serde(default)]
    pub max_backoff: Option<Duration>,
    #[serde(default)]
    pub factor: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDoc {
    pub id: Spanned<String>,
    #[serde(default)]
    pub name: Option<String>,
    pub uses: Spanned<String>,
    #[serde(default)]
    pub needs: Option<Node>,
    #[serde(default)]
    pub with: Option<Node>,
    #[serde(default)]
    pub when: Option<Spanned<String>>,
    #[serde(default)]
    pub timeout: Option<Spanned<Duration>>,
    #[serde(default)]
    pub retry: Option<RetryDoc>,
    #[serde(default)]
    pub approval: Option<Approval>,
    #[serde(default)]
    pub on_failure: Option<Spanned<String>>,
    #[serde(default)]
    pub assert: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigDoc {
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    pub kind: Spanned<String>,
    #[serde(default)]
    pub store: Option<String>,
    #[serde(default)]
    pub plugins: Option<PluginsDoc>,
    #[serde(default)]
    pub api: Option<ApiDoc>,
    #[serde(default)]
    pub executor: Option<ExecutorDoc>,
    /// Connector instances with their config and capability grants (typed by the plugin host).
    #[serde(default)]
    pub sources: Option<Node>,
    /// Where incidents are told about: `[{ name, uses: http/slack, with: {…}, on: [paged] }]`.
    #[serde(default)]
    pub notifiers: Vec<NotifierDoc>,
    /// Automation guardrails: rate limits, blast radius, circuit breaker, freezes.
    #[serde(default)]
    pub guardrails: Option<GuardrailsDoc>,
    /// On-call rotations, for policies (`oncall("team")`).
    #[serde(default)]
    pub oncall: BTreeMap<String, RotationDoc>,
    /// The service dependency map used for root-cause correlation.
    #[serde(default)]
    pub services: Option<BTreeMap<String, ServiceDoc>>,
    /// Alert grouping, inhibition, correlation and runbook triggering.
    #[serde(default)]
    pub alerting: Option<AlertingDoc>,
    /// How long records are kept before the daemon prunes them.
    #[serde(default)]
    pub retention: Option<RetentionDoc>,
}

/// `retention:` — how long each kind of record is kept, pruned in the background by
/// `vigil serve` (every `every`, default `1h`). A kind set to `0s` is kept forever.
/// The audit log is append-only and hash-chained, and is never pruned.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RetentionDoc {
    /// Alerts, once resolved (default `14d`).
    #[serde(default = "RetentionDoc::alerts")]
    pub alerts: Duration,
    /// Incidents, once resolved, with their journals (default `90d`).
    #[serde(default = "RetentionDoc::incidents")]
    pub incidents: Duration,
    /// Executions, once finished, with their journals (default `90d`).
    #[serde(default = "RetentionDoc::executions")]
    pub executions: Duration,
    /// Detectors' stored detections and failure predictions (default `30d`).
    #[serde(default = "RetentionDoc::detections")]
    pub detections: Duration,
    /// Forecasts (default `30d`).
    #[serde(default = "RetentionDoc::forecasts")]
    pub forecasts: Duration,
    /// How often the pruning runs (default `1h`).
    #[serde(default = "RetentionDoc::every")]
    pub every: Duration,
}

impl RetentionDoc {
    fn days(n: u64) -> Duration {
        Duration::from_millis(n * 86_400_000)
    }
    fn alerts() -> Duration {
        Self::days(14)
    }
    fn incidents() -> Duration {
        Self::days(90)
    }
    fn executions() -> Duration {
        Self::days(90)
    }
    fn detections() -> Duration {
        Self::days(30)
    }
    fn forecasts() -> Duration {
        Self::days(30)
    }
    fn every() -> Duration {
        Duration::from_millis(3_600_000)
    }

    /// How long `kept` keeps records, or `None` for ever (`0s`).
    pub fn keep(kept: Duration) -> Option<std::time::Duration> {
        let d = kept.as_std();
        (!d.is_zero()).then_some(d)
    }
}

impl Default for RetentionDoc {
    fn default() -> Self {
        RetentionDoc {
            alerts: Self::alerts(),
            incidents: Self::incidents(),
            executions: Self::executions(),
            detections: Self::detections(),
            forecasts: Self::forecasts(),
            every: Self::every(),
        }
    }
}

/// A notifier as written: an action plugin call with a templated input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierDoc {
    pub name: Spanned<String>,
    /// `<plugin>/<action>`, e.g. `http/slack`.
    pub uses: Spanned<String>,
    /// The action's input; `${{ }}` sees `incident` and `outcome` (runbook, status, mode, reason).
    #[serde(default)]
    pub with: Option<Node>,
    /// Which outcomes it is told about (default: paged, awaiting_approval, failed, in_doubt, blocked).
    #[serde(default)]
    pub on: Vec<Spanned<String>>,
}

/// A notifier, checked.
#[derive(Clone, Debug, Serialize)]
pub struct Notifier {
    pub name: String,
    pub uses: String,
    #[serde(skip)]
    pub with: Input,
    pub on: Vec<vigil_core::outcome::RunOutcome>,
}

/// One service of the dependency map: `services: { checkout: { depends_on: [payments] } }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDoc {
    #[serde(default)]
    pub depends_on: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingDoc {
    /// Labels that form a group (Alertmanager's `group_by`); `[...]` groups by all labels.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait: Option<Duration>,
    #[serde(default)]
    pub group_interval: Option<Duration>,
    #[serde(default)]
    pub repeat_interval: Option<Duration>,
    /// A firing alert without `endsAt` that is not refreshed for this long resolves.
    #[serde(default)]
    pub resolve_timeout: Option<Duration>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitRuleDoc>,
    #[serde(default)]
    pub correlation: Option<CorrelationDoc>,
    /// How a matching runbook is started for an incident: `dry_run` (default) or `live`.
    #[serde(default)]
    pub runbooks: Option<TriggerMode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleDoc {
    pub source_match: Node,
    pub target_match: Node,
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationDoc {
    /// Groups whose alerts start within this window of an open incident may join it.
    #[serde(default)]
    pub window: Option<Duration>,
    /// Labels whose equal values tie groups together (default: cluster, service, instance).
    #[serde(default)]
    pub labels: Option<Vec<String>>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerMode {
    #[default]
    DryRun,
    Live,
    Off,
}

/// Alert pipeline settings, checked.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Alerting {
    /// `None`: group by all labels (`[...]`).
    pub group_by: Option<Vec<String>>,
    pub group_wait: Duration,
    pub group_interval: Duration,
    pub repeat_interval: Duration,
    pub resolve_timeout: Duration,
    pub inhibit_rules: Vec<InhibitRule>,
    pub correlation_window: Duration,
    pub correlation_labels: Vec<String>,
    pub runbooks: TriggerMode,
}

impl Default for Alerting {
    fn default() -> Self {
        Alerting {
            group_by: Some(vec!["alertname".into(), "cluster".into(), "service".into()]),
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            resolve_timeout: Duration::from_secs(300),
            inhibit_rules: Vec::new(),
            correlation_window: Duration::from_secs(600),
            correlation_labels: vec!["cluster".into(), "service".into(), "instance".into()],
            runbooks: TriggerMode::DryRun,
        }
    }
}

/// Alertmanager's inhibition: a firing alert matching `source` mutes alerts matching
/// `target` that carry the same values for every `equal` label.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InhibitRule {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsDoc {
    #[serde(default)]
    pub dirs: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDoc {
    #[serde(default)]
    pub listen: Option<String>,
    /// The people and systems that may call the API, each with a role and a token of
    /// its own (read from a file or an environment variable, never written here).
    #[serde(default)]
    pub principals: Vec<PrincipalDoc>,
    /// Environment variable holding shared bearer token(s) (comma-separated), each an
    /// `admin` named `shared`. Kept for single-operator setups; prefer `principals`.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the bearer token(s), one a line.
    #[serde(default)]
    pub token_file: Option<String>,
    /// Largest accepted request body (default 4 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Requests per second allowed per bearer token, charged after authentication
    /// (default 1000, burst twice that). Requests without a valid token have their own,
    /// stricter limit per client network, so they cannot use up a token's.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// Requests per second per client network that carry no valid token (default 10).
    #[serde(default)]
    pub unauthenticated_rate_limit: Option<u32>,
    /// Connections open at once (default 4096); past it, the longest-idle one is closed.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// How long a request head may take to arrive; also how long an idle keep-alive
    /// connection stays open (default `10s`).
    #[serde(default)]
    pub header_read_timeout: Option<Duration>,
    /// How long a request body may take to arrive, whole (default `30s`).
    #[serde(default)]
    pub body_read_timeout: Option<Duration>,
    /// How long a connection may go without a request being handled (default `60s`).
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
}

/// What a principal may do through the API. Each role includes the ones before it,
/// except `sender`, which may only deliver alerts and events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything; change nothing.
    Viewer,
    /// Deliver alerts and events (Alertmanager's webhook, a CI system); read nothing.
    Sender,
    /// Read, deliver, approve and reject, silence, acknowledge, trigger and run
    /// runbooks, pause and resume automation.
    Operator,
    /// Everything: also promote runbooks, retrain and promote models, reload the bundle.
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 4] = ["viewer", "sender", "operator", "admin"];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Sender => "sender",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// One principal of `api.principals`: who, with which role, and where its token is.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalDoc {
    /// The name audit entries record (`user:<name>`) and policies' `approvers` name.
    pub name: String,
    pub role: Role,
    /// Environment variable holding this principal's token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding this principal's token (its first non-comment line), relative to
    /// `vigil.yaml`.
    #[serde(default)]
    pub token_file: Option<String>,
    /// When the token stops being accepted: an RFC 3339 time or a date (`2027-01-31`).
    #[serde(default)]
    pub expires: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorDoc {
    /// Steps of one execution running at once, unless the runbook says otherwise.
    #[serde(default)]
    pub max_concurrency: Option<u32>,
    /// Environment variables expressions may read as `env.NAME`; no others are visible.
    #[serde(default)]
    pub env: Vec<String>,
}

/// Limits on what automation may do on its own.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailsDoc {
    /// Applies to every runbook unless overridden under `runbooks:`.
    #[serde(default)]
    pub defaults: RunbookGuardrails,
    #[serde(default)]
    pub runbooks: BTreeMap<String, RunbookGuardrails>,
    /// Change freezes: no automatic remediation inside these windows.
    #[serde(default)]
    pub freeze: Vec<FreezeWindow>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunbookGuardrails {
    /// Automatic runs started per rolling hour.
    #[serde(default)]
    pub max_per_hour: Option<u32>,
    /// Executions of this runbook running at once.
    #[serde(default)]
    pub max_concurrent: Option<u32>,
    /// Blast radius: targets one step may act on.
    #[serde(default)]
    pub max_targets_per_step: Option<u32>,
    /// Blast radius: targets acted on per rolling hour.
    #[serde(default)]
    pub max_targets_per_hour: Option<u32>,
    /// Stop automatic runs after repeated failures, and page instead.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerDoc>,
    /// The first N matches of a newly added runbook only dry-run, until promoted.
    #[serde(default)]
    pub dry_run_first: Option<u32>,
}

impl RunbookGuardrails {
    /// `self` with unset limits taken from `defaults`.
    pub fn or(&self, defaults: &RunbookGuardrails) -> RunbookGuardrails {
        RunbookGuardrails {
            max_per_hour: self.max_per_hour.or(defaults.max_per_hour),
            max_concurrent: self.max_concurrent.or(defaults.max_concurrent),
            max_targets_per_step: self.max_targets_per_step.or(defaults.max_targets_per_step),
            max_targets_per_hour: self.max_targets_per_hour.or(defaults.max_targets_per_hour),
            circuit_breaker: self
                .circuit_breaker
                .clone()
                .or_else(|| defaults.circuit_breaker.clone()),
            dry_run_first: self.dry_run_first.or(defaults.dry_run_first),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerDoc {
    pub failures: u32,
    pub window: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorDoc {
    #[serde(rename = "apiVersion")]
    pub api_version: Spanned<String>,
    pub kind: Spanned<String>,
    pub name: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// A cron expression; six fields (with seconds) or five.
    pub schedule: Spanned<String>,
    pub source: Spanned<String>,
    /// The query of the one series a model scores (anomaly and forecast models).
    #[serde(default)]
    pub query: Option<Spanned<String>>,
    /// A query per feature, for models that judge several series of one host together
    /// (the failure classifier: `cpu`, `memory`, `disk_io`, `error_rate`).
    #[serde(default)]
    pub features: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// The detection model and its parameters (typed by `detect`).
    pub model: Node,
    pub alert: AlertDoc,
    /// How much of the past the first run learns from, never alerting on it (e.g. `8w`
    /// for the ensemble's extreme member); default: the daemon's (six hours).
    #[serde(default)]
    pub history: Option<Spanned<Duration>>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDoc {
    pub name: String,
    #[serde(default = "default_severity")]
    pub severity: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_severity() -> String {
    "warning".into()
}

// ---------------------------------------------------------------- as checked

/// A `${{ }}` expression with where it was written (for runtime error messages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expr {
    pub source: String,
    pub pos: Pos,
}

/// A step input: literal values with templates inside.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "lowercase")]
pub enum Input {
    Literal(serde_json::Value),
    Template(TemplateInput),
    List(Vec<Input>),
    Map(Vec<(String, Input)>),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TemplateInput {
    pub text: String,
    pub pos: Pos,
    #[serde(skip)]
    pub parsed: Option<Template>,
}

impl TemplateInput {
    pub fn template(&self) -> Template {
        match &self.parsed {
            Some(t) => t.clone(),
            None => Template::parse(&self.text).unwrap_or(Template { segments: vec![] }),
        }
    }
}

impl Input {
    /// Whether rendering needs an expression engine.
    pub fn is_literal(&self) -> bool {
        match self {
            Input::Literal(_) => true,
            Input::Template(_) => false,
            Input::List(items) => items.iter().all(Input::is_literal),
            Input::Map(entries) => entries.iter().all(|(_, v)| v.is_literal()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, at least 1.
    pub attempts: u32,
    pub backoff: Duration,
    pub factor: f64,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 1,
            backoff: Duration::from_secs(1),
            factor: 2.0,
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `next_attempt` (2 = the first retry).
    pub fn delay_before(&self, next_attempt: u32) -> std::time::Duration {
        let exp = next_attempt.saturating_sub(2).min(30) as i32;
        let secs = self.backoff.as_std().as_secs_f64() * self.factor.powi(exp);
        std::time::Duration::from_secs_f64(
            secs.min(self.max_backoff.as_std().as_secs_f64()).max(0.0),
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    Abort,
    Continue,
    /// Run this step (by index) as compensation, then stop the execution.
    Compensate(usize),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub name: Option<String>,
    pub uses: String,
    pub needs: Vec<usize>,
    pub with: Input,
    pub when: Option<Expr>,
    pub timeout: Option<Duration>,
    pub retry: RetryPolicy,
    pub approval: Approval,
    pub on_failure: OnFailure,
    pub assert: Option<Expr>,
    /// Named by another step's `on_failure`: runs only as compensation.
    pub compensation: bool,
    /// Where the step's `id` is written.
    pub span: Span,
    /// Where its `uses` is written.
    pub uses_span: Span,
    /// Whether any of its inputs, `when` or `assert` holds an expression.
    pub has_expressions: bool,
    /// The steps whose outputs its expressions read (`None`: cannot tell, bind all).
    pub reads: Option<Vec<usize>>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    pub name: String,
    pub ty: Option<ParamType>,
    pub required: bool,
    pub default: Option<serde_json::Value>,
    pub from: Option<TemplateInput>,
    pub description: Option<String>,
}

/// A label matcher, as in Alertmanager: `=`, `!=`, `=~`, `!~`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    pub label: String,
    pub op: MatchOp,
    pub value: String,
    /// The anchored regex of `=~`/`!~`, compiled on first use and kept: matchers run
    /// on every alert, silence and inhibition check.
    #[serde(skip)]
    compiled: CompiledRegex,
}

/// A lazily compiled regex that compares equal to any other (it is derived from
/// the matcher's value).
#[derive(Default)]
struct CompiledRegex(std::sync::OnceLock<Option<regex::Regex>>);

impl Clone for CompiledRegex {
    fn clone(&self) -> Self {
        let cell = std::sync::OnceLock::new();
        if let Some(re) = self.0.get() {
            let _ = cell.set(re.clone());
        }
        CompiledRegex(cell)
    }
}

impl PartialEq for CompiledRegex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CompiledRegex {}

impl std::fmt::Debug for CompiledRegex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "compiled"
        } else {
            "lazy"
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    Ne,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

/// Why a matcher did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression: {0}")]
pub struct MatcherError(String);

impl Matcher {
    /// Parses `value` written as `=~regex`, `!~regex`, `!=value`, `=value` or `value`.
    pub fn parse(label: &str, written: &str) -> Result<Matcher, MatcherError> {
        let (op, value) = if let Some(v) = written.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = written.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = written.strip_prefix("!=") {
            (MatchOp::Ne, v)
        } else if let Some(v) = written.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            (MatchOp::Eq, written)
        };
        if matches!(op, MatchOp::Re | MatchOp::NotRe) {
            regex::Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| MatcherError(e.to_string()))?;
        }
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            compiled: CompiledRegex::default(),
        })
    }

    /// Whether a label set satisfies the matcher (a missing label is the empty string,
    /// as in Alertmanager).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.label).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re | MatchOp::NotRe => {
                let re = self
                    .compiled
                    .0
                    .get_or_init(|| regex::Regex::new(&format!("^(?:{})$", self.value)).ok());
                let hit = re.as_ref().is_some_and(|r| r.is_match(v));
                hit == (self.op == MatchOp::Re)
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub file: PathBuf,
    pub trigger: Vec<Matcher>,
    pub params: Vec<Param>,
    pub policy: Option<String>,
    /// Where `policy:` is written.
    #[serde(skip)]
    pub policy_span: Span,
    pub timeout: Option<Duration>,
    pub concurrency: Option<u32>,
    pub steps: Vec<Step>,
}

impl Runbook {
    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Config {
    pub file: Option<PathBuf>,
    pub store: Option<PathBuf>,
    pub plugin_dirs: Vec<PathBuf>,
    pub api: ApiDoc,
    pub executor: ExecutorDoc,
    #[serde(skip)]
    pub sources: Option<Node>,
    pub notifiers: Vec<Notifier>,
    pub guardrails: GuardrailsDoc,
    pub oncall: BTreeMap<String, RotationDoc>,
    /// service → the services it depends on.
    pub services: BTreeMap<String, Vec<String>>,
    pub alerting: Alerting,
    pub retention: RetentionDoc,
}

#[derive(Clone, Debug, Serialize)]
pub struct Detector {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub schedule: String,
    pub source: String,
    /// Where `source:` is written.
    #[serde(skip)]
    pub source_span: Span,
    /// The one series' query; empty when the detector reads `features`.
    pub query: String,
    /// The query of each feature (by feature name); empty when it reads `query`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub features: BTreeMap<String, String>,
    /// The checked `model:` section.
    #[serde(skip)]
    pub model: crate::detector::DetectorModel,
    pub alert: AlertDoc,
    /// How much of the past the first run learns from; `None`: the runner's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Duration>,
}

impl Detector {
    /// Every query the detector runs: its `query`, or one per feature.
    pub fn queries(&self) -> Vec<&str> {
        if self.features.is_empty() {
            vec![self.query.as_str()]
        } else {
            self.features.values().map(String::as_str).collect()
        }
    }
}
