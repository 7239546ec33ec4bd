//! Fuzz target: arbitrary bytes as the JSON body of every command route. Parsing must
//! never panic, and whatever it accepts must be a batch the engine can take: at most one
//! batch's worth of commands, at least one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_server::request::{parse_request, CommandRoute};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the route, so the corpus can specialise per route.
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let route = CommandRoute::ALL[usize::from(selector) % CommandRoute::ALL.len()];
    if let Ok(parsed) = parse_request(route, body) {
        let count = parsed.batch.as_batch().len();
        assert!(count >= 1);
        assert!(count <= surge_server::constants::HTTP_BATCH_ITEMS_MAX);
        assert!(!parsed.single || count == 1);
    }
});
