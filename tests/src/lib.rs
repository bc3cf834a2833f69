//! Cross-crate test helpers for fieldsync. End-to-end tests that start the real server
//! binary live in `sync-server/tests/` (where Cargo provides the binary path).
