//! Element types as checkpoints store them (safetensors names, PyTorch storage classes), and the
//! conversion of every float type to f32. All stored values are little-endian.

use std::fmt;

/// The element type of a stored tensor. Named after the safetensors dtype strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDType {
    Bool,
    U8,
    I8,
    /// `float8_e4m3fn`: bias 7, no infinities, 0x7f/0xff are NaN, max 448.
    F8E4M3,
    /// `float8_e5m2`: the top byte of an IEEE f16.
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    F64,
    I64,
    U64,
}

impl WeightDType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        use WeightDType::*;
        match self {
            Bool | U8 | I8 | F8E4M3 | F8E5M2 => 1,
            I16 | U16 | F16 | BF16 => 2,
            I32 | U32 | F32 => 4,
            F64 | I64 | U64 => 8,
        }
    }

    /// Whether [`to_f32`] accepts it.
    pub fn is_float(self) -> bool {
        use WeightDType::*;
        matches!(self, F8E4M3 | F8E5M2 | F16 | BF16 | F32 | F64)
    }

    /// The name in a safetensors header (`"BF16"`, `"F8_E4M3"`).
    pub fn safetensors_name(self) -> &'static str {
        use WeightDType::*;
        match self {
            Bool => "BOOL",
            U8 => "U8",
            I8 => "I8",
            F8E4M3 => "F8_E4M3",
            F8E5M2 => "F8_E5M2",
            I16 => "I16",
            U16 => "U16",
            F16 => "F16",
            BF16 => "BF16",
            I32 => "I32",
            U32 => "U32",
            F32 => "F32",
            F64 => "F64",
            I64 => "I64",
            U64 => "U64",
        }
    }

    /// The inverse of [`WeightDType::safetensors_name`].
    pub fn from_safetensors_name(name: &str) -> Option<Self> {
        use WeightDType::*;
        Some(match name {
            "BOOL" => Bool,
            "U8" => U8,
            "I8" => I8,
            "F8_E4M3" => F8E4M3,
            "F8_E5M2" => F8E5M2,
            "I16" => I16,
            "U16" => U16,
            "F16" => F16,
            "BF16" => BF16,
            "I32" => I32,
            "U32" => U32,
            "F32" => F32,
            "F64" => F64,
            "I64" => I64,
            "U64" => U64,
            _ => return None,
        })
    }

    /// The dtype of a PyTorch storage class name as `torch.save` pickles it (`FloatStorage`).
    pub fn from_torch_storage(class: &str) -> Option<Self> {
        use WeightDType::*;
        Some(match class {
            "FloatStorage" => F32,
            "HalfStorage" => F16,
            "BFloat16Storage" => BF16,
            "DoubleStorage" => F64,
            "LongStorage" => I64,
            "IntStorage" => I32,
            "ShortStorage" => I16,
            "CharStorage" => I8,
            "ByteStorage" => U8,
            "BoolStorage" => Bool,
            _ => return None,
        })
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.safetensors_name())
    }
}

/// One `float8_e4m3fn` value as f32 (exact: every e4m3 value is an f32).
pub fn f8e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = (b >> 3) & 0x0f;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && b & 0x07 == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        // Subnormal: man/8 · 2^(1-7).
        sign * man * (1.0 / 8.0) * (1.0 / 64.0)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp as i32 - 7)
    }
}

/// One `float8_e5m2` value as f32: it is the high byte of an f16.
pub fn f8e5m2_to_f32(b: u8) -> f32 {
    half::f16::from_bits((b as u16) << 8).to_f32()
}

/// Little-endian stored values of a float dtype as f32; `None` for integer and bool dtypes.
/// A trailing partial element (never produced by the readers, which check lengths) is ignored.
pub fn to_f32(dtype: WeightDType, bytes: &[u8]) -> Option<Vec<f32>> {
    use WeightDType::*;
    let out = match dtype {
        F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        F16 => bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        BF16 => bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        F8E4M3 => bytes.iter().map(|&b| f8e4m3_to_f32(b)).collect(),
        F8E5M2 => bytes.iter().map(|&b| f8e5m2_to_f32(b)).collect(),
        F64 => bytes
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}
