#!/usr/bin/env bash
# Shared by scripts/bench and scripts/bench-kmip (sourced, not run): where
# nginx is, and installing it when it is missing.

# nginx_path: print nginx's path: the one on PATH, else Debian's /usr/sbin/nginx
# (root's PATH has /usr/sbin, another user's may not).
nginx_path() {
    command -v nginx 2>/dev/null || echo /usr/sbin/nginx
}

# nginx_install WHAT PACKAGE...: install the packages with apt, quietly, saying
# what they are for; returns apt's failure (the caller says what to do).
nginx_install() {
    local what=$1
    shift
    echo "== installing $* ($what)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
