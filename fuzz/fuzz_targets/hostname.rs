//! Host normalisation and ECR hostname parsing, on arbitrary strings.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ecr_credd_client::registry::parse_ecr_host(text);
        if let Ok(host) = ecr_credd_client::registry::normalize_host(text) {
            assert_eq!(ecr_credd_client::registry::normalize_host(&host).as_deref(), Ok(host.as_str()));
            if let Some(ecr) = ecr_credd_client::registry::parse_ecr_host(&host) {
                assert!(host.contains(&ecr.account) && host.contains(&ecr.region));
            }
        }
    }
});
