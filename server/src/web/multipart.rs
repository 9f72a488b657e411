//! A small `multipart/form-data` reader (RFC 7578) for the one form that
//! uploads a file: the item import. The body is already buffered under the
//! import size limit, so parsing is a pure function over bytes; a full
//! streaming multipart crate would cost more build time than it saves.

/// One form field or file.
#[derive(Debug, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: String,
    pub filename: Option<String>,
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type.
pub fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then(|| v.to_owned())
    })
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() || needle.is_empty() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// A header parameter such as `name="file"`, unquoted.
fn param(header: &str, key: &str) -> Option<String> {
    header.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(key)
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Splits a body into its parts. Anything malformed is an error with a
/// reason; parts without a `form-data` name are skipped.
pub fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, String> {
    let delim = format!("--{boundary}");
    let next_delim = format!("\r\n--{boundary}");
    let mut pos = find(body, delim.as_bytes(), 0).ok_or("the form has no parts")? + delim.len();
    let mut parts = Vec::new();
    loop {
        if body[pos..].starts_with(b"--") {
            return Ok(parts);
        }
        if !body[pos..].starts_with(b"\r\n") {
            return Err("a part boundary is not followed by a line break".into());
        }
        pos += 2;
        let head_end = find(body, b"\r\n\r\n", pos).ok_or("a part has no end of headers")?;
        let head = std::str::from_utf8(&body[pos..head_end])
            .map_err(|_| "a part's headers are not UTF-8")?;
        let data_start = head_end + 4;
        let data_end = find(body, next_delim.as_bytes(), data_start)
            .ok_or("the form ends without its closing boundary")?;
        let disposition = head
            .split("\r\n")
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-disposition")
                    .then_some(v.trim())
            })
            .ok_or("a part has no Content-Disposition")?;
        if let Some(name) = param(disposition, "name") {
            parts.push(Part {
                name,
                filename: param(disposition, "filename"),
                data: &body[data_start..data_end],
            });
        }
        pos = data_end + next_delim.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary("multipart/form-data; boundary=----abc123").as_deref(),
            Some("----abc123")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"q x\"").as_deref(),
            Some("q x")
        );
        assert_eq!(boundary("application/x-www-form-urlencoded"), None);
        assert_eq!(boundary("multipart/form-data"), None);
    }

    #[test]
    fn fields_and_files_are_split_exactly() {
        let body = b"preamble\r\n--XY\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n--XY\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\nContent-Type: text/csv\r\n\r\ntext\r\nhello\r\n\r\n--XY\r\nContent-Disposition: form-data; name=\"empty\"\r\n\r\n\r\n--XY--\r\n";
        let parts = parse(body, "XY").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "csrf");
        assert_eq!(parts[0].data, b"tok");
        assert_eq!(parts[1].filename.as_deref(), Some("a.csv"));
        assert_eq!(parts[1].data, b"text\r\nhello\r\n");
        assert_eq!(parts[2].data, b"");
    }

    #[test]
    fn malformed_bodies_are_refused_with_a_reason() {
        assert!(parse(b"no boundary here", "XY").is_err());
        assert!(
            parse(
                b"--XY\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated",
                "XY"
            )
            .is_err()
        );
        assert!(parse(b"--XY\r\nno-blank-line", "XY").is_err());
        assert!(parse(b"--XYjunk", "XY").is_err());
        assert_eq!(parse(b"--XY--", "XY").unwrap(), vec![]);
    }
}
