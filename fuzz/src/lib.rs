//! What the fuzz targets share: a RESP value the fuzzer builds from its bytes (so the reply
//! parsers see every shape a server could send, not only what the RESP decoder lets through).

use arbitrary::Arbitrary;
use redis::Value;

/// Mirrors the shapes of [`redis::Value`] the parsers meet; strings are often short tokens
/// (`master`, `ip`, numbers) so the fuzzer reaches past the first check quickly.
#[derive(Arbitrary, Debug)]
pub enum FuzzValue {
    Nil,
    Int(i64),
    Bulk(Token),
    Simple(Token),
    Okay,
    Array(Vec<FuzzValue>),
    Map(Vec<(FuzzValue, FuzzValue)>),
    Set(Vec<FuzzValue>),
    Double(f64),
    Boolean(bool),
}

/// A string: a known token, a number, or any text.
#[derive(Arbitrary, Debug)]
pub enum Token {
    Known(u8),
    Number(i64),
    Text(String),
    Bytes(Vec<u8>),
}

/// Field names and values the Sentinel and Redis replies carry.
const KNOWN: &[&str] = &[
    "master",
    "slave",
    "replica",
    "sentinel",
    "name",
    "ip",
    "port",
    "flags",
    "runid",
    "config-epoch",
    "num-other-sentinels",
    "quorum",
    "down-after-milliseconds",
    "failover-timeout",
    "master-link-status",
    "slave-repl-offset",
    "leader",
    "leader-epoch",
    "s_down",
    "o_down",
    "failover_in_progress",
    "connected",
    "connect",
    "sync",
    "ok",
    "err",
    "127.0.0.1",
    "::1",
    "redis-cluster",
    "*",
    "0",
    "1",
    "-1",
    "",
];

impl Token {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Token::Known(i) => KNOWN[usize::from(*i) % KNOWN.len()].as_bytes().to_vec(),
            Token::Number(n) => n.to_string().into_bytes(),
            Token::Text(s) => s.clone().into_bytes(),
            Token::Bytes(b) => b.clone(),
        }
    }
}

impl FuzzValue {
    pub fn to_value(&self) -> Value {
        match self {
            FuzzValue::Nil => Value::Nil,
            FuzzValue::Int(i) => Value::Int(*i),
            FuzzValue::Bulk(t) => Value::BulkString(t.bytes()),
            FuzzValue::Simple(t) => {
                Value::SimpleString(String::from_utf8_lossy(&t.bytes()).into_owned())
            }
            FuzzValue::Okay => Value::Okay,
            FuzzValue::Array(items) => Value::Array(items.iter().map(Self::to_value).collect()),
            FuzzValue::Map(pairs) => Value::Map(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_value(), v.to_value()))
                    .collect(),
            ),
            FuzzValue::Set(items) => Value::Set(items.iter().map(Self::to_value).collect()),
            FuzzValue::Double(d) => Value::Double(*d),
            FuzzValue::Boolean(b) => Value::Boolean(*b),
        }
    }
}
