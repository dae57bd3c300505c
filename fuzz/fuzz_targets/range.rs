#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| kura_fuzz::range_header(data));
