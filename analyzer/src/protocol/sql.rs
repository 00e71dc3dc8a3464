//! SQL text as the database protocols see it (PostgreSQL, MySQL): the sanitized query text
//! (every literal as `?`), the operation (the statement's first keyword) and the collection
//! (the first table the statement names), by one small lexer shared by all three.
//!
//! This is not a SQL parser: it knows strings, quoted identifiers, comments, numbers and
//! words, which is enough to hide values and to find `FROM t` / `INTO t` / `UPDATE t` /
//! `JOIN t`. What it does not understand it leaves as it is (sanitizing) or does not
//! report (collection).
//!
//! ```
//! use podtrace_analyzer::internals::sql::{collection, operation, sanitize, Dialect};
//! let q = "SELECT name FROM users WHERE id = 42 AND email = 'a@b.c'";
//! assert_eq!(sanitize(q, Dialect::Postgres), "SELECT name FROM users WHERE id = ? AND email = ?");
//! assert_eq!(operation(q).as_deref(), Some("SELECT"));
//! assert_eq!(collection(q, Dialect::Postgres).as_deref(), Some("users"));
//! ```

/// Which SQL dialect's quoting rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL: `'…'` strings (`''` escapes; `E'…'` with backslash escapes), `$tag$…$tag$`
    /// strings, `"…"` identifiers, `$1` parameters.
    Postgres,
    /// MySQL / MariaDB: `'…'` and `"…"` strings with backslash escapes, `` `…` ``
    /// identifiers, `?` parameters.
    MySql,
}

/// Longest identifier reported as a collection (longer ones are not reported).
const MAX_IDENT: usize = 256;

/// A lexical token: its kind and its byte range in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A word: keyword or unquoted identifier (letters, digits, `_`, `$`).
    Word,
    /// A quoted identifier (`"x"` in PostgreSQL, `` `x` `` in MySQL).
    Ident,
    /// A literal: string, number, dollar-quoted string, bit/hex string.
    Literal,
    /// A parameter placeholder (`$1`, `?`).
    Param,
    /// A comment (kept as written).
    Comment,
    /// White space.
    Space,
    /// Any other character (punctuation, operators).
    Punct,
}

/// Splits `s` into tokens (kind, start, end); the ranges cover the whole text.
fn lex(s: &str, dialect: Dialect) -> Vec<(Kind, usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = match c {
            c if is_space(c) => {
                while i < b.len() && is_space(b[i]) {
                    i += 1;
                }
                Kind::Space
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Kind::Comment
            }
            b'#' if dialect == Dialect::MySql => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                Kind::Comment
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(b.len());
                Kind::Comment
            }
            b'\'' => {
                i = quoted_end(b, i, b'\'', dialect == Dialect::MySql);
                Kind::Literal
            }
            b'"' if dialect == Dialect::MySql => {
                i = quoted_end(b, i, b'"', true);
                Kind::Literal
            }
            b'"' => {
                i = quoted_end(b, i, b'"', false);
                Kind::Ident
            }
            b'`' if dialect == Dialect::MySql => {
                i = quoted_end(b, i, b'`', false);
                Kind::Ident
            }
            b'$' if dialect == Dialect::Postgres => match dollar(b, i) {
                Dollar::Param(end) => {
                    i = end;
                    Kind::Param
                }
                Dollar::Quote(end) => {
                    i = end;
                    Kind::Literal
                }
                Dollar::No => {
                    i += 1;
                    Kind::Punct
                }
            },
            b'?' if dialect == Dialect::MySql => {
                i += 1;
                Kind::Param
            }
            b'0'..=b'9' => {
                i = number_end(b, i);
                Kind::Literal
            }
            b'.' if b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(b, i);
                Kind::Literal
            }
            c if is_word_start(c) => {
                // A prefixed string: E'…', B'…', X'…', N'…', U&'…' (MySQL: _utf8'…').
                let mut j = i;
                while j < b.len() && is_word_char(b[j]) {
                    j += 1;
                }
                let word = &b[i..j];
                let prefixed = b.get(j) == Some(&b'\'')
                    && matches!(
                        word,
                        [b'e' | b'E' | b'b' | b'B' | b'x' | b'X' | b'n' | b'N']
                    );
                if prefixed {
                    let escapes = dialect == Dialect::MySql || word.eq_ignore_ascii_case(b"e");
                    i = quoted_end(b, j, b'\'', escapes);
                    Kind::Literal
                } else {
                    i = j;
                    Kind::Word
                }
            }
            _ => {
                // One character (a whole UTF-8 sequence).
                i += utf8_len(c);
                i = i.min(b.len());
                Kind::Punct
            }
        };
        out.push((kind, start, i));
    }
    out
}

/// SQL white space (vertical tab included, which `u8::is_ascii_whitespace` leaves out).
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn utf8_len(c: u8) -> usize {
    match c {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        0xc0..=0xdf => 2,
        _ => 1,
    }
}

fn is_word_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_word_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The end of a quoted run opened at `i` by `q` (doubled `q` escapes it; with `escapes`,
/// a backslash too); an unclosed run ends at the end of the text.
fn quoted_end(b: &[u8], i: usize, q: u8, escapes: bool) -> usize {
    let mut j = i + 1;
    while j < b.len() {
        if escapes && b[j] == b'\\' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// The end of a number starting at `i` (digits, one `.`, an exponent, hex digits after
/// `0x`).
fn number_end(b: &[u8], i: usize) -> usize {
    let mut j = i;
    if b[j] == b'0' && matches!(b.get(j + 1), Some(b'x' | b'X')) {
        j += 2;
        while j < b.len() && b[j].is_ascii_hexdigit() {
            j += 1;
        }
        return j;
    }
    while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'_') {
        j += 1;
    }
    if matches!(b.get(j), Some(b'e' | b'E')) {
        let mut k = j + 1;
        if matches!(b.get(k), Some(b'+' | b'-')) {
            k += 1;
        }
        if b.get(k).is_some_and(u8::is_ascii_digit) {
            j = k;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
        }
    }
    j
}

enum Dollar {
    /// `$1`: a parameter ending here.
    Param(usize),
    /// `$tag$…$tag$`: a string ending here.
    Quote(usize),
    /// A lone `$`.
    No,
}

fn dollar(b: &[u8], i: usize) -> Dollar {
    let mut j = i + 1;
    if b.get(j).is_some_and(u8::is_ascii_digit) {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        return Dollar::Param(j);
    }
    while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
        j += 1;
    }
    if b.get(j) != Some(&b'$') {
        return Dollar::No;
    }
    let tag = &b[i..=j];
    let body = j + 1;
    match b[body..].windows(tag.len()).position(|w| w == tag) {
        Some(p) => Dollar::Quote(body + p + tag.len()),
        None => Dollar::Quote(b.len()),
    }
}

/// `sql` with every literal (strings, numbers, dollar-quoted and prefixed strings) as `?`;
/// words, identifiers, parameters, comments and spacing as written.
pub fn sanitize(sql: &str, dialect: Dialect) -> String {
    let mut out = String::with_capacity(sql.len());
    for (kind, a, z) in lex(sql, dialect) {
        match kind {
            Kind::Literal => out.push('?'),
            _ => out.push_str(&sql[a..z]),
        }
    }
    out
}

/// The words and identifiers of `sql` (comments and spaces left out), upper-cased words
/// marked as such: `(text, is_word)`.
fn significant(sql: &str, dialect: Dialect) -> impl Iterator<Item = (Kind, &str)> {
    lex(sql, dialect)
        .into_iter()
        .filter(|(k, _, _)| !matches!(k, Kind::Comment | Kind::Space))
        .map(move |(k, a, z)| (k, &sql[a..z]))
}

/// The statement's operation: its first word, upper case (`SELECT`, `INSERT`, `BEGIN`);
/// `None` for an empty statement or one that does not start with a word.
pub fn operation(sql: &str) -> Option<String> {
    // The dialect does not matter before the first word.
    let (kind, text) = significant(sql, Dialect::Postgres).next()?;
    (kind == Kind::Word).then(|| text.to_ascii_uppercase())
}

/// The first table the statement names: the name after `FROM`, `INTO` (`INSERT`/`REPLACE`/
/// `MERGE INTO`; `INTO TABLE` of `LOAD DATA`), `UPDATE`, `JOIN`, `TABLE` (`CREATE`/`DROP`/
/// `ALTER`/`TRUNCATE TABLE`, `IF [NOT] EXISTS` passed over), or `COPY`; schema-qualified
/// names as written (`public.users`), quoted names without their quotes. In a `SELECT`,
/// `INTO` names where the rows go (variables, `OUTFILE`, a new table), not the table read:
/// it is passed over. `None` when there is none (or a subquery comes first).
pub fn collection(sql: &str, dialect: Dialect) -> Option<String> {
    let toks: Vec<(Kind, &str)> = significant(sql, dialect).collect();
    let first = toks.first().filter(|(k, _)| *k == Kind::Word)?.1;
    let is = |i: usize, w: &str| {
        toks.get(i)
            .is_some_and(|(k, t)| *k == Kind::Word && t.eq_ignore_ascii_case(w))
    };
    let mut i = 0;
    while i < toks.len() {
        let (kind, text) = toks[i];
        let keyword = kind == Kind::Word
            && ["FROM", "INTO", "UPDATE", "JOIN", "TABLE"]
                .iter()
                .any(|w| text.eq_ignore_ascii_case(w))
            || (i == 0 && first.eq_ignore_ascii_case("COPY"));
        // After FROM / JOIN, a name followed by `(` is a function (`generate_series(…)`).
        let source = ["FROM", "JOIN"]
            .iter()
            .any(|w| text.eq_ignore_ascii_case(w));
        let into = text.eq_ignore_ascii_case("INTO");
        if keyword && !(into && first.eq_ignore_ascii_case("SELECT")) {
            let mut j = i + 1;
            // `LOAD DATA … INTO TABLE t`.
            if into && is(j, "TABLE") {
                j += 1;
            }
            // `DELETE FROM ONLY t`, `TRUNCATE TABLE ONLY t`, `CREATE TABLE IF NOT EXISTS t`.
            if is(j, "ONLY") {
                j += 1;
            }
            if is(j, "IF") && is(j + 1, "NOT") && is(j + 2, "EXISTS") {
                j += 3;
            } else if is(j, "IF") && is(j + 1, "EXISTS") {
                j += 2;
            }
            if let Some((name, len)) = qualified_name(&toks[j..]) {
                let call = toks
                    .get(j + len)
                    .is_some_and(|t| t.0 == Kind::Punct && t.1 == "(");
                if !(source && call) {
                    return Some(name);
                }
            }
        }
        i += 1;
    }
    None
}

/// A possibly schema-qualified name at the start of `toks` (`a`, `a.b`, `"A"."b"`) and
/// the number of tokens it takes.
fn qualified_name(toks: &[(Kind, &str)]) -> Option<(String, usize)> {
    let part = |t: &(Kind, &str)| match t.0 {
        Kind::Word if !is_reserved(t.1) => Some(t.1.to_string()),
        // The opening quote is one ASCII byte; an unclosed identifier has no closing one
        // (and may end inside a multi-byte character's neighbours: no byte slicing there).
        Kind::Ident => {
            let inner = &t.1[1..];
            let inner = inner.strip_suffix(['"', '`']).unwrap_or(inner);
            (!inner.is_empty()).then(|| inner.to_string())
        }
        _ => None,
    };
    let mut name = part(toks.first()?)?;
    let mut i = 1;
    while toks
        .get(i)
        .is_some_and(|t| t.0 == Kind::Punct && t.1 == ".")
    {
        name.push('.');
        name.push_str(&part(toks.get(i + 1)?)?);
        i += 2;
    }
    (name.len() <= MAX_IDENT).then_some((name, i))
}

/// Words that follow `FROM`/`INTO`/`TABLE` without being a table name.
fn is_reserved(w: &str) -> bool {
    [
        "SELECT", "LATERAL", "UNNEST", "VALUES", "WHERE", "SET", "DEFAULT", "STDIN", "STDOUT",
    ]
    .iter()
    .any(|r| w.eq_ignore_ascii_case(r))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_become_placeholders() {
        let pg = Dialect::Postgres;
        assert_eq!(
            sanitize("SELECT * FROM t WHERE a = 'x''y' AND b = 3.5e-2", pg),
            "SELECT * FROM t WHERE a = ? AND b = ?"
        );
        assert_eq!(
            sanitize("SELECT E'a\\'b', $$x$$, $f$ it's $f$, $1, t1.c2", pg),
            "SELECT ?, ?, ?, $1, t1.c2"
        );
        assert_eq!(
            sanitize("SELECT \"Weird 'name'\" FROM x -- it's 5\n", pg),
            "SELECT \"Weird 'name'\" FROM x -- it's 5\n"
        );
        assert_eq!(sanitize("SELECT x'1F', B'01', .5", pg), "SELECT ?, ?, ?");
        assert_eq!(sanitize("SELECT 'unclosed", pg), "SELECT ?");
        let my = Dialect::MySql;
        assert_eq!(
            sanitize("SELECT \"a\\\"b\", 'c', `d`, 0x1F, ? FROM t", my),
            "SELECT ?, ?, `d`, ?, ? FROM t"
        );
        // Every white space character ends a word (a vertical tab once looped forever).
        assert_eq!(sanitize("V\x0bR  I", pg), "V\x0bR  I");
        // Non-ASCII text is kept whole.
        assert_eq!(sanitize("SELECT 'é' AS é€", pg), "SELECT ? AS é€");
    }

    #[test]
    fn operation_is_the_first_word() {
        assert_eq!(operation("  select 1").as_deref(), Some("SELECT"));
        assert_eq!(
            operation("/* c */ -- x\n insert into t values (1)").as_deref(),
            Some("INSERT")
        );
        assert_eq!(operation("").as_deref(), None);
        assert_eq!(operation("(SELECT 1)").as_deref(), None);
    }

    #[test]
    fn collection_is_the_first_table() {
        let c = |s| collection(s, Dialect::Postgres);
        assert_eq!(
            c("SELECT a FROM users u JOIN orders o ON true").as_deref(),
            Some("users")
        );
        assert_eq!(
            c("insert into public.items (a) values (1)").as_deref(),
            Some("public.items")
        );
        assert_eq!(c("UPDATE \"Items\" SET a = 1").as_deref(), Some("Items"));
        assert_eq!(c("DELETE FROM ONLY t WHERE x").as_deref(), Some("t"));
        assert_eq!(
            c("CREATE TABLE IF NOT EXISTS kv (k text)").as_deref(),
            Some("kv")
        );
        assert_eq!(c("DROP TABLE IF EXISTS kv").as_deref(), Some("kv"));
        assert_eq!(c("TRUNCATE TABLE kv").as_deref(), Some("kv"));
        assert_eq!(c("COPY kv FROM STDIN").as_deref(), Some("kv"));
        assert_eq!(c("SELECT 1").as_deref(), None);
        assert_eq!(c("BEGIN").as_deref(), None);
        assert_eq!(
            c("SELECT * FROM (SELECT 1) s JOIN t ON true").as_deref(),
            Some("t")
        );
        assert_eq!(c("SELECT 'FROM x' FROM y").as_deref(), Some("y"));
        assert_eq!(
            c("SELECT g FROM generate_series(1, 5) AS g").as_deref(),
            None
        );
        assert_eq!(c("SELECT * FROM f(1) JOIN t ON true").as_deref(), Some("t"));
        assert_eq!(
            c("INSERT INTO t (a, b) VALUES (1, 2)").as_deref(),
            Some("t")
        );
        assert_eq!(
            collection("SELECT * FROM `db`.`t`", Dialect::MySql).as_deref(),
            Some("db.t")
        );
    }

    #[test]
    fn collection_after_into_and_from() {
        let m = |s| collection(s, Dialect::MySql);
        for (sql, table) in [
            ("LOAD DATA LOCAL INFILE '/x' INTO TABLE t", Some("t")),
            (
                "LOAD DATA INFILE '/x' REPLACE INTO TABLE `db`.`t` FIELDS TERMINATED BY ','",
                Some("db.t"),
            ),
            (
                "load xml local infile '/x.xml' into table rows_",
                Some("rows_"),
            ),
            ("INSERT INTO t VALUES (1)", Some("t")),
            ("INSERT IGNORE INTO t (a) SELECT a FROM s", Some("t")),
            ("REPLACE INTO kv (k, v) VALUES ('a', 1)", Some("kv")),
            ("SELECT a INTO @var FROM t WHERE id = 1", Some("t")),
            ("SELECT a, b INTO @x, @y FROM t", Some("t")),
            ("SELECT a INTO OUTFILE '/tmp/a' FROM t", Some("t")),
            ("SELECT * INTO new_t FROM t", Some("t")),
            ("SELECT 1 INTO @one", None),
            ("DELETE FROM t WHERE id = 1", Some("t")),
            ("DELETE t1 FROM t1 JOIN t2 ON t1.a = t2.a", Some("t1")),
            ("MERGE INTO t USING s ON t.k = s.k", Some("t")),
        ] {
            assert_eq!(m(sql).as_deref(), table, "{sql}");
        }
        assert_eq!(
            collection(
                "MERGE INTO public.t AS d USING s ON true",
                Dialect::Postgres
            )
            .as_deref(),
            Some("public.t")
        );
    }

    #[test]
    fn unclosed_quoted_identifier_ending_in_a_multibyte_character() {
        // Found by the mysql fuzz target: the name was sliced inside `é`.
        assert_eq!(
            collection("SELECT * FROM `é", Dialect::MySql).as_deref(),
            Some("é")
        );
        assert_eq!(
            collection("UPDATE \"ü", Dialect::Postgres).as_deref(),
            Some("ü")
        );
        assert_eq!(collection("SELECT * FROM ``", Dialect::MySql), None);
    }
}
