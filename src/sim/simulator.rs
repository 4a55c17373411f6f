//! The whole hardware-free setup in one value: the local AWS IoT endpoint, a virtual module
//! wired to it, and the line the module sits on: a pseudo-terminal, or a TCP port
//! (`socket://`, [`SimulatorConfig::listen`]). `esp-aws sim`, `esp-aws demo` and the
//! end-to-end tests all start one of these.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::at_firmware::{AccessPoint, AtFirmware, FaultSpec, TcpNetwork, WifiSwitch};
use super::device::{BootMode, SharedFlash};
use super::endpoint::{Endpoint, EndpointConfig, EndpointHandle, SimInfo};
use super::flash::{Flash, FlashFile};
use super::module::VirtualModule;
#[cfg(unix)]
#[cfg(unix)]
use super::pty::Pty;
use super::rom_device::RomDevice;
use super::tcp::TcpPort;
use crate::firmware::Generation;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint failed to start.
    #[error(transparent)]
    Endpoint(#[from] super::endpoint::Error),
    /// The flash image or the pty failed.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        cause: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |cause| Error::Io { what, cause }
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The endpoint's configuration (its state directory also keeps the module's flash).
    pub endpoint: EndpointConfig,
    /// Firmware generation of the module.
    pub firmware: Generation,
    /// Line speed the module's output is paced at (0: unthrottled).
    pub baud: u32,
    /// Boot mode at power-on.
    pub boot: BootMode,
    /// Faults and their seed.
    pub faults: Option<(FaultSpec, u64)>,
    /// Time from `AT+CIPSNTPCFG` to a synced clock.
    pub sntp_delay: Duration,
    /// Extra host names the module resolves (`--resolve HOST=ADDR`).
    pub resolve: Vec<(String, IpAddr)>,
    /// Extra routes: connections to `(host, port)` go to the address (another broker or
    /// server standing in for a port of the endpoint, in tests).
    pub routes: Vec<(String, u16, SocketAddr)>,
    /// Keep the flash image in the state directory (a restarted simulator keeps its
    /// credentials, like a module keeps them across power cycles).
    pub persist_flash: bool,
    /// Put the module on a TCP port at this address (raw bytes, `socket://`) instead of a
    /// pty; port 0 picks a free one. Without ptys (Windows) the module is always on a TCP
    /// port, 127.0.0.1 with a free port unless this says otherwise.
    pub listen: Option<SocketAddr>,
    /// The simulated access point (SSID and password `AT+CWJAP=` must give).
    pub wifi: AccessPoint,
    /// Power the module on with no saved network (so it joins nothing until
    /// `esp-aws wifi join`); by default it has joined the simulated access point before.
    pub wifi_down: bool,
}

impl SimulatorConfig {
    /// Defaults: firmware 1.1.3, 115200 baud, normal boot, no faults, persistent flash.
    pub fn new(state_dir: impl Into<PathBuf>) -> SimulatorConfig {
        SimulatorConfig {
            endpoint: EndpointConfig::new(state_dir),
            firmware: Generation::V1_1_3,
            baud: crate::firmware::AT_BAUD,
            boot: BootMode::Flash,
            faults: None,
            sntp_delay: Duration::from_secs(2),
            resolve: Vec::new(),
            routes: Vec::new(),
            persist_flash: true,
            listen: None,
            wifi: AccessPoint::default(),
            wifi_down: false,
        }
    }
}

/// `sim.json`: the endpoint's fields plus the module's.
#[derive(Debug, Clone, Serialize)]
pub struct SimJson {
    /// Endpoint and account fields.
    #[serde(flatten)]
    pub endpoint: SimInfo,
    /// The module's serial device, or `socket://ADDR` when it is on a TCP port.
    pub port: PathBuf,
    /// The TCP address the module listens on, when it is on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// The module's firmware generation.
    pub firmware: String,
    /// The module's line speed.
    pub baud: u32,
}

/// What the module's serial line is carried on.
#[derive(Debug)]
enum Line {
    #[cfg(unix)]
    Pty(Pty),
    Tcp(TcpPort),
}

/// A running endpoint and virtual module. Dropping it stops both (the flash is saved).
#[derive(Debug)]
pub struct Simulator {
    endpoint: EndpointHandle,
    line: Line,
    /// The port's name: the pty's path, or `socket://ADDR`.
    port: PathBuf,
    flash: SharedFlash,
    firmware: Generation,
    baud: u32,
    wifi: WifiSwitch,
}

impl Simulator {
    /// Starts the endpoint, builds the module wired to it, and puts it on a new pty.
    pub fn start(config: SimulatorConfig) -> Result<Simulator, Error> {
        let endpoint = Endpoint::start(config.endpoint.clone())?;
        let generation = config.firmware;
        let flash = if config.persist_flash {
            let file = FlashFile::new(
                endpoint
                    .state_dir()
                    .join(format!("flash-{}.bin", generation.name())),
            );
            SharedFlash::persistent(file, || Flash::factory(generation))
                .map_err(io("cannot load the module's flash image"))?
        } else {
            SharedFlash::in_memory(Flash::factory(generation))
        };
        let host = endpoint.host().to_string();
        let mut network = TcpNetwork::new()
            .route(&host, 8443, endpoint.rest_addr())
            .route(&host, 443, endpoint.alpn_addr())
            .route(&host, crate::sim::endpoint::MQTT_PORT, endpoint.mqtt_addr());
        for (name, ip) in &config.resolve {
            network = network.resolve(name, *ip);
        }
        for (route_host, route_port, addr) in &config.routes {
            network = network.route(route_host, *route_port, *addr);
        }
        let wifi = WifiSwitch::default();
        let mut at = AtFirmware::builder(generation)
            .flash(flash.clone())
            .network(network)
            .sntp_delay(config.sntp_delay)
            .access_point(config.wifi.clone())
            .wifi_switch(wifi.clone())
            .wifi_joined(!config.wifi_down);
        if let Some((spec, seed)) = &config.faults {
            at = at.faults(spec.clone(), *seed);
        }
        let rom = RomDevice::builder().boot(config.boot).build(flash.clone());
        let module = VirtualModule::new(at.build(), rom, config.boot);
        let on_tcp = |addr: SocketAddr, module: VirtualModule| -> Result<(Line, PathBuf), Error> {
            let tcp = TcpPort::builder()
                .baud(config.baud)
                .flash(flash.clone())
                .spawn(addr, Box::new(module))
                .map_err(io(format!("cannot listen on {addr}")))?;
            let url = PathBuf::from(tcp.url());
            Ok((Line::Tcp(tcp), url))
        };
        #[cfg(unix)]
        let (line, port) = match config.listen {
            Some(addr) => on_tcp(addr, module)?,
            None => {
                let pty = Pty::builder()
                    .baud(config.baud)
                    .flash(flash.clone())
                    .spawn(Box::new(module))
                    .map_err(io("cannot create the virtual serial port"))?;
                let path = pty.path().to_path_buf();
                (Line::Pty(pty), path)
            }
        };
        // Without ptys (Windows) the module always goes on a TCP port.
        #[cfg(not(unix))]
        let (line, port) = on_tcp(
            config
                .listen
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            module,
        )?;
        Ok(Simulator {
            endpoint,
            line,
            port,
            flash,
            firmware: generation,
            baud: config.baud,
            wifi,
        })
    }

    /// Switches the simulated access point off (the module loses its network at once:
    /// `WIFI DISCONNECT`, links closed) or on again (a module with a saved network rejoins).
    pub fn set_access_point(&self, up: bool) {
        self.wifi.set_up(up);
    }

    /// The module's port as `--port` takes it: the serial device (`/dev/pts/N`), or
    /// `socket://ADDR` when it is on a TCP port.
    pub fn port(&self) -> &Path {
        &self.port
    }

    /// The TCP address the module listens on, when it is on one.
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        match &self.line {
            Line::Tcp(tcp) => Some(tcp.addr()),
            #[cfg(unix)]
            Line::Pty(_) => None,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &EndpointHandle {
        &self.endpoint
    }

    /// The module's flash.
    pub fn flash(&self) -> &SharedFlash {
        &self.flash
    }

    /// The module's firmware generation.
    pub fn firmware(&self) -> Generation {
        self.firmware
    }

    /// Resets the module into `mode` (what the DTR/RTS auto-reset circuit does on a board).
    pub fn reset(&self, mode: BootMode) -> Result<(), Error> {
        match &self.line {
            #[cfg(unix)]
            Line::Pty(pty) => pty.reset(mode),
            Line::Tcp(tcp) => tcp.reset(mode),
        }
        .map_err(io("cannot reset the virtual module"))
    }

    /// The contents of `sim.json`.
    pub fn sim_json(&self) -> Option<SimJson> {
        Some(SimJson {
            endpoint: self.endpoint.sim_info()?,
            port: self.port().to_path_buf(),
            listen: self.listen_addr().map(|a| a.to_string()),
            firmware: self.firmware.name().to_string(),
            baud: self.baud,
        })
    }

    /// Writes `sim.json` into the state directory and returns its path.
    pub fn write_sim_json(&self) -> Result<PathBuf, Error> {
        let path = self.endpoint.state_dir().join(super::endpoint::SIM_JSON);
        let text = serde_json::to_string_pretty(&self.sim_json()).unwrap_or_default();
        crate::files::write_atomic(&path, text.as_bytes(), false)
            .map_err(io(format!("cannot write {}", path.display())))?;
        Ok(path)
    }
}
