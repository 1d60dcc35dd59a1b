#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| agentsigna_fuzz::policy(data));
