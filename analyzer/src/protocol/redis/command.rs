//! Which arguments of a Redis command are keys, and the sanitized query text: the command
//! name and its keys as sent, every other argument (values, scores, passwords) as `?`.
//! Commands not listed show no argument at all.

/// Where a command's keys are among its arguments (after the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// No key (or not known: nothing is shown).
    None,
    /// The first argument.
    First,
    /// The first two.
    Two,
    /// Every argument.
    All,
    /// Every argument but the last (blocking pops: the timeout).
    AllButLast,
    /// Every other argument from the first (`MSET k v k v`).
    Alternate,
    /// `numkeys` is the second argument; that many keys follow it (`EVAL`, `FCALL`).
    Counted,
}

fn keys_of(name: &str) -> Keys {
    match name {
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" | "MGET" | "WATCH" | "SINTER" | "SUNION"
        | "SDIFF" | "SINTERSTORE" | "SUNIONSTORE" | "SDIFFSTORE" | "PFCOUNT" | "PFMERGE"
        | "SUBSCRIBE" | "UNSUBSCRIBE" | "PSUBSCRIBE" | "PUNSUBSCRIBE" | "SSUBSCRIBE"
        | "SUNSUBSCRIBE" => Keys::All,
        "MSET" | "MSETNX" => Keys::Alternate,
        "BLPOP" | "BRPOP" | "BZPOPMIN" | "BZPOPMAX" => Keys::AllButLast,
        "RENAME" | "RENAMENX" | "COPY" | "SMOVE" | "LMOVE" | "BLMOVE" | "RPOPLPUSH"
        | "BRPOPLPUSH" => Keys::Two,
        "EVAL" | "EVALSHA" | "EVAL_RO" | "EVALSHA_RO" | "FCALL" | "FCALL_RO" => Keys::Counted,
        "GET" | "SET" | "SETEX" | "PSETEX" | "SETNX" | "GETSET" | "GETDEL" | "GETEX" | "INCR"
        | "INCRBY" | "INCRBYFLOAT" | "DECR" | "DECRBY" | "APPEND" | "STRLEN" | "GETRANGE"
        | "SETRANGE" | "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" | "EXPIRETIME"
        | "PEXPIRETIME" | "TTL" | "PTTL" | "PERSIST" | "TYPE" | "DUMP" | "RESTORE" | "HGET"
        | "HSET" | "HSETNX" | "HMSET" | "HMGET" | "HGETALL" | "HDEL" | "HEXISTS" | "HINCRBY"
        | "HINCRBYFLOAT" | "HKEYS" | "HVALS" | "HLEN" | "HSTRLEN" | "HSCAN" | "HRANDFIELD"
        | "LPUSH" | "RPUSH" | "LPUSHX" | "RPUSHX" | "LPOP" | "RPOP" | "LLEN" | "LRANGE"
        | "LINDEX" | "LSET" | "LREM" | "LTRIM" | "LINSERT" | "LPOS" | "SADD" | "SREM"
        | "SMEMBERS" | "SISMEMBER" | "SMISMEMBER" | "SCARD" | "SPOP" | "SRANDMEMBER" | "SSCAN"
        | "ZADD" | "ZREM" | "ZRANGE" | "ZRANGEBYSCORE" | "ZREVRANGE" | "ZREVRANGEBYSCORE"
        | "ZRANK" | "ZREVRANK" | "ZSCORE" | "ZMSCORE" | "ZCARD" | "ZCOUNT" | "ZINCRBY"
        | "ZSCAN" | "ZPOPMIN" | "ZPOPMAX" | "ZREMRANGEBYRANK" | "ZREMRANGEBYSCORE"
        | "ZLEXCOUNT" | "ZRANGEBYLEX" | "XADD" | "XLEN" | "XRANGE" | "XREVRANGE" | "XDEL"
        | "XTRIM" | "PFADD" | "SETBIT" | "GETBIT" | "BITCOUNT" | "BITPOS" | "GEOADD"
        | "GEODIST" | "GEOPOS" | "GEOSEARCH" | "GEORADIUS" | "PUBLISH" | "SPUBLISH" | "KEYS" => {
            Keys::First
        }
        _ => Keys::None,
    }
}

/// Whether argument `i` (0-based, after the name) of a command with `argc` arguments is a
/// key; `numkeys` is the second argument's value for [`Keys::Counted`] commands.
fn is_key(keys: Keys, i: usize, argc: usize, numkeys: Option<usize>) -> bool {
    match keys {
        Keys::None => false,
        Keys::First => i == 0,
        Keys::Two => i < 2,
        Keys::All => true,
        Keys::AllButLast => i + 1 < argc,
        Keys::Alternate => i.is_multiple_of(2),
        Keys::Counted => numkeys.is_some_and(|n| i >= 2 && i < 2 + n),
    }
}

/// Longest key shown in the query text (longer ones are cut and end with `…`).
const MAX_KEY_CHARS: usize = 128;

/// The sanitized query text of a command: `name` (upper case), then per argument the key
/// as sent or `?`. `args` are the kept arguments; `argc` counts all of them.
pub fn sanitized(name: &str, args: &[Vec<u8>], argc: usize) -> String {
    let keys = keys_of(name);
    let numkeys = match keys {
        Keys::Counted => args
            .get(1)
            .and_then(|a| std::str::from_utf8(a).ok())
            .and_then(|s| s.parse().ok()),
        _ => None,
    };
    let mut out = String::from(name);
    for i in 0..argc {
        out.push(' ');
        match args.get(i) {
            Some(a) if is_key(keys, i, argc, numkeys) => {
                let text = String::from_utf8_lossy(a);
                let mut chars = text.chars();
                out.extend(chars.by_ref().take(MAX_KEY_CHARS));
                if chars.next().is_some() {
                    out.push('…');
                }
            }
            _ => out.push('?'),
        }
    }
    out
}

/// The query text as sent: `name` and every argument (kept prefixes, lossily decoded;
/// arguments past the kept ones as `?`).
pub fn raw(name: &str, args: &[Vec<u8>], argc: usize) -> String {
    let mut out = String::from(name);
    // Credentials stay hidden even in raw mode: every argument of AUTH, and what follows
    // an AUTH/AUTH2 token (HELLO 3 AUTH user pass, MIGRATE ... AUTH pass).
    let mut secret = if name.eq_ignore_ascii_case("AUTH") {
        usize::MAX
    } else {
        0
    };
    for i in 0..argc {
        out.push(' ');
        match args.get(i) {
            Some(_) if secret > 0 => {
                secret -= 1;
                out.push('?');
            }
            Some(a) => {
                if a.eq_ignore_ascii_case(b"AUTH") || a.eq_ignore_ascii_case(b"AUTH2") {
                    secret = 2;
                }
                out.push_str(&String::from_utf8_lossy(a));
            }
            None => out.push('?'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<Vec<u8>> {
        a.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn raw_mode_hides_credentials() {
        assert_eq!(raw("AUTH", &args(&["user", "pw"]), 2), "AUTH ? ?");
        assert_eq!(
            raw(
                "HELLO",
                &args(&["3", "AUTH", "user", "pw", "SETNAME", "x"]),
                6
            ),
            "HELLO 3 AUTH ? ? SETNAME x"
        );
        assert_eq!(raw("SET", &args(&["k", "v"]), 2), "SET k v");
    }

    #[test]
    fn keys_shown_values_hidden() {
        assert_eq!(sanitized("SET", &args(&["k", "secret"]), 2), "SET k ?");
        assert_eq!(
            sanitized("MSET", &args(&["a", "1", "b", "2"]), 4),
            "MSET a ? b ?"
        );
        assert_eq!(sanitized("DEL", &args(&["a", "b"]), 2), "DEL a b");
        assert_eq!(
            sanitized("BLPOP", &args(&["a", "b", "5"]), 3),
            "BLPOP a b ?"
        );
        assert_eq!(
            sanitized("EVAL", &args(&["return 1", "1", "k", "v"]), 4),
            "EVAL ? ? k ?"
        );
        assert_eq!(sanitized("AUTH", &args(&["user", "pw"]), 2), "AUTH ? ?");
        assert_eq!(sanitized("FROBNICATE", &args(&["x"]), 1), "FROBNICATE ?");
        assert_eq!(sanitized("PING", &[], 0), "PING");
        // Arguments past the kept ones are counted, shown as `?`.
        assert_eq!(sanitized("DEL", &args(&["a"]), 3), "DEL a ? ?");
        assert_eq!(raw("SET", &args(&["k", "v"]), 3), "SET k v ?");
        let long = "k".repeat(200);
        assert!(sanitized("GET", &args(&[&long]), 1).ends_with('…'));
    }
}
