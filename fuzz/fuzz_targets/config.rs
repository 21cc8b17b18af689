//! The config parser (`Config::from_toml`, which collects every problem) on any text,
//! with every environment variable set: no panic, and the same text gives the same
//! answer again (the same problems, in the same order).
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| Some(format!("value-of-{name}"));
    let first = Config::from_toml(text, &env);
    let again = Config::from_toml(text, &env);
    match (&first, &again) {
        (Ok(_), Ok(_)) => {}
        (Err(a), Err(b)) => {
            assert!(!a.0.is_empty(), "an error lists a problem");
            assert_eq!(a.0, b.0, "the same text, other problems");
        }
        _ => panic!("the same text, another answer: {:?} / {:?}", first.is_ok(), again.is_ok()),
    }
});
