//! [`Headers`]: the header fields a message keeps, in one buffer.

use std::fmt;

/// Header fields (names as sent, values) in wire order, their text back to back in one
/// string: two allocations for a message's fields whatever their number, where a list of
/// owned pairs took two per field (a request of the bench traffic keeps five: 11
/// allocations, a third of all the analysis made per span, most of them freed on another
/// thread than the one that parsed them).
///
/// Serialized as the list of `(name, value)` pairs it holds.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every field's name then value, back to back.
    text: String,
    /// Per field, where its name ends and where its value ends in `text` (the name starts
    /// where the field before ends).
    ends: Vec<(usize, usize)>,
}

impl Headers {
    /// No fields.
    pub fn new() -> Self {
        Headers::default()
    }

    /// No fields yet, room for `fields` fields of `bytes` bytes of text in all.
    pub fn with_capacity(fields: usize, bytes: usize) -> Self {
        Headers {
            text: String::with_capacity(bytes),
            ends: Vec::with_capacity(fields),
        }
    }

    /// Appends a field.
    pub fn push(&mut self, name: &str, value: &str) {
        self.text.push_str(name);
        let name_end = self.text.len();
        self.text.push_str(value);
        self.ends.push((name_end, self.text.len()));
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no field.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The fields `(name, value)`, in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + ExactSizeIterator {
        (0..self.ends.len()).map(|i| self.field(i))
    }

    /// Field `i` (< `len()`).
    fn field(&self, i: usize) -> (&str, &str) {
        let start = i.checked_sub(1).map_or(0, |before| self.ends[before].1);
        let (name_end, end) = self.ends[i];
        (&self.text[start..name_end], &self.text[name_end..end])
    }

    /// The values of the fields named `name` (ASCII case ignored), in order. A field whose
    /// name has another length is passed over without looking at its text: a request's
    /// context is looked up by a dozen names, nearly all of them absent.
    pub fn values<'h, 'n>(&'h self, name: &'n str) -> impl Iterator<Item = &'h str> + use<'h, 'n> {
        let mut start = 0;
        self.ends.iter().filter_map(move |&(name_end, end)| {
            let field_start = std::mem::replace(&mut start, end);
            (name_end - field_start == name.len()
                && self.text[field_start..name_end].eq_ignore_ascii_case(name))
            .then(|| &self.text[name_end..end])
        })
    }

    /// The value of the first field named `name`, ASCII case ignored.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values(name).next()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(fields: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in fields {
            headers.push(name.as_ref(), value.as_ref());
        }
        headers
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl serde::Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Headers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = Vec::<(String, String)>::deserialize(deserializer)?;
        Ok(fields.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_come_back_in_order_with_empty_names_and_values() {
        let fields = [
            ("Host", "a:80"),
            ("x", ""),
            ("", "v"),
            ("traceparent", "00-ab"),
        ];
        let h: Headers = fields.iter().copied().collect();
        assert_eq!(h.len(), 4);
        assert!(!h.is_empty());
        assert_eq!(h.iter().collect::<Vec<_>>(), fields);
        assert_eq!(h.iter().next_back(), Some(("traceparent", "00-ab")));
        assert_eq!(h.get("host"), Some("a:80"));
        assert_eq!(h.get("X"), Some(""));
        assert_eq!(h.get("user-agent"), None);
        assert_eq!(h.get(""), Some("v"));
        let twice: Headers = [("b3", "1"), ("Host", "h"), ("B3", "2")]
            .into_iter()
            .collect();
        assert_eq!(twice.values("b3").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(twice.values("host").collect::<Vec<_>>(), ["h"]);
        assert!(Headers::new().is_empty());
        assert_eq!(Headers::new().iter().count(), 0);
    }

    #[test]
    fn the_first_of_repeated_fields_is_found() {
        let h: Headers = [("B3", "1"), ("b3", "2")].into_iter().collect();
        assert_eq!(h.get("b3"), Some("1"));
    }

    #[test]
    fn serialized_as_the_list_of_pairs() {
        let pairs = vec![
            ("host".to_string(), "a".to_string()),
            ("b3".into(), "0".into()),
        ];
        let h: Headers = pairs.iter().map(|(n, v)| (n, v)).collect();
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, serde_json::to_string(&pairs).unwrap());
        let back: Headers = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        assert_eq!(format!("{h:?}"), r#"[("host", "a"), ("b3", "0")]"#);
    }
}
