//! `cargo bench --bench state_machine`: the same benchmark as `surge bench state-machine`,
//! with its defaults (all workloads, five runs, medians).

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; this harness takes no options of its own.
    let args = surge::bench::state_machine::StateMachineBenchArgs::default();
    surge::bench::state_machine::run(&args)?;
    Ok(())
}
