//! `trellis-runtime`: reserved for the runtime (storage, REST API, web forms), which comes next; it holds no code yet.
