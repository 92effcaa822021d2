//! Plugin instances (plugin + config + grants + limits), exposed to the
//! executor as [`Action`]s through [`PluginCatalog`] and to the scheduler as
//! [`Connector`]s.

use super::convert;
use super::error::{Call, PluginError};
use super::grants::Grants;
use super::host::{Bound, Invocation, Limits, LoadedPlugin, Mode, PluginHost, reported};
use super::model::{Batch, PluginInfo, TimeRange};
use crate::wit;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use vigil_core::action::{
    Action, ActionCall, ActionCatalog, ActionError, ActionInfo, ActionPlan, BoxFuture,
};

/// `validate` is synchronous and capability-free, so it gets at most this long.
pub const VALIDATE_TIMEOUT_MS: u64 = 1_000;

/// One configured plugin instance, as written under `sources:` in `vigil.yaml`:
///
/// ```yaml
/// - name: prom               # used as `uses: prom/query` and as a detector source
///   plugin: prometheus       # the plugin's describe() name; default: `name`
///   config: { url: "http://127.0.0.1:9090" }
///   grants: { http: [{ url: "http://127.0.0.1:9090/*", methods: [GET, POST] }] }
///   limits: { timeout: 5s }
/// ```
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    pub name: String,
    #[serde(default)]
    pub plugin: Option<String>,
    #[serde(default)]
    pub config: Value,
    #[serde(default)]
    pub grants: Grants,
    #[serde(default)]
    pub limits: Limits,
}

impl InstanceConfig {
    /// An instance of `plugin` under its own name, with nothing granted.
    pub fn bare(plugin: &str) -> Self {
        InstanceConfig {
            name: plugin.into(),
            plugin: None,
            config: Value::Null,
            grants: Grants::default(),
            limits: Limits::default(),
        }
    }
    pub fn plugin_name(&self) -> &str {
        self.plugin.as_deref().unwrap_or(&self.name)
    }
}

/// A plugin bound to its config, grants and limits.
#[derive(Debug)]
pub struct PluginInstance {
    name: String,
    plugin: Arc<LoadedPlugin>,
    config_json: String,
    grants: Grants,
    limits: Limits,
}

impl PluginInstance {
    pub fn new(plugin: Arc<LoadedPlugin>, cfg: InstanceConfig) -> Result<Self, PluginError> {
        let valid_name = !cfg.name.is_empty()
            && cfg.name.len() <= 64
            && cfg
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err(PluginError::Config(format!(
                "source name {:?} must be 1-64 of [A-Za-z0-9._-] (steps use it as `<name>/<action>`)",
                cfg.name
            )));
        }
        cfg.grants
            .validate()
            .map_err(|e| PluginError::Config(format!("source {:?}: {e}", cfg.name)))?;
        if cfg.limits.memory_mib == 0 || cfg.limits.timeout_ms == 0 {
            return Err(PluginError::Config(format!(
                "source {:?}: limits must be positive",
                cfg.name
            )));
        }
        let config_json = if cfg.config.is_null() {
            "{}".to_string()
        } else {
            cfg.config.to_string()
        };
        Ok(PluginInstance {
            name: cfg.name,
            plugin,
            config_json,
            grants: cfg.grants,
            limits: cfg.limits,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn info(&self) -> &PluginInfo {
        self.plugin.info()
    }
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    fn invocation(&self) -> Invocation<'_> {
        Invocation {
            plugin: &self.plugin,
            instance: &self.name,
            grants: &self.grants,
            limits: self.limits,
        }
    }

    fn output_cap(&self) -> u64 {
        u64::from(self.limits.output_kib) * 1024
    }

    fn require_action(&self, call: Call, action: &str) -> Result<(), PluginError> {
        if !self.plugin.info().actions.iter().any(|a| a.name == action) {
            return Err(PluginError::Host {
                plugin: self.plugin.info().name.clone(),
                call,
                detail: format!(
                    "no action {action:?} (has: {})",
                    self.action_names().join(", ")
                ),
            });
        }
        Ok(())
    }

    fn action_names(&self) -> Vec<String> {
        self.plugin
            .info()
            .actions
            .iter()
            .map(|a| a.name.clone())
            .collect()
    }

    /// Runs the connector's `fetch` (all granted capabilities available).
    pub fn fetch(&self, query: &str, range: TimeRange) -> Result<Batch, PluginError> {
        let name = &self.plugin.info().name;
        if !self.plugin.info().kinds.connector {
            return Err(PluginError::Host {
                plugin: name.clone(),
                call: Call::Fetch,
                detail: "is not a connector".into(),
            });
        }
        let inv = self.invocation();
        let r = wit::types::TimeRange {
            start: range.start,
            end: range.end,
            step: range.step,
        };
        let _span =
            tracing::debug_span!("plugin_fetch", instance = %self.name, plugin = %name).entered();
        let raw = inv.run(Call::Fetch, Mode::Fetch, |store, b| match b {
            Bound::Connector(c) => {
                c.vigil_plugin_connector_api()
                    .call_fetch(store, &self.config_json, query, r)
            }
            Bound::Action(_) => Err(wasmtime::Error::msg("not a connector")),
        })?;
        let raw = raw.map_err(|e| reported(name, Call::Fetch, e))?;
        convert::batch(name, raw, self.output_cap())
    }

    fn action_call<R>(
        &self,
        call: Call,
        mode: Mode,
        f: impl FnOnce(
            &mut wasmtime::Store<super::host::State>,
            &wit::action::Action,
        ) -> wasmtime::Result<Result<R, wit::types::PluginError>>,
    ) -> Result<R, PluginError> {
        self.action_call_within(call, mode, None, f)
    }

    /// An action call whose time limit is also capped by `left`.
    fn action_call_within<R>(
        &self,
        call: Call,
        mode: Mode,
        left: Option<std::time::Duration>,
        f: impl FnOnce(
            &mut wasmtime::Store<super::host::State>,
            &wit::action::Action,
        ) -> wasmtime::Result<Result<R, wit::types::PluginError>>,
    ) -> Result<R, PluginError> {
        let name = &self.plugin.info().name;
        let mut inv = self.invocation();
        if let Some(left) = left {
            let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
            inv.limits.timeout_ms = inv.limits.timeout_ms.min(ms);
        }
        if call == Call::Validate {
            // `validate` runs on the executor's thread and needs no I/O: keep it short.
            inv.limits.timeout_ms = inv.limits.timeout_ms.min(VALIDATE_TIMEOUT_MS);
        }
        let raw = inv.run(call, mode, |store, b| match b {
            Bound::Action(a) => f(store, a),
            Bound::Connector(_) => Err(wasmtime::Error::msg("not an action plugin")),
        })?;
        raw.map_err(|e| reported(name, call, e))
    }

    /// `validate` (no capabilities).
    pub fn validate(&self, action: &str, input: &Value) -> Result<(), PluginError> {
        self.require_action(Call::Validate, action)?;
        let input = input.to_string();
        self.action_call(Call::Validate, Mode::Describe, |s, a| {
            a.vigil_plugin_action_api()
                .call_validate(s, &self.config_json, action, &input)
        })
    }

    /// `plan` with read-only capabilities: what a dry-run shows.
    pub fn plan(&self, action: &str, input: &Value) -> Result<ActionPlan, PluginError> {
        self.require_action(Call::Plan, action)?;
        let input = input.to_string();
        let _span = tracing::debug_span!("plugin_plan", instance = %self.name, action).entered();
        let raw = self.action_call(Call::Plan, Mode::Plan, |s, a| {
            a.vigil_plugin_action_api()
                .call_plan(s, &self.config_json, action, &input)
        })?;
        let plan = convert::plan(&self.plugin.info().name, raw, self.output_cap())?;
        super::effects::vet_plan(plan).map_err(|detail| PluginError::BadOutput {
            plugin: self.plugin.info().name.clone(),
            call: Call::Plan,
            detail,
        })
    }

    /// `execute`, allowed only the effects `plan` declares (plus reads).
    pub fn execute(
        &self,
        action: &str,
        input: &Value,
        plan: &ActionPlan,
    ) -> Result<Value, PluginError> {
        self.execute_until(action, input, plan, None)
    }

    /// `execute`, stopped by `deadline` if that comes before the instance's time
    /// limit: a step's timeout ends the plugin's work, not only the wait for it.
    pub fn execute_until(
        &self,
        action: &str,
        input: &Value,
        plan: &ActionPlan,
        deadline: Option<std::time::Instant>,
    ) -> Result<Value, PluginError> {
        self.require_action(Call::Execute, action)?;
        let input = input.to_string();
        let effects: Vec<String> = plan
            .steps
            .iter()
            .flat_map(|s| s.effects.iter().cloned())
            .collect();
        let wplan = convert::plan_to_wit(plan);
        let _span = tracing::info_span!("plugin_execute", instance = %self.name, action).entered();
        let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let text =
            self.action_call_within(Call::Execute, Mode::Execute { effects }, left, |s, a| {
                a.vigil_plugin_action_api().call_execute(
                    s,
                    &self.config_json,
                    action,
                    &input,
                    &wplan,
                )
            })?;
        convert::output(&self.plugin.info().name, &text, self.output_cap())
    }
}

/// Runs blocking plugin work off the async executor when there is one.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, ActionError> {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => h
            .spawn_blocking(f)
            .await
            .map_err(|e| ActionError::Sandbox(format!("plugin call aborted: {e}"))),
        Err(_) => Ok(f()),
    }
}

/// One plugin action as an executor [`Action`] (`uses: <instance>/<action>`).
#[derive(Debug)]
pub struct PluginAction {
    instance: Arc<PluginInstance>,
    action: String,
    info: ActionInfo,
}

impl Action for PluginAction {
    fn info(&self) -> &ActionInfo {
        &self.info
    }

    fn validate(&self, input: &Value) -> Result<(), ActionError> {
        self.instance
            .validate(&self.action, input)
            .map_err(PluginError::into_action_error)
    }

    fn plan<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<ActionPlan, ActionError>> {
        let inst = self.instance.clone();
        let action = self.action.clone();
        let input = input.clone();
        Box::pin(async move {
            blocking(move || inst.plan(&action, &input))
                .await?
                .map_err(PluginError::into_action_error)
        })
    }

    fn execute(&self, call: ActionCall) -> BoxFuture<'_, Result<Value, ActionError>> {
        let inst = self.instance.clone();
        let action = self.action.clone();
        Box::pin(async move {
            blocking(move || inst.execute_until(&action, &call.input, &call.plan, call.deadline))
                .await?
                .map_err(PluginError::into_action_error)
        })
    }
}

/// A connector instance, for the detector scheduler.
#[derive(Clone, Debug)]
pub struct Connector {
    instance: Arc<PluginInstance>,
}

impl Connector {
    pub fn name(&self) -> &str {
        self.instance.name()
    }
    pub fn info(&self) -> &PluginInfo {
        self.instance.info()
    }
    /// Blocking fetch (call from a blocking context).
    pub fn fetch(&self, query: &str, range: TimeRange) -> Result<Batch, PluginError> {
        self.instance.fetch(query, range)
    }
    /// Fetch on tokio's blocking pool.
    pub async fn fetch_async(&self, query: String, range: TimeRange) -> Result<Batch, PluginError> {
        let inst = self.instance.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h
                .spawn_blocking(move || inst.fetch(&query, range))
                .await
                .map_err(|e| PluginError::Host {
                    plugin: self.instance.info().name.clone(),
                    call: Call::Fetch,
                    detail: format!("fetch task aborted: {e}"),
                })?,
            Err(_) => inst.fetch(&query, range),
        }
    }
}

/// All loaded plugins and configured instances.
#[derive(Debug)]
pub struct PluginCatalog {
    host: PluginHost,
    plugins: BTreeMap<String, Arc<LoadedPlugin>>,
    instances: BTreeMap<String, Arc<PluginInstance>>,
}

impl PluginCatalog {
    pub fn new(host: PluginHost) -> Self {
        PluginCatalog {
            host,
            plugins: BTreeMap::new(),
            instances: BTreeMap::new(),
        }
    }

    /// Loads every `*.wasm` in `dirs`, then the configured instances. Each
    /// plugin is also available under its own name with nothing granted,
    /// unless an instance of that name is configured.
    pub fn load(
        host: &PluginHost,
        dirs: &[PathBuf],
        instances: &[InstanceConfig],
    ) -> Result<Self, PluginError> {
        let mut cat = PluginCatalog::new(host.clone());
        for p in host.load_dirs(dirs)? {
            cat.add_plugin(p)?;
        }
        for cfg in instances {
            cat.add_instance(cfg.clone())?;
        }
        Ok(cat)
    }

    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// Registers a plugin (and its bare default instance).
    pub fn add_plugin(&mut self, plugin: Arc<LoadedPlugin>) -> Result<(), PluginError> {
        let name = plugin.info().name.clone();
        if let Some(prev) = self.plugins.get(&name) {
            return Err(PluginError::Config(format!(
                "plugin {name:?} is provided by both {} and {}",
                prev.path().display(),
                plugin.path().display()
            )));
        }
        self.plugins.insert(name.clone(), plugin.clone());
        self.instances
            .entry(name.clone())
            .or_insert(Arc::new(PluginInstance::new(
                plugin,
                InstanceConfig::bare(&name),
            )?));
        Ok(())
    }

    /// Adds (or replaces the bare default of) an instance.
    pub fn add_instance(&mut self, cfg: InstanceConfig) -> Result<(), PluginError> {
        let plugin = self
            .plugins
            .get(cfg.plugin_name())
            .cloned()
            .ok_or_else(|| {
                PluginError::Config(format!(
                    "source {:?}: no plugin named {:?} (loaded: {})",
                    cfg.name,
                    cfg.plugin_name(),
                    self.plugins.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })?;
        let name = cfg.name.clone();
        if let Some(existing) = self.instances.get(&name)
            && existing.info().name != name
        {
            return Err(PluginError::Config(format!(
                "source {name:?} is configured twice"
            )));
        }
        self.instances
            .insert(name, Arc::new(PluginInstance::new(plugin, cfg)?));
        Ok(())
    }

    pub fn plugin(&self, name: &str) -> Option<&Arc<LoadedPlugin>> {
        self.plugins.get(name)
    }
    pub fn plugins(&self) -> impl Iterator<Item = &Arc<LoadedPlugin>> {
        self.plugins.values()
    }
    pub fn instance(&self, name: &str) -> Option<&Arc<PluginInstance>> {
        self.instances.get(name)
    }
    pub fn instances(&self) -> impl Iterator<Item = &Arc<PluginInstance>> {
        self.instances.values()
    }

    /// The connector instance called `name`.
    pub fn connector(&self, name: &str) -> Option<Connector> {
        let inst = self.instances.get(name)?;
        inst.info().kinds.connector.then(|| Connector {
            instance: inst.clone(),
        })
    }
}

impl ActionCatalog for PluginCatalog {
    fn resolve(&self, uses: &str) -> Option<Arc<dyn Action>> {
        let (inst, action) = uses.split_once('/')?;
        let instance = self.instances.get(inst)?;
        let a = instance.info().actions.iter().find(|a| a.name == action)?;
        Some(Arc::new(PluginAction {
            instance: instance.clone(),
            action: a.name.clone(),
            info: ActionInfo {
                name: uses.to_string(),
                description: a.description.clone(),
                idempotent: a.idempotent,
                pure: a.pure,
            },
        }))
    }

    fn names(&self) -> Vec<String> {
        self.instances
            .iter()
            .flat_map(|(n, i)| {
                i.info()
                    .actions
                    .iter()
                    .map(move |a| format!("{n}/{}", a.name))
            })
            .collect()
    }
}
