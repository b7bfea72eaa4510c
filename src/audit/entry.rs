//! What an audit entry says, built by the code that makes the change it records.

use serde_json::{Map, Value};

use crate::accounts::UserId;
use crate::http::ClientInfo;

/// What happened. Stored as its snake_case name (API.md "Audit entry").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Signup,
    Login,
    LoginFailed,
    Logout,
    ConsentGranted,
    RefreshReuseDetected,
    SessionRevoked,
    PasswordChanged,
    PasswordChangeFailed,
    PasswordReset,
    Lockout,
    Unlock,
    UserErased,
    EraseFailed,
    UserUpdated,
    UserDisabled,
    UserEnabled,
    RoleChanged,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    SessionsRevoked,
    UsersImported,
    MfaTotpEnrolled,
    MfaEnabled,
    MfaTotpConfirmFailed,
    MfaDisabled,
    MfaTotpDisableFailed,
    RecoveryCodesRegenerated,
    RecoveryCodesRegenerateFailed,
    MfaFailed,
    PasskeyRegistered,
    PasskeyRegisterFailed,
    PasskeyRemoved,
    PasskeyRemoveFailed,
    PasskeyLoginFailed,
    EmailVerificationSent,
    EmailVerified,
    PasswordResetRequested,
    ClientCreated,
    ClientUpdated,
    ClientSecretRotated,
    ClientDeleted,
    KeyRotated,
    TokenIssued,
    TokenRevoked,
    CodeReuseDetected,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Signup => "signup",
            Action::Login => "login",
            Action::LoginFailed => "login_failed",
            Action::Logout => "logout",
            Action::ConsentGranted => "consent_granted",
            Action::RefreshReuseDetected => "refresh_reuse_detected",
            Action::SessionRevoked => "session_revoked",
            Action::PasswordChanged => "password_changed",
            Action::PasswordChangeFailed => "password_change_failed",
            Action::PasswordReset => "password_reset",
            Action::Lockout => "lockout",
            Action::Unlock => "unlock",
            Action::UserErased => "user_erased",
            Action::EraseFailed => "erase_failed",
            Action::UserUpdated => "user_updated",
            Action::UserDisabled => "user_disabled",
            Action::UserEnabled => "user_enabled",
            Action::RoleChanged => "role_changed",
            Action::RoleCreated => "role_created",
            Action::RoleUpdated => "role_updated",
            Action::RoleDeleted => "role_deleted",
            Action::SessionsRevoked => "sessions_revoked",
            Action::UsersImported => "users_imported",
            Action::MfaTotpEnrolled => "mfa_totp_enrolled",
            Action::MfaEnabled => "mfa_enabled",
            Action::MfaTotpConfirmFailed => "mfa_totp_confirm_failed",
            Action::MfaDisabled => "mfa_disabled",
            Action::MfaTotpDisableFailed => "mfa_totp_disable_failed",
            Action::RecoveryCodesRegenerated => "recovery_codes_regenerated",
            Action::RecoveryCodesRegenerateFailed => "recovery_codes_regenerate_failed",
            Action::MfaFailed => "mfa_failed",
            Action::PasskeyRegistered => "passkey_registered",
            Action::PasskeyRegisterFailed => "passkey_register_failed",
            Action::PasskeyRemoved => "passkey_removed",
            Action::PasskeyRemoveFailed => "passkey_remove_failed",
            Action::PasskeyLoginFailed => "passkey_login_failed",
            Action::EmailVerificationSent => "email_verification_sent",
            Action::EmailVerified => "email_verified",
            Action::PasswordResetRequested => "password_reset_requested",
            Action::ClientCreated => "client_created",
            Action::ClientUpdated => "client_updated",
            Action::ClientSecretRotated => "client_secret_rotated",
            Action::ClientDeleted => "client_deleted",
            Action::KeyRotated => "key_rotated",
            Action::TokenIssued => "token_issued",
            Action::TokenRevoked => "token_revoked",
            Action::CodeReuseDetected => "code_reuse_detected",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }
}

/// One entry to append, built like
/// `Entry::new(Action::Login).actor(user).target("session", id).client(&client)`.
///
/// The actor is who was authenticated when it happened (`None`: the system, e.g. a failed
/// login, where nobody was). `details` holds facts that are not personal data; anything
/// that identifies a person other than by their account id (an email address, a name) goes
/// in `personal`, which can be erased later without breaking the chain (see `chain`).
#[derive(Debug, Clone)]
pub struct Entry {
    pub(super) action: Action,
    pub(super) outcome: Outcome,
    pub(super) actor: Option<UserId>,
    pub(super) target: Option<(&'static str, String)>,
    pub(super) ip: Option<String>,
    pub(super) user_agent: Option<String>,
    pub(super) details: Map<String, Value>,
    pub(super) personal: Map<String, Value>,
}

impl Entry {
    /// A successful `action` by the system, about nothing in particular yet.
    pub fn new(action: Action) -> Entry {
        Entry {
            action,
            outcome: Outcome::Success,
            actor: None,
            target: None,
            ip: None,
            user_agent: None,
            details: Map::new(),
            personal: Map::new(),
        }
    }

    /// A successful `action` by an account's owner on their own account, from `client`.
    pub fn by_owner(action: Action, user: UserId, client: &ClientInfo) -> Entry {
        Entry::new(action)
            .actor(user)
            .target("user", user)
            .client(client)
    }

    pub fn actor(mut self, user: UserId) -> Entry {
        self.actor = Some(user);
        self
    }

    /// What the action was done to: `("user", id)`, `("session", id)`, ...
    pub fn target(mut self, kind: &'static str, id: impl ToString) -> Entry {
        self.target = Some((kind, id.to_string()));
        self
    }

    /// Where the request came from.
    pub fn client(mut self, client: &ClientInfo) -> Entry {
        self.ip = Some(client.ip.clone());
        self.user_agent = client.user_agent.clone();
        self
    }

    pub fn failure(mut self) -> Entry {
        self.outcome = Outcome::Failure;
        self
    }

    /// Adds a fact. Never a password, token, hash or key.
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Entry {
        self.details.insert(key.to_string(), value.into());
        self
    }

    /// Adds personal data (erasable, see the type's docs).
    pub fn personal(mut self, key: &str, value: impl Into<Value>) -> Entry {
        self.personal.insert(key.to_string(), value.into());
        self
    }

    pub fn action(&self) -> Action {
        self.action
    }
}
