//! Identifiers, from the `uuid` crate: name-based UUIDs (the same event always gets the same
//! id, so a replayed batch writes rows that are already there and inserts ignore them) and
//! random ones for generated transactions.

use uuid::Uuid;

/// The namespace of every derived id (a version-4 UUID drawn once for this project): ids
/// derived by other systems from the same names never equal ours.
const NAMESPACE: Uuid = Uuid::from_u128(0x5d1c_34a0_7b6e_4f0e_9a51_2c8e_d4f3_a917);

/// A name-based UUID (RFC 9562 version 5: SHA-1 of the project's namespace, `kind` and
/// `name`): equal inputs give equal ids, different ones practically never collide.
///
/// ```
/// use anomaly_services::ids::name_uuid;
///
/// let id = name_uuid("drift", "event-1/ADWIN");
/// assert_eq!(id, name_uuid("drift", "event-1/ADWIN"));
/// assert_ne!(id, name_uuid("drift", "event-1/DDM"));
/// assert_eq!(&id[14..15], "5"); // the version digit
/// ```
pub fn name_uuid(kind: &str, name: &str) -> String {
    // The 0 byte keeps ("ab", "c") and ("a", "bc") apart.
    let mut bytes = Vec::with_capacity(kind.len() + 1 + name.len());
    bytes.extend_from_slice(kind.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(name.as_bytes());
    hyphenated(Uuid::new_v5(&NAMESPACE, &bytes))
}

/// A version-4 UUID string from 128 random bits (the generator draws them from its seeded
/// stream, so a seed gives the same ids).
///
/// ```
/// let id = anomaly_services::ids::uuid_from(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
/// assert_eq!(id, "01234567-89ab-4def-8123-456789abcdef");
/// ```
pub fn uuid_from(bits: u128) -> String {
    hyphenated(uuid::Builder::from_random_bytes(bits.to_be_bytes()).into_uuid())
}

fn hyphenated(id: Uuid) -> String {
    // Through a stack buffer: `to_string` would go through `fmt`, and the generator formats
    // one id per event.
    id.hyphenated()
        .encode_lower(&mut Uuid::encode_buffer())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_rfc_9562_version_5_of_the_namespace() {
        let id: Uuid = name_uuid("drift-alert", "abc").parse().unwrap();
        assert_eq!(id.get_version(), Some(uuid::Version::Sha1));
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id, Uuid::new_v5(&NAMESPACE, b"drift-alert\0abc"));
        assert_ne!(name_uuid("ab", "c"), name_uuid("a", "bc"));
    }

    #[test]
    fn random_ids_keep_their_bits_but_the_version_and_variant() {
        let id: Uuid = uuid_from(u128::MAX).parse().unwrap();
        assert_eq!(id.get_version(), Some(uuid::Version::Random));
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(id.as_u128() | (0xF000 << 64) | (0xC000 << 48), u128::MAX);
    }
}
