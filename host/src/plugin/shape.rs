//! What one instance of a component creates — core instances, linear memories, tables —
//! counted from its bytes before it is compiled, so that a component built to exhaust the
//! host (forty memories, each under the memory cap) is refused at load with a reason, whatever
//! the instance allocator. The memory limiter enforces the same bounds again at
//! instantiation, for what cannot be counted statically (a module imported or aliased from an
//! instance's exports counts as nothing here).

use wasmparser::{
    ComponentAlias, ComponentExternalKind, ComponentInstance, ComponentOuterAliasKind, Instance,
    Parser, Payload,
};

use super::state::{
    MAX_CORE_INSTANCES_PER_COMPONENT, MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT,
};

/// What one instantiation creates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    pub core_instances: u64,
    pub memories: u64,
    pub tables: u64,
}

impl Shape {
    fn add(&mut self, other: Shape) {
        self.core_instances = self.core_instances.saturating_add(other.core_instances);
        self.memories = self.memories.saturating_add(other.memories);
        self.tables = self.tables.saturating_add(other.tables);
    }
}

/// A module or component being read, innermost last.
enum Frame {
    Module {
        memories: u64,
        tables: u64,
    },
    Component {
        /// The module index space: what instantiating each module creates (`None`: unknown).
        modules: Vec<Option<Shape>>,
        /// The component index space, likewise.
        components: Vec<Option<Shape>>,
        /// What one instantiation of this component creates.
        shape: Shape,
    },
}

/// Count what one instance of the component in `bytes` creates.
pub fn count(bytes: &[u8]) -> Result<Shape, String> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut top: Option<Shape> = None;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| e.to_string())?;
        match payload {
            Payload::Version { encoding, .. } => stack.push(match encoding {
                wasmparser::Encoding::Module => Frame::Module {
                    memories: 0,
                    tables: 0,
                },
                wasmparser::Encoding::Component => Frame::Component {
                    modules: Vec::new(),
                    components: Vec::new(),
                    shape: Shape::default(),
                },
            }),
            Payload::MemorySection(reader) => {
                if let Some(Frame::Module { memories, .. }) = stack.last_mut() {
                    *memories += u64::from(reader.count());
                }
            }
            Payload::TableSection(reader) => {
                if let Some(Frame::Module { tables, .. }) = stack.last_mut() {
                    *tables += u64::from(reader.count());
                }
            }
            Payload::InstanceSection(reader) => {
                for instance in reader {
                    let instance = instance.map_err(|e| e.to_string())?;
                    if let (
                        Instance::Instantiate { module_index, .. },
                        Some(Frame::Component { modules, shape, .. }),
                    ) = (instance, stack.last_mut())
                    {
                        let created = usize::try_from(module_index)
                            .ok()
                            .and_then(|i| modules.get(i).copied().flatten())
                            .unwrap_or_default();
                        shape.add(Shape {
                            core_instances: 1,
                            ..created
                        });
                    }
                }
            }
            Payload::ComponentInstanceSection(reader) => {
                for instance in reader {
                    let instance = instance.map_err(|e| e.to_string())?;
                    if let (
                        ComponentInstance::Instantiate {
                            component_index, ..
                        },
                        Some(Frame::Component {
                            components, shape, ..
                        }),
                    ) = (instance, stack.last_mut())
                    {
                        let created = usize::try_from(component_index)
                            .ok()
                            .and_then(|i| components.get(i).copied().flatten())
                            .unwrap_or_default();
                        shape.add(created);
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    let alias = alias.map_err(|e| e.to_string())?;
                    alias_into(&mut stack, alias);
                }
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    let import = import.map_err(|e| e.to_string())?;
                    if let Some(Frame::Component {
                        modules,
                        components,
                        ..
                    }) = stack.last_mut()
                    {
                        match import.ty {
                            wasmparser::ComponentTypeRef::Module(_) => modules.push(None),
                            wasmparser::ComponentTypeRef::Component(_) => components.push(None),
                            _ => {}
                        }
                    }
                }
            }
            Payload::End(_) => {
                let done = stack.pop();
                let shape = match done {
                    Some(Frame::Module { memories, tables }) => Shape {
                        core_instances: 0,
                        memories,
                        tables,
                    },
                    Some(Frame::Component { shape, .. }) => shape,
                    None => return Err("unbalanced sections".to_string()),
                };
                match (&done, stack.last_mut()) {
                    (Some(Frame::Module { .. }), Some(Frame::Component { modules, .. })) => {
                        modules.push(Some(shape))
                    }
                    (Some(Frame::Component { .. }), Some(Frame::Component { components, .. })) => {
                        components.push(Some(shape))
                    }
                    (_, None) => top = Some(shape),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    top.ok_or_else(|| "the file ends inside a section".to_string())
}

/// An alias that adds a module or a component to the innermost component's index space.
fn alias_into(stack: &mut [Frame], alias: ComponentAlias<'_>) {
    let depth = stack.len();
    match alias {
        ComponentAlias::Outer { kind, count, index } => {
            let outer = usize::try_from(count)
                .ok()
                .and_then(|c| depth.checked_sub(1 + c))
                .and_then(|i| stack.get(i));
            let index = usize::try_from(index).ok();
            let found = match (kind, outer) {
                (ComponentOuterAliasKind::CoreModule, Some(Frame::Component { modules, .. })) => {
                    index.and_then(|i| modules.get(i).copied().flatten())
                }
                (ComponentOuterAliasKind::Component, Some(Frame::Component { components, .. })) => {
                    index.and_then(|i| components.get(i).copied().flatten())
                }
                _ => None,
            };
            if let Some(Frame::Component {
                modules,
                components,
                ..
            }) = stack.last_mut()
            {
                match kind {
                    ComponentOuterAliasKind::CoreModule => modules.push(found),
                    ComponentOuterAliasKind::Component => components.push(found),
                    _ => {}
                }
            }
        }
        ComponentAlias::InstanceExport { kind, .. } => {
            if let Some(Frame::Component {
                modules,
                components,
                ..
            }) = stack.last_mut()
            {
                match kind {
                    ComponentExternalKind::Module => modules.push(None),
                    ComponentExternalKind::Component => components.push(None),
                    _ => {}
                }
            }
        }
        ComponentAlias::CoreInstanceExport { .. } => {}
    }
}

/// Refuse a component whose instance would create more than gaffer allows of anything.
pub fn check(bytes: &[u8]) -> Result<Shape, String> {
    let shape = count(bytes)?;
    for (what, found, limit) in [
        (
            "core module instances",
            shape.core_instances,
            MAX_CORE_INSTANCES_PER_COMPONENT,
        ),
        (
            "linear memories",
            shape.memories,
            MAX_MEMORIES_PER_COMPONENT,
        ),
        ("tables", shape.tables, MAX_TABLES_PER_COMPONENT),
    ] {
        if found > u64::from(limit) {
            return Err(format!(
                "an instance of it would create {found} {what}; gaffer allows at most {limit}"
            ));
        }
    }
    Ok(shape)
}
