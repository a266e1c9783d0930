//! The wasmtime `Engine`, configured for untrusted code, and the ticker that drives deadlines.
//!
//! Choices and why:
//! - epoch interruption, not fuel: a check per loop back-edge costs far less than fuel metering,
//!   and the deadline we want is wall-clock time anyway;
//! - a bounded wasm stack, so deep recursion traps instead of exhausting the host thread;
//! - the pooling allocator, so an invocation's instance comes from pre-reserved slots
//!   (no mmap/munmap per invocation) and copy-on-write memory images;
//! - no features a connector does not need (threads, GC proposals, debug info).

use crate::limits::{ASYNC_STACK_BYTES, EPOCH_TICK, MAX_WASM_STACK_BYTES};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How many invocations can be in flight at once, and the largest memory any of them may have.
#[derive(Debug, Clone, Copy)]
pub struct PoolSize {
    pub max_concurrent_instances: u32,
    /// Upper bound for every connection's memory limit.
    pub max_memory_bytes: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        PoolSize {
            max_concurrent_instances: 1_000,
            max_memory_bytes: 256 << 20,
        }
    }
}

/// Core instances, memories and tables per component. A Rust `wasm32-wasip2` connector has about
/// 3 core modules and 18 core instances; other toolchains have more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 50;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 8;
/// Elements of one core table (function references): a real guest has a few hundred.
pub(crate) const TABLE_ELEMENTS: usize = 20_000;
/// Per memory slot, bytes kept mapped between invocations. A Rust connector dirties a few hundred
/// KiB (its shadow stack top, data and heap); more than that is returned to the OS.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;
const KEEP_RESIDENT_TABLE_BYTES: usize = 64 << 10;
/// Slots whose memory must be returned to the OS are batched into fewer system calls.
const DECOMMIT_BATCH: usize = 16;

pub fn new_engine(pool: PoolSize) -> anyhow::Result<Engine> {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK_BYTES)
        .async_stack_size(ASYNC_STACK_BYTES)
        .parallel_compilation(true)
        // Explicit bounds checks against a reservation sized to the limit, instead of 4 GiB + guard
        // per memory: this keeps thousands of pooled slots within the address space.
        .memory_reservation(pool.max_memory_bytes as u64)
        .memory_guard_size(64 << 10)
        .memory_reservation_for_growth(0);

    let n = pool.max_concurrent_instances;
    let mut pooling = PoolingAllocationConfig::default();
    pooling
        .total_component_instances(n)
        .total_core_instances(
            n.saturating_mul(CORE_INSTANCES_PER_COMPONENT / 5)
                .max(CORE_INSTANCES_PER_COMPONENT),
        )
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(n.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(n.saturating_mul(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .table_elements(TABLE_ELEMENTS)
        .max_memory_size(pool.max_memory_bytes)
        .total_stacks(n)
        // Reset only the pages an invocation dirtied (PAGEMAP_SCAN, Linux 6.7+) with memset, and
        // keep them mapped, instead of madvise + a page fault per page on the next invocation.
        .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
        .table_keep_resident(KEEP_RESIDENT_TABLE_BYTES)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(DECOMMIT_BATCH);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] on a background thread, for as long as the
/// engine lives. A guest past its deadline is stopped at its next epoch check.
pub fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("airlock-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
