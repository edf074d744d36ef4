//! The cache of decrypted customer keys (`kms.cache.*`, `kms.distributed.cache.config.file`).

use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::error::Warning;
use super::file::ConfigFile;
use super::values::{duration, int_in, one_of};

/// `kms.cache.type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheType {
    /// `none` (the guide's word): no sharing; each node keeps its own cache.
    Local,
    /// `distributed`: the nodes listed in the JGroups file share one cache.
    Distributed,
}

/// Cache settings.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    /// `kms.cache.type`.
    pub kind: CacheType,
    /// `kms.distributed.cache.config.file`: the JGroups file naming the cluster's nodes.
    pub distributed_config_file: PathBuf,
    /// `kms.cache.ttl`: absolute lifetime of a cached key; zero turns the cache off.
    pub ttl: Duration,
    /// `kms.cache.max-entries`: most keys cached at once.
    pub max_entries: usize,
    /// `kms.cache.idle-ttl`: a key unused this long leaves before its TTL; zero: off.
    pub idle_ttl: Duration,
    /// `kms.cluster.*` and `jgroups.xml`: present when the nodes share the
    /// cache (`distributed`, with a cache).
    pub cluster: Option<super::cluster::ClusterSettings>,
    /// `kms.control.socket`: where `cmx-kms cache flush` and `cluster status` reach the node.
    pub control_socket: PathBuf,
}

impl CacheSettings {
    /// Whether keys are cached at all.
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    pub(super) fn take(file: &mut ConfigFile) -> Self {
        const TYPES: &[(&str, CacheType)] = &[
            ("none", CacheType::Local),
            ("distributed", CacheType::Distributed),
        ];
        let mut this = Self {
            kind: file.parse_or("kms.cache.type", CacheType::Local, one_of(TYPES)),
            distributed_config_file: file
                .path_or("kms.distributed.cache.config.file", d::JGROUPS_FILE),
            ttl: file.parse_or("kms.cache.ttl", d::CACHE_TTL, duration),
            max_entries: file.parse_or(
                "kms.cache.max-entries",
                d::CACHE_MAX_ENTRIES,
                int_in(1, 10_000_000),
            ),
            idle_ttl: file.parse_or("kms.cache.idle-ttl", Duration::ZERO, duration),
            cluster: None,
            control_socket: file.path_or("kms.control.socket", d::CONTROL_SOCKET),
        };
        if this.kind == CacheType::Distributed && !this.enabled() {
            let reason = "kms.cache.ttl is 0, which turns the cache off".to_string();
            file.warn(
                file.origin_of("kms.cache.type"),
                Some("kms.cache.type"),
                Warning::Ignored { reason },
            );
        }
        let active = this.kind == CacheType::Distributed && this.enabled();
        this.cluster = super::cluster::take(file, &this.distributed_config_file, active);
        this
    }
}
