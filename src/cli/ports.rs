//! `esp-aws ports`: the serial ports this computer has, to find the module's.

use std::process::ExitCode;

/// Lists serial ports, USB ones with their vendor, product and serial number.
pub fn run() -> anyhow::Result<ExitCode> {
    let ports = serialport::available_ports().unwrap_or_default();
    if ports.is_empty() {
        println!("no serial ports found (a USB adapter may need a driver, or its cable may be charge-only)");
    }
    for port in ports {
        match port.port_type {
            serialport::SerialPortType::UsbPort(usb) => println!(
                "{}  USB {:04x}:{:04x}{}{}",
                port.port_name,
                usb.vid,
                usb.pid,
                usb.product.map(|p| format!(" {p}")).unwrap_or_default(),
                usb.serial_number
                    .map(|s| format!(" (serial {s})"))
                    .unwrap_or_default()
            ),
            _ => println!("{}", port.port_name),
        }
    }
    Ok(ExitCode::SUCCESS)
}
