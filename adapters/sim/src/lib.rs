//! The simulated Cursor backend.
