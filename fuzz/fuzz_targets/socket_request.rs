//! The daemon's socket request parser, on arbitrary frames.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ecr_credd_client::wire::decode_request(data) {
        // Whatever parses must re-encode and parse to the same request.
        let again = ecr_credd_client::wire::decode_request(&ecr_credd_client::wire::encode(&req)).expect("round trip");
        assert_eq!(again, req);
    }
});
