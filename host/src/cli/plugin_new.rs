//! `gaffer plugin new router|verifier|hook --lang rust|python|js DIR`: a new plugin project
//! that builds and passes its own test out of the box. What the project holds, and the
//! templates it is written from, are described in [`crate::plugin::scaffold`]; this command
//! writes it and says what to do next.

use std::path::Path;
use std::process::ExitCode;

use crate::plugin::World;
use crate::plugin::scaffold::{self, Lang};

/// `gaffer plugin new`.
pub fn run(world: World, lang: Lang, dir: &Path) -> anyhow::Result<ExitCode> {
    let written = scaffold::create(world, lang, dir)?;
    println!(
        "created a {} plugin in {} in {}:",
        world.name(),
        lang.title(),
        dir.display()
    );
    for path in written {
        println!("  {path}");
    }
    println!("next:");
    println!("  cd {}", dir.display());
    if lang == Lang::Js {
        println!("  npm install");
    }
    println!("  ./build.sh");
    println!("  gaffer plugin test plugin.wasm --cases cases.toml");
    Ok(ExitCode::SUCCESS)
}
