//! The `config` target: any text as lbd's config file.

use super::*;

/// The config file parser on arbitrary text: never a panic (errors print);
/// a config that loads, dumped as `lbctl config dump` does, loads back equal,
/// and dumps to the same text again.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let loaded = match Config::from_toml_str(text, "fuzz.toml") {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = e.to_string();
            let _ = e.location();
            return;
        }
    };
    let dumped = config::to_toml(&loaded);
    let again = Config::from_toml_str(&dumped, "dump")
        .unwrap_or_else(|e| panic!("the dump of a valid config does not load: {e}\n{dumped}"));
    assert_eq!(again, loaded, "dump changed the config:\n{dumped}");
    assert_eq!(config::to_toml(&again), dumped, "dump is not stable");
}
