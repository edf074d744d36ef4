//! Shared support for the integration tests (`mod support;`).
#![allow(dead_code)]

pub mod guide_pki;
pub mod haproxy;
pub mod node;
