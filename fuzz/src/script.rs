//! The bytes of a fuzz input read as a script: small numbers and short strings, zero and
//! empty once the input runs out (so every input is a complete script).

/// A cursor over the input.
#[derive(Debug)]
pub struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    /// Reads `data` from its start.
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    /// A string of up to 11 bytes of the input (invalid UTF-8 replaced).
    pub fn text(&mut self) -> String {
        let n = usize::from(self.byte() % 12);
        let raw: Vec<u8> = (0..n).map(|_| self.byte()).collect();
        String::from_utf8_lossy(&raw).into_owned()
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
