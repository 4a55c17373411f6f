//! Runs the virtual module's ROM bootloader (download mode) on a pty until stdin closes,
//! printing the port path: point esptool or any flasher at it.
//!
//! `cargo run --example rom_pty [BAUD]` (default 115200; 0 = unpaced).

use std::io::Read;

use esp_aws::firmware::Generation;
use esp_aws::sim::device::SharedFlash;
use esp_aws::sim::flash::Flash;
use esp_aws::sim::pty::Pty;
use esp_aws::sim::rom::RomDevice;

fn main() -> std::io::Result<()> {
    let baud = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
        None => 115_200,
    };
    let flash = SharedFlash::in_memory(Flash::factory(Generation::V2_4));
    let pty = Pty::builder()
        .baud(baud)
        .flash(flash.clone())
        .spawn(Box::new(RomDevice::new(flash)))?;
    println!("{}", pty.path().display());
    let mut sink = Vec::new();
    std::io::stdin().read_to_end(&mut sink)?;
    pty.shutdown()
}
