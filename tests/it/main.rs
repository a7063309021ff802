//! Integration tests: one binary, one module per topic (see STYLE.md).
//! They run the real `airlock` binary against images built by umoci and
//! skopeo, and check results with skopeo, zstd, tar and openssl.

mod bundles;
mod cache;
mod conventions_auth;
mod conventions_keys;
mod conventions_surface;
mod copy;
mod delta;
mod delta_import;
mod export;
mod harness;
mod hostile;
mod imageset;
mod import;
mod inventory;
mod keys;
mod leftovers;
mod names;
mod pack;
mod parity_trust;
mod progress_truth;
mod pull;
mod review_serve;
mod review_updates;
mod safety;
mod scale;
mod serve;
mod serve_degraded;
mod sources;
mod target_failures;
mod trust_registry;
mod usage;
mod util;
mod volumes;
