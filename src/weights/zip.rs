//! The part of the zip format that `torch.save` archives use: the central directory (with ZIP64 for files
//! over 4 GiB) and STORED (uncompressed) entries, whose bytes are then used in place.

use std::ops::Range;
use std::path::Path;

use super::WeightError;

const EOCD_SIG: u32 = 0x0605_4b50;
const EOCD_LEN: usize = 22;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_LOCATOR_LEN: usize = 20;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const CENTRAL_LEN: usize = 46;
const LOCAL_SIG: u32 = 0x0403_4b50;
const LOCAL_LEN: usize = 30;

/// One stored entry: its name, where its bytes lie in the archive, and its CRC-32.
#[derive(Clone, Debug)]
pub(crate) struct ZipEntry {
    pub name: String,
    pub data: Range<usize>,
    pub crc32: u32,
}

/// Little-endian field reader over a byte slice; every read is bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.bytes.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Lists every entry of the archive `bytes`, checking that each is stored and lies inside the file.
pub(crate) fn entries(file: &Path, bytes: &[u8]) -> Result<Vec<ZipEntry>, WeightError> {
    let zip_err = |reason: String| WeightError::Zip { file: file.to_path_buf(), reason };
    let eocd = find_eocd(bytes)
        .ok_or_else(|| zip_err("no end-of-central-directory record at the end (truncated?)".to_string()))?;
    let mut c = Cursor::at(bytes, eocd + 4);
    let short = || zip_err("end-of-central-directory record cut short".to_string());
    let disk = c.u16().ok_or_else(short)?;
    let cd_disk = c.u16().ok_or_else(short)?;
    let _entries_here = c.u16().ok_or_else(short)?;
    let mut count = c.u16().ok_or_else(short)? as u64;
    let mut cd_size = c.u32().ok_or_else(short)? as u64;
    let mut cd_offset = c.u32().ok_or_else(short)? as u64;
    if disk != 0 || cd_disk != 0 {
        return Err(zip_err("multi-part archives are not supported".to_string()));
    }
    // ZIP64: a locator sits right before the classic record and points at the 64-bit record.
    if let Some(loc) = eocd.checked_sub(ZIP64_LOCATOR_LEN) {
        let mut l = Cursor::at(bytes, loc);
        if l.u32() == Some(ZIP64_LOCATOR_SIG) {
            let short64 = || zip_err("ZIP64 records cut short".to_string());
            let _disk = l.u32().ok_or_else(short64)?;
            let rec = l.u64().ok_or_else(short64)?;
            let rec = usize::try_from(rec).map_err(|_| short64())?;
            let mut r = Cursor::at(bytes, rec);
            if r.u32() != Some(ZIP64_EOCD_SIG) {
                return Err(zip_err(format!("the ZIP64 locator points at byte {rec}, which holds no ZIP64 record")));
            }
            let _size = r.u64().ok_or_else(short64)?;
            let _versions = r.u32().ok_or_else(short64)?;
            let _disks = r.u64().ok_or_else(short64)?;
            let _entries_here = r.u64().ok_or_else(short64)?;
            count = r.u64().ok_or_else(short64)?;
            cd_size = r.u64().ok_or_else(short64)?;
            cd_offset = r.u64().ok_or_else(short64)?;
        }
    }
    let cd_end = cd_offset.checked_add(cd_size).filter(|&e| e <= eocd as u64).ok_or_else(|| {
        zip_err(format!("central directory at {cd_offset} (+{cd_size} bytes) runs past its end record at {eocd}"))
    })? as usize;
    let mut c = Cursor::at(&bytes[..cd_end], cd_offset as usize);
    let mut out = Vec::new();
    while (out.len() as u64) < count {
        out.push(central_entry(file, bytes, &mut c)?);
    }
    if c.pos != cd_end {
        return Err(zip_err(format!("central directory holds {} bytes beyond its {count} entries", cd_end - c.pos)));
    }
    Ok(out)
}

/// The end record is the last 22 bytes plus its comment; search back over the longest comment.
fn find_eocd(bytes: &[u8]) -> Option<usize> {
    let last = bytes.len().checked_sub(EOCD_LEN)?;
    let first = last.saturating_sub(u16::MAX as usize);
    (first..=last).rev().find(|&p| {
        let mut c = Cursor::at(bytes, p);
        c.u32() == Some(EOCD_SIG) && {
            let mut k = Cursor::at(bytes, p + 20);
            k.u16().map(|n| p + EOCD_LEN + n as usize) == Some(bytes.len())
        }
    })
}

fn central_entry(file: &Path, bytes: &[u8], c: &mut Cursor<'_>) -> Result<ZipEntry, WeightError> {
    let at = c.pos;
    let zip_err = |reason: String| WeightError::Zip { file: file.to_path_buf(), reason };
    let short = || zip_err(format!("central directory entry at byte {at} cut short"));
    let fixed = c.take(CENTRAL_LEN).ok_or_else(short)?;
    let mut f = Cursor::at(fixed, 0);
    let field = |f: &mut Cursor<'_>| f.u32().expect("inside the fixed 46 bytes");
    let half = |f: &mut Cursor<'_>| f.u16().expect("inside the fixed 46 bytes");
    if field(&mut f) != CENTRAL_SIG {
        return Err(zip_err(format!("no central directory entry at byte {at}")));
    }
    let _made_by = half(&mut f);
    let _needed = half(&mut f);
    let flags = half(&mut f);
    let method = half(&mut f);
    let _time = half(&mut f);
    let _date = half(&mut f);
    let crc32 = field(&mut f);
    let mut csize = field(&mut f) as u64;
    let mut usize_ = field(&mut f) as u64;
    let name_len = half(&mut f) as usize;
    let extra_len = half(&mut f) as usize;
    let comment_len = half(&mut f) as usize;
    let _disk = half(&mut f);
    let _int_attr = half(&mut f);
    let _ext_attr = field(&mut f);
    let mut local = field(&mut f) as u64;
    let name = c.take(name_len).ok_or_else(short)?;
    let name =
        String::from_utf8(name.to_vec()).map_err(|_| zip_err(format!("entry name at byte {at} is not UTF-8")))?;
    let extra = c.take(extra_len).ok_or_else(short)?;
    c.take(comment_len).ok_or_else(short)?;

    // ZIP64 extra field (id 1): 64-bit values for exactly the fields saturated at 0xFFFFFFFF, in order.
    let mut e = Cursor::at(extra, 0);
    while let (Some(id), Some(len)) = (e.u16(), e.u16()) {
        let body = e.take(len as usize).ok_or_else(|| zip_err(format!("extra field of `{name}` cut short")))?;
        if id != 1 {
            continue;
        }
        let mut b = Cursor::at(body, 0);
        let bad = || zip_err(format!("ZIP64 extra field of `{name}` cut short"));
        for v in [&mut usize_, &mut csize, &mut local] {
            if *v == u32::MAX as u64 {
                *v = b.u64().ok_or_else(bad)?;
            }
        }
    }

    let unsupported =
        |what: String, fix: &str| WeightError::Unsupported { file: file.to_path_buf(), what, fix: fix.to_string() };
    if flags & 1 != 0 {
        return Err(unsupported(
            format!("encrypted archive entry `{name}`"),
            "torch.save never encrypts: use the original file",
        ));
    }
    if method != 0 {
        return Err(unsupported(
            format!("compressed archive entry `{name}` (method {method})"),
            "torch.save writes uncompressed (STORED) entries; if the archive was re-zipped, store it \
             without compression (`zip -0`) or save it again with torch.save",
        ));
    }
    if csize != usize_ {
        return Err(zip_err(format!("stored entry `{name}` has {csize} stored bytes but {usize_} uncompressed")));
    }

    let local_at = usize::try_from(local).unwrap_or(usize::MAX);
    let mut l = Cursor::at(bytes, local_at);
    let lshort = || zip_err(format!("local header of `{name}` at byte {local} is missing or cut short"));
    let lfixed = l.take(LOCAL_LEN).ok_or_else(lshort)?;
    let mut lf = Cursor::at(lfixed, 0);
    if lf.u32() != Some(LOCAL_SIG) {
        return Err(lshort());
    }
    lf.take(22).expect("inside the fixed 30 bytes");
    let lname = lf.u16().expect("inside the fixed 30 bytes") as usize;
    let lextra = lf.u16().expect("inside the fixed 30 bytes") as usize;
    let start = local_at + LOCAL_LEN + lname + lextra;
    let end = usize::try_from(csize).ok().and_then(|n| start.checked_add(n)).filter(|&e| e <= bytes.len()).ok_or_else(
        || WeightError::Truncated {
            file: file.to_path_buf(),
            what: format!("archive entry `{name}`"),
            need: (start as u64).saturating_add(csize),
            len: bytes.len() as u64,
        },
    )?;
    Ok(ZipEntry { name, data: start..end, crc32 })
}

/// CRC-32 (IEEE, reflected, as zip uses), bitwise: only small entries are checked.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}
