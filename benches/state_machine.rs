//! `cargo bench --bench state_machine`: the same benchmark as `surge bench state-machine`,
//! with its defaults (five runs, medians) over every workload, the place-order stampede
//! (`hot-sku-orders`) and the festival mix (`mixed`) included.

fn main() -> anyhow::Result<()> {
    use surge::bench::state_machine::{StateMachineBenchArgs, StateMachineWorkload};
    // `cargo bench` passes `--bench`; this harness takes no options of its own.
    let args = StateMachineBenchArgs {
        workload: StateMachineWorkload::ALL.to_vec(),
        ..StateMachineBenchArgs::default()
    };
    surge::bench::state_machine::run(&args)?;
    Ok(())
}
