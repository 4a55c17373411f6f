//! The single integration-test binary: each topic lives in its own module.

mod endpoint;
mod endpoint_util;
mod endpoint_tls;
