//! [`StaticValues`]: the header values most responses carry, rendered once.
//!
//! A value made per response costs an allocation and a free; a shared one
//! costs a reference count that every core's requests contend for. A static
//! value costs neither: cloning it copies a pointer.

use std::sync::OnceLock;

use http::HeaderValue;

use crate::text::Text;

/// How many values a table holds: every remainder of a burst up to 1,024
/// (the seed's plans go up to 1,000).
const LEN: usize = 1_024;

/// The values `render(n)` for `n` in `0..1024`, built on first use into one
/// string that lives as long as the process: about 60 KiB per table, text
/// and values.
pub(crate) struct StaticValues {
    render: fn(&mut Text<32>, u64),
    text: OnceLock<String>,
    values: OnceLock<Vec<HeaderValue>>,
}

impl StaticValues {
    pub(crate) const fn new(render: fn(&mut Text<32>, u64)) -> StaticValues {
        StaticValues {
            render,
            text: OnceLock::new(),
            values: OnceLock::new(),
        }
    }

    /// `render(n)`, if `n` is in the table.
    #[inline]
    pub(crate) fn get(&'static self, n: u64) -> Option<HeaderValue> {
        let index = usize::try_from(n).ok().filter(|index| *index < LEN)?;
        self.values.get_or_init(|| self.build()).get(index).cloned()
    }

    #[cold]
    fn build(&'static self) -> Vec<HeaderValue> {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(LEN);
        for n in 0..LEN as u64 {
            let mut value = Text::<32>::new();
            (self.render)(&mut value, n);
            text.push_str(value.as_str());
            ends.push(text.len());
        }
        let text: &'static str = self.text.get_or_init(|| text);
        let mut start = 0;
        ends.into_iter()
            .map(|end| {
                // The renderers write digits, quotes, letters and `;=-`.
                let value = HeaderValue::from_static(&text[start..end]);
                start = end;
                value
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SQUARES: StaticValues = StaticValues::new(|text, n| {
        text.push_str("n=");
        text.push_u64(n * n);
    });

    #[test]
    fn values_are_rendered_once_and_only_in_range() {
        assert_eq!(SQUARES.get(0).unwrap(), "n=0");
        assert_eq!(SQUARES.get(12).unwrap(), "n=144");
        assert_eq!(SQUARES.get(1_023).unwrap(), "n=1046529");
        assert_eq!(SQUARES.get(1_024), None);
        assert_eq!(SQUARES.get(u64::MAX), None);
        let first = SQUARES.get(7).unwrap();
        assert_eq!(first.as_bytes().as_ptr(), SQUARES.get(7).unwrap().as_bytes().as_ptr());
    }
}
