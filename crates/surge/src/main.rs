//! `surge`: the one binary. Subcommands: `serve` (the payment API), `token` (API tokens),
//! `demo` (an in-process flash sale), `bench` (benchmarks that print JSON), `codes` (the
//! result-code reference).

use clap::{Parser, Subcommand};

use surge::bench::engine::EngineBenchArgs;
use surge::bench::history::HistoryBenchArgs;
use surge::bench::memory::MemoryBenchArgs;
use surge::bench::recovery::RecoveryBenchArgs;
use surge::bench::state_machine::StateMachineBenchArgs;
use surge::bench::tcp::TcpBenchArgs;
use surge::bench::wal::WalBenchArgs;
use surge::demo::DemoArgs;
use surge::drive::DriveArgs;
use surge::serve::TokenArgs;
use surge_server::config::ServeArgs;

/// Surge: a payment and flash-sale transaction engine.
#[derive(Debug, Parser)]
#[command(name = "surge", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the payment API server: HTTP/JSON and the TCP binary protocol in front of the
    /// engine, on a data directory (defaults: ./surge-data, 127.0.0.1:7780 and :7781).
    Serve(ServeArgs),
    /// Create, list and revoke API tokens in a data directory.
    Token(TokenArgs),
    /// Run an in-process flash sale against the state machine and print what happened.
    Demo(DemoArgs),
    /// Drive seeded load through a node in a data directory, printing an `ack` line per
    /// durable batch (for crash tests); `--verify` checks a directory against those lines.
    Drive(DriveArgs),
    /// Run a benchmark and print its figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the result-code reference as Markdown (docs/RESULT_CODES.md).
    Codes,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Apply batches of 8,190 commands to the in-memory state machine on one core.
    StateMachine(StateMachineBenchArgs),
    /// Resident memory of the state machine after millions of transfers.
    Memory(MemoryBenchArgs),
    /// Append batches of 8,190 records with real fdatasync; compare with the raw disk.
    Wal(WalBenchArgs),
    /// Feed the history index's stores (log-structured runs; sled, the baseline) the
    /// entries of uniform transfers: durable transfers/s, statement and lookup latency.
    History(HistoryBenchArgs),
    /// Write a log of 10 M transfers, then time recovery (scan + replay) from it.
    Recovery(RecoveryBenchArgs),
    /// Run the real engine (one node, real fdatasync) in-process: commands/s and latency
    /// from submit to durable result, per workload; and an open loop at a fixed rate.
    Engine(EngineBenchArgs),
    /// Serve a real engine over TCP in-process and drive it through surge-client from
    /// many tasks: commands/s and latency per call, as a ratio to `bench engine`.
    Tcp(TcpBenchArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => surge::serve::serve(&args)?,
        Command::Token(args) => surge::serve::token(&args)?,
        Command::Demo(args) => print!("{}", surge::demo::run(&args)?),
        Command::Bench(BenchCommand::StateMachine(args)) => {
            surge::bench::state_machine::run(&args)?;
        }
        Command::Bench(BenchCommand::Memory(args)) => surge::bench::memory::run(&args)?,
        Command::Bench(BenchCommand::Wal(args)) => surge::bench::wal::run(&args)?,
        Command::Bench(BenchCommand::History(args)) => {
            surge::bench::history::run(&args)?;
        }
        Command::Bench(BenchCommand::Recovery(args)) => {
            surge::bench::recovery::run(&args)?;
        }
        Command::Bench(BenchCommand::Engine(args)) => {
            surge::bench::engine::run(&args)?;
        }
        Command::Bench(BenchCommand::Tcp(args)) => {
            surge::bench::tcp::run(&args)?;
        }
        Command::Drive(args) => surge::drive::run(&args)?,
        Command::Codes => print!("{}", surge_core::result::result_codes_markdown()),
    }
    Ok(())
}
