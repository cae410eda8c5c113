//! The line-length guard in front of the IMAP parser: it passes input on only up to the
//! end of the last complete line (or through the literal a line announced), so a line
//! longer than the limit never reaches the parser, not even a prefix of it. Such a line
//! is thrown away up to its LF and reported with its tag, for a `BAD` that leaves the
//! session going. It knows no command, only lines, literal announcements (`{N}`,
//! `{N+}`, `~{N}`) and their bytes (RFC 9051 §4.3).

/// What the guard found in the input besides the bytes it passed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlong {
    /// The tag the thrown-away line started with, if it started with one.
    pub tag: Option<String>,
}

/// The guard's state between reads.
#[derive(Debug)]
pub struct LineGuard {
    max_line: usize,
    max_literal: u32,
    /// The current, incomplete line.
    line: Vec<u8>,
    /// Literal bytes still to pass through untouched.
    literal_left: u64,
    /// Discarding an overlong line up to its LF; holds its tag.
    discarding: Option<Option<String>>,
}

impl LineGuard {
    /// A guard for lines up to `max_line` octets (CRLF included) and literals up to
    /// `max_literal` octets (a larger synchronising literal is refused by the parser, so
    /// its bytes are not expected).
    pub fn new(max_line: usize, max_literal: u32) -> Self {
        Self { max_line, max_literal, line: Vec::new(), literal_left: 0, discarding: None }
    }

    /// Takes `input`; appends what may go to the parser to `out` and returns the
    /// overlong lines thrown away.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Vec<Overlong> {
        let mut overlong = Vec::new();
        while !input.is_empty() {
            if self.literal_left > 0 {
                let n = usize::try_from(self.literal_left).unwrap_or(usize::MAX).min(input.len());
                out.extend_from_slice(&input[..n]);
                self.literal_left -= n as u64;
                input = &input[n..];
                continue;
            }
            let lf = input.iter().position(|&b| b == b'\n');
            if let Some(tag) = &self.discarding {
                match lf {
                    Some(i) => {
                        overlong.push(Overlong { tag: tag.clone() });
                        self.discarding = None;
                        input = &input[i + 1..];
                    }
                    None => input = &[],
                }
                continue;
            }
            let take = lf.map_or(input.len(), |i| i + 1);
            if self.line.len() + take > self.max_line {
                let mut start = std::mem::take(&mut self.line);
                start.extend_from_slice(&input[..take.min(64)]);
                self.discarding = Some(tag_of(&start));
                continue;
            }
            self.line.extend_from_slice(&input[..take]);
            input = &input[take..];
            if lf.is_some() {
                self.literal_left = self.announced(&self.line);
                out.append(&mut self.line);
            }
        }
        overlong
    }

    /// The literal bytes that follow a complete `line`, if it announces one the parser
    /// takes (RFC 9051 §4.3: `{N}` or `{N+}` at the end of the line; RFC 3516 `~{N}`).
    fn announced(&self, line: &[u8]) -> u64 {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(body) = line.strip_suffix(b"}") else { return 0 };
        let Some(open) = body.iter().rposition(|&b| b == b'{') else { return 0 };
        let inside = &body[open + 1..];
        let (digits, sync) = match inside.strip_suffix(b"+") {
            Some(d) => (d, false),
            None => (inside, true),
        };
        let Some(n) = std::str::from_utf8(digits).ok().and_then(|d| d.parse::<u64>().ok()) else { return 0 };
        // The parser refuses a synchronising literal over the limit: the client then sends
        // no literal bytes.
        if sync && n > u64::from(self.max_literal) { 0 } else { n }
    }
}

/// The tag a line starts with, if it looks like one (RFC 9051 §9: `tag = 1*<any
/// ASTRING-CHAR except "+">`).
pub fn tag_of(line: &[u8]) -> Option<String> {
    let end = line.iter().position(|&b| b == b' ' || b == b'\r' || b == b'\n').unwrap_or(line.len());
    let tag = &line[..end];
    let ok = !tag.is_empty()
        && end < line.len()
        && tag.iter().all(|&b| b.is_ascii_graphic() && !b"(){%*\"\\+]".contains(&b));
    ok.then(|| String::from_utf8_lossy(tag).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns what passed and the tags refused.
    fn run(guard: &mut LineGuard, input: &[u8], step: usize) -> (Vec<u8>, Vec<Option<String>>) {
        let mut out = Vec::new();
        let mut refused = Vec::new();
        for piece in input.chunks(step) {
            refused.extend(guard.feed(piece, &mut out).into_iter().map(|o| o.tag));
        }
        (out, refused)
    }

    #[test]
    fn short_lines_pass_whole_whatever_the_split() {
        let input = b"a1 NOOP\r\na2 CAPABILITY\r\n";
        for step in [1, 2, 5, 100] {
            let mut g = LineGuard::new(100, 1000);
            assert_eq!(run(&mut g, input, step), (input.to_vec(), vec![]), "step {step}");
        }
    }

    #[test]
    fn an_incomplete_line_is_held_back() {
        let mut g = LineGuard::new(100, 1000);
        let mut out = Vec::new();
        g.feed(b"a1 NO", &mut out);
        assert!(out.is_empty());
        g.feed(b"OP\r\na2", &mut out);
        assert_eq!(out, b"a1 NOOP\r\n");
    }

    #[test]
    fn an_overlong_line_is_dropped_with_its_tag_and_the_next_passes() {
        let mut line = b"x7 LOGIN ".to_vec();
        line.extend(std::iter::repeat_n(b'a', 300));
        line.extend_from_slice(b"\r\nx8 NOOP\r\n");
        for step in [1, 7, 64, 1000] {
            let mut g = LineGuard::new(100, 1000);
            let (out, refused) = run(&mut g, &line, step);
            assert_eq!(out, b"x8 NOOP\r\n", "step {step}");
            assert_eq!(refused, vec![Some("x7".to_string())]);
        }
    }

    #[test]
    fn literal_bytes_pass_through_even_past_the_line_limit() {
        let mut input = b"a1 LOGIN {200}\r\n".to_vec();
        input.extend(std::iter::repeat_n(b'p', 200));
        input.extend_from_slice(b" {3+}\r\nabc\r\n");
        for step in [1, 13, 500] {
            let mut g = LineGuard::new(50, 1000);
            assert_eq!(run(&mut g, &input, step), (input.clone(), vec![]), "step {step}");
        }
    }

    #[test]
    fn a_refused_synchronising_literal_expects_no_bytes() {
        let mut g = LineGuard::new(50, 10);
        let (out, _) = run(&mut g, b"a1 LOGIN {99}\r\na2 NOOP\r\n", 3);
        assert_eq!(out, b"a1 LOGIN {99}\r\na2 NOOP\r\n");
        assert_eq!(g.literal_left, 0);
    }

    #[test]
    fn tags_are_recognised_only_when_they_can_be_tags() {
        assert_eq!(tag_of(b"a001 NOOP"), Some("a001".into()));
        assert_eq!(tag_of(b"+ NOOP"), None);
        assert_eq!(tag_of(b"aaaa"), None, "no separator: perhaps cut short");
        assert_eq!(tag_of(b"\"x\" NOOP"), None);
    }
}
