//! Linking WASI 0.2 into a plugin's linker: every interface (a long-lived process that loads
//! many plugins), or only the interfaces one component imports (a process that lives for one
//! event and loads one or two components).
//!
//! Registering all of WASI 0.2 (`wasmtime_wasi::p2::add_to_linker_async`: 27 interfaces, each
//! function interned into the linker's maps) was 8.4 % of the samples of a `gaffer-hook` event
//! (perf, 2026-12-02), and a Rust hook imports 13 of those interfaces (`wasi:io`, `wasi:cli`):
//! the rest (clocks, filesystem, random, sockets) was registered for nothing. What an interface
//! does once linked is the same either way: the plugin's WASI context (`PluginState`) decides
//! what a call may reach, not the linker.

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime_wasi::cli::{WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sockets};
use wasmtime_wasi::random::{WasiRandom, WasiRandomView};
use wasmtime_wasi::sockets::{WasiSockets, WasiSocketsView};
use wasmtime_wasi::{WasiView, p2};
use wasmtime_wasi_io::bindings::wasi::io;

use crate::plugin::state::PluginState;

/// Which WASI interfaces a linker provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WasiLinking {
    /// All of WASI 0.2, once for every component the runtime loads (the default).
    Whole,
    /// Only the interfaces each component imports, in a linker of that component's own.
    Imported,
}

/// `wasi:io`'s interfaces reach the resource table only.
struct IoTable;

impl HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// The resource table of a plugin's WASI context.
fn table(state: &mut PluginState) -> &mut ResourceTable {
    state.ctx().table
}

/// Add all of WASI 0.2.
pub(super) fn link_whole(linker: &mut Linker<PluginState>) -> wasmtime::Result<()> {
    p2::add_to_linker_async(linker)
}

/// Add the WASI interfaces among `imports` (names as a component's type gives them, such as
/// `wasi:cli/stdout@0.2.6`); other names are left to the caller's linker (gaffer's own
/// interfaces) or to `instantiate_pre`, which names what is missing.
pub(super) fn link_imported<'a>(
    linker: &mut Linker<PluginState>,
    imports: impl IntoIterator<Item = &'a str>,
) -> wasmtime::Result<()> {
    let l = linker;
    // Each family of interfaces reaches its part of the plugin's WASI context.
    let cli = <PluginState as WasiCliView>::cli;
    let clocks = <PluginState as WasiClocksView>::clocks;
    let filesystem = <PluginState as WasiFilesystemView>::filesystem;
    let random = <PluginState as WasiRandomView>::random;
    let sockets = <PluginState as WasiSocketsView>::sockets;
    for name in imports {
        let interface = name
            .split_once('@')
            .map_or(name, |(interface, _)| interface);
        match interface {
            "wasi:io/error" => io::error::add_to_linker::<_, IoTable>(l, table)?,
            "wasi:io/poll" => io::poll::add_to_linker::<_, IoTable>(l, table)?,
            "wasi:io/streams" => io::streams::add_to_linker::<_, IoTable>(l, table)?,
            "wasi:clocks/wall-clock" => {
                clocks::wall_clock::add_to_linker::<_, WasiClocks>(l, clocks)?
            }
            "wasi:clocks/monotonic-clock" => {
                clocks::monotonic_clock::add_to_linker::<_, WasiClocks>(l, clocks)?
            }
            "wasi:filesystem/types" => {
                filesystem::types::add_to_linker::<_, WasiFilesystem>(l, filesystem)?
            }
            "wasi:filesystem/preopens" => {
                filesystem::preopens::add_to_linker::<_, WasiFilesystem>(l, filesystem)?
            }
            "wasi:random/random" => random::random::add_to_linker::<_, WasiRandom>(l, random)?,
            "wasi:random/insecure" => random::insecure::add_to_linker::<_, WasiRandom>(l, random)?,
            "wasi:random/insecure-seed" => {
                random::insecure_seed::add_to_linker::<_, WasiRandom>(l, random)?
            }
            "wasi:cli/exit" => cli::exit::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/environment" => cli::environment::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/stdin" => cli::stdin::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/stdout" => cli::stdout::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/stderr" => cli::stderr::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/terminal-input" => cli::terminal_input::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/terminal-output" => {
                cli::terminal_output::add_to_linker::<_, WasiCli>(l, cli)?
            }
            "wasi:cli/terminal-stdin" => cli::terminal_stdin::add_to_linker::<_, WasiCli>(l, cli)?,
            "wasi:cli/terminal-stdout" => {
                cli::terminal_stdout::add_to_linker::<_, WasiCli>(l, cli)?
            }
            "wasi:cli/terminal-stderr" => {
                cli::terminal_stderr::add_to_linker::<_, WasiCli>(l, cli)?
            }
            "wasi:sockets/tcp" => sockets::tcp::add_to_linker::<_, WasiSockets>(l, sockets)?,
            "wasi:sockets/tcp-create-socket" => {
                sockets::tcp_create_socket::add_to_linker::<_, WasiSockets>(l, sockets)?
            }
            "wasi:sockets/udp" => sockets::udp::add_to_linker::<_, WasiSockets>(l, sockets)?,
            "wasi:sockets/udp-create-socket" => {
                sockets::udp_create_socket::add_to_linker::<_, WasiSockets>(l, sockets)?
            }
            "wasi:sockets/instance-network" => {
                sockets::instance_network::add_to_linker::<_, WasiSockets>(l, sockets)?
            }
            "wasi:sockets/network" => {
                sockets::network::add_to_linker::<_, WasiSockets>(l, &Default::default(), sockets)?
            }
            "wasi:sockets/ip-name-lookup" => {
                sockets::ip_name_lookup::add_to_linker::<_, WasiSockets>(l, sockets)?
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::engine::{AllocatorChoice, EngineHandle, EngineOptions};

    /// The 27 interfaces of WASI 0.2 (wasi:io, clocks, filesystem, random, cli, sockets), as
    /// the WASI 0.2.6 worlds list them.
    const WASI_0_2: [&str; 27] = [
        "wasi:io/error@0.2.6",
        "wasi:io/poll@0.2.6",
        "wasi:io/streams@0.2.6",
        "wasi:clocks/wall-clock@0.2.6",
        "wasi:clocks/monotonic-clock@0.2.6",
        "wasi:filesystem/types@0.2.6",
        "wasi:filesystem/preopens@0.2.6",
        "wasi:random/random@0.2.6",
        "wasi:random/insecure@0.2.6",
        "wasi:random/insecure-seed@0.2.6",
        "wasi:cli/exit@0.2.6",
        "wasi:cli/environment@0.2.6",
        "wasi:cli/stdin@0.2.6",
        "wasi:cli/stdout@0.2.6",
        "wasi:cli/stderr@0.2.6",
        "wasi:cli/terminal-input@0.2.6",
        "wasi:cli/terminal-output@0.2.6",
        "wasi:cli/terminal-stdin@0.2.6",
        "wasi:cli/terminal-stdout@0.2.6",
        "wasi:cli/terminal-stderr@0.2.6",
        "wasi:sockets/network@0.2.6",
        "wasi:sockets/instance-network@0.2.6",
        "wasi:sockets/tcp@0.2.6",
        "wasi:sockets/tcp-create-socket@0.2.6",
        "wasi:sockets/udp@0.2.6",
        "wasi:sockets/udp-create-socket@0.2.6",
        "wasi:sockets/ip-name-lookup@0.2.6",
    ];

    fn engine() -> wasmtime::Engine {
        EngineHandle::new(&EngineOptions {
            allocator: AllocatorChoice::OnDemand,
            ..EngineOptions::default()
        })
        .expect("engine")
        .engine
    }

    /// Each WASI 0.2 interface, named alone, is linked: all of WASI added after it then
    /// defines that interface a second time, which a linker refuses.
    #[test]
    fn every_wasi_interface_named_alone_is_linked() {
        let engine = engine();
        for name in WASI_0_2 {
            let mut linker: Linker<PluginState> = Linker::new(&engine);
            link_imported(&mut linker, [name]).expect(name);
            assert!(
                link_whole(&mut linker).is_err(),
                "`{name}` was not linked: all of WASI went in after it without a clash"
            );
        }
    }

    /// A name that is not WASI's (gaffer's own interfaces, an unknown import) adds nothing:
    /// all of WASI goes in after it.
    #[test]
    fn other_names_add_nothing() {
        let engine = engine();
        let mut linker: Linker<PluginState> = Linker::new(&engine);
        link_imported(
            &mut linker,
            [
                "gaffer:plugin/host@0.1.0",
                "wasi:http/outgoing-handler@0.2.6",
                "wasi:cli",
            ],
        )
        .expect("nothing to link");
        link_whole(&mut linker).expect("no clash");
    }
}
