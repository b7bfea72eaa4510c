-- Roles that require MFA, and how each session was authenticated (auth/amr.rs).

-- The second factor a session's login passed: `totp`, `recovery_code`, `webauthn` or
-- `passkey` (passwordless, with user verification). NULL: the password alone, or a session
-- opened before this migration (such sessions count as password-only).
ALTER TABLE sessions ADD COLUMN mfa_method TEXT;

-- Since when the role gives nothing to a session without MFA; NULL: it does not require it.
ALTER TABLE roles ADD COLUMN mfa_required_at INTEGER;
