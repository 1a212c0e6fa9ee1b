//! One TLS crypto provider for the whole process.
//!
//! rsipstack's TLS transport and reqwest both use rustls. voxgate builds
//! rustls with `ring` only and installs it as the process default here, so
//! every TLS client and server in the process agrees on one provider.

use std::sync::Once;

static INSTALL: Once = Once::new();

/// Installs `ring` as the process-wide rustls provider. Safe to call any
/// number of times, from any crate.
pub fn install_crypto_provider() {
    INSTALL.call_once(|| {
        // Fails only when another provider was installed first, which is
        // equally fine for us.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
