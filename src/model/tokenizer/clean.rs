//! Prompt cleaning of the reference tokenizer wrapper (`HuggingfaceTokenizer(clean='whitespace')`, Wan2.2
//! `wan/modules/tokenizers.py`, copied by NAVA): `ftfy.fix_text`, `html.unescape` twice, strip, every whitespace run
//! to one space, strip.
//!
//! The umt5-xxl `tokenizer.json` normalizes nothing but runs of spaces, so every character this cleaning changes
//! (full-width punctuation, curly quotes, NFC) changes the ids.
//!
//! [`fix_text`] ports the parts of ftfy 6.3 that act on realistic prompts: HTML entities while no line so far held a
//! `<`, UTF-8 mojibake read as Latin-1 or Windows-1252 (whole text, or embedded runs, repeated until none is left,
//! with spaces that stand for lost 0xA0 bytes), C1 controls, Latin ligatures, full-width and half-width forms, curly
//! quotes, line breaks, terminal escapes, control characters and NFC. `tests/fixtures/ftfy_6.3.1_cases.json` holds
//! prompts with ftfy's own output. Not ported: mojibake through other code pages (1250/1251/1253/1254/1257,
//! ISO-8859-2, MacRoman, cp437), lossy-sequence repair, and ftfy's badness scoring: a Windows-1252 spelling of a
//! UTF-8 sequence is repaired wherever it occurs, which can differ from ftfy on unusual legitimate text.
//! [`html_unescape`] follows Python's `html.unescape` exactly, with the full HTML5 named-reference table.

use std::collections::HashMap;
use std::sync::OnceLock;

use tokenizers::NormalizedString;

/// The whole cleaning: `whitespace_clean(basic_clean(text))`.
pub fn clean_prompt(text: &str) -> String {
    let fixed = fix_text(text);
    let unescaped = html_unescape(&html_unescape(&fixed));
    collapse_whitespace(&unescaped)
}

/// Every run of Unicode whitespace becomes one space; leading and trailing whitespace goes.
pub fn collapse_whitespace(text: &str) -> String {
    text.split(char::is_whitespace).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
}

// ---------------------------------------------------------------------------------------------------------------
// HTML unescaping (Python `html.unescape`)

fn html5_table() -> &'static HashMap<&'static str, String> {
    static TABLE: OnceLock<HashMap<&'static str, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        include_str!("html5_entities.tsv")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, cps) = l.split_once('\t')?;
                let value = cps
                    .split(' ')
                    .map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
                    .collect::<Option<String>>()?;
                Some((name, value))
            })
            .collect()
    })
}

/// ftfy's entity table: the `;`-terminated names, plus the upper-cased form of each lower-case name when that form
/// is not itself a reference (`&EACUTE;` → `É`).
fn ftfy_table() -> &'static HashMap<String, String> {
    static TABLE: OnceLock<HashMap<String, String>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = HashMap::new();
        for (name, value) in html5_table().iter().filter(|(n, _)| n.ends_with(';')) {
            t.insert(name.to_string(), value.clone());
            let upper = name.to_uppercase();
            if *name == name.to_lowercase() && html_unescape(&format!("&{upper}")) == format!("&{upper}") {
                t.insert(upper, value.to_uppercase());
            }
        }
        t
    })
}

/// HTML5's replacements for numeric references to C1 controls, NUL and CR.
fn invalid_charref(num: u32) -> Option<char> {
    match num {
        0 => Some('\u{FFFD}'),
        0x0D => Some('\r'),
        0x80..=0x9F => Some(windows_1252(num as u8)),
        _ => None,
    }
}

/// Code points a numeric reference may not produce: replaced by nothing.
fn invalid_codepoint(num: u32) -> bool {
    matches!(num, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF) || (num & 0xFFFE) == 0xFFFE
}

/// Python `html.unescape`: numeric references (decimal or hex, `;` optional) and named references, a name without
/// `;` resolving to its longest prefix in the table (as HTML5 prescribes for the legacy names).
pub fn html_unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let table = html5_table();
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '&' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match charref(&chars, i + 1, table) {
            Some((replacement, end)) => {
                out.push_str(&replacement);
                i = end;
            }
            None => {
                out.push('&');
                i += 1;
            }
        }
    }
    out
}

/// The reference at `chars[start..]` (after `&`): its replacement and the index after it, or None (no match).
fn charref(chars: &[char], start: usize, table: &HashMap<&str, String>) -> Option<(String, usize)> {
    let at = |j: usize| chars.get(j).copied();
    if at(start) == Some('#') {
        let (radix, digits_start) = match at(start + 1) {
            Some('x' | 'X') if at(start + 2).is_some_and(|c| c.is_ascii_hexdigit()) => (16, start + 2),
            Some(c) if c.is_ascii_digit() => (10, start + 1),
            // `&#` without digits matches nothing (`#` is not a name character either).
            _ => return None,
        };
        let mut j = digits_start;
        let mut num: u32 = 0;
        while let Some(d) = at(j).and_then(|c| c.to_digit(radix)) {
            // Saturates above U+10FFFF: all such numbers give U+FFFD.
            num = num.saturating_mul(radix).saturating_add(d).min(0x0100_0000);
            j += 1;
        }
        if at(j) == Some(';') {
            j += 1;
        }
        let text = if let Some(c) = invalid_charref(num) {
            c.to_string()
        } else if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
            "\u{FFFD}".to_string()
        } else if invalid_codepoint(num) {
            String::new()
        } else {
            char::from_u32(num).map(String::from).unwrap_or_default()
        };
        return Some((text, j));
    }
    // A name: 1 to 32 characters other than tab, LF, FF, space, `<`, `&`, `#`, `;`, then an optional `;`.
    let mut j = start;
    while j - start < 32 && at(j).is_some_and(|c| !matches!(c, '\t' | '\n' | '\x0C' | ' ' | '<' | '&' | '#' | ';')) {
        j += 1;
    }
    if j == start {
        return None;
    }
    if at(j) == Some(';') {
        j += 1;
    }
    let name: String = chars[start..j].iter().collect();
    if let Some(v) = table.get(name.as_str()) {
        return Some((v.clone(), j));
    }
    // The longest prefix of at least 2 characters that is a (legacy, semicolon-free) name.
    let n = j - start;
    for x in (2..n).rev() {
        let prefix: String = chars[start..start + x].iter().collect();
        if let Some(v) = table.get(prefix.as_str()) {
            let rest: String = chars[start + x..j].iter().collect();
            return Some((format!("{v}{rest}"), j));
        }
    }
    Some((format!("&{name}"), j))
}

// ---------------------------------------------------------------------------------------------------------------
// ftfy.fix_text

/// Windows-1252 as ftfy's "sloppy" codec: the five undefined bytes map to the C1 controls of the same value.
fn windows_1252(b: u8) -> char {
    const HIGH: [u16; 32] = [
        0x20AC, 0x81, 0x201A, 0x192, 0x201E, 0x2026, 0x2020, 0x2021, 0x2C6, 0x2030, 0x160, 0x2039, 0x152, 0x8D, 0x17D,
        0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x2DC, 0x2122, 0x161, 0x203A, 0x153, 0x9D,
        0x17E, 0x178,
    ];
    match b {
        0x80..=0x9F => char::from_u32(HIGH[(b - 0x80) as usize] as u32).expect("valid table"),
        _ => b as char,
    }
}

/// The byte a character has in sloppy Windows-1252, if any.
fn windows_1252_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x80 || (0xA0..=0xFF).contains(&cp) {
        return Some(cp as u8);
    }
    (0x80u8..=0x9F).find(|&b| windows_1252(b) == c)
}

/// The byte a character stands for in mojibake read as Windows-1252 or as Latin-1 (C1 controls).
fn mojibake_byte(c: char) -> Option<u8> {
    windows_1252_byte(c).or_else(|| (0x80..=0x9F).contains(&(c as u32)).then_some(c as u8))
}

/// The byte a character has in Latin-1, if any.
fn latin1_byte(c: char) -> Option<u8> {
    u8::try_from(c as u32).ok()
}

/// ftfy's `fix_text` with its default configuration (see the module notes for what is ported). The text is fixed
/// line by line; HTML entities are decoded only until a line holds a `<` (ftfy's `unescape_html="auto"`).
pub fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

fn fix_segment(text: &str, unescape: bool) -> String {
    let mut text = text.to_string();
    // ftfy repeats its steps until nothing changes; bounded here against a pathological cycle.
    for _ in 0..16 {
        let before = text.clone();
        if unescape {
            text = ftfy_unescape(&text);
        }
        // As ftfy, mojibake is decoded until none is left before the character fixes run (straightening a quote
        // inside twice-encoded text would break the second decode).
        for _ in 0..8 {
            let fixed = fix_encoding(&text);
            if fixed == text {
                break;
            }
            text = fixed;
        }
        text =
            text.chars().map(|c| if (0x80..=0x9F).contains(&(c as u32)) { windows_1252(c as u8) } else { c }).collect();
        text = fix_ligatures_width_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text.retain(|c| !is_removed_control(c));
        let mut n = NormalizedString::from(text.as_str());
        n.nfc();
        text = n.get().to_string();
        if text == before {
            break;
        }
    }
    text
}

/// ftfy's own entity step: only complete references `&name;` / `&#num;` (up to 24 alphanumerics), and a numeric
/// one only when it decodes to something without `;`.
fn ftfy_unescape(text: &str) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let table = ftfy_table();
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let tail = &rest[p..];
        let body = &tail[1..];
        let numeric = body.starts_with('#');
        let name_start = if numeric { 1 } else { 0 };
        let len = body[name_start..].chars().take_while(|c| c.is_ascii_alphanumeric()).take(24).count();
        let end = 1 + name_start + len;
        if len > 0 && tail[end..].starts_with(';') {
            let whole = &tail[..end + 1];
            let replaced = if numeric {
                let u = html_unescape(whole);
                (!u.contains(';')).then_some(u)
            } else {
                table.get(&whole[1..]).cloned()
            };
            if let Some(r) = replaced {
                out.push_str(&r);
                rest = &tail[end + 1..];
                continue;
            }
        }
        out.push('&');
        rest = body;
    }
    out.push_str(rest);
    out
}

/// The number of continuation bytes a UTF-8 lead byte announces (only leads that can start a valid sequence).
fn utf8_continuations(b: u8) -> Option<usize> {
    match b {
        0xC2..=0xDF => Some(1),
        0xE0..=0xEF => Some(2),
        0xF0..=0xF4 => Some(3),
        _ => None,
    }
}

/// A UTF-8 sequence spelled in Windows-1252 (or Latin-1) characters starting at `chars[i]`: its decoded character and how many
/// characters it spans. As ftfy's `restore_byte_a0`, a space may stand for a lost 0xA0 continuation byte (a
/// non-breaking space that became a space) after the leads where that happens, and `Ã ` before a word is `à `.
fn mojibake_at(chars: &[char], i: usize) -> Option<(char, usize)> {
    let lead = mojibake_byte(chars[i])?;
    let n = utf8_continuations(lead)?;
    if lead == 0xC3 && chars.get(i + 1) == Some(&' ') {
        let rest: String = chars[i + 2..chars.len().min(i + 7)].iter().collect();
        if !(rest.starts_with(' ') || ["quele", "quela", "quilo", "s "].iter().any(|w| rest.starts_with(w))) {
            return Some(('\u{E0}', 1));
        }
    }
    let space_ok = match n {
        1 => matches!(lead, 0xC2 | 0xC3 | 0xC5 | 0xCE | 0xD0 | 0xD9),
        // ftfy also accepts E0 and E1 leads here, but then `à ` before a symbol in legitimate text would decode.
        2 => matches!(lead, 0xE2 | 0xE3),
        _ => lead == 0xF0,
    };
    let mut bytes = vec![lead];
    let mut spaces = 0;
    for k in 1..=n {
        let c = *chars.get(i + k)?;
        let b = if c == ' ' && space_ok && spaces == 0 {
            spaces += 1;
            0xA0
        } else {
            mojibake_byte(c)?
        };
        if !(0x80..=0xBF).contains(&b) {
            return None;
        }
        bytes.push(b);
    }
    let s = std::str::from_utf8(&bytes).ok()?;
    Some((s.chars().next()?, n + 1))
}

/// UTF-8 mojibake: if the text holds a UTF-8 sequence spelled in Windows-1252 characters, re-encode the whole text
/// as Latin-1 or Windows-1252 and decode it as UTF-8 when that succeeds; otherwise decode each such sequence in
/// place (text mixing mojibake with characters outside those code pages).
fn fix_encoding(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    if !(0..chars.len()).any(|i| mojibake_at(&chars, i).is_some()) {
        return text.to_string();
    }
    for encode in [latin1_byte as fn(char) -> Option<u8>, windows_1252_byte] {
        if let Some(bytes) = chars.iter().map(|&c| encode(c)).collect::<Option<Vec<u8>>>() {
            if let Ok(s) = String::from_utf8(bytes) {
                return s;
            }
        }
    }
    // Not one code page's worth of UTF-8 (or spaces stand for lost 0xA0 bytes): decode each sequence in place.
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        match mojibake_at(&chars, i) {
            Some((c, n)) => {
                out.push(c);
                i += n;
            }
            None => {
                out.push(chars[i]);
                i += 1;
            }
        }
    }
    out
}

/// Latin ligatures split into letters, full-width and half-width forms to their NFKC form (U+3000 to a space),
/// curly quotes straightened.
fn fix_ligatures_width_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let cp = c as u32;
        match cp {
            0x132 => out.push_str("IJ"),
            0x133 => out.push_str("ij"),
            0x149 => out.push_str("\u{2BC}n"),
            0x1C4 => out.push_str("D\u{17D}"),
            0x1C5 => out.push_str("D\u{17E}"),
            0x1C6 => out.push_str("d\u{17E}"),
            0x1C7 => out.push_str("LJ"),
            0x1C8 => out.push_str("Lj"),
            0x1C9 => out.push_str("lj"),
            0x1CA => out.push_str("NJ"),
            0x1CB => out.push_str("Nj"),
            0x1CC => out.push_str("nj"),
            0x1F1 => out.push_str("DZ"),
            0x1F2 => out.push_str("Dz"),
            0x1F3 => out.push_str("dz"),
            0xFB00 => out.push_str("ff"),
            0xFB01 => out.push_str("fi"),
            0xFB02 => out.push_str("fl"),
            0xFB03 => out.push_str("ffi"),
            0xFB04 => out.push_str("ffl"),
            0xFB05 => out.push_str("\u{17F}t"),
            0xFB06 => out.push_str("st"),
            0x3000 => out.push(' '),
            0xFF01..=0xFFEE => {
                let mut n = NormalizedString::from(c.to_string().as_str());
                n.nfkc();
                out.push_str(n.get());
            }
            0x2BC | 0x2018..=0x201B => out.push('\''),
            0x201C..=0x201F => out.push('"'),
            _ => out.push(c),
        }
    }
    out
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n").replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ANSI escapes `ESC [ digits-and-semicolons letter`.
fn remove_terminal_escapes(text: &str) -> String {
    if !text.contains('\x1B') {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\x1B' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while chars.get(j).is_some_and(|c| c.is_ascii_digit() || *c == ';') {
                j += 1;
            }
            if chars.get(j).is_some_and(|c| c.is_ascii_alphabetic()) {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ftfy's `CONTROL_CHARS`: C0 controls but tab, LF, FF and CR; DEL; deprecated format characters; the BOM and
/// interlinear annotation / object replacement characters.
fn is_removed_control(c: char) -> bool {
    matches!(c as u32, 0x0..=0x8 | 0xB | 0xE..=0x1F | 0x7F | 0x206A..=0x206F | 0xFEFF | 0xFFF9..=0xFFFC)
}
