//! Bindings generated from `wit/vigil.wit`: the plugin ABI as Rust types and traits,
//! shared by the host and the conversion of what plugins return.

pub mod connector {
    wasmtime::component::bindgen!({
        world: "connector",
        path: "../../wit",
    });
}
pub mod action {
    wasmtime::component::bindgen!({
        world: "action",
        path: "../../wit",
        with: {
            "vigil:plugin/types": super::connector::vigil::plugin::types,
            "vigil:plugin/log": super::connector::vigil::plugin::log,
            "vigil:plugin/clock": super::connector::vigil::plugin::clock,
            "vigil:plugin/http": super::connector::vigil::plugin::http,
            "vigil:plugin/kv": super::connector::vigil::plugin::kv,
            "vigil:plugin/secrets": super::connector::vigil::plugin::secrets,
            "vigil:plugin/process": super::connector::vigil::plugin::process,
            "vigil:plugin/tcp": super::connector::vigil::plugin::tcp,
        },
    });
}
pub use connector::vigil::plugin::types;
