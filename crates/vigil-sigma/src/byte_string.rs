//! Serde for byte lists written as one byte string: postcard would
//! otherwise write and read them number by number. Used for the chunks
//! of a rule-set snapshot and for the tables of a
//! [`crate::automaton::LiteralAutomaton`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::Arc;

/// Bytes shared with whoever holds them: the buffer a snapshot is read
/// from, which a loaded set can then read its rules and automata from in
/// place.
pub type SharedBytes =
    Arc<dyn AsRef<[u8]> + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe>;

thread_local! {
    /// The buffer being decoded by [`decode_in_place`] on this thread.
    static IN_PLACE: RefCell<Option<SharedBytes>> = const { RefCell::new(None) };
}

/// Runs `decode` over the bytes of `buffer`; what is deserialized from
/// them on this thread and can keep its bytes where they are (a rule
/// store's rules, an automaton's tables: [`StoredBytes`]) shares `buffer`
/// rather than copying: 5 MB for SigmaHQ's Windows rules, most of which a
/// hunt never reads.
pub fn decode_in_place<T>(buffer: SharedBytes, decode: impl FnOnce(&[u8]) -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            IN_PLACE.with(|b| b.borrow_mut().take());
        }
    }
    IN_PLACE.with(|b| *b.borrow_mut() = Some(buffer.clone()));
    let _reset = Reset;
    decode((*buffer).as_ref())
}

/// The buffer [`decode_in_place`] is decoding on this thread, if any.
pub(crate) fn in_place_buffer() -> Option<SharedBytes> {
    IN_PLACE.with(|b| b.borrow().clone())
}

/// Bytes read back from a snapshot: a span of the buffer being decoded
/// in place when they were borrowed from it, else a copy. Written as one
/// byte string.
#[derive(Clone)]
pub(crate) enum StoredBytes {
    /// Copied, or made here.
    Owned(Box<[u8]>),
    /// `len` bytes at `start` of a shared buffer.
    Shared {
        buffer: SharedBytes,
        start: usize,
        len: usize,
    },
}

impl StoredBytes {
    /// The whole of a shared buffer.
    pub fn whole(buffer: SharedBytes) -> StoredBytes {
        let len = (*buffer).as_ref().len();
        StoredBytes::Shared {
            buffer,
            start: 0,
            len,
        }
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match self {
            StoredBytes::Owned(b) => b,
            StoredBytes::Shared { buffer, start, len } => {
                // In bounds: checked when the span was taken, and the
                // buffer never changes.
                &(**buffer).as_ref()[*start..*start + *len]
            }
        }
    }
}

impl Default for StoredBytes {
    fn default() -> Self {
        StoredBytes::Owned(Box::default())
    }
}

impl From<Vec<u8>> for StoredBytes {
    fn from(v: Vec<u8>) -> Self {
        StoredBytes::Owned(v.into_boxed_slice())
    }
}

impl std::fmt::Debug for StoredBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match self {
            StoredBytes::Owned(_) => "owned",
            StoredBytes::Shared { .. } => "shared",
        };
        write!(f, "{how} ({} bytes)", self.as_slice().len())
    }
}

impl PartialEq for StoredBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for StoredBytes {}

impl Serialize for StoredBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.as_slice())
    }
}

impl<'de> Deserialize<'de> for StoredBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = Bytes::deserialize(d)?;
        if let (Cow::Borrowed(b), Some(buffer)) = (&bytes.0, in_place_buffer()) {
            if let Some(start) = offset_within((*buffer).as_ref(), b) {
                let len = b.len();
                return Ok(StoredBytes::Shared { buffer, start, len });
            }
        }
        Ok(StoredBytes::Owned(bytes.0.into_owned().into_boxed_slice()))
    }
}

/// Where `part` starts in `whole`, when it lies within it (it was
/// borrowed from it).
pub(crate) fn offset_within(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start <= whole.len() && part.len() <= whole.len() - start).then_some(start)
}

/// Bytes written as one byte string; read back borrowed from the input
/// where the format allows (postcard does).
pub(crate) struct Bytes<'a>(pub Cow<'a, [u8]>);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Bytes<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Borrowed(v)))
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Bytes(Cow::Owned(v.to_vec())))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

/// `#[serde(with = "bytes")]` for a `Vec<u8>`.
pub(crate) mod bytes {
    use super::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        Ok(Bytes::deserialize(d)?.0.into_owned())
    }
}

/// `#[serde(with = "words")]` for a `Vec<u32>`, written as little-endian
/// bytes.
pub(crate) mod words {
    use super::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u32], s: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = v.iter().flat_map(|w| w.to_le_bytes()).collect();
        s.serialize_bytes(&bytes)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        let bytes = Bytes::deserialize(d)?.0;
        if bytes.len() % 4 != 0 {
            return Err(serde::de::Error::custom("a word list of odd length"));
        }
        Ok(bytes
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect())
    }
}
