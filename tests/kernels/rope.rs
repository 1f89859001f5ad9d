//! rope kernels against CPU references (being written).
