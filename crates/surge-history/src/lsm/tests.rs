//! The store against a sorted map: whatever moves between memtables, runs and merges, and
//! across reopens, every key reads back its newest value.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;

use super::*;

fn filtered(key: &[u8]) -> bool {
    key.first() == Some(&b'T')
}

/// A small memtable, so a few hundred writes make many runs and merges.
const SMALL_MEMTABLE_BYTES: usize = 2_048;

fn open(path: &Path) -> LsmStore {
    LsmStore::open(path, filtered, SMALL_MEMTABLE_BYTES).expect("the store opens")
}

/// Keys of both kinds (filtered or not), few enough that writes repeat them.
fn key_strategy() -> impl Strategy<Value = Vec<u8>> {
    (prop_oneof![Just(b'T'), Just(b'A')], 0u16..400, 0usize..24).prop_map(|(kind, id, pad)| {
        let mut key = vec![kind];
        key.extend_from_slice(&id.to_be_bytes());
        key.extend(std::iter::repeat_n(7u8, pad));
        key
    })
}

fn batch_of(pairs: &Pairs) -> WriteBatch {
    let mut batch = WriteBatch::default();
    for (key, value) in pairs {
        batch.push(key, value);
    }
    batch
}

fn check(store: &LsmStore, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for (key, value) in model {
        assert_eq!(store.get(key).unwrap().as_ref(), Some(value), "{key:02x?}");
    }
    assert_eq!(store.get(b"T\xff\xff").unwrap(), None);
    // Many at once, with a missing key and a repeated one among them.
    let mut keys: Vec<Vec<u8>> = model.keys().take(50).cloned().collect();
    keys.push(b"T\xff\xff".to_vec());
    keys.extend(model.keys().next().cloned());
    let expected: Vec<Option<Vec<u8>>> = keys.iter().map(|key| model.get(key).cloned()).collect();
    assert_eq!(store.get_many(&keys).unwrap(), expected);
    let everything: Pairs = model.clone().into_iter().collect();
    assert_eq!(store.scan(b"", b"\xff", usize::MAX).unwrap(), everything);
    // A bounded scan from the middle.
    let middle = [b'A', 0, 200];
    let expected: Pairs = model
        .range(middle.to_vec()..b"T".to_vec())
        .take(17)
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    assert_eq!(store.scan(&middle, b"T", 17).unwrap(), expected);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Batches of writes, some repeating keys, with flushes and reopens between them.
    #[test]
    fn reads_agree_with_a_sorted_map(
        batches in prop::collection::vec(
            (prop::collection::vec((key_strategy(), any::<u16>()), 1..40), 0u8..6),
            1..30,
        )
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs");
        let mut store = open(&path);
        let mut model = BTreeMap::new();
        for (writes, then) in batches {
            let pairs: Pairs = writes
                .into_iter()
                .map(|(key, value)| (key, value.to_le_bytes().repeat(usize::from(value % 9))))
                .collect();
            for (key, value) in &pairs {
                model.insert(key.clone(), value.clone());
            }
            store.write_atomically(&batch_of(&pairs)).unwrap();
            match then {
                0 => store.flush().unwrap(),
                1 => {
                    drop(store);
                    store = open(&path);
                }
                _ => {}
            }
        }
        check(&store, &model);
        check(&store.reader(), &model);
        drop(store);
        check(&open(&path), &model);
    }
}

#[test]
fn runs_merge_and_what_a_crash_left_is_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs");
    let mut store = open(&path);
    let mut model = BTreeMap::new();
    for batch in 0..200u32 {
        let pairs: Pairs = (0..20u32)
            .map(|i| {
                let mut key = vec![b'T'];
                key.extend_from_slice(&(batch * 20 + i).to_be_bytes());
                (key, batch.to_le_bytes().to_vec())
            })
            .collect();
        model.extend(pairs.clone());
        store.write_atomically(&batch_of(&pairs)).unwrap();
        // Bounded: a write that fills a memtable returns only once fewer than
        // `FROZEN_MAX` wait for the flusher (which syncs each run, far slower than this).
        assert!(store.stats().frozen < FROZEN_MAX, "{:?}", store.stats());
    }
    store.flush().unwrap();
    store.settle();
    let stats = store.stats();
    // 200 batches of ~700 bytes in 2 KiB memtables: dozens of flushes, merged in eights.
    assert!(stats.runs < 2 * MERGE_FANOUT, "{stats:?}");
    check(&store, &model);
    drop(store);
    // A temporary file and a run a finished merge covers (a crash before its removal).
    let names: Vec<String> = std::fs::read_dir(&path)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".run"))
        .collect();
    let (first, _) = names
        .iter()
        .filter_map(|name| run_range(name))
        .min()
        .unwrap();
    let leftover = path.join(run::run_name(first, first));
    std::fs::write(&leftover, b"not even a run").unwrap();
    std::fs::write(path.join("index-000000000099-000000000099.run.tmp"), b"x").unwrap();
    let store = open(&path);
    check(&store, &model);
    assert!(!leftover.exists());
    assert!(!path
        .join("index-000000000099-000000000099.run.tmp")
        .exists());
}

#[test]
fn a_second_handle_on_the_directory_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs");
    let store = open(&path);
    let error = LsmStore::open(&path, filtered, SMALL_MEMTABLE_BYTES).unwrap_err();
    assert!(error.is_locked(), "{error}");
    let mut reader = store.reader();
    let error = reader.write_atomically(&WriteBatch::default()).unwrap_err();
    assert!(matches!(error, HistoryError::ReadOnly), "{error}");
    drop(store);
    // The writer wrote everything out as it went (readers cannot write): a reader's flush
    // then has nothing to wait for.
    reader.flush().unwrap();
    assert!(LsmStore::open(&path, filtered, SMALL_MEMTABLE_BYTES)
        .unwrap_err()
        .is_locked());
    drop(reader);
    open(&path);
}

#[test]
fn damaged_runs_are_reported_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs");
    let mut store = open(&path);
    let pairs: Pairs = (0..100u32)
        .map(|i| (format!("T{i:05}").into_bytes(), vec![1; 40]))
        .collect();
    store.write_atomically(&batch_of(&pairs)).unwrap();
    store.flush().unwrap();
    drop(store);
    let name = std::fs::read_dir(&path)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|extension| extension == "run"))
        .unwrap();
    let mut bytes = std::fs::read(&name).unwrap();
    // A flipped byte in a chunk: the lookup that reads it says so.
    bytes[10] ^= 0x20;
    std::fs::write(&name, &bytes).unwrap();
    let store = open(&path);
    let error = store.get(b"T00000").unwrap_err();
    assert!(error.is_corruption(), "{error}");
    drop(store);
    // A flipped byte in the footer: the open says so.
    bytes[10] ^= 0x20;
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    std::fs::write(&name, &bytes).unwrap();
    let error = LsmStore::open(&path, filtered, SMALL_MEMTABLE_BYTES).unwrap_err();
    assert!(error.is_corruption(), "{error}");
}

/// A run that cannot be written (here: its directory is gone) stops the store: the
/// failure is reported to the writer, which stores nothing more, and to `flush`.
#[test]
fn a_failed_flush_stops_the_store_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs");
    let mut store = open(&path);
    std::fs::remove_dir_all(&path).unwrap();
    let pairs: Pairs = (0..200u32)
        .map(|i| (format!("T{i:05}").into_bytes(), vec![1; 40]))
        .collect();
    let batch = batch_of(&pairs);
    // More than a memtable: frozen, handed to the flusher, which fails. The write may
    // already hear of it (the failure is checked before a write and while it waits).
    match store.write_atomically(&batch) {
        Ok(()) | Err(HistoryError::Background(_)) => {}
        Err(error) => panic!("{error}"),
    }
    let error = store.flush().unwrap_err();
    assert!(matches!(error, HistoryError::Background(_)), "{error}");
    assert!(error.to_string().contains("creating"), "{error}");
    let error = store.write_atomically(&batch).unwrap_err();
    assert!(matches!(error, HistoryError::Background(_)), "{error}");
}

/// Waits until `done`, failing with `what` after 30 s: a test fails rather than hangs.
fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn the_writer_waits_for_merges_that_fall_behind() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(directory.path());
    store.shared.control.lock().merges_paused = true;
    let shared = store.shared.clone();
    let first_level = || {
        let view = shared.view.read();
        view.runs.iter().filter(|run| run.level == 0).count()
    };
    // About a hundred memtables' worth.
    let writer = std::thread::spawn(move || {
        let mut store = store;
        for index in 0u32..2_000 {
            let key = [b"A".as_slice(), &index.to_be_bytes()].concat();
            store
                .write_atomically(&batch_of(&vec![(key, vec![1; 64])]))
                .unwrap();
        }
        store
    });
    // With the mergers held back the writer stops at the bound (plus the memtables
    // frozen before it looked), and stays stopped.
    let bound = FIRST_LEVEL_RUNS_MAX + FROZEN_MAX;
    wait_until("the runs never reached the bound", || {
        first_level() >= FIRST_LEVEL_RUNS_MAX
    });
    for _ in 0..200 {
        assert!(first_level() <= bound, "{} runs from memory", first_level());
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        !writer.is_finished(),
        "the writer did not wait for the merges"
    );
    {
        let mut control = shared.control.lock();
        control.merges_paused = false;
        shared.changed.notify_all();
    }
    // Bounded: the merges free the writer, or the test fails rather than hangs.
    wait_until("the merges did not free the writer", || {
        writer.is_finished()
    });
    let store = writer.join().unwrap();
    store.settle();
    assert!(first_level() < MERGE_FANOUT);
    let key = [b"A".as_slice(), &1_999u32.to_be_bytes()].concat();
    assert_eq!(store.get(&key).unwrap(), Some(vec![1; 64]));
}

#[test]
fn a_panicking_background_thread_fails_the_store_instead_of_hanging_it() {
    let directory = tempfile::tempdir().unwrap();
    let store = open(directory.path());
    store.shared.control.lock().publisher_panics = true;
    // Each write fills a memtable; once four wait unpublished the writer would wait on the
    // publisher forever, if its panic did not fail the store. Bounded: the test fails
    // rather than hangs.
    let writer = std::thread::spawn(move || {
        let mut store = store;
        loop {
            let key = b"A-key".to_vec();
            if let Err(error) = store.write_atomically(&batch_of(&vec![(key, vec![1; 4_096])])) {
                return (store, error);
            }
        }
    });
    wait_until("the writer waits forever", || writer.is_finished());
    let (store, failed) = writer.join().unwrap();
    assert!(
        failed
            .to_string()
            .contains("surge-index-sync thread panicked"),
        "{failed}"
    );
    let flushed = store.flush().unwrap_err();
    assert!(flushed.to_string().contains("panicked"), "{flushed}");
}
