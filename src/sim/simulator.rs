//! The whole hardware-free setup in one value: the local AWS IoT endpoint, a virtual module
//! wired to it, and the pseudo-terminal the module sits on. `esp-aws sim`, `esp-aws demo`
//! and the end-to-end tests all start one of these.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::at::{AtFirmware, FaultSpec, TcpNetwork};
use super::device::{BootMode, SharedFlash};
use super::endpoint::{Endpoint, EndpointConfig, EndpointHandle, SimInfo};
use super::flash::{Flash, FlashFile};
use super::module::VirtualModule;
use super::pty::Pty;
use super::rom::RomDevice;
use crate::firmware::Generation;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The endpoint failed to start.
    #[error(transparent)]
    Endpoint(#[from] super::endpoint::Error),
    /// The flash image or the pty failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
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
    /// Keep the flash image in the state directory (a restarted simulator keeps its
    /// credentials, like a module keeps them across power cycles).
    pub persist_flash: bool,
}

impl SimulatorConfig {
    /// Defaults: firmware 1.1.3, 115200 baud, normal boot, no faults, persistent flash.
    pub fn new(state_dir: impl Into<PathBuf>) -> SimulatorConfig {
        SimulatorConfig {
            endpoint: EndpointConfig::new(state_dir),
            firmware: Generation::V1_1_3,
            baud: 115_200,
            boot: BootMode::Flash,
            faults: None,
            sntp_delay: Duration::from_secs(2),
            resolve: Vec::new(),
            persist_flash: true,
        }
    }
}

/// `sim.json`: the endpoint's fields plus the module's.
#[derive(Debug, Clone, Serialize)]
pub struct SimJson {
    /// Endpoint and account fields.
    #[serde(flatten)]
    pub endpoint: SimInfo,
    /// The module's serial device.
    pub port: PathBuf,
    /// The module's firmware generation.
    pub firmware: String,
    /// The module's line speed.
    pub baud: u32,
}

/// A running endpoint and virtual module. Dropping it stops both (the flash is saved).
#[derive(Debug)]
pub struct Simulator {
    endpoint: EndpointHandle,
    pty: Pty,
    flash: SharedFlash,
    firmware: Generation,
    baud: u32,
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
            .route(&host, 443, endpoint.alpn_addr());
        for (name, ip) in &config.resolve {
            network = network.resolve(name, *ip);
        }
        let mut at = AtFirmware::builder(generation)
            .flash(flash.clone())
            .network(network)
            .sntp_delay(config.sntp_delay);
        if let Some((spec, seed)) = &config.faults {
            at = at.faults(spec.clone(), *seed);
        }
        let rom = RomDevice::builder().boot(config.boot).build(flash.clone());
        let module = VirtualModule::new(at.build(), rom, config.boot);
        let pty = Pty::builder()
            .baud(config.baud)
            .flash(flash.clone())
            .spawn(Box::new(module))
            .map_err(io("cannot create the virtual serial port"))?;
        Ok(Simulator {
            endpoint,
            pty,
            flash,
            firmware: generation,
            baud: config.baud,
        })
    }

    /// The module's serial device (`/dev/pts/N`).
    pub fn port(&self) -> &Path {
        self.pty.path()
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
        self.pty
            .reset(mode)
            .map_err(io("cannot reset the virtual module"))
    }

    /// The contents of `sim.json`.
    pub fn sim_json(&self) -> Option<SimJson> {
        Some(SimJson {
            endpoint: self.endpoint.sim_info()?,
            port: self.port().to_path_buf(),
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
