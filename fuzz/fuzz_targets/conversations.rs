#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cursorpool_fuzz::targets::conversations(data));
