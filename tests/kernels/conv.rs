//! conv kernels against CPU references (being written).
