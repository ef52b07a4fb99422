//! Integration tests live in tests/tests; they run against the real kernel as root.
