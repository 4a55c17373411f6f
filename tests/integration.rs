//! The single integration-test binary: each topic lives in its own module.

mod endpoint;
mod endpoint_cli;
mod endpoint_tls;
mod endpoint_util;
