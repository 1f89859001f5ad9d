//! norm kernels against CPU references (being written).
