//! Front messages cut into chunks for the trip through Ballista, and put back together.
//!
//! A front message (one batch of 8,192 records' parse results of one node) has no size
//! bound: request headers kept for trace context alone can make it tens of MB. Every
//! gRPC message on Ballista's paths is limited (16 MiB by default on the scheduler, the
//! executors' gRPC and Flight services and the client; tonic's own default is 4 MiB), and
//! Arrow Flight cuts a record batch into `FlightData` messages only between rows, so a
//! row is never split. [`ExchangeScanExec`](crate::plan::ExchangeScanExec) therefore
//! writes each message as rows of at most [`CHUNK_BYTES`] ([`split`]) — `group`, `seq`,
//! `part`, `parts`, `hash` (of the whole message), `chunk` — in record batches of at most
//! [`BATCH_BYTES`], and the client ([`Reassembler`]) puts each group's messages back in
//! `seq` order, each from all of its parts, checked against its hash. Nothing is handed
//! on before it is complete; a missing, damaged or contradictory chunk is an error.

use std::collections::BTreeMap;

/// Largest chunk of a message in one row.
pub const CHUNK_BYTES: usize = 1 << 20;

/// Record batches hold at most this many chunk bytes (or one chunk, if larger): with the
/// few bytes of the other columns, every `FlightData` the executors send stays under
/// tonic's default limit of 4 MiB, let alone Ballista's 16 MiB.
pub const BATCH_BYTES: usize = 2 << 20;

/// FNV-1a, 64 bit: a message's check value, and what tells a repeated chunk from a
/// different one.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// One row of the job's output: part `part` of `parts` of message `seq` of group `group`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk<'a> {
    /// The capture group (node).
    pub group: u32,
    /// The message's position in the group's messages.
    pub seq: u64,
    /// The chunk's position in the message.
    pub part: u32,
    /// How many chunks the message has (at least 1).
    pub parts: u32,
    /// [`fnv1a64`] of the whole message.
    pub hash: u64,
    /// The chunk's bytes.
    pub bytes: &'a [u8],
}

/// Message `seq` of group `group` cut into chunks of at most `chunk_bytes` (an empty
/// message is one empty chunk).
pub fn split(
    group: u32,
    seq: u64,
    message: &[u8],
    chunk_bytes: usize,
) -> anyhow::Result<Vec<Chunk<'_>>> {
    anyhow::ensure!(chunk_bytes > 0, "chunks of 0 bytes");
    let parts = message.len().div_ceil(chunk_bytes).max(1);
    let parts = u32::try_from(parts)
        .map_err(|_| anyhow::anyhow!("a message of {} bytes has too many chunks", message.len()))?;
    let hash = fnv1a64(message);
    let mut out: Vec<Chunk<'_>> = message
        .chunks(chunk_bytes)
        .zip(0..)
        .map(|(bytes, part)| Chunk {
            group,
            seq,
            part,
            parts,
            hash,
            bytes,
        })
        .collect();
    if out.is_empty() {
        out.push(Chunk {
            group,
            seq,
            part: 0,
            parts: 1,
            hash,
            bytes: &[],
        });
    }
    Ok(out)
}

/// A message some of whose chunks arrived.
#[derive(Debug)]
struct Partial {
    parts: u32,
    hash: u64,
    /// By part (a map: `parts` comes off the wire and is not trusted to size anything).
    chunks: BTreeMap<u32, Vec<u8>>,
}

impl Partial {
    fn complete(&self) -> bool {
        self.chunks.len() == self.parts as usize
    }
}

/// What is known of a message already handed on: enough to recognise a repeated chunk.
#[derive(Debug)]
struct Written {
    parts: u32,
    hash: u64,
    chunk_hashes: Vec<u64>,
}

/// One group's messages in flight.
#[derive(Debug, Default)]
struct Group {
    /// The next message to hand on.
    next: u64,
    /// Messages (complete or not) at or after `next`, by seq.
    pending: BTreeMap<u64, Partial>,
    /// The messages handed on, by seq.
    written: Vec<Written>,
}

/// Puts the messages of every group back together from chunks in any order (Ballista
/// may hand a stage's rows out by its own partitions, and a retried fetch may repeat
/// rows), and hands each group's messages on in `seq` order, complete and checked.
#[derive(Debug)]
pub struct Reassembler {
    groups: Vec<Group>,
    repeated: u64,
    largest: (usize, u32),
}

/// What [`Reassembler::finish`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reassembled {
    /// Messages handed on, all groups.
    pub messages: u64,
    /// Chunks that arrived more than once (the same bytes) and were skipped.
    pub repeated: u64,
    /// The largest message: bytes and chunks.
    pub largest: (usize, u32),
}

impl Reassembler {
    /// For a job of `groups` groups.
    pub fn new(groups: usize) -> Self {
        Reassembler {
            groups: (0..groups).map(|_| Group::default()).collect(),
            repeated: 0,
            largest: (0, 0),
        }
    }

    /// Takes one chunk; hands every message that is now complete and next in its group's
    /// order to `emit` (group, bytes). A chunk that contradicts what arrived before — a
    /// different `parts` or hash for the same message, different bytes for the same part
    /// — or a message whose bytes do not match its hash is an error.
    pub fn push(
        &mut self,
        chunk: Chunk<'_>,
        mut emit: impl FnMut(u32, &[u8]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let Chunk {
            group: g,
            seq,
            part,
            parts,
            hash,
            bytes,
        } = chunk;
        let group = self
            .groups
            .get_mut(g as usize)
            .ok_or_else(|| anyhow::anyhow!("the cluster job returned group {g}"))?;
        let what = || format!("message {seq} of group {g}");
        anyhow::ensure!(
            part < parts,
            "the cluster job returned chunk {part} of {parts} of {}",
            what()
        );
        if seq < group.next {
            let w = usize::try_from(seq)
                .ok()
                .and_then(|i| group.written.get(i))
                .ok_or_else(|| anyhow::anyhow!("{} was not recorded", what()))?;
            let same = w.parts == parts
                && w.hash == hash
                && w.chunk_hashes.get(part as usize) == Some(&fnv1a64(bytes));
            anyhow::ensure!(
                same,
                "the cluster job returned chunk {part} of {} twice, different",
                what()
            );
            self.repeated += 1;
            return Ok(());
        }
        let partial = group.pending.entry(seq).or_insert_with(|| Partial {
            parts,
            hash,
            chunks: BTreeMap::new(),
        });
        anyhow::ensure!(
            partial.parts == parts && partial.hash == hash,
            "the chunks of {} disagree: {} parts with hash {:016x}, then {parts} with {hash:016x}",
            what(),
            partial.parts,
            partial.hash
        );
        if let Some(prev) = partial.chunks.get(&part) {
            anyhow::ensure!(
                prev.as_slice() == bytes,
                "the cluster job returned chunk {part} of {} twice, different",
                what()
            );
            self.repeated += 1;
            return Ok(());
        }
        partial.chunks.insert(part, bytes.to_vec());
        if partial.complete() {
            // FNV-1a over the parts in order, as `fnv1a64` of the whole message.
            let got = partial
                .chunks
                .values()
                .flatten()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
                });
            anyhow::ensure!(
                got == hash,
                "{} does not match its hash ({got:016x}, not {hash:016x}): damaged in transit",
                what()
            );
        }
        // Hand on what is complete and next.
        while let Some(entry) = group.pending.first_entry() {
            if *entry.key() != group.next || !entry.get().complete() {
                break;
            }
            let p = entry.remove();
            let chunk_hashes = p.chunks.values().map(|c| fnv1a64(c)).collect();
            let message: Vec<u8> = if p.parts == 1 {
                p.chunks.into_values().next().unwrap_or_default()
            } else {
                p.chunks.into_values().flatten().collect()
            };
            emit(g, &message)?;
            if message.len() > self.largest.0 {
                self.largest = (message.len(), p.parts);
            }
            group.written.push(Written {
                parts: p.parts,
                hash: p.hash,
                chunk_hashes,
            });
            group.next += 1;
        }
        Ok(())
    }

    /// The end of the job's rows: every message that arrived in part, or after a gap, is
    /// an error (the first one, named).
    pub fn finish(self) -> anyhow::Result<Reassembled> {
        for (g, group) in self.groups.iter().enumerate() {
            let Some((seq, p)) = group.pending.first_key_value() else {
                continue;
            };
            if *seq != group.next {
                anyhow::bail!(
                    "the cluster job's messages of group {g} have a gap: message {} is missing",
                    group.next
                );
            }
            let missing: Vec<String> = (0..p.parts)
                .filter(|i| !p.chunks.contains_key(i))
                .take(10)
                .map(|i| i.to_string())
                .collect();
            anyhow::bail!(
                "message {seq} of group {g} is incomplete: chunk(s) {}{} of {} missing",
                missing.join(", "),
                if p.parts as usize - p.chunks.len() > missing.len() {
                    ", …"
                } else {
                    ""
                },
                p.parts
            );
        }
        Ok(Reassembled {
            messages: self.groups.iter().map(|g| g.next).sum(),
            repeated: self.repeated,
            largest: self.largest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of `len` bytes that differs at every position from its neighbours.
    fn message(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    }

    /// Pushes `chunks` in order; the messages handed on, and the result of `finish`.
    fn run(
        groups: usize,
        chunks: &[Chunk<'_>],
    ) -> (Vec<(u32, Vec<u8>)>, anyhow::Result<Reassembled>) {
        let mut r = Reassembler::new(groups);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = r.push(*c, |g, b| {
                out.push((g, b.to_vec()));
                Ok(())
            }) {
                return (out, Err(e));
            }
        }
        (out, r.finish())
    }

    #[test]
    fn split_cuts_at_the_chunk_size_and_keeps_empty_messages() {
        let m = message(10, 1);
        let c = split(3, 7, &m, 4).expect("split");
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.iter().map(|c| c.bytes.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert!(c
            .iter()
            .all(|c| c.parts == 3 && c.group == 3 && c.seq == 7 && c.hash == fnv1a64(&m)));
        assert_eq!(c.iter().map(|c| c.part).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(
            c.iter().flat_map(|c| c.bytes.to_vec()).collect::<Vec<_>>(),
            m
        );
        // Exactly a multiple: no empty tail chunk.
        assert_eq!(split(0, 0, &message(8, 2), 4).expect("split").len(), 2);
        let empty = split(0, 0, &[], 4).expect("split");
        assert_eq!(empty.len(), 1);
        assert_eq!((empty[0].part, empty[0].parts), (0, 1));
        assert!(empty[0].bytes.is_empty());
        assert!(split(0, 0, &m, 0).is_err());
    }

    #[test]
    fn chunks_in_order_give_the_messages_back() {
        let a = message(10, 1);
        let b = message(3, 2);
        let e: Vec<u8> = Vec::new();
        let mut chunks = split(0, 0, &a, 4).expect("split");
        chunks.extend(split(0, 1, &b, 4).expect("split"));
        chunks.extend(split(0, 2, &e, 4).expect("split"));
        chunks.extend(split(1, 0, &b, 4).expect("split"));
        let (out, done) = run(2, &chunks);
        assert_eq!(out, vec![(0, a), (0, b.clone()), (0, e), (1, b)]);
        let done = done.expect("complete");
        assert_eq!(done.messages, 4);
        assert_eq!(done.repeated, 0);
        assert_eq!(done.largest, (10, 3));
    }

    #[test]
    fn reordered_chunks_and_messages_are_put_back_in_order() {
        let a = message(10, 1);
        let b = message(9, 2);
        let ca = split(0, 0, &a, 4).expect("split");
        let cb = split(0, 1, &b, 4).expect("split");
        // Message 1 complete before message 0; the chunks of each out of order.
        let order = [cb[2], cb[0], cb[1], ca[1], ca[2], ca[0]];
        let mut r = Reassembler::new(1);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for (i, c) in order.iter().enumerate() {
            r.push(*c, |_, m| {
                out.push(m.to_vec());
                Ok(())
            })
            .expect("push");
            // Nothing is handed on before message 0 is complete, i.e. the last chunk.
            if i < order.len() - 1 {
                assert!(out.is_empty(), "handed on after {} chunks", i + 1);
            }
        }
        assert_eq!(out, vec![a, b]);
        assert_eq!(r.finish().expect("complete").messages, 2);
    }

    #[test]
    fn a_missing_chunk_is_an_error_and_nothing_after_it_is_handed_on() {
        let a = message(10, 1);
        let b = message(5, 2);
        let ca = split(0, 0, &a, 4).expect("split");
        let cb = split(0, 1, &b, 4).expect("split");
        let (out, done) = run(1, &[ca[0], ca[2], cb[0], cb[1]]);
        assert!(out.is_empty(), "{out:?}");
        let e = done.expect_err("incomplete").to_string();
        assert!(
            e.contains("message 0 of group 0 is incomplete: chunk(s) 1 of 3 missing"),
            "{e}"
        );
        // A whole message missing: the gap is named.
        let (out, done) = run(1, &cb);
        assert!(out.is_empty());
        let e = done.expect_err("gap").to_string();
        assert!(
            e.contains("group 0 have a gap: message 0 is missing"),
            "{e}"
        );
        // The last chunk of the last message missing.
        let (out, done) = run(1, &[ca[0], ca[1], ca[2], cb[0]]);
        assert_eq!(out, vec![(0, a)]);
        let e = done.expect_err("incomplete").to_string();
        assert!(e.contains("message 1 of group 0 is incomplete"), "{e}");
    }

    #[test]
    fn repeated_chunks_are_skipped_and_different_ones_refused() {
        let a = message(10, 1);
        let ca = split(0, 0, &a, 4).expect("split");
        // Repeats before and after the message is complete.
        let (out, done) = run(1, &[ca[0], ca[0], ca[1], ca[2], ca[1], ca[2]]);
        assert_eq!(out, vec![(0, a.clone())]);
        assert_eq!(done.expect("complete").repeated, 3);
        // Different bytes for a part already there, and for one already handed on.
        let other = message(4, 9);
        let mut bad = ca[1];
        bad.bytes = &other;
        let (_, done) = run(1, &[ca[0], ca[1], bad]);
        let e = done.expect_err("different").to_string();
        assert!(
            e.contains("chunk 1 of message 0 of group 0 twice, different"),
            "{e}"
        );
        let (_, done) = run(1, &[ca[0], ca[1], ca[2], bad]);
        let e = done.expect_err("different").to_string();
        assert!(e.contains("twice, different"), "{e}");
    }

    #[test]
    fn damaged_or_contradictory_chunks_are_refused() {
        let a = message(10, 1);
        let ca = split(0, 0, &a, 4).expect("split");
        // Same length, other bytes: the hash tells.
        let other = message(4, 9);
        let mut damaged = ca[1];
        damaged.bytes = &other;
        let (out, done) = run(1, &[ca[0], damaged, ca[2]]);
        assert!(out.is_empty());
        let e = done.expect_err("damaged").to_string();
        assert!(e.contains("does not match its hash"), "{e}");
        // Another count of parts, or another hash, for the same message.
        let mut parts = ca[1];
        parts.parts = 4;
        let (_, done) = run(1, &[ca[0], parts]);
        assert!(done.expect_err("parts").to_string().contains("disagree"));
        let mut hash = ca[1];
        hash.hash ^= 1;
        let (_, done) = run(1, &[ca[0], hash]);
        assert!(done.expect_err("hash").to_string().contains("disagree"));
        // A part beyond the count, a group beyond the job.
        let mut beyond = ca[0];
        beyond.part = 3;
        let (_, done) = run(1, &[beyond]);
        assert!(done.expect_err("part").to_string().contains("chunk 3 of 3"));
        let mut group = ca[0];
        group.group = 1;
        let (_, done) = run(1, &[group]);
        assert!(done.expect_err("group").to_string().contains("group 1"));
    }
}
