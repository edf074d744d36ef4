//! The development-only software master key.
