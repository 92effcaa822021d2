//! `vigil plugin new|build|inspect|list`.

use anyhow::{Context, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use vigil_bundle::Bundle;
use vigil_exec::core::Catalog;
use vigil_plugin_host::{
    CacheOutcome, HostOptions, InstanceConfig, LoadedPlugin, PluginCatalog, PluginHost, PluginInfo,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Connector,
    Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate that builds with `cargo build --release`.
    New {
        /// Plugin name ([a-z0-9-]).
        name: String,
        #[arg(long, value_enum, default_value = "action")]
        kind: Kind,
        /// Parent directory (default: current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path to the vigil-plugin-sdk crate (default: the one this vigil was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
    /// Build a plugin crate for wasm32-wasip2 (release) and check it loads.
    Build {
        /// The plugin crate directory.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Copy the .wasm here (e.g. a plugin dir).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show a plugin's info, actions, requested capabilities and config schema.
    Inspect {
        file: PathBuf,
        /// Compile cache directory (default: none, compile in memory).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// List the plugins in plugin directories.
    List {
        /// Plugin directories (default: the configured ones).
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
    },
}

/// Where plugins live and how to print, from global flags and config.
#[derive(Clone, Debug, Default)]
pub struct PluginCliContext {
    pub json: bool,
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: Option<PathBuf>,
}

/// The plugin catalog of a bundle: every `*.wasm` in `plugins.dirs`, plus the
/// instances under `sources:` (config, grants, limits), with `tweak` applied to their
/// configs first (the demo anchors the sim's story at its start). `None` when the
/// bundle names neither. The compile cache lives in `<store>/plugin-cache`. A source that cannot be set up is invalid
/// input, said with where it is written, where plugins were looked for and what to do.
pub fn plugin_catalog_with(
    g: &super::Global,
    bundle: &Bundle,
    tweak: &dyn Fn(&mut Vec<InstanceConfig>),
) -> anyhow::Result<Option<PluginCatalog>> {
    let load = load_plugins(g, bundle, tweak)?;
    if let Some(f) = load.failed.first() {
        let (file, span) = load.source_at(bundle, f.index);
        let (message, hint) = load.explain(f);
        return Err(super::invalid(format!(
            "{}:{}:{}: {message}; {hint}",
            file.display(),
            span.start.line,
            span.start.col
        )));
    }
    Ok(load.catalog)
}

/// What `make plugins` does, and the other way to have plugins: said wherever none are found.
pub const HOW_TO_GET_PLUGINS: &str = "build the bundled plugins with `make plugins` (they go to target/plugins), or list a directory of .wasm plugins under `plugins.dirs` in vigil.yaml";

/// A bundle's plugins, as far as they load.
pub struct PluginLoad {
    /// `None` when the bundle names no plugin dirs and no sources.
    pub catalog: Option<PluginCatalog>,
    /// Where plugins were looked for: the config's `plugins.dirs` (relative to the
    /// config), and nowhere else.
    pub dirs: Vec<PathBuf>,
    /// The sources that could not be set up.
    pub failed: Vec<FailedSource>,
}

/// A source (under `sources:`) that could not be set up.
pub struct FailedSource {
    /// Its place in the `sources:` list.
    pub index: usize,
    pub name: String,
    /// The plugin it names, when no plugin of that name was found.
    pub missing_plugin: Option<String>,
    pub error: String,
}

/// Loads every `*.wasm` in the bundle's `plugins.dirs`, then its sources (with `tweak`
/// applied), each on its own: a source that cannot be set up is in `failed`, not an
/// error. Errors are what stops the rest: an unreadable `sources:`, a plugin file that
/// does not load, two plugins of one name.
pub fn load_plugins(
    g: &super::Global,
    bundle: &Bundle,
    tweak: &dyn Fn(&mut Vec<InstanceConfig>),
) -> anyhow::Result<PluginLoad> {
    let mut sources: Vec<InstanceConfig> = match &bundle.config.sources {
        Some(node) => vigil_bundle::de::from_node(node).map_err(|e| {
            let at = node.text_start();
            super::invalid(format!("sources (line {}): {e}", at.line))
        })?,
        None => Vec::new(),
    };
    tweak(&mut sources);
    let dirs = bundle.config.plugin_dirs.clone();
    if dirs.is_empty() && sources.is_empty() {
        return Ok(PluginLoad {
            catalog: None,
            dirs,
            failed: Vec::new(),
        });
    }
    let cache_dir = super::store_dir(g, Some(bundle)).join("plugin-cache");
    let host = PluginHost::new(HostOptions {
        cache_dir: Some(cache_dir),
        ..HostOptions::default()
    })?;
    let mut catalog = PluginCatalog::new(host.clone());
    for p in host.load_dirs(&dirs)? {
        catalog.add_plugin(p)?;
    }
    let mut failed = Vec::new();
    for (index, cfg) in sources.into_iter().enumerate() {
        let name = cfg.name.clone();
        let plugin = cfg.plugin_name().to_string();
        let missing_plugin = catalog.plugin(&plugin).is_none().then_some(plugin);
        if let Err(e) = catalog.add_instance(cfg) {
            failed.push(FailedSource {
                index,
                name,
                missing_plugin,
                error: e.to_string(),
            });
        }
    }
    Ok(PluginLoad {
        catalog: Some(catalog),
        dirs,
        failed,
    })
}

impl PluginLoad {
    /// The names of the plugins found.
    pub fn loaded(&self) -> Vec<String> {
        self.catalog
            .iter()
            .flat_map(|c| c.plugins().map(|p| p.info().name.clone()))
            .collect()
    }

    /// Whether plugins were looked for (there are dirs or sources) and none was found.
    pub fn none_found(&self) -> bool {
        self.catalog
            .as_ref()
            .is_some_and(|c| c.plugins().next().is_none())
    }

    /// The directories searched, each with what is there: `target/plugins (it does
    /// not exist)`, `plugins (no .wasm files)`, `plugins (5 plugins)`.
    pub fn searched(&self) -> String {
        if self.dirs.is_empty() {
            return "no directory (`plugins.dirs` lists none)".into();
        }
        let found = |dir: &Path| {
            self.catalog
                .iter()
                .flat_map(|c| c.plugins())
                .filter(|p| p.path().parent() == Some(dir))
                .count()
        };
        self.dirs
            .iter()
            .map(|d| {
                let state = match std::fs::read_dir(d) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        "it does not exist".to_string()
                    }
                    Err(e) => format!("unreadable: {e}"),
                    Ok(_) => match found(d) {
                        0 => "no .wasm files".to_string(),
                        1 => "1 plugin".to_string(),
                        n => format!("{n} plugins"),
                    },
                };
                format!("{} ({state})", shown(d))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Where source `index` is written: its `plugin:` or `name:` in the config.
    pub fn source_at(&self, bundle: &Bundle, index: usize) -> (PathBuf, vigil_core::span::Span) {
        let file = bundle.config.file.clone().unwrap_or_default();
        let node = bundle.config.sources.as_ref();
        let item = node.and_then(|n| match &n.value {
            vigil_bundle::yaml::Value::Seq(items) => items.get(index),
            _ => None,
        });
        let span = item
            .and_then(|i| i.get("plugin").or_else(|| i.get("name")))
            .or(item)
            .or(node)
            .map(|n| n.span)
            .unwrap_or_default();
        (file, span)
    }

    /// What is wrong with a failed source, and how to fix it: (message, hint).
    pub fn explain(&self, f: &FailedSource) -> (String, String) {
        let Some(plugin) = &f.missing_plugin else {
            return (
                format!("source `{}`: {}", f.name, f.error),
                "check its `config:`, `grants:` and `limits:` (`vigil plugin inspect FILE` shows what the plugin accepts)".into(),
            );
        };
        let message = format!(
            "source `{}`: no plugin named `{plugin}` in {}",
            f.name,
            self.searched()
        );
        let loaded = self.loaded();
        let hint = if loaded.is_empty() {
            HOW_TO_GET_PLUGINS.to_string()
        } else {
            match vigil_core::suggest::closest(plugin, loaded.iter().map(String::as_str)) {
                Some(c) => format!("did you mean `{c}`? (found: {})", loaded.join(", ")),
                None => format!(
                    "found: {}; put its .wasm in a directory under `plugins.dirs`, or name one of these with `plugin:`",
                    loaded.join(", ")
                ),
            }
        };
        (message, hint)
    }
}

/// A path as a reader finds it: `.` and `..` resolved (on the text, not the disk),
/// relative to the current directory when under it, else absolute.
pub fn shown(path: &Path) -> String {
    use std::path::Component;
    let cwd = std::env::current_dir().ok();
    let full = match &cwd {
        Some(c) if path.is_relative() => c.join(path),
        _ => path.to_path_buf(),
    };
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    match cwd.as_deref().and_then(|c| out.strip_prefix(c).ok()) {
        Some(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => out.display().to_string(),
    }
}

/// `Catalog::with_core()` plus the bundle's plugins.
pub fn with_plugins(g: &super::Global, bundle: &Bundle) -> anyhow::Result<Catalog> {
    Ok(with_plugins_and_sources(g, bundle, &|_| {})?.0)
}

/// [`with_plugins`], and the bundle's connector instances as detector sources.
pub fn with_plugins_and_sources(
    g: &super::Global,
    bundle: &Bundle,
    tweak: &dyn Fn(&mut Vec<InstanceConfig>),
) -> anyhow::Result<(Catalog, vigil_runtime::runner::Sources)> {
    let mut catalog = Catalog::with_core();
    let mut sources = vigil_runtime::runner::Sources::new();
    if let Some(plugins) = plugin_catalog_with(g, bundle, tweak)? {
        sources = vigil::daemon::sources(&plugins);
        catalog.add_catalog(Arc::new(plugins));
    }
    Ok((catalog, sources))
}

impl PluginCliContext {
    /// From the global flags: `--output json`, and the plugin dirs and store of
    /// the config in use (the compile cache lives in `<store>/plugin-cache`).
    pub fn from_global(g: &super::Global) -> Self {
        let bundle = g
            .bundle_dir()
            .and_then(|d| vigil_bundle::Bundle::load(&d).ok());
        PluginCliContext {
            json: g.json(),
            plugin_dirs: bundle
                .as_ref()
                .map(|b| b.config.plugin_dirs.clone())
                .unwrap_or_default(),
            cache_dir: bundle
                .as_ref()
                .map(|b| super::store_dir(g, Some(b)).join("plugin-cache")),
        }
    }
}

pub fn run(cmd: &PluginCommand, cx: &PluginCliContext) -> anyhow::Result<ExitCode> {
    match cmd {
        PluginCommand::New {
            name,
            kind,
            dir,
            sdk_path,
        } => {
            let parent = dir.clone().unwrap_or_else(|| PathBuf::from("."));
            let sdk = match sdk_path {
                Some(p) => p.clone(),
                None => {
                    default_sdk_path().context("cannot find vigil-plugin-sdk; pass --sdk-path")?
                }
            };
            let root = scaffold(name, *kind, &parent, &sdk)?;
            if cx.json {
                println!("{}", serde_json::json!({ "created": root }));
            } else {
                println!("created {}", root.display());
                println!(
                    "build it with:  cd {} && cargo build --release",
                    root.display()
                );
                println!("or:             vigil plugin build {}", root.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { path, out } => {
            let wasm = build(path)?;
            let dest = match out {
                Some(dir) => {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("create {}", dir.display()))?;
                    let d = dir.join(wasm.file_name().context("wasm file name")?);
                    std::fs::copy(&wasm, &d).with_context(|| format!("copy to {}", d.display()))?;
                    d
                }
                None => wasm,
            };
            let host = PluginHost::new(HostOptions {
                cache_dir: cx.cache_dir.clone(),
                ..HostOptions::default()
            })?;
            let plugin = host.load_file(&dest)?;
            if cx.json {
                println!(
                    "{}",
                    serde_json::json!({ "built": dest, "info": plugin.info() })
                );
            } else {
                println!(
                    "built {} ({} {})",
                    dest.display(),
                    plugin.info().name,
                    plugin.info().version
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { file, cache_dir } => {
            let host = PluginHost::new(HostOptions {
                cache_dir: cache_dir.clone().or_else(|| cx.cache_dir.clone()),
                ..HostOptions::default()
            })?;
            let plugin = host.load_file(file)?;
            if cx.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "file": plugin.path(),
                        "sha256": plugin.content_hash(),
                        "cache": cache_word(plugin.cache_outcome()),
                        "info": plugin.info(),
                    })
                );
            } else {
                print_info(&plugin)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::List { dirs } => {
            let dirs = if dirs.is_empty() {
                cx.plugin_dirs.clone()
            } else {
                dirs.clone()
            };
            if dirs.is_empty() {
                bail!(
                    "no plugin directories: pass --dir DIR or configure plugin dirs in vigil.yaml"
                );
            }
            let host = PluginHost::new(HostOptions {
                cache_dir: cx.cache_dir.clone(),
                ..HostOptions::default()
            })?;
            let plugins = host.load_dirs(&dirs)?;
            if cx.json {
                let list: Vec<_> = plugins
                    .iter()
                    .map(|p| serde_json::json!({ "file": p.path(), "info": p.info() }))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{:<14} {:<9} {:<18} {:<40} FILE",
                    "NAME", "VERSION", "KINDS", "ACTIONS"
                )?;
                for p in &plugins {
                    let i = p.info();
                    let actions: Vec<_> = i.actions.iter().map(|a| a.name.as_str()).collect();
                    writeln!(
                        out,
                        "{:<14} {:<9} {:<18} {:<40} {}",
                        i.name,
                        i.version,
                        kinds(i),
                        actions.join(","),
                        p.path().display()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cache_word(c: &CacheOutcome) -> String {
    match c {
        CacheOutcome::Disabled => "disabled".into(),
        CacheOutcome::Hit => "hit".into(),
        CacheOutcome::Miss => "miss".into(),
        CacheOutcome::Rebuilt { reason } => format!("rebuilt ({reason})"),
        CacheOutcome::Untrusted { reason } => format!("not used ({reason})"),
    }
}

fn kinds(i: &PluginInfo) -> &'static str {
    match (i.kinds.connector, i.kinds.action) {
        (true, true) => "connector+action",
        (true, false) => "connector",
        (false, true) => "action",
        (false, false) => "-",
    }
}

fn print_info(p: &LoadedPlugin) -> anyhow::Result<()> {
    let i = p.info();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} {} — {}", i.name, i.version, i.description)?;
    writeln!(out, "  file:      {}", p.path().display())?;
    writeln!(out, "  sha256:    {}", p.content_hash())?;
    writeln!(out, "  kinds:     {}", kinds(i))?;
    writeln!(out, "  sdk:       {}", i.sdk_version)?;
    writeln!(out, "  cache:     {}", cache_word(p.cache_outcome()))?;
    if !i.actions.is_empty() {
        writeln!(out, "  actions:")?;
        for a in &i.actions {
            let flags = format!(
                "{}{}",
                if a.idempotent {
                    "idempotent"
                } else {
                    "not idempotent"
                },
                if a.pure { ", pure" } else { "" }
            );
            writeln!(
                out,
                "    {}/{:<12} {} ({flags})",
                i.name, a.name, a.description
            )?;
        }
    }
    writeln!(out, "  requested capabilities:")?;
    if i.capabilities.is_empty() {
        writeln!(out, "    none")?;
    }
    for c in &i.capabilities {
        let kind = serde_json::to_value(c.kind)?
            .as_str()
            .unwrap_or_default()
            .to_string();
        let scope = if c.scope.is_empty() {
            String::new()
        } else {
            format!(" {}", c.scope)
        };
        writeln!(out, "    {kind}{scope}: {}", c.reason)?;
    }
    writeln!(out, "  config schema:")?;
    for line in serde_json::to_string_pretty(&i.config_schema)?.lines() {
        writeln!(out, "    {line}")?;
    }
    Ok(())
}

fn default_sdk_path() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    p.join("Cargo.toml")
        .exists()
        .then(|| p.canonicalize().unwrap_or(p))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Writes a new plugin crate `<parent>/<name>/`.
pub fn scaffold(name: &str, kind: Kind, parent: &Path, sdk: &Path) -> anyhow::Result<PathBuf> {
    if !valid_name(name) {
        bail!(
            "plugin name {name:?} must be lower-case letters, digits and '-', starting with a letter"
        );
    }
    let root = parent.join(name);
    if root.exists() {
        bail!("{} already exists", root.display());
    }
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("SDK path {}", sdk.display()))?;
    let ident = name.replace('-', "_");
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    std::fs::create_dir_all(root.join("src"))
        .with_context(|| format!("create {}", root.display()))?;
    std::fs::create_dir_all(root.join(".cargo"))?;
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
name = "{ident}"
crate-type = ["cdylib", "rlib"]

[dependencies]
vigil-plugin-sdk = {{ path = {sdk:?} }}
serde = {{ version = "1", features = ["derive"] }}

# A standalone crate, even when created inside another workspace.
[workspace]
"#
        ),
    )?;
    std::fs::write(
        root.join(".cargo/config.toml"),
        "[build]\ntarget = \"wasm32-wasip2\"\n",
    )?;
    std::fs::write(root.join(".gitignore"), "/target\n")?;
    let body = match kind {
        Kind::Action => format!(
            r#"//! `{name}`: a vigil action plugin. Build: `cargo build --release`
//! (or `vigil plugin build .`); the component is
//! `target/wasm32-wasip2/release/{ident}.wasm`.

use serde::Deserialize;
use vigil_plugin_sdk::serde_json::Value;
use vigil_plugin_sdk::{{
    Action, ActionDef, Capability, Error, Info, Plan, PlannedEffect, Plugin, Result, Risk, export_plugin, http, json,
}};

/// The instance config (`config:` under the source in vigil.yaml).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    /// Where to send notifications.
    pub url: String,
}}

pub struct {ty};

impl Plugin for {ty} {{
    type Config = Config;
    fn info() -> Info {{
        Info::new("{name}", env!("CARGO_PKG_VERSION"))
            .description("Posts a message to a URL.")
            .capability(Capability::http("posts the message"))
            .action(ActionDef::new("notify", "POSTs {{\"text\": ...}} to the configured URL."))
            .config_schema(json!({{
                "type": "object",
                "required": ["url"],
                "properties": {{ "url": {{ "type": "string" }} }}
            }}))
    }}
}}

fn text(input: &Value) -> Result<&str> {{
    input.get("text").and_then(Value::as_str).ok_or_else(|| Error::invalid_input("`text` (a string) is required"))
}}

impl Action for {ty} {{
    fn validate(_: &Config, _: &str, input: &Value) -> Result<()> {{
        text(input).map(|_| ())
    }}

    /// What it would do. The host runs this in a dry-run, read-only, and in a live
    /// run lets `execute` use only the effects declared here.
    fn plan(config: &Config, _: &str, input: &Value) -> Result<Plan> {{
        Ok(Plan::new(format!("POST {{:?}} to {{}}", text(input)?, config.url))
            .step(PlannedEffect::new(&config.url, Risk::Low).effect(format!("http:POST {{}}", config.url))))
    }}

    fn execute(config: &Config, _: &str, input: &Value, _: &Plan) -> Result<Value> {{
        let resp = http::Request::post(&config.url).json(&json!({{ "text": text(input)? }}))?.send()?.error_for_status()?;
        Ok(json!({{ "status": resp.status }}))
    }}
}}

export_plugin!({ty}: action);
"#
        ),
        Kind::Connector => format!(
            r#"//! `{name}`: a vigil connector plugin. Build: `cargo build --release`
//! (or `vigil plugin build .`); the component is
//! `target/wasm32-wasip2/release/{ident}.wasm`.

use serde::Deserialize;
use vigil_plugin_sdk::{{Batch, Connector, Error, Info, Plugin, Result, Series, TimeRange, export_plugin, json}};

/// The instance config (`config:` under the source in vigil.yaml).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {{
    #[serde(default = "one")]
    pub value: f64,
}}

fn one() -> f64 {{
    1.0
}}

pub struct {ty};

impl Plugin for {ty} {{
    type Config = Config;
    fn info() -> Info {{
        Info::new("{name}", env!("CARGO_PKG_VERSION"))
            .description("A constant series, one sample per step.")
            .config_schema(json!({{ "type": "object", "properties": {{ "value": {{ "type": "number" }} }} }}))
    }}
}}

impl Connector for {ty} {{
    fn fetch(config: Config, query: &str, range: TimeRange) -> Result<Batch> {{
        if query.is_empty() {{
            return Err(Error::invalid_input("query names the series"));
        }}
        let step = if range.step > 0 {{ range.step as i64 }} else {{ 60_000 }};
        let mut series = Series::new().label("__name__", query);
        let mut t = range.start;
        while t <= range.end && series.samples.len() < 10_000 {{
            series.push(t, config.value);
            t += step;
        }}
        Ok(Batch {{ series: vec![series], events: vec![] }})
    }}
}}

export_plugin!({ty}: connector);
"#
        ),
    };
    std::fs::write(root.join("src/lib.rs"), body)?;
    Ok(root)
}

/// `cargo build --release --target wasm32-wasip2` in `path`; returns the .wasm.
pub fn build(path: &Path) -> anyhow::Result<PathBuf> {
    let manifest = path.join("Cargo.toml");
    if !manifest.exists() {
        bail!("{} has no Cargo.toml", path.display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("run cargo")?;
    if !out.status.success() {
        bail!("cargo build failed (is the target installed? `rustup target add wasm32-wasip2`)");
    }
    let mut wasm = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                    wasm = Some(PathBuf::from(f));
                }
            }
        }
    }
    wasm.context("cargo built no .wasm (is crate-type = [\"cdylib\"] set?)")
}
