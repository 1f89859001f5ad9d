//! NAVA in the browser: wasm bindings over the `nava` library. Not built yet — the library itself already compiles
//! for wasm32-unknown-unknown (CI checks it); the bindings and the demo page come with the browser work.
