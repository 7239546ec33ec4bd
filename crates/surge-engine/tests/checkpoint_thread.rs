//! A node that never checkpoints (interval 0) runs no checkpoint thread; one that does
//! starts it with its first checkpoint. Alone in its test binary: it counts the process's
//! threads by name, which other tests running beside it would change.

mod common;

use common::{account, SimDisks};
use surge_core::{Batch, ResultCode};
use surge_engine::NodeConfig;
use surge_wal::{LogConfig, ManualClock};

/// Threads of this process named `surge-checkpoint` (as `/proc` shows them, cut to 15
/// bytes).
#[cfg(target_os = "linux")]
fn checkpoint_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end() == "surge-checkpoin")
        .count()
}

#[cfg(target_os = "linux")]
#[test]
fn the_checkpoint_thread_starts_with_the_first_checkpoint() {
    let clock = ManualClock::new(1_000_000_000);
    for (interval, threads) in [(0, 0), (2, 1)] {
        let disks = SimDisks::default();
        let config = NodeConfig {
            checkpoint_interval_records: interval,
            log: LogConfig {
                segment_size_bytes: 64 * 1024,
                ..LogConfig::default()
            },
            ..NodeConfig::default()
        };
        let (node, _) = disks.open(&config, &clock);
        assert_eq!(
            checkpoint_threads(),
            0,
            "interval {interval}: none at the start"
        );
        for id in 1..=3u128 {
            let codes = node
                .submit(Batch::CreateAccounts(&[account(id, false)]))
                .expect("submitted")
                .wait()
                .expect("durable and applied");
            assert_eq!(codes, [ResultCode::Ok]);
        }
        assert_eq!(checkpoint_threads(), threads, "interval {interval}");
        node.shutdown();
        assert_eq!(
            checkpoint_threads(),
            0,
            "interval {interval}: none after the stop"
        );
    }
}
