//! Configuration: `kms.properties` into one validated, immutable `Config`.
