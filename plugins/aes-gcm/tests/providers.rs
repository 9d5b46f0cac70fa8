//! The aes-gcm plugin through its ABI root module, on every provider: the conformance
//! kit on each, and what one seals the other opens.

#[test]
fn conforms_on_every_provider_and_across_them() {
    let report = conclave_conformance::cipher::on_providers(
        conclave_plugin_aes_gcm::plugin_module(),
        &["aes-256-gcm", "aes-128-gcm"],
        &[
            ("rustcrypto", conclave_provider_rustcrypto::plugin_module()),
            ("openssl", conclave_provider_openssl::plugin_module()),
            ("aws-lc", conclave_provider_aws_lc::plugin_module()),
        ],
    );
    report.assert_interoperates("rustcrypto", "openssl");
    report.assert_interoperates("rustcrypto", "aws-lc");
    report.assert_interoperates("openssl", "aws-lc");
}
