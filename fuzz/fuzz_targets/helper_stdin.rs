//! The credential helper's stdin handling for every action (no daemon).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for action in ["get", "store", "erase"] {
        let mut out = Vec::new();
        let code = ecr_credd_client::helper::run(
            &[action.to_owned()],
            &mut &data[..],
            &mut out,
            std::path::Path::new("/nonexistent/ecr-credd.sock"),
        );
        assert!(code == 0 || code == 1);
        assert!(std::str::from_utf8(&out).is_ok());
    }
});
