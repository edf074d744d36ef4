//! Keytool keystores (JKS and PKCS#12), detected by content.
