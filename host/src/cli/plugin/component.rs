//! Turning a core Wasm module into a component of the contract, in process:
//! generating C bindings from `wit/`, embedding a world's type information
//! into a module, and wrapping the module as a component (with a WASI
//! preview 1 adapter when it imports WASI functions).

use super::project::World;
use std::path::{Path, PathBuf};
use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::{Resolve, WorldId};

/// The contract this `sluice` implements.
const WIT: &str = include_str!("../../../../wit/operator.wit");

/// The contract, parsed, and the id of `world` in it.
fn contract(world: World) -> anyhow::Result<(Resolve, WorldId)> {
    let mut resolve = Resolve::default();
    let package = resolve.push_str("operator.wit", WIT)?;
    let id = resolve.select_world(&[package], Some(world.name()))?;
    Ok((resolve, id))
}

/// Writes the C bindings of `world` (`wit-bindgen c`, default options) into
/// `dir` and returns the files written: `WORLD.h`, `WORLD.c` and
/// `WORLD_component_type.o`, with `-` in the world's name as `_`.
pub fn c_bindings(world: World, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (mut resolve, id) = contract(world)?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, id, &mut files)?;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, contents) in files.iter() {
        let path = dir.join(name);
        // Leave an unchanged file alone so that a build tool's timestamps hold.
        if std::fs::read(&path).ok().as_deref() != Some(contents) {
            std::fs::write(&path, contents)?;
        }
        written.push(path);
    }
    Ok(written)
}

/// How a core module becomes a component.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wrap<'a> {
    /// Adapter modules by the import module name they provide: a WASI
    /// preview 1 adapter as `wasi_snapshot_preview1`, and any helper module
    /// whose functions the core module imports.
    pub adapters: &'a [(String, Vec<u8>)],
}

/// Embeds `world`'s type information into `module` and encodes it as a
/// component.
pub fn componentize(mut module: Vec<u8>, world: World, wrap: Wrap<'_>) -> anyhow::Result<Vec<u8>> {
    let (resolve, id) = contract(world)?;
    wit_component::embed_component_metadata(&mut module, &resolve, id, StringEncoding::UTF8)?;
    let mut encoder = ComponentEncoder::default();
    encoder.module(&module)?.validate(true);
    for (name, adapter) in wrap.adapters {
        encoder.adapter(name, adapter)?;
    }
    encoder.encode()
}

/// Whether a core module imports WASI preview 1 functions.
pub fn imports_wasi(module: &[u8]) -> anyhow::Result<bool> {
    for payload in wasmparser::Parser::new(0).parse_all(module) {
        if let wasmparser::Payload::ImportSection(imports) = payload? {
            for import in imports.into_imports() {
                if import?.module == "wasi_snapshot_preview1" {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_c_bindings_for_every_world() {
        let dir = tempfile::tempdir().unwrap();
        for (world, stem) in [
            (World::Transform, "transform"),
            (World::StatefulTransform, "stateful_transform"),
            (World::Reduce, "reduce"),
        ] {
            let files = c_bindings(world, dir.path()).unwrap();
            let header = std::fs::read_to_string(dir.path().join(format!("{stem}.h"))).unwrap();
            assert!(header.contains("sluice_operator_types_"), "{stem}.h");
            assert!(files.iter().any(|f| f.ends_with(format!("{stem}.c"))));
        }
    }
}
