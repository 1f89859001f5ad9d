//! attention kernels against CPU references (being written).
