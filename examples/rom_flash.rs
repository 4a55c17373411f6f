//! Writes files into an ESP32's flash through the ROM bootloader with [`RomLoader`], then
//! verifies them: a preview of `esp-aws flash --via rom`, handy against `rom_pty`.
//!
//! `cargo run --example rom_flash -- PORT BAUD ADDR FILE [ADDR FILE…]` (BAUD 115200 keeps
//! the ROM's rate; anything else is switched to with CHANGE_BAUDRATE).

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use esp_aws::rom::RomLoader;
use esp_aws::transport::Transport;

struct Port(Box<dyn serialport::SerialPort>);

impl Read for Port {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Port {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for Port {
    fn set_read_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        Ok(self.0.set_timeout(timeout)?)
    }

    fn clear_input(&mut self) -> io::Result<()> {
        Ok(self.0.clear(serialport::ClearBuffer::Input)?)
    }

    fn set_baud_rate(&mut self, baud: u32) -> io::Result<()> {
        Ok(self.0.set_baud_rate(baud)?)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 || args.len() % 2 != 0 {
        return Err("usage: rom_flash PORT BAUD ADDR FILE [ADDR FILE…]".into());
    }
    let baud: u32 = args[1].parse()?;
    let start = Instant::now();
    let port = serialport::new(&args[0], 115_200).open()?;
    let mut loader = RomLoader::new(Port(port));
    loader.connect()?;
    if baud != 115_200 {
        loader.change_baud(baud)?;
    }
    for pair in args[2..].chunks(2) {
        let addr = u32::from_str_radix(pair[0].trim_start_matches("0x"), 16)?;
        let data = std::fs::read(&pair[1])?;
        let report = loader.write_region(addr, &data)?;
        println!(
            "{addr:#x}: {} bytes, {:?} in {} blocks ({} bytes sent), verified",
            data.len(),
            report.method,
            report.blocks,
            report.payload_bytes
        );
    }
    println!("done in {:.2} s", start.elapsed().as_secs_f64());
    Ok(())
}
