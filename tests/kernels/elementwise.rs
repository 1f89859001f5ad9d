//! elementwise kernels against CPU references (being written).
