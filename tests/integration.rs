//! The single integration-test binary: each topic lives in its own module.

mod esptool;
mod rom;
mod rom_loader;
mod rom_props;
mod rom_pty;
