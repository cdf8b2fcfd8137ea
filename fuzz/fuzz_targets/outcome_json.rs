#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tasker_fuzz::outcome_json(data));
