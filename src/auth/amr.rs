//! How a session was authenticated, as RFC 8176 Authentication Method Reference values: the
//! `amr` claim of its access tokens, and whether it counts as multi-factor for roles that
//! require MFA. A session keeps the method of its login (`sessions.mfa_method`) for life, so
//! every token refreshed from it says the same.

/// The value that marks a multi-factor session (RFC 8176 §2 `mfa`).
pub const MFA: &str = "mfa";

/// The `amr` values of a session whose login passed the second factor `method` (`None`: the
/// password alone). The choices, documented in docs/api.md:
/// - `totp`: `pwd`, `otp` (RFC 6238 is the `otp` of RFC 8176), `mfa`.
/// - `recovery_code`: `pwd`, `mfa`. A single-use code, but neither HOTP nor TOTP, and no
///   RFC 8176 value names it; `mfa` alone says a second factor was given.
/// - `webauthn` (a passkey after the password): `pwd`, `swk`, `mfa`. Attestation is not
///   checked and synced passkeys live in software, so `hwk` would claim more than is known;
///   every passkey is at least proof of possession of a key.
/// - `passkey` (passwordless with user verification): `swk`, `user`, `mfa`. Verification
///   (PIN or biometric) proves presence, and with the key it is two factors.
/// - an unknown method (written by a newer release): `mfa`, since only a second factor is
///   ever stored, and nothing more specific.
pub fn values(method: Option<&str>) -> Vec<String> {
    let values: &[&str] = match method {
        None => &["pwd"],
        Some("totp") => &["pwd", "otp", MFA],
        Some("recovery_code") => &["pwd", MFA],
        Some("webauthn") => &["pwd", "swk", MFA],
        Some("passkey") => &["swk", "user", MFA],
        Some(_) => &[MFA],
    };
    values.iter().map(|v| (*v).to_string()).collect()
}

/// Whether `amr` (a verified token's) is that of a multi-factor session.
pub fn is_multi_factor(amr: &[String]) -> bool {
    amr.iter().any(|v| v == MFA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_maps_to_its_rfc_8176_values() {
        assert_eq!(values(None), ["pwd"]);
        assert_eq!(values(Some("totp")), ["pwd", "otp", "mfa"]);
        assert_eq!(values(Some("recovery_code")), ["pwd", "mfa"]);
        assert_eq!(values(Some("webauthn")), ["pwd", "swk", "mfa"]);
        assert_eq!(values(Some("passkey")), ["swk", "user", "mfa"]);
        assert_eq!(values(Some("something-newer")), ["mfa"]);
    }

    #[test]
    fn only_a_second_factor_makes_a_session_multi_factor() {
        assert!(!is_multi_factor(&values(None)));
        for method in ["totp", "recovery_code", "webauthn", "passkey", "later"] {
            assert!(is_multi_factor(&values(Some(method))), "{method}");
        }
        assert!(
            !is_multi_factor(&[]),
            "a token without amr is password-only"
        );
    }
}
