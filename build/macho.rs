//! Thins universal ("fat") Mach-O files to the one architecture being built.
//!
//! Ollama's macOS release (`ollama-darwin.tgz`) is universal: every executable and
//! library holds an `arm64` and an `x86_64` slice. A codex-oss built for one of them needs
//! one slice; without thinning, each single-architecture codex-oss embeds both, and the
//! universal codex-oss (a lipo of the two) embeds them four times. `lipo` is not on
//! Linux build hosts, and the format is small: a big-endian header, then one record per
//! slice naming its CPU type, offset and size (`<mach-o/fat.h>`).

/// `FAT_MAGIC`: 32-bit slice records.
const FAT_MAGIC: u32 = 0xcafe_babe;
/// `FAT_MAGIC_64`: 64-bit slice records.
const FAT_MAGIC_64: u32 = 0xcafe_babf;
/// `CPU_TYPE_X86_64` and `CPU_TYPE_ARM64`.
pub const CPU_TYPE_X86_64: u32 = 0x0100_0007;
pub const CPU_TYPE_ARM64: u32 = 0x0100_000c;
/// More slices than any real fat file has; also keeps Java class files (same magic,
/// then a version number) from being taken for one.
const MAX_SLICES: u32 = 16;

/// The CPU type of an Apple target triple; `None` for other targets.
pub fn cpu_type(target: &str) -> Option<u32> {
    if !target.ends_with("-apple-darwin") {
        return None;
    }
    match target.split('-').next()? {
        "aarch64" => Some(CPU_TYPE_ARM64),
        "x86_64" => Some(CPU_TYPE_X86_64),
        _ => None,
    }
}

/// The slice of `bytes` for `cpu`: `Ok(None)` when `bytes` is not a fat file (keep it
/// as it is), an error when it is fat but has no such slice or is malformed.
pub fn thin(bytes: &[u8], cpu: u32) -> Result<Option<Vec<u8>>, String> {
    let Some(magic) = be32(bytes, 0) else {
        return Ok(None);
    };
    let wide = match magic {
        FAT_MAGIC => false,
        FAT_MAGIC_64 => true,
        _ => return Ok(None),
    };
    let count = be32(bytes, 4).ok_or("a fat header without a slice count")?;
    if count == 0 || count > MAX_SLICES {
        return Ok(None);
    }
    let record_len = if wide { 32 } else { 20 };
    for i in 0..count as usize {
        let at = 8 + i * record_len;
        let slice_cpu = be32(bytes, at).ok_or("a truncated fat header")?;
        let (offset, size) = if wide {
            (be64(bytes, at + 8), be64(bytes, at + 16))
        } else {
            (
                be32(bytes, at + 8).map(u64::from),
                be32(bytes, at + 12).map(u64::from),
            )
        };
        let (offset, size) = offset.zip(size).ok_or("a truncated fat header")?;
        if slice_cpu != cpu {
            continue;
        }
        let start = usize::try_from(offset).map_err(|_| "a slice offset too large")?;
        let end = start
            .checked_add(usize::try_from(size).map_err(|_| "a slice size too large")?)
            .ok_or("a slice past the end")?;
        let slice = bytes
            .get(start..end)
            .ok_or("a slice past the end of the file")?;
        return Ok(Some(slice.to_vec()));
    }
    Err(format!(
        "a universal file without a slice for CPU type {cpu:#x}"
    ))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn be64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}
