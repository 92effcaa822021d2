//! `vigil-plugin-sdk`: write vigil connector and action plugins in plain Rust.
//!
//! A plugin is a type implementing [`Plugin`] plus [`Connector`] and/or
//! [`Action`], exported with [`export_plugin!`]. Build it with
//! `cargo build --release --target wasm32-wasip2` (or `vigil plugin build`).
//! See the crate README for a tutorial.
//!
//! Host capabilities are available through [`http`], [`kv`], [`log`],
//! [`secrets`], [`process`], [`tcp`] and [`clock`]. Each works only if the plugin
//! requested it in [`Info`] *and* the operator granted it in `vigil.yaml`;
//! otherwise the call returns an [`Error`] of kind [`ErrorKind::Denied`] whose
//! message quotes the grant line that would allow it.

#![allow(unsafe_code)] // the generated canonical-ABI glue is unsafe by nature

use serde::de::DeserializeOwned;
use serde_json::Value;

/// The SDK version compiled into every plugin's `describe()`.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "plugin",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_world",
        default_bindings_module: "::vigil_plugin_sdk::bindings",
    });
}

#[doc(hidden)]
pub use bindings::__export_plugin_world;
use bindings::vigil::plugin::types as wit;

pub use serde;
pub use serde_json;
pub use serde_json::json;

mod error;
mod helpers;
mod model;

pub use error::{Context, Error, ErrorKind, Result};
pub use helpers::{clock, http, kv, log, process, secrets, tcp};
pub use model::{
    ActionDef, Batch, Capability, CapabilityKind, Event, Info, Plan, PlannedEffect, Risk, Sample,
    Series, TimeRange,
};

/// What every plugin says about itself.
pub trait Plugin {
    /// The plugin's typed config, deserialised from the instance's `config:` in vigil.yaml.
    type Config: DeserializeOwned;

    /// Name, version, description, config schema, capabilities and actions.
    /// `kinds` and the SDK version are filled in by [`export_plugin!`].
    fn info() -> Info;
}

/// A data source: turns a query and a time range into series and events.
pub trait Connector: Plugin {
    fn fetch(config: Self::Config, query: &str, range: TimeRange) -> Result<Batch>;
}

/// Something a runbook step can do. The host calls [`Action::plan`] in a
/// dry-run (with read-only capabilities) and [`Action::execute`] only in a live
/// run, where only the effects declared by the plan are allowed.
pub trait Action: Plugin {
    /// Checks the input without side effects. Default: `plan` must succeed shape-wise.
    fn validate(config: &Self::Config, action: &str, input: &Value) -> Result<()> {
        let _ = (config, action, input);
        Ok(())
    }
    /// Describes what `execute` would do. May read (GET/HEAD, kv get), never writes.
    fn plan(config: &Self::Config, action: &str, input: &Value) -> Result<Plan>;
    /// Does it, within the effects the plan declared. Returns the step output.
    fn execute(config: &Self::Config, action: &str, input: &Value, plan: &Plan) -> Result<Value>;
}

/// Parses the instance config (JSON text from the host) into the typed config.
#[doc(hidden)]
pub fn parse_config<C: DeserializeOwned>(config: &str) -> Result<C> {
    let text = if config.trim().is_empty() {
        "{}"
    } else {
        config
    };
    serde_json::from_str(text).map_err(|e| Error::invalid_input(format!("config: {e}")))
}

#[doc(hidden)]
pub fn parse_input(input: &str) -> Result<Value> {
    let text = if input.trim().is_empty() {
        "null"
    } else {
        input
    };
    serde_json::from_str(text).map_err(|e| Error::invalid_input(format!("input: {e}")))
}

#[doc(hidden)]
pub mod glue {
    //! Used by [`export_plugin!`](crate::export_plugin); not part of the API.
    use super::*;

    pub fn describe<P: Plugin>(connector: bool, action: bool) -> wit::PluginInfo {
        let mut kinds = wit::PluginKinds::empty();
        if connector {
            kinds |= wit::PluginKinds::CONNECTOR;
        }
        if action {
            kinds |= wit::PluginKinds::ACTION;
        }
        P::info().into_wit(kinds)
    }

    pub fn fetch<P: Connector>(
        config: String,
        query: String,
        range: wit::TimeRange,
    ) -> std::result::Result<wit::Batch, wit::PluginError> {
        let config = parse_config::<P::Config>(&config)?;
        Ok(P::fetch(config, &query, range.into())?.into())
    }

    pub fn validate<P: Action>(
        config: String,
        action: String,
        input: String,
    ) -> std::result::Result<(), wit::PluginError> {
        let config = parse_config::<P::Config>(&config)?;
        let input = parse_input(&input)?;
        Ok(P::validate(&config, &action, &input)?)
    }

    pub fn plan<P: Action>(
        config: String,
        action: String,
        input: String,
    ) -> std::result::Result<wit::ActionPlan, wit::PluginError> {
        let config = parse_config::<P::Config>(&config)?;
        let input = parse_input(&input)?;
        Ok(P::plan(&config, &action, &input)?.into())
    }

    pub fn execute<P: Action>(
        config: String,
        action: String,
        input: String,
        plan: wit::ActionPlan,
    ) -> std::result::Result<String, wit::PluginError> {
        let config = parse_config::<P::Config>(&config)?;
        let input = parse_input(&input)?;
        let plan = Plan::from(plan);
        let out = P::execute(&config, &action, &input, &plan)?;
        serde_json::to_string(&out).map_err(|e| Error::failed(format!("output: {e}")).into())
    }

    pub fn no_fetch(
        _: String,
        _: String,
        _: wit::TimeRange,
    ) -> std::result::Result<wit::Batch, wit::PluginError> {
        Err(unsupported("fetch (not a connector)"))
    }
    pub fn no_validate(
        _: String,
        _: String,
        _: String,
    ) -> std::result::Result<(), wit::PluginError> {
        Err(unsupported("actions"))
    }
    pub fn no_plan(
        _: String,
        _: String,
        _: String,
    ) -> std::result::Result<wit::ActionPlan, wit::PluginError> {
        Err(unsupported("actions"))
    }
    pub fn no_execute(
        _: String,
        _: String,
        _: String,
        _: wit::ActionPlan,
    ) -> std::result::Result<String, wit::PluginError> {
        Err(unsupported("actions"))
    }

    pub fn unsupported(what: &str) -> wit::PluginError {
        Error::new(
            ErrorKind::Unsupported,
            format!("this plugin does not implement {what}"),
        )
        .into()
    }
}

/// Exports a plugin type as the component's implementation.
///
/// ```ignore
/// vigil_plugin_sdk::export_plugin!(MyPlugin: connector);
/// vigil_plugin_sdk::export_plugin!(MyPlugin: action);
/// vigil_plugin_sdk::export_plugin!(MyPlugin: connector, action);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($ty:ty : connector) => {
        $crate::export_plugin!(@emit $ty, true, false,
            $crate::glue::fetch::<$ty>, $crate::glue::no_validate, $crate::glue::no_plan, $crate::glue::no_execute);
    };
    ($ty:ty : action) => {
        $crate::export_plugin!(@emit $ty, false, true,
            $crate::glue::no_fetch, $crate::glue::validate::<$ty>, $crate::glue::plan::<$ty>, $crate::glue::execute::<$ty>);
    };
    ($ty:ty : connector, action) => {
        $crate::export_plugin!(@emit $ty, true, true,
            $crate::glue::fetch::<$ty>, $crate::glue::validate::<$ty>, $crate::glue::plan::<$ty>, $crate::glue::execute::<$ty>);
    };
    (@emit $ty:ty, $conn:expr, $act:expr, $fetch:expr, $validate:expr, $plan:expr, $execute:expr) => {
        #[doc(hidden)]
        pub struct __VigilExport;
        const _: () = {
            use $crate::bindings::exports::vigil::plugin as __x;
            use $crate::bindings::vigil::plugin::types as __t;
            impl __x::meta::Guest for __VigilExport {
                fn describe() -> __t::PluginInfo {
                    $crate::glue::describe::<$ty>($conn, $act)
                }
            }
            impl __x::connector_api::Guest for __VigilExport {
                fn fetch(config: String, query: String, range: __t::TimeRange)
                    -> ::core::result::Result<__t::Batch, __t::PluginError> {
                    ($fetch)(config, query, range)
                }
            }
            impl __x::action_api::Guest for __VigilExport {
                fn validate(config: String, action: String, input: String)
                    -> ::core::result::Result<(), __t::PluginError> {
                    ($validate)(config, action, input)
                }
                fn plan(config: String, action: String, input: String)
                    -> ::core::result::Result<__t::ActionPlan, __t::PluginError> {
                    ($plan)(config, action, input)
                }
                fn execute(config: String, action: String, input: String, plan: __t::ActionPlan)
                    -> ::core::result::Result<String, __t::PluginError> {
                    ($execute)(config, action, input, plan)
                }
            }
        };
        // Component exports exist only in the wasm build; native builds (unit tests)
        // type-check the glue but export nothing.
        #[cfg(target_arch = "wasm32")]
        $crate::__export_plugin_world!(__VigilExport with_types_in $crate::bindings);
    };
}
