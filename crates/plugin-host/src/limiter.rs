//! The sandbox's allocation limits for one call's store: memory counted across every
//! linear memory of the component, and the number of memories, tables and instances.

use super::error::Limit;

/// The sandbox's allocation limits for one store, which holds every core instance
/// of the component: memory is counted across all its linear memories (a component
/// may define many), and the counts of memories, tables and instances are capped.
pub(crate) struct MemLimiter {
    cap: u64,
    /// Bytes of linear memory held by all memories of the store.
    total: u64,
    /// The growth last allowed, taken back if the memory then fails to grow.
    last_growth: u64,
    /// Table elements held by all tables of the store.
    table_elements: usize,
    hit: bool,
}

/// Linear memories one store may create; a component built by the SDK needs a few.
pub(crate) const MAX_MEMORIES: usize = 16;
/// Tables one store may create.
pub(crate) const MAX_TABLES: usize = 64;
/// Core instances one store may create.
pub(crate) const MAX_INSTANCES: usize = 64;
/// Table elements across all tables of one store.
pub(crate) const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemLimiter {
    /// The memory limit, once a growth went past it.
    pub(crate) fn exceeded(&self) -> Option<Limit> {
        self.hit.then_some(Limit::Memory { bytes: self.cap })
    }

    pub(crate) fn new(cap: u64) -> Self {
        MemLimiter {
            cap,
            total: 0,
            last_growth: 0,
            table_elements: 0,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired as u64).saturating_sub(current as u64);
        let total = self.total.saturating_add(growth);
        if total > self.cap {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!(
                "memory limit of {} bytes reached (all linear memories together)",
                self.cap
            )));
        }
        self.total = total;
        self.last_growth = growth;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.total = self.total.saturating_sub(self.last_growth);
        self.last_growth = 0;
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .table_elements
            .saturating_add(desired.saturating_sub(current));
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

/// wasmtime's refusal to create one more memory, table or instance than the
/// limiter allows, as the limit it hit.
pub(crate) fn count_limit(e: &wasmtime::Error) -> Option<Limit> {
    let text = format!("{e:#}");
    let rest = &text[text.find("resource limit exceeded: ")? + 25..];
    let (what, max) = if rest.starts_with("memory") {
        ("memories", MAX_MEMORIES)
    } else if rest.starts_with("table") {
        ("tables", MAX_TABLES)
    } else if rest.starts_with("instance") {
        ("core instances", MAX_INSTANCES)
    } else {
        return None;
    };
    Some(Limit::Count { what, max })
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{MemorySection, MemoryType, Module};
    use wasmtime::{Engine, Store};

    /// A core module that defines `count` memories of `pages` 64 KiB pages each.
    fn memories(count: u32, pages: u64) -> Vec<u8> {
        let mut mems = MemorySection::new();
        for _ in 0..count {
            mems.memory(MemoryType {
                minimum: pages,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut m = Module::new();
        m.section(&mems);
        m.finish()
    }

    fn instantiate(cap_mib: u64, wasm: &[u8]) -> (Result<(), wasmtime::Error>, MemLimiter) {
        let engine = Engine::default();
        let mut store = Store::new(&engine, MemLimiter::new(cap_mib * 1024 * 1024));
        store.limiter(|l| l);
        let result = wasmtime::Module::new(&engine, wasm)
            .and_then(|m| wasmtime::Instance::new(&mut store, &m, &[]).map(drop));
        let data = store.into_data();
        (result, data)
    }

    #[test]
    fn memory_is_capped_across_all_memories_of_an_instance() {
        // Eight memories of 16 MiB each: every one is under a 64 MiB cap, together
        // they are twice over it.
        let (r, lim) = instantiate(64, &memories(8, 256));
        let e = r.expect_err("128 MiB across memories must not fit in 64 MiB");
        assert!(
            format!("{e:#}").contains("all linear memories together"),
            "{e:#}"
        );
        assert!(lim.hit);
        assert!(lim.total <= 64 * 1024 * 1024, "{}", lim.total);
        // Three of them fit.
        let (r, lim) = instantiate(64, &memories(3, 256));
        r.expect("48 MiB fits in 64 MiB");
        assert_eq!(lim.total, 48 * 1024 * 1024);
    }

    #[test]
    fn memory_count_is_capped_and_named() {
        let (r, lim) = instantiate(64, &memories(MAX_MEMORIES as u32 + 1, 0));
        let e = r.expect_err("too many memories");
        assert!(!lim.hit);
        assert_eq!(
            count_limit(&e),
            Some(Limit::Count {
                what: "memories",
                max: MAX_MEMORIES
            }),
            "{e:#}"
        );
        let (r, _) = instantiate(64, &memories(MAX_MEMORIES as u32, 0));
        r.expect("the maximum count is allowed");
    }

    #[test]
    fn a_failed_growth_is_not_counted() {
        let mut lim = MemLimiter::new(10 << 20);
        use wasmtime::ResourceLimiter as _;
        assert!(lim.memory_growing(0, 4 << 20, None).expect("fits"));
        lim.memory_grow_failed(wasmtime::Error::msg("os said no"))
            .expect("ignored");
        assert_eq!(lim.total, 0);
        assert!(lim.memory_growing(0, 8 << 20, None).expect("fits again"));
        assert!(lim.memory_growing(0, 4 << 20, None).is_err());
    }
}
