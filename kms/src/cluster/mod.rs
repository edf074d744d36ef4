//! The cluster behind `kms.cache.type=distributed`: nodes listed in the
//! operator's `jgroups.xml` share the customer-key cache, so one customer key
//! costs one backend unwrap for the whole cluster per TTL.
//!
//! - [`jgroups`]: the member list from `jgroups.xml`.
//!
//! See `docs/design/cluster.md` for the design and its failure table.

pub mod jgroups;
