//! `esp-aws ports`: the serial ports this computer has, to find the module's.

use std::process::ExitCode;

use serde_json::json;

use super::format::{self, Format};

const FORMATS: &[Format] = &[Format::Text, Format::Json];

/// Arguments of `esp-aws ports`.
#[derive(Debug, clap::Args)]
pub struct PortsArgs {
    /// Output format: text, or json (an array of ports with their USB details).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = format::parser(FORMATS))]
    format: Format,
}

/// Lists serial ports, USB ones with their vendor, product and serial number.
pub fn run(args: PortsArgs) -> anyhow::Result<ExitCode> {
    let ports = serialport::available_ports().unwrap_or_default();
    if args.format == Format::Json {
        let list: Vec<serde_json::Value> = ports
            .into_iter()
            .map(|port| match port.port_type {
                serialport::SerialPortType::UsbPort(usb) => json!({
                    "port": port.port_name,
                    "usb": {
                        "vid": format!("{:04x}", usb.vid),
                        "pid": format!("{:04x}", usb.pid),
                        "product": usb.product,
                        "manufacturer": usb.manufacturer,
                        "serial_number": usb.serial_number,
                        "bridge": bridge(usb.vid, usb.pid),
                    },
                }),
                _ => json!({ "port": port.port_name, "usb": null }),
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(ExitCode::SUCCESS);
    }
    if ports.is_empty() {
        println!("no serial ports found (a USB adapter may need a driver, or its cable may be charge-only)");
    }
    for port in ports {
        match port.port_type {
            serialport::SerialPortType::UsbPort(usb) => println!(
                "{}  USB {:04x}:{:04x}{}{}{}",
                port.port_name,
                usb.vid,
                usb.pid,
                usb.product.map(|p| format!(" {p}")).unwrap_or_default(),
                usb.serial_number
                    .map(|s| format!(" (serial {s})"))
                    .unwrap_or_default(),
                bridge(usb.vid, usb.pid)
                    .map(|b| format!("  <- {b}"))
                    .unwrap_or_default()
            ),
            _ => println!("{}", port.port_name),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The USB-UART bridges ESP32 boards and adapters carry (their vendor and product IDs as
/// the USB-IF registry and the vendors' drivers list them), to point at the likely port.
fn bridge(vid: u16, pid: u16) -> Option<&'static str> {
    Some(match (vid, pid) {
        (0x10c4, 0xea60) => "Silicon Labs CP210x USB-UART bridge (ESP32 DevKits)",
        (0x1a86, 0x7523) => "WCH CH340 USB-UART bridge",
        (0x1a86, 0x55d4) => "WCH CH9102 USB-UART bridge (ESP32 DevKits)",
        (0x0403, 0x6001 | 0x6010 | 0x6011 | 0x6014 | 0x6015) => "FTDI USB-UART bridge",
        (0x303a, 0x1001) => "Espressif USB-Serial/JTAG (ESP32-S3/C3 built-in USB)",
        (0x067b, 0x2303) => "Prolific PL2303 USB-UART bridge",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_usual_bridges_are_named() {
        assert!(super::bridge(0x10c4, 0xea60).unwrap().contains("CP210x"));
        assert!(super::bridge(0x1a86, 0x55d4).unwrap().contains("CH9102"));
        assert!(super::bridge(0x0403, 0x6015).unwrap().contains("FTDI"));
        assert_eq!(super::bridge(0x046d, 0xc52b), None);
    }
}
