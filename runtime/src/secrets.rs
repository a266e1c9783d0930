//! The secrets the host injected into one invocation, and scrubbing them from everything that
//! leaves it.
//!
//! The guest never holds a credential, but an upstream can hand one back: an API that echoes the
//! request (`/anything`), an error page that prints the `Authorization` header, a redirect URL
//! with the query key in it. Whatever the upstream says reaches the guest, and from the guest
//! the output, the errors, the logs and the audit trail. So the host remembers every secret it
//! put on the wire during an invocation ([`Secrets::add`], called by the egress choke point as it
//! injects), in the forms it travels in (raw, percent-encoded, JSON-escaped, base64, and for
//! Basic the base64 of `user:password`), and masks them in the response the guest reads (headers
//! and body, as it streams: [`ScrubbedBody`]), in the output, in errors and denials, and in the
//! guest's log lines.
//!
//! A mask keeps the length of what it replaces (`[REDACTED]` then `*`s), so a `Content-Length`
//! the upstream sent stays true. Forms shorter than [`MIN_SCRUBBED_BYTES`] are not scrubbed:
//! masking every `abc` in a result would destroy it, and a secret that short protects nothing.
//! An invocation that injected nothing pays nothing.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use zeroize::Zeroizing;

/// Forms shorter than this are not scrubbed (see the module doc).
pub const MIN_SCRUBBED_BYTES: usize = 4;
const MASK: &[u8] = b"[REDACTED]";

/// The secrets of one invocation. Shared by its capabilities; empty until a credential is used.
#[derive(Default)]
pub struct Secrets {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

#[derive(Default)]
struct Inner {
    forms: Vec<Zeroizing<Vec<u8>>>,
    /// Built on first use after a change.
    matcher: Option<Arc<Matcher>>,
}

/// The forms a secret travels in.
fn forms(secret: &str) -> Vec<Zeroizing<Vec<u8>>> {
    let b64 = &base64::engine::general_purpose::STANDARD_NO_PAD;
    let b64url = &base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut out = vec![
        Zeroizing::new(secret.as_bytes().to_vec()),
        Zeroizing::new(percent_encode(secret, true).into_bytes()),
        Zeroizing::new(percent_encode(secret, false).into_bytes()),
        Zeroizing::new(b64.encode(secret).into_bytes()),
        Zeroizing::new(b64url.encode(secret).into_bytes()),
    ];
    if let Ok(json) = serde_json::to_string(secret) {
        let inner = &json[1..json.len() - 1];
        out.push(Zeroizing::new(inner.as_bytes().to_vec()));
        // Some JSON encoders escape `/` too.
        out.push(Zeroizing::new(inner.replace('/', "\\/").into_bytes()));
    }
    // A query parsed and written back as a form: spaces as `+`.
    out.push(Zeroizing::new(
        percent_encode(secret, true)
            .replace("%20", "+")
            .into_bytes(),
    ));
    // An HTML error page that prints the header.
    let html = secret
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;");
    out.push(Zeroizing::new(html.into_bytes()));
    out
}

/// Percent-encodes every byte outside the unreserved set, in upper or lower case hex.
fn percent_encode(text: &str, upper: bool) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else if upper {
                format!("%{b:02X}")
            } else {
                format!("%{b:02x}")
            }
        })
        .collect()
}

impl Secrets {
    /// Remembers `secret`, in every form it travels in.
    pub fn add(&self, secret: &str) {
        self.extend(forms(secret));
    }

    /// Remembers a Basic credential: the password's forms and `base64(user:password)`.
    pub fn add_basic(&self, username: &str, password: &str) {
        let pair = Zeroizing::new(format!("{username}:{password}"));
        let mut all = forms(password);
        all.extend(forms(&pair));
        let encoded = base64::engine::general_purpose::STANDARD.encode(pair.as_bytes());
        all.push(Zeroizing::new(encoded.into_bytes()));
        self.extend(all);
    }

    fn extend(&self, new: Vec<Zeroizing<Vec<u8>>>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for form in new {
            if form.len() >= MIN_SCRUBBED_BYTES && !inner.forms.contains(&form) {
                inner.forms.push(form);
                changed = true;
            }
        }
        if changed {
            inner.matcher = None;
        }
    }

    /// Whether anything was injected.
    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forms
            .is_empty()
    }

    /// The matcher over every form so far; none when nothing was injected.
    pub fn matcher(&self) -> Option<Arc<Matcher>> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.forms.is_empty() {
            return None;
        }
        if inner.matcher.is_none() {
            let patterns: Vec<&[u8]> = inner.forms.iter().map(|f| f.as_slice()).collect();
            let automaton = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("a few short literal patterns always build");
            let longest = patterns.iter().map(|p| p.len()).max().unwrap_or(0);
            inner.matcher = Some(Arc::new(Matcher { automaton, longest }));
        }
        inner.matcher.clone()
    }

    /// `text` with every secret masked.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.matcher() {
            Some(m) => m.scrub_str(text),
            None => Cow::Borrowed(text),
        }
    }

    /// Masks every secret in `text` in place.
    pub fn scrub_in_place(&self, text: &mut String) {
        if let Cow::Owned(clean) = self.scrub(text) {
            *text = clean;
        }
    }
}

/// Finds the secrets of one invocation in bytes.
pub struct Matcher {
    automaton: AhoCorasick,
    longest: usize,
}

/// The mask for `len` bytes: `[REDACTED]` and `*`s, or only `*`s when shorter.
fn mask(len: usize, out: &mut Vec<u8>) {
    if len >= MASK.len() {
        out.extend_from_slice(MASK);
        out.extend(std::iter::repeat_n(b'*', len - MASK.len()));
    } else {
        out.extend(std::iter::repeat_n(b'*', len));
    }
}

impl Matcher {
    /// Masks what `bytes` holds up to where a secret could still be cut off by the end of the
    /// buffer (unless `last`). Returns the clean bytes and how many input bytes they cover; the
    /// rest must be kept and passed again with what follows.
    pub fn scrub_prefix(&self, bytes: &[u8], last: bool) -> (Vec<u8>, usize) {
        // A match starting before `safe` ends within `bytes`: it is at most `longest` long.
        let safe = if last {
            bytes.len()
        } else {
            bytes.len().saturating_sub(self.longest.saturating_sub(1))
        };
        let mut out = Vec::with_capacity(bytes.len());
        let mut at = 0;
        for m in self.automaton.find_iter(bytes) {
            if m.start() >= safe {
                break;
            }
            out.extend_from_slice(&bytes[at..m.start()]);
            mask(m.len(), &mut out);
            at = m.end();
        }
        let covered = at.max(safe);
        out.extend_from_slice(&bytes[at..covered]);
        (out, covered)
    }

    /// `bytes` with every secret masked, or `None` when there is none.
    pub fn scrub_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        if !self.automaton.is_match(bytes) {
            return None;
        }
        Some(self.scrub_prefix(bytes, true).0)
    }

    pub fn scrub_str<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.scrub_bytes(text.as_bytes()) {
            // Masks are ASCII and replace whole matches of valid UTF-8 patterns.
            Some(clean) => Cow::Owned(String::from_utf8_lossy(&clean).into_owned()),
            None => Cow::Borrowed(text),
        }
    }

    /// Masks secrets in header values (a mask keeps a value valid).
    pub fn scrub_headers(&self, headers: &mut http::HeaderMap) {
        for value in headers.values_mut() {
            if let Some(clean) = self.scrub_bytes(value.as_bytes())
                && let Ok(clean) = http::HeaderValue::from_bytes(&clean)
            {
                *value = clean;
            }
        }
    }
}

/// A response body with the invocation's secrets masked as it streams. Up to the longest
/// form's length, less one byte, is held back between frames, so a secret split across two
/// frames is still found. Trailers are masked too.
pub struct ScrubbedBody<B> {
    inner: B,
    matcher: Arc<Matcher>,
    held: BytesMut,
    trailers: Option<http::HeaderMap>,
    ended: bool,
}

impl<B> ScrubbedBody<B> {
    pub fn new(inner: B, matcher: Arc<Matcher>) -> Self {
        ScrubbedBody {
            inner,
            matcher,
            held: BytesMut::new(),
            trailers: None,
            ended: false,
        }
    }

    fn release(&mut self, last: bool) -> Option<Bytes> {
        let (clean, covered) = self.matcher.scrub_prefix(&self.held, last);
        let _ = self.held.split_to(covered);
        (!clean.is_empty()).then(|| Bytes::from(clean))
    }
}

impl<B> http_body::Body for ScrubbedBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use http_body::Frame;
        use std::task::Poll;
        let this = &mut *self;
        loop {
            if this.ended {
                if let Some(clean) = this.release(true) {
                    return Poll::Ready(Some(Ok(Frame::data(clean))));
                }
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            }
            match std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => this.ended = true,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        this.held.extend_from_slice(&data);
                        if let Some(clean) = this.release(false) {
                            return Poll::Ready(Some(Ok(Frame::data(clean))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(mut trailers) = frame.into_trailers() {
                            this.matcher.scrub_headers(&mut trailers);
                            this.trailers = Some(trailers);
                            this.ended = true;
                        }
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    const TOKEN: &str = "tok-SECRET/42+x";

    fn secrets() -> Secrets {
        let s = Secrets::default();
        s.add(TOKEN);
        s.add_basic("ada", "pa ss:word");
        s.add("h&t<ml>'s\"");
        s
    }

    #[test]
    fn secrets_are_masked_in_every_form_they_travel_in() {
        let s = secrets();
        let b64 = &base64::engine::general_purpose::STANDARD;
        for echoed in [
            format!("Authorization: Bearer {TOKEN}"),
            format!("?key={}", percent_encode(TOKEN, true)),
            format!("?key={}", percent_encode(TOKEN, false)),
            format!("{{\"echo\":{}}}", serde_json::to_string(TOKEN).unwrap()),
            format!("Basic {}", b64.encode("ada:pa ss:word")),
            format!("b64 {}", b64.encode(TOKEN)),
            "password pa ss:word in an error".to_owned(),
            format!(
                "form key={}",
                percent_encode(TOKEN, true).replace("%20", "+")
            ),
            format!("{{\"php\":\"{}\"}}", TOKEN.replace('/', "\\/")),
            "<p>pa ss:word</p>".to_owned(),
            "<p>Authorization: Bearer h&amp;t&lt;ml&gt;&#39;s&quot;</p>".to_owned(),
        ] {
            let clean = s.scrub(&echoed);
            assert!(
                !clean.contains(TOKEN) && !clean.contains("pa ss:word"),
                "{clean}"
            );
            assert!(!clean.contains("h&amp;t"), "{clean}");
            assert!(
                clean.contains("[REDACTED]") || clean.contains("****"),
                "{clean}"
            );
            assert_eq!(
                clean.len(),
                echoed.len(),
                "a mask keeps the length: {clean}"
            );
        }
        assert_eq!(s.scrub("nothing here"), "nothing here");
        assert!(Secrets::default().matcher().is_none());
    }

    #[test]
    fn secrets_shorter_than_the_minimum_are_not_scrubbed() {
        let s = Secrets::default();
        s.add("ab");
        assert_eq!(s.scrub("abab"), "abab");
        assert!(s.is_empty());
    }

    /// A body cut into frames at every possible point still has every secret masked.
    #[tokio::test]
    async fn secrets_are_masked_across_frame_boundaries() {
        let s = secrets();
        let text = format!("head {TOKEN} middle {TOKEN}{TOKEN} tail");
        for cut in 0..=text.len() {
            for second in [cut, (cut + 3).min(text.len())] {
                let parts: Vec<Result<http_body::Frame<Bytes>, std::convert::Infallible>> = vec![
                    Ok(http_body::Frame::data(Bytes::copy_from_slice(
                        &text.as_bytes()[..cut],
                    ))),
                    Ok(http_body::Frame::data(Bytes::copy_from_slice(
                        &text.as_bytes()[cut..second],
                    ))),
                    Ok(http_body::Frame::data(Bytes::copy_from_slice(
                        &text.as_bytes()[second..],
                    ))),
                ];
                let body = http_body_util::StreamBody::new(futures_util::stream::iter(parts));
                let scrubbed = ScrubbedBody::new(body, s.matcher().unwrap());
                let out = scrubbed.collect().await.unwrap().to_bytes();
                let out = String::from_utf8(out.to_vec()).unwrap();
                assert!(!out.contains(TOKEN), "cut at {cut}/{second}: {out}");
                assert_eq!(out.len(), text.len());
                assert!(out.starts_with("head ") && out.ends_with(" tail"), "{out}");
            }
        }
    }
}
