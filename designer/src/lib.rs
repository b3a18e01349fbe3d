//! `trellis-designer`: reserved for the browser designer for admins; it holds no code yet.
