//! Kernel tests: every family against a plain CPU reference on a real adapter (lavapipe in CI).
//! One binary, so wgpu links once; one device shared by all tests.

mod attention;
mod attentive_stats;
mod audio;
mod common;
mod conv;
mod conv2d_cl;
mod core;
mod elementwise;
mod gemm;
mod matmul;
mod norm;
mod rope;
