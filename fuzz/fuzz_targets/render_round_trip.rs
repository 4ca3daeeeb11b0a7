#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cursorpool_fuzz::targets::render_round_trip(data));
