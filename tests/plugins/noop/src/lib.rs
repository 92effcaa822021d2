//! The smallest plugin: a connector returning nothing and an action doing nothing.

use vigil_plugin_sdk::{
    Action, ActionDef, Batch, Connector, Info, Plan, Plugin, Result, TimeRange, export_plugin,
    serde_json::Value,
};

struct Noop;

impl Plugin for Noop {
    type Config = Value;
    fn info() -> Info {
        Info::new("noop", env!("CARGO_PKG_VERSION"))
            .description("Does nothing.")
            .action(
                ActionDef::new("noop", "Does nothing.")
                    .idempotent(true)
                    .pure(true),
            )
    }
}

impl Connector for Noop {
    fn fetch(_: Value, _: &str, _: TimeRange) -> Result<Batch> {
        Ok(Batch::default())
    }
}

impl Action for Noop {
    fn plan(_: &Value, _: &str, _: &Value) -> Result<Plan> {
        Ok(Plan::new("nothing"))
    }
    fn execute(_: &Value, _: &str, _: &Value, _: &Plan) -> Result<Value> {
        Ok(Value::Null)
    }
}

export_plugin!(Noop: connector, action);
