//! Identifiers and timestamps without a clock dependency: name-based UUIDs (the same event
//! always gets the same id, so a replayed batch writes rows that are already there and inserts
//! ignore them) and ISO-8601 UTC formatting.

/// A name-based UUID (RFC 9562 version 8: FNV-1a 128 of `kind` and `name`): equal inputs give
/// equal ids, different ones practically never collide.
///
/// ```
/// use anomaly_services::ids::name_uuid;
///
/// let id = name_uuid("drift", "event-1/ADWIN");
/// assert_eq!(id, name_uuid("drift", "event-1/ADWIN"));
/// assert_ne!(id, name_uuid("drift", "event-1/DDM"));
/// assert_eq!(&id[14..15], "8"); // the version digit
/// ```
pub fn name_uuid(kind: &str, name: &str) -> String {
    const BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = BASIS;
    // The 0 byte keeps ("ab", "c") and ("a", "bc") apart.
    for byte in kind.bytes().chain([0]).chain(name.bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    let bits = (hash & !(0xF000u128 << 64)) | (0x8000u128 << 64); // version 8
    format_uuid((bits & !(0xC000u128 << 48)) | (0x8000u128 << 48)) // RFC 4122 variant
}

/// A version-4 UUID string from 128 random bits.
///
/// ```
/// let id = anomaly_services::ids::uuid_from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
/// assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
/// ```
pub fn uuid_from(bits: u128) -> String {
    let bits = (bits & !(0xF000u128 << 64)) | (0x4000u128 << 64); // version 4
    format_uuid((bits & !(0xC000u128 << 48)) | (0x8000u128 << 48)) // RFC 4122 variant
}

fn format_uuid(bits: u128) -> String {
    // The `uuid` crate's table-driven encoder: the generator formats one id per event.
    uuid::Uuid::from_u128(bits)
        .hyphenated()
        .encode_lower(&mut uuid::Uuid::encode_buffer())
        .to_owned()
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
///
/// ```
/// assert_eq!(anomaly_services::ids::iso8601(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
/// assert_eq!(anomaly_services::ids::iso8601(0), "1970-01-01T00:00:00.000Z");
/// ```
pub fn iso8601(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let ms_of_day = unix_ms.rem_euclid(86_400_000);
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1_000 % 60,
        ms_of_day % 1_000
    )
}
