//! The released versions of the plugin contract (`wit/<version>/`), one module each with its
//! generated bindings and its conversions to gaffer's own types. A released version stays
//! loadable: a new one goes beside it, and the host adapts old ones.

pub mod since_v0_1_0;
