//! [`Text`]: a string built on the stack, so the hot path formats store keys
//! and header values without `format!` or a heap allocation.

use std::fmt;

/// A string of up to `N` bytes kept inline; a longer one moves to the heap
/// once, whole. Only `&str`s and digits are ever pushed, so the inline bytes
/// are always valid UTF-8.
pub(crate) struct Text<const N: usize> {
    inline: [u8; N],
    len: usize,
    heap: Option<String>,
}

impl<const N: usize> Text<N> {
    pub(crate) fn new() -> Text<N> {
        Text {
            inline: [0; N],
            len: 0,
            heap: None,
        }
    }

    /// Wraps a string already on the heap.
    pub(crate) fn from_string(text: String) -> Text<N> {
        Text {
            inline: [0; N],
            len: 0,
            heap: Some(text),
        }
    }

    #[inline]
    pub(crate) fn push_str(&mut self, text: &str) {
        self.push_utf8(text.as_bytes());
    }

    /// Pushes `number` in decimal.
    #[inline]
    pub(crate) fn push_u64(&mut self, mut number: u64) {
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        loop {
            start -= 1;
            digits[start] = b'0' + (number % 10) as u8;
            number /= 10;
            if number == 0 {
                break;
            }
        }
        // ASCII digits: UTF-8.
        self.push_utf8(&digits[start..]);
    }

    // `bytes` must be UTF-8: a `&str`'s, or ASCII digits.
    #[inline]
    fn push_utf8(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        match (&mut self.heap, self.inline.get_mut(self.len..end)) {
            (None, Some(room)) => {
                room.copy_from_slice(bytes);
                self.len = end;
            }
            _ => self.push_to_heap(bytes),
        }
    }

    #[cold]
    fn push_to_heap(&mut self, bytes: &[u8]) {
        let mut all = match self.heap.take() {
            Some(heap) => heap.into_bytes(),
            None => {
                let mut all = Vec::with_capacity((self.len + bytes.len()).max(2 * N));
                all.extend_from_slice(&self.inline[..self.len]);
                all
            }
        };
        all.extend_from_slice(bytes);
        // Only UTF-8 is pushed, so this never falls back.
        self.heap = Some(String::from_utf8(all).unwrap_or_default());
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.heap {
            Some(heap) => heap.as_bytes(),
            None => &self.inline[..self.len],
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match &self.heap {
            Some(heap) => heap,
            None => self.inline_str(),
        }
    }

    pub(crate) fn into_string(self) -> String {
        match self.heap {
            Some(heap) => heap,
            None => self.inline_str().to_owned(),
        }
    }

    fn inline_str(&self) -> &str {
        // Whole `&str`s and digits only were copied in (see the type's docs),
        // so this never fails; an empty key would be wrong, but unreachable.
        std::str::from_utf8(&self.inline[..self.len]).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Write for Text<N> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.push_str(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write;

    use super::*;

    #[test]
    fn short_text_stays_inline_and_long_text_moves_whole() {
        let mut text = Text::<8>::new();
        text.push_str("key:");
        text.push_u64(0);
        text.push_str("é");
        assert_eq!(text.as_str(), "key:0é");
        assert!(text.heap.is_none());
        text.push_str("abc");
        assert_eq!(text.as_str(), "key:0éabc");
        assert!(text.heap.is_some());
        text.push_u64(u64::MAX);
        assert_eq!(text.as_bytes(), b"key:0\xc3\xa9abc18446744073709551615");
        assert_eq!(text.into_string(), "key:0éabc18446744073709551615");
    }

    #[test]
    fn numbers_and_formatting() {
        let mut text = Text::<64>::new();
        for number in [0, 7, 10, 99, 1_000, 86_400, u64::MAX] {
            text.push_u64(number);
            text.push_str(",");
        }
        write!(text, "{}", std::net::Ipv4Addr::new(192, 0, 2, 7)).unwrap();
        assert_eq!(text.as_str(), "0,7,10,99,1000,86400,18446744073709551615,192.0.2.7");
        assert_eq!(Text::<4>::from_string("owned".into()).into_string(), "owned");
    }
}
